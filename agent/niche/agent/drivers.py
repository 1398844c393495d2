"""Sandboxed drivers: programs the agent runs through the port.

A driver is cloned from the port into new namespaces, keeps only the GPIO
line descriptors it was given (their numbers in NICHE_GPIO_<NAME>), is put
in a cgroup (memory, pids) when asked, drops to its own UID/GID, gets a
seccomp allow-list when asked, then execs its command. Its stdout lines
are published, its stdin fed from MQTT in order; when it exits it is
restarted with exponential back-off (restart = always | on-failure | never).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

from .. import gpio, seccomp
from ..cgroup import Cgroup, into_leaf
from ..port import PortClosed, PortError, Process
from ..sandbox import DEFAULT_LIMITS, Identity, drop_privileges, keep_only, verify
from .config import DriverConfig

if TYPE_CHECKING:
    from .agent import Agent

log = logging.getLogger("niche.agent.driver")

NS_FLAGS = {"ipc": "clone_newipc", "mount": "clone_newns", "net": "clone_newnet", "pid": "clone_newpid",
            "uts": "clone_newuts", "cgroup": "clone_newcgroup"}
BACKOFF_S = (0.5, 1, 2, 4, 8, 16, 30)
STABLE_S = 10.0  # running this long resets the back-off


def _bytes(text: str) -> int | str:
    """A memory size of the config as cgroup.memory_max takes it: "max", or
    bytes with an optional K/M/G suffix (powers of 1024)."""
    t = text.strip().upper()
    if t == "MAX":
        return "max"
    mult = 1 << (10 * ("KMG".index(t[-1]) + 1)) if t and t[-1] in "KMG" else 1
    try:
        return int(t[:-1] if mult > 1 else t) * mult
    except ValueError:
        raise ValueError(f"memory_max is bytes (optionally K/M/G) or 'max', not {text!r}") from None


class Driver:
    def __init__(self, agent: Agent, dc: DriverConfig) -> None:
        self.agent = agent
        self.dc = dc
        self.topic = f"{agent.prefix}/driver/{dc.name}"
        self.process: Process | None = None
        self.cgroup: Cgroup | None = None
        self.state = "stopped"
        self.failures = 0
        self.started = 0.0
        self.partial = b""
        self.stopping = False
        self.want_now = False  # restart at once (the restart command), no back-off
        self.stdin_q: queue.Queue[bytes] = queue.Queue()  # MQTT to stdin, in order
        self.thread: threading.Thread | None = None

    def publish_state(self, state: str) -> None:
        self.state = state
        self.agent.mqtt.publish(f"{self.topic}/state", state, qos=1, retain=True)

    # --- start: the sandbox, in order ------------------------------------

    def _line_fds(self, parent: Process) -> dict[str, int]:
        cfg = self.agent.cfg
        fds: dict[str, int] = {}
        for name in self.dc.gpio:
            lc = cfg.lines[name]
            ref = cfg.board.resolve(lc.pin)
            backend = lc.backend or gpio.default_backend(ref, cfg.board)
            if backend == "sysfs":
                fds[name], _, _ = gpio.SysfsLine.open_fd(
                    parent, ref, cfg.board, direction=lc.direction, initial=lc.initial,  # type: ignore[arg-type]
                    active_low=lc.active_low, edge=lc.edge, root=cfg.sysfs_root, timeout=10)  # type: ignore[arg-type]
            else:
                fds[name], _, _ = gpio.ChardevLine.open_fd(
                    parent, ref, direction=lc.direction, initial=lc.initial,  # type: ignore[arg-type]
                    active_low=lc.active_low, bias=lc.bias, edge=lc.edge,  # type: ignore[arg-type]
                    debounce_ms=lc.debounce_ms, consumer=f"niche-{self.dc.name}",
                    overlay_hint=cfg.board.overlay_hint, timeout=10)
        return fds

    def start(self) -> None:
        port = self.agent.port
        assert port is not None
        dc = self.dc
        parent = port.root
        fds = self._line_fds(parent)
        child: Process | None = None
        try:
            child = parent.clone([NS_FLAGS[n] for n in dc.namespaces], timeout=10) if dc.namespaces \
                else parent.fork(timeout=10)
            keep_only(child, fds.values(), timeout=10)
            for name, fd in fds.items():
                child.fcntl(fd, "F_SETFD", 0, timeout=10)  # kept across exec (no FD_CLOEXEC)
                child.setenv(f"NICHE_GPIO_{name.upper().replace('-', '_')}", str(fd), 1, timeout=10)
            if dc.memory_max or dc.pids_max:
                # under a systemd unit (Delegate=yes) the agent and its port leave the
                # unit's cgroup for a leaf first, so the driver's is a sibling with controllers
                into_leaf(port, timeout=10)
                self.cgroup = Cgroup(port, f"niche-{self.agent.cfg.agent_id}-{dc.name}", exist_ok=True)
                if dc.memory_max:  # the config keeps it as text ("67108864", "64M", "max")
                    self.cgroup.memory_max(_bytes(dc.memory_max))
                if dc.pids_max:
                    self.cgroup.pids_max(dc.pids_max)
                self.cgroup.add(child.pid)
            limits = {k: v for k, v in DEFAULT_LIMITS.items() if k != "RLIMIT_NPROC"}
            for resource, lim in limits.items():
                child.setrlimit(resource, lim, timeout=10)
            identity = Identity(dc.uid, dc.gid or dc.uid) if dc.uid else Identity.random()
            status_fd = child.open("/proc/self/status", ["O_RDONLY", "O_CLOEXEC"], timeout=10)
            drop_privileges(child, identity, timeout=10)
            verify(child, identity, status_fd, timeout=10)
            child.close(status_fd, timeout=10)
            if dc.allow is not None:  # the program's calls, plus what exec itself needs
                prog = seccomp.allow_list(port, child.chain, [*dc.allow, "execve"], "kill",
                                          port_loop=True, missing="ignore")
                seccomp.apply(port, child.chain, prog, timeout=10)
            child.execvp(dc.command[0], dc.command, timeout=10)
        except BaseException:
            if child is not None:
                try:
                    parent.kill(child.pid, "SIGKILL", timeout=5)
                except (OSError, PortError):
                    pass
            raise
        finally:
            for fd in fds.values():  # the driver holds them now (or nobody)
                try:
                    parent.close(fd, timeout=5)
                except (OSError, PortError):
                    pass
        self.process = child
        self.started = time.monotonic()
        self.partial = b""
        log.info("driver %s running as pid %d (uid %d)", dc.name, child.pid, identity.uid)
        self.publish_state("running")

    # --- running ---------------------------------------------------------

    def pump(self) -> str | None:
        """Publish what the driver wrote; the exit event if it exited."""
        proc = self.process
        if proc is None:
            return None
        data = proc.stdout(timeout=0.2)
        if data:
            lines = (self.partial + data).split(b"\n")
            self.partial = lines.pop()
            for line in lines:
                self.agent.mqtt.publish(f"{self.topic}/stdout", line, qos=1)
        ev = proc.event(timeout=0)
        if ev is not None and ev[0] in ("exit_status", "termsig"):
            if self.partial:
                self.agent.mqtt.publish(f"{self.topic}/stdout", self.partial, qos=1)
                self.partial = b""
            self.process = None
            return f"{ev[0]} {ev[1]}"
        return None

    def write_stdin(self, data: bytes) -> None:
        """Queue data for the driver's stdin (written by its own thread, so a
        driver that does not read holds up nobody else)."""
        if self.process is None:
            raise RuntimeError(f"driver {self.dc.name} is not running ({self.state})")
        self.stdin_q.put(data)

    def _feed(self) -> None:
        while self.process is not None:
            try:
                data = self.stdin_q.get_nowait()
            except queue.Empty:
                return
            try:
                self.process.stdin(data)  # back-pressure: waits while the driver does not read
            except (OSError, PortError) as e:
                self.agent.report(f"{self.topic}/stdin", data, f"could not write it: {e}")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 5 s; the driver's thread sees it exit."""
        self.stopping = True
        for sig, wait in (("SIGTERM", 5.0), ("SIGKILL", 2.0)):
            proc = self.process
            if proc is None or self.agent.port is None:
                break
            try:
                self.agent.port.kill([], proc.pid, sig, timeout=5)
            except (OSError, PortError):
                break
            if self.thread is not None:
                self.thread.join(wait)
        if self.cgroup is not None:
            try:
                self.cgroup.remove("kill")
            except (OSError, PortError):
                pass
            self.cgroup = None
        self.publish_state("stopped")

    def restart(self) -> None:
        """The driver/<name>/restart command."""
        if self.process is not None and self.agent.port is not None:
            try:
                self.agent.port.kill([], self.process.pid, "SIGKILL", timeout=5)
            except (OSError, PortError):
                pass
        self.failures = 0
        self.want_now = True

    def supervise(self) -> None:
        """The driver's thread: pump output, restart per policy with back-off."""
        while not self.stopping:
            try:
                if self.process is None:
                    if self.agent.stop.is_set():
                        return
                    self._maybe_start()
                    continue
                exited = self.pump()
                self._feed()
            except PortClosed:
                self.process = None  # the agent restarts the port; we start again on it
                time.sleep(0.5)
                continue
            if exited is None:
                continue
            if self.stopping:
                return
            failed = not exited.startswith("exit_status 0")
            log.warning("driver %s exited (%s)", self.dc.name, exited)
            if time.monotonic() - self.started > STABLE_S:
                self.failures = 0
            restart = self.want_now or self.dc.restart == "always" or (
                self.dc.restart == "on-failure" and failed)
            if not restart:
                self.publish_state("failed" if failed else "stopped")
                self.stopping = True
                return
            self.failures += 1
            self.publish_state("restarting")
            delay = 0 if self.want_now else BACKOFF_S[min(self.failures - 1, len(BACKOFF_S) - 1)]
            self.want_now = False
            if self.agent.stop.wait(delay):
                return

    def _maybe_start(self) -> None:
        try:
            with self.agent.lock:
                self.start()
        except (OSError, PortError, gpio.GpioError, RuntimeError) as e:
            self.failures += 1
            delay = BACKOFF_S[min(self.failures - 1, len(BACKOFF_S) - 1)]
            self.agent.report(f"{self.topic}/state", "", f"cannot start driver {self.dc.name}: {e}; "
                              f"again in {delay:g} s")
            self.publish_state("restarting")
            self.agent.stop.wait(delay)

    def run_in_thread(self) -> None:
        self.thread = threading.Thread(target=self.supervise, name=f"driver-{self.dc.name}", daemon=True)
        self.thread.start()


def handle_command(agent: Agent, drivers: dict[str, Driver], topic: str, payload: bytes) -> Any:
    """driver/<name>/stdin and driver/<name>/restart."""
    rest = topic[len(agent.prefix) + 1 :].split("/")
    if len(rest) != 3 or rest[0] != "driver" or rest[2] not in ("stdin", "restart"):
        agent.report(topic, payload, "not a driver command topic", 0x90)
        return
    d = drivers.get(rest[1])
    if d is None:
        agent.report(topic, payload, f"no driver {rest[1]!r} (drivers: {', '.join(drivers) or 'none'})",
                     0x90)
        return
    try:
        if rest[2] == "restart":
            d.restart()
        else:
            d.write_stdin(payload)
    except (OSError, PortError, RuntimeError) as e:
        agent.report(topic, payload, str(e))
