"""Fixtures for the niche-agent tests (issue 6): everything real, nothing mocked.

- ``Broker``: a Debian mosquitto 2.0 on a free loopback port, from a small
  config file in a tmp dir; plain, with a ``password_file`` (made with
  ``mosquitto_passwd``) or with TLS (a CA, a server and a client cert made
  with the openssl CLI). ``broker`` / ``auth_broker`` / ``tls_broker`` are
  module-scoped; ``broker.kill()`` and ``broker.start()`` restart it on the
  same port.
- ``sim_root`` (module) mounts niche-gpio-sim; ``sim`` (function) is a
  ``SimView`` over it, reset (every line unexported, input, driven low)
  before and after each test: ``sim.level(n)`` reads ``MOUNT/sim/N``,
  ``sim.drive(n, 1)`` writes it, ``sim.changes(n)``, ``sim.exported()``.
- ``agent_factory``: ``agent_factory(broker, lines=..., **options)`` writes
  agent.toml and starts ``build/venv/bin/niche-agent -c agent.toml -v`` as a
  subprocess (so signals and exit statuses are real); every agent, its port
  and the port's children are gone after the test (SIGTERM, then SIGKILL).
- ``client_factory``: ``client_factory(broker)`` is a paho 2.x client
  (``Collector``) subscribed to ``#`` that records every message with the
  time it arrived, and waits for them with timeouts.

The tests import these as ``agenthelpers`` (an alias that does not depend on
how pytest names conftest modules).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

sys.modules.setdefault("agenthelpers", sys.modules[__name__])

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / "build" / "venv" / "bin"
AGENT = VENV / "niche-agent"
PORT_BIN = Path(os.environ.get("NICHE_PORT") or ROOT / "build" / "native" / "niche-port")
NLINES = 32


def wait_until(cond: Callable[[], object], timeout: float = 10.0, step: float = 0.01) -> Any:
    """Poll cond until it is truthy (returns its value) or timeout (returns it falsy)."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(step)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- processes, from /proc ---------------------------------------------------


def proc_stat(pid: int) -> tuple[str, str, int] | None:
    """(comm, state, ppid) of pid, or None when it is gone."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = data[data.index("(") + 1 : data.rindex(")")]
    rest = data[data.rindex(")") + 2 :].split()
    return comm, rest[0], int(rest[1])


def alive(pid: int) -> bool:
    st = proc_stat(pid)
    return st is not None and st[1] != "Z"


def children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            st = proc_stat(int(d))
            if st is not None and st[2] == pid:
                out.append(int(d))
    return sorted(out)


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        for c in children(todo.pop()):
            out.append(c)
            todo.append(c)
    return out


# --- the broker ----------------------------------------------------------


def tool_missing(*names: str) -> str | None:
    for n in names:
        if shutil.which(n) is None and not Path(f"/usr/sbin/{n}").exists():
            return f"{n} is not installed (apt-get install mosquitto mosquitto-clients openssl)"
    return None


def mosquitto_bin() -> str:
    return shutil.which("mosquitto") or "/usr/sbin/mosquitto"


@dataclass
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_cert: Path  # a client cert signed by another CA
    other_key: Path


def make_certs(d: Path) -> Certs:
    """A CA, a server cert for 127.0.0.1/localhost and client certs (openssl CLI)."""
    d.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "otherca"):
        run("req", "-x509", *ec, "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-days", "2",
            "-subj", f"/CN=niche test {ca}")
    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, ca, ext in (("server", "ca", ["-extfile", "server.ext"]), ("client", "ca", []),
                          ("other", "otherca", [])):
        run("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}")
        run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", *ext)
    return Certs(d / "ca.crt", d / "server.crt", d / "server.key", d / "client.crt",
                 d / "client.key", d / "other.crt", d / "other.key")


class Broker:
    """A mosquitto on 127.0.0.1:<free port>; start(), kill(), stop(), start() again."""

    def __init__(self, d: Path, *, users: dict[str, str] | None = None,
                 certs: Certs | None = None) -> None:
        self.dir = d
        d.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host = "127.0.0.1"
        self.users = users
        self.certs = certs
        self.proc: subprocess.Popen | None = None
        self.log = d / "mosquitto.log"
        conf = [f"listener {self.port} 127.0.0.1", "user root", "log_dest stderr",
                "log_type all", "persistence false",
                # no Nagle: a state right after another message would wait for a delayed ACK
                "set_tcp_nodelay true"]
        if users:
            pw = d / "passwords"
            pw.write_text("")
            for u, p in users.items():
                subprocess.run(["mosquitto_passwd", "-b", str(pw), u, p], check=True,
                               capture_output=True, timeout=30)
            pw.chmod(0o600)
            conf += ["allow_anonymous false", f"password_file {pw}"]
        else:
            conf += ["allow_anonymous true"]
        if certs:
            conf += [f"cafile {certs.ca}", f"certfile {certs.server_cert}",
                     f"keyfile {certs.server_key}", "require_certificate true"]
        self.conf = d / "mosquitto.conf"
        self.conf.write_text("\n".join(conf) + "\n")

    def start(self, timeout: float = 10.0) -> Broker:
        assert self.proc is None or self.proc.poll() is not None
        logf = open(self.log, "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen([mosquitto_bin(), "-c", str(self.conf)], stdout=logf,
                                     stderr=logf, start_new_session=True)
        logf.close()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mosquitto exited {self.proc.returncode}: {self.log.read_text()}")
            with socket.socket() as s:
                if s.connect_ex((self.host, self.port)) == 0:
                    return self
            if time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto did not listen on {self.port}: {self.log.read_text()}")
            time.sleep(0.01)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _broker(tmp_path_factory: pytest.TempPathFactory, **kw: Any) -> Iterator[Broker]:
    reason = tool_missing("mosquitto", "mosquitto_passwd", "openssl")
    if reason:
        pytest.skip(reason)
    b = Broker(tmp_path_factory.mktemp("broker"), **kw).start()
    try:
        yield b
    finally:
        b.stop()


USERS = {"niche": "s3cret pass", "other": "other"}


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    yield from _broker(tmp_path_factory)


@pytest.fixture(scope="module")
def auth_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    yield from _broker(tmp_path_factory, users=USERS)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl CLI (apt-get install openssl)")
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory, certs: Certs) -> Iterator[Broker]:
    yield from _broker(tmp_path_factory, certs=certs)


# --- an MQTT client that records everything ---------------------------------


@dataclass
class Msg:
    topic: str
    payload: bytes
    retain: bool
    t: float  # time.monotonic() when it arrived

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", "replace")


def _no_delay(client: Any, userdata: Any, sock: Any) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Collector:
    """A paho client subscribed to topics (default '#'), recording every message."""

    def __init__(self, broker: Broker, *, protocol: str = "3.1.1", topics: tuple[str, ...] = ("#",),
                 username: str | None = None, password: str | None = None,
                 tls: tuple[Path, Path, Path] | None = None) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.msgs: list[Msg] = []
        self.cond = threading.Condition()
        self.subscribed = threading.Event()
        self.topics = topics
        proto = mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-{next(_ids)}-{os.getpid()}",
                             protocol=proto)
        if username is not None:
            self.c.username_pw_set(username, password)
        if tls is not None:
            self.c.tls_set(ca_certs=str(tls[0]), certfile=str(tls[1]), keyfile=str(tls[2]))
        self.c.reconnect_delay_set(0.1, 1)
        self.c.on_socket_open = _no_delay  # measure the agent, not this client's Nagle delay
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = lambda *a: self.subscribed.set()
        self.c.on_message = self._on_message
        self.c.connect(broker.host, broker.port, keepalive=30)
        self.c.loop_start()
        if not self.subscribed.wait(10):
            self.close()
            raise RuntimeError("the test client could not subscribe")

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            client.subscribe([(t, 1) for t in self.topics])

    def _on_message(self, client: Any, userdata: Any, m: Any) -> None:
        with self.cond:
            self.msgs.append(Msg(m.topic, bytes(m.payload), bool(m.retain), time.monotonic()))
            self.cond.notify_all()

    def mark(self) -> int:
        """An index: the messages that arrive from now on are msgs[mark:]."""
        with self.cond:
            return len(self.msgs)

    def since(self, mark: int = 0, topic: str | None = None) -> list[Msg]:
        with self.cond:
            return [m for m in self.msgs[mark:] if topic is None or m.topic == topic]

    def wait_for(self, pred: Callable[[Msg], bool], since: int = 0, timeout: float = 10.0) -> Msg:
        deadline = time.monotonic() + timeout
        i = since
        with self.cond:
            while True:
                while i < len(self.msgs):
                    if pred(self.msgs[i]):
                        return self.msgs[i]
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    recent = [(m.topic, m.payload[:80]) for m in self.msgs[since:][-15:]]
                    raise AssertionError(f"no such message within {timeout} s; last ones: {recent}")
                self.cond.wait(left)

    def wait_topic(self, topic: str, payload: str | bytes | None = None, since: int = 0,
                   timeout: float = 10.0) -> Msg:
        want = payload.encode() if isinstance(payload, str) else payload
        return self.wait_for(lambda m: m.topic == topic and (want is None or m.payload == want),
                             since, timeout)

    def wait_count(self, topic: str, n: int, since: int = 0, timeout: float = 10.0) -> list[Msg]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                got = [m for m in self.msgs[since:] if m.topic == topic]
                if len(got) >= n:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(got)} of {n} messages on {topic} within {timeout} s")
                self.cond.wait(left)

    def quiet(self, topic: str, seconds: float, since: int | None = None) -> list[Msg]:
        """Wait `seconds`; the messages on topic meanwhile."""
        m = self.mark() if since is None else since
        time.sleep(seconds)
        return self.since(m, topic)

    def publish(self, topic: str, payload: str | bytes, qos: int = 1, retain: bool = False) -> None:
        info = self.c.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(timeout=10)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.c.disconnect()
        with contextlib.suppress(Exception):
            self.c.loop_stop()


_ids = itertools.count()


@pytest.fixture
def client_factory() -> Iterator[Callable[..., Collector]]:
    made: list[Collector] = []

    def make(broker: Broker, **kw: Any) -> Collector:
        c = Collector(broker, **kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


# --- the simulator -------------------------------------------------------


def fuse_unusable() -> str | None:
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as e:
        return f"mfusepy not usable: {e} (pip install mfusepy; apt-get install fuse3)"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    if shutil.which("fusermount3") is None:
        return "no fusermount3 (apt-get install fuse3)"
    if os.geteuid() != 0:
        return "the agent tests run the simulator and the port as root"
    if not PORT_BIN.exists():
        return f"{PORT_BIN} is not built (run make)"
    return None


def _write(path: Path, data: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data.encode())
    finally:
        os.close(fd)


class SimView:
    """niche-gpio-sim seen from a test: the outside world of each line."""

    def __init__(self, root: Path, sim: Any = None) -> None:
        self.root = Path(root)
        self.simulator = sim

    def level(self, n: int) -> int:
        return int((self.root / "sim" / str(n)).read_text())

    def drive(self, n: int, level: int) -> None:
        _write(self.root / "sim" / str(n), f"{level}\n")

    def changes(self, n: int) -> int:
        return int((self.root / "sim" / f"{n}.changes").read_text())

    def exported(self) -> list[int]:
        return sorted(int(p.name[4:]) for p in self.root.glob("gpio[0-9]*"))

    def wait_level(self, n: int, level: int, timeout: float = 5.0) -> bool:
        return bool(wait_until(lambda: self.level(n) == level, timeout))

    def reset(self) -> None:
        for n in range(NLINES):
            try:
                _write(self.root / "export", str(n))
            except OSError as e:
                if e.errno != errno.EBUSY:
                    raise
            g = self.root / f"gpio{n}"
            _write(g / "edge", "none")
            _write(g / "active_low", "0")
            _write(g / "direction", "in")
            _write(self.root / "unexport", str(n))
            self.drive(n, 0)

    def check_alive(self) -> None:
        why = self.simulator.died() if self.simulator is not None else None
        if why:
            pytest.fail(why)


@pytest.fixture(scope="module")
def sim_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimView]:
    reason = fuse_unusable()
    if reason:
        pytest.skip(reason)
    from niche.gpio.sim import Simulator, is_mounted

    mp = tmp_path_factory.mktemp("gpio-sim") / "gpio"
    s = Simulator(mp, timeout=20)
    s.start()
    try:
        yield SimView(s.root, s)
    finally:
        with contextlib.suppress(Exception):
            s.stop()
        assert not is_mounted(mp), f"{mp} still mounted"


@pytest.fixture
def sim(sim_root: SimView) -> Iterator[SimView]:
    sim_root.check_alive()
    sim_root.reset()
    yield sim_root
    sim_root.check_alive()
    sim_root.reset()


# --- the agent -------------------------------------------------------------


def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def to_toml(d: dict[str, Any], prefix: str = "") -> str:
    """A small TOML writer: scalars first, then sub-tables as [a.b] headers."""
    out = []
    scalars = {k: v for k, v in d.items() if not isinstance(v, dict) or k == "tls"}
    tables = {k: v for k, v in d.items() if k not in scalars}
    if prefix and (scalars or not tables):
        out.append(f"[{prefix}]")
    for k, v in scalars.items():
        out.append(f"{k} = {toml_value(v)}")
    for k, v in tables.items():
        out.append(to_toml(v, f"{prefix}.{k}" if prefix else k))
    return "\n".join(out) + "\n"


# the default lines of the MQTT tests: sim numbers in the comments
LINES: dict[str, dict[str, Any]] = {
    "led": {"pin": "SIM3"},                                          # 3, out, initial OFF
    "lamp": {"pin": "SIM4", "initial": "ON"},                        # 4, out, initial ON
    "btn": {"pin": "SIM5", "direction": "in", "debounce_ms": 20},    # 5, in
    "door": {"pin": "sysfs:6", "direction": "in", "active_low": True, "debounce_ms": 20},  # 6
}
PIN = {"led": 3, "lamp": 4, "btn": 5, "door": 6}

_agent_ids = itertools.count()


class AgentProc:
    """One niche-agent subprocess and its configuration."""

    def __init__(self, d: Path, broker: Broker, sim: SimView | None, *,
                 lines: dict[str, dict[str, Any]] | None = None, agent_id: str | None = None,
                 mqtt: dict[str, Any] | None = None, agent: dict[str, Any] | None = None,
                 port: dict[str, Any] | None = None, ha: dict[str, Any] | None = None) -> None:
        self.dir = d
        d.mkdir(parents=True, exist_ok=True)
        self.id = agent_id or f"t{os.getpid()}-{next(_agent_ids)}"
        self.prefix = f"niche/{self.id}"
        cfg: dict[str, Any] = {"agent": {"id": self.id, "board": "sim"}}
        if sim is not None:
            cfg["agent"]["sysfs_root"] = str(sim.root)
        cfg["agent"].update(agent or {})
        cfg["mqtt"] = {"host": broker.host, "port": broker.port, "keepalive": 10, **(mqtt or {})}
        if port:
            cfg["port"] = port
        cfg["gpio"] = dict(LINES if lines is None else lines)
        if ha is not None:
            cfg["homeassistant"] = ha
        self.cfg = cfg
        self.path = d / "agent.toml"
        self.path.write_text(to_toml(cfg))
        self.stderr_path = d / "agent.stderr"
        self.proc: subprocess.Popen | None = None
        self.known: set[int] = set()  # every process of its tree seen so far

    def topic(self, *parts: str) -> str:
        return "/".join([self.prefix, *parts])

    def start(self, extra_args: tuple[str, ...] = ("-v",)) -> AgentProc:
        errf = open(self.stderr_path, "ab")  # noqa: SIM115
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([str(AGENT), "-c", str(self.path), *extra_args],
                                     stdout=subprocess.DEVNULL, stderr=errf, env=env,
                                     start_new_session=True)
        errf.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.stderr_path.read_text(errors="replace") if self.stderr_path.exists() else ""

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tree(self) -> list[int]:
        if not self.running():
            return []
        d = descendants(self.pid)
        self.known.update(d)
        return d

    def port_pid(self, timeout: float = 10.0) -> int:
        """The PID of the agent's niche-port (a child of the agent)."""
        def find() -> int | None:
            if not self.running():
                return None
            ps = [p for p in children(self.pid) if (proc_stat(p) or ("",))[0] == "niche-port"]
            self.tree()
            return ps[0] if len(ps) == 1 else None
        pid = wait_until(find, timeout)
        assert pid, f"no niche-port child of the agent: {self.log()[-2000:]}"
        return pid

    def holder_pid(self, n: int, timeout: float = 10.0) -> int:
        """The process holding sim line n: a descendant of the port chrooted into gpioN."""
        def find() -> int | None:
            for p in self.tree():
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{p}/root").rstrip("/").endswith(f"/gpio{n}"):
                        return p
            return None
        pid = wait_until(find, timeout)
        assert pid, f"no process holds gpio{n}; tree {self.tree()}"
        return pid

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def wait_log(self, pattern: str, count: int = 1, timeout: float = 10.0) -> bool:
        return bool(wait_until(lambda: len(re.findall(pattern, self.log())) >= count, timeout, 0.05))

    def cleanup(self) -> None:
        """Stop it (SIGTERM, then SIGKILL) and make sure its whole tree is gone."""
        self.tree()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        left = wait_until(lambda: not [p for p in self.known if alive(p)], 10) or \
            [p for p in self.known if alive(p)]
        if left is not True and left:
            for p in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)


@pytest.fixture
def agent_factory(tmp_path: Path) -> Iterator[Callable[..., AgentProc]]:
    if not AGENT.exists():
        pytest.skip(f"{AGENT} is not installed (make test sets the venv up)")
    made: list[AgentProc] = []

    def make(broker: Broker, sim: SimView | None, *, start: bool = True, **kw: Any) -> AgentProc:
        a = AgentProc(tmp_path / f"agent{len(made)}", broker, sim, **kw)
        made.append(a)
        return a.start() if start else a

    yield make
    leftovers = []
    for a in made:
        a.cleanup()
        leftovers += [p for p in a.known if alive(p)]
    assert not leftovers, f"processes left behind: {leftovers}"


def start_online(agent_factory: Callable[..., AgentProc], broker: Broker, sim: SimView | None,
                 client: Collector, timeout: float = 15.0, **kw: Any) -> AgentProc:
    """Start an agent and wait until it says online and published every line's state."""
    m = client.mark()
    a = agent_factory(broker, sim, **kw)
    try:
        client.wait_topic(a.topic("status"), "online", since=m, timeout=timeout)
        for name in a.cfg["gpio"]:
            client.wait_topic(a.topic("gpio", name), since=m, timeout=timeout)
    except AssertionError as e:
        raise AssertionError(f"{e}\nagent log:\n{a.log()[-3000:]}") from None
    return a
