#!/usr/bin/env python3
"""make demo: niche-agent driving a simulated board over a local MQTT broker.

    sudo make demo                      # or: sudo build/venv/bin/python tools/demo.py
    tools/demo.py --once                # the scripted sequence once, plain lines, exit
    tools/demo.py --duration 60         # stop by itself after 60 s

What it does, all of it in a temporary directory and undone at the end:

1. mounts the GPIO simulator (niche-gpio-sim) there: the ``sim`` board;
2. starts a private mosquitto on a free loopback port (its own config file,
   not the system service);
3. writes an agent.toml (board ``sim``: led1..led4 on SIM0-SIM3, a button on
   SIM8) and starts ``niche-agent`` on it: every line held by its own
   sandboxed child of niche-port;
4. shows the board live (rich.live.Live): the LEDs as the simulator sees them,
   the button, the last MQTT messages under ``niche/demo/#``; meanwhile a
   script sends set, toggle, blink and pulse commands and presses the button
   (writing ``MOUNT/sim/8``); a small rule blinks every LED when the button
   is pressed;
5. waits for you (type the printed mosquitto_pub commands in another
   terminal); Ctrl-C stops it cleanly: agent SIGTERM, broker stopped,
   simulator unmounted, temporary directory removed, no process left.

When stdout is not a terminal, or with ``--once``, it runs the script once,
prints plain lines and exits: 0 when every step had its effect on the
board, 1 otherwise.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
AGENT_ID = "demo"
PREFIX = f"niche/{AGENT_ID}"
LEDS = {"led1": 0, "led2": 1, "led3": 2, "led4": 3}  # name -> sim line (pin SIMn)
BUTTON, BUTTON_LINE = "button", 8
COLOURS = {"led1": "red", "led2": "yellow", "led3": "green", "led4": "dodger_blue1"}
APT = {"fusermount3": "fuse3", "mosquitto": "mosquitto", "mosquitto_pub": "mosquitto-clients"}
SBIN = os.pathsep.join(("/usr/local/sbin", "/usr/sbin", "/sbin"))
# the main thread waits in slices: a Ctrl-C that the kernel hands to another
# thread (paho's) only becomes a KeyboardInterrupt when the main thread next
# runs Python code, and a lock wait is not interrupted for it
WAIT_SLICE_S = 0.2


def which(cmd: str) -> str | None:
    path = os.environ.get("PATH", os.defpath) + os.pathsep + SBIN
    return shutil.which(cmd, path=path)


def fuse_access() -> str:
    """A few words on /dev/fuse for this user."""
    if not os.path.exists("/dev/fuse"):
        return "missing (load the fuse module: modprobe fuse; in a container: --device /dev/fuse)"
    if not os.access("/dev/fuse", os.R_OK | os.W_OK):
        return "present, but not readable and writable by you"
    return "ok"


def missing_packages() -> list[str]:
    return sorted({pkg for cmd, pkg in APT.items() if which(cmd) is None})


def not_root_message() -> str:
    missing = missing_packages()
    pkgs = " ".join(sorted(set(APT.values())))
    me = Path(sys.argv[0])
    here = f"sudo {sys.executable} {me}" if me.name == "demo.py" else "sudo make demo"
    lines = [
        f"niche demo: must run as root (you are uid {os.geteuid()}).",
        "",
        "  Run it with sudo:",
        "      sudo make demo",
        f"  or, once built:  {here}",
        "",
        "  Why, and what it needs:",
        f"    - /dev/fuse, to mount the GPIO simulator with allow_other: {fuse_access()}",
        "    - root for the agent's niche-port: every GPIO line is held by a child in new",
        "      namespaces that chroots and drops to its own UID/GID",
        f"    - Debian packages {pkgs}: "
        + (f"missing {' '.join(missing)}" if missing else "installed"),
        f"      (sudo apt-get install {' '.join(missing or sorted(set(APT.values())))};"
        " `sudo make demo` installs them)",
    ]
    return "\n".join(lines)


def preflight() -> str | None:
    """Why the demo cannot run here (as root), or None."""
    missing = missing_packages()
    if missing:
        return (f"niche demo: missing Debian packages: {' '.join(missing)}\n"
                f"  run `make demo` (it installs them), or: apt-get install {' '.join(missing)}")
    if fuse_access() != "ok":
        return f"niche demo: /dev/fuse: {fuse_access()}"
    bad = []
    for mod in ("paho.mqtt.client", "mfusepy", "niche.agent", "niche.gpio.sim"):
        try:
            __import__(mod)
        except Exception as e:  # ImportError, or mfusepy's OSError without libfuse
            bad.append(f"{mod} ({type(e).__name__}: {e})")
    if bad:
        return ("niche demo: cannot import " + ", ".join(bad) + "\n"
                "  run `make demo` (it builds build/venv), or run this with build/venv/bin/python")
    return None


# -- the demo --------------------------------------------------------------------


class Stop(Exception):
    """SIGTERM or SIGHUP: stop as on Ctrl-C."""


def _raise_stop(signum: int, frame: object) -> None:
    raise Stop(signal.Signals(signum).name)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children() -> dict[int, list[int]]:
    """{ppid: [pid, ...]} of every process now."""
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def descendants(pid: int) -> list[int]:
    kids, out, todo = _children(), [], [pid]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.append(k)
            todo.append(k)
    return out


def _cmdlines() -> dict[int, str]:
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            with contextlib.suppress(OSError):
                out[int(d)] = Path(f"/proc/{d}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                    errors="replace")
    return out


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return state[state.rindex(b")") + 2:][:1] != b"Z"


class Demo:
    def __init__(self, live: bool, duration: float | None = None, port: int = 0) -> None:
        self.live = live
        self.duration = duration
        self.want_port = port
        self.t0 = time.monotonic()
        self.tmp: Path | None = None
        self.mnt = Path("/nonexistent")
        self.port = 0
        self.sim = None
        self.broker: subprocess.Popen | None = None
        self.agent: subprocess.Popen | None = None
        self.client = None
        self.pids: dict[str, list[int]] = {}
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.messages: collections.deque = collections.deque(maxlen=10)
        self.state: dict[str, str] = {}
        self.status = "?"
        self.step = "starting"
        self.failures: list[str] = []
        self.stop = threading.Event()
        self._libc = ctypes.CDLL(None, use_errno=True)

    # -- output ------------------------------------------------------------

    def out(self, text: str) -> None:
        with self.lock:
            print(f"{time.monotonic() - self.t0:7.3f}  {text}", flush=True)

    def say(self, text: str) -> None:
        """A step of the script: the live view's status line, or a plain line."""
        self.step = text
        if not self.live:
            self.out(f"step   {text}")

    def fail(self, text: str) -> None:
        self.failures.append(text)
        self.say(f"FAILED: {text}")

    def hints(self) -> str:
        pub = f"mosquitto_pub -h 127.0.0.1 -p {self.port}"
        t = f"{PREFIX}/gpio"
        return "\n".join([
            "Drive it from another terminal (as any user):",
            f"  mosquitto_sub -h 127.0.0.1 -p {self.port} -t '{PREFIX}/#' -v",
            f"  {pub} -t {t}/led1/set -m ON",
            f"  {pub} -t {t}/led2/set -m TOGGLE",
            f"  {pub} -t {t}/led3/blink -m '{{\"on_ms\":200,\"off_ms\":200,\"count\":5}}'",
            f"  {pub} -t {t}/led4/pulse -m '{{\"ms\": 500}}'",
            f"  {pub} -t {t}/led3/set -m OFF   # stops a blink",
            "Press and release the button (as root), like the script does:",
            f"  echo 1 > {self.mnt}/sim/{BUTTON_LINE}; sleep 0.3; echo 0 > {self.mnt}/sim/{BUTTON_LINE}",
        ])

    # -- the board, as the simulator sees it ----------------------------------

    def level(self, line: int) -> bool | None:
        try:
            return (self.mnt / "sim" / str(line)).read_text().strip() == "1"
        except OSError:
            return None

    def changes(self, line: int) -> int:
        try:
            return int((self.mnt / "sim" / f"{line}.changes").read_text())
        except (OSError, ValueError):
            return -1

    def board_line(self) -> str:
        """The board as the agent reports it (the live view reads the simulator)."""
        def dot(n: str) -> str:
            return {"ON": "●", "OFF": "○"}.get(self.state.get(n, ""), "?")
        b = {"ON": "pressed", "OFF": "released"}.get(self.state.get(BUTTON, ""), "?")
        return " ".join(f"{n} {dot(n)}" for n in LEDS) + f"   button {dot(BUTTON)} ({b})"

    # -- set-up --------------------------------------------------------------

    def _pdeathsig(self) -> None:  # in the child, before exec: die with us
        self._libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    def setup(self) -> None:
        self.clean_stale()
        self.tmp = Path(tempfile.mkdtemp(prefix="niche-demo-"))
        self.tmp.chmod(0o755)
        (self.tmp / "demo.pid").write_text(f"{os.getpid()}\n")
        self.mnt = self.tmp / "gpio"
        self.out(f"setup  temporary directory {self.tmp}")
        from niche.gpio.sim import Simulator
        self.sim = Simulator(self.mnt, timeout=20).start()
        self.pids["sim"] = [self.sim.proc.pid]
        self.out(f"setup  GPIO simulator (board sim, 32 lines) mounted on {self.mnt}, "
                 f"pid {self.sim.proc.pid}")
        self.start_broker()
        self.start_agent()
        self.connect()
        if not self.wait(lambda: self.status == "online", 20):
            raise RuntimeError(f"the agent did not come online in 20 s\n{self.tail('agent.log')}")
        agent = self.agent.pid
        ports = [p for p in _children().get(agent, []) if comm(p) == "niche-port"]
        holders = [p for port in ports for p in descendants(port)]
        self.pids.update(agent=[agent], port=ports, lines=holders)
        self.out(f"setup  agent online: niche-agent {agent}, niche-port {','.join(map(str, ports))}, "
                 f"{len(holders)} sandboxed line holders {','.join(map(str, holders))}")
        self.out("pids   " + " ".join(f"{k}={','.join(map(str, v))}" for k, v in self.pids.items()))

    def clean_stale(self) -> None:
        """Undo what an earlier demo left when it was killed (SIGKILL: no clean-up ran)."""
        from niche.gpio.sim import unmount
        base = Path(tempfile.gettempdir())
        for d in base.glob("niche-demo-*"):
            try:
                owner = int((d / "demo.pid").read_text())
            except (OSError, ValueError):
                continue
            if alive(owner):
                continue  # another demo, running
            for pid, cmd in _cmdlines().items():
                if f"{d}/" in cmd:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGTERM)
            time.sleep(0.5)
            unmount(d / "gpio", lazy=True)
            for pid, cmd in _cmdlines().items():
                if f"{d}/" in cmd:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
            shutil.rmtree(d, ignore_errors=True)
            self.out(f"setup  cleaned up {d}, left by a demo (pid {owner}) that was killed")

    def start_broker(self) -> None:
        exe = which("mosquitto")
        for _attempt in range(5):
            self.port = self.want_port or free_port()
            conf = self.tmp / "mosquitto.conf"
            conf.write_text(f"# niche demo: a private broker, not the system service\n"
                            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                            "persistence false\nset_tcp_nodelay true\nlog_dest stdout\n")
            conf.chmod(0o644)
            with open(self.tmp / "mosquitto.log", "wb") as log:
                self.broker = subprocess.Popen([exe, "-c", str(conf)], stdin=subprocess.DEVNULL,
                                               stdout=log, stderr=subprocess.STDOUT,
                                               start_new_session=True, preexec_fn=self._pdeathsig)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.broker.poll() is None:
                # its log is block-buffered: up when it takes connections and stays up
                try:
                    socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                except OSError:
                    time.sleep(0.05)
                    continue
                time.sleep(0.2)
                if self.broker.poll() is None:
                    self.pids["broker"] = [self.broker.pid]
                    self.out(f"setup  mosquitto on 127.0.0.1:{self.port} (config {conf}), "
                             f"pid {self.broker.pid}")
                    return
            self._end(self.broker, "mosquitto", 5)
            if self.want_port:
                break
        raise RuntimeError(f"mosquitto did not start\n{self.tail('mosquitto.log')}")

    def start_agent(self) -> None:
        leds = "".join(f'\n[gpio.{n}]\npin = "SIM{i}"\ndirection = "out"\ninitial = "OFF"\n'
                       for n, i in LEDS.items())
        toml = self.tmp / "agent.toml"
        toml.write_text(
            f'# niche demo: four LEDs and a button on the simulated board\n'
            f'[agent]\nid = "{AGENT_ID}"\nboard = "sim"\nsysfs_root = "{self.mnt}"\n\n'
            f'[mqtt]\nhost = "127.0.0.1"\nport = {self.port}\n{leds}\n'
            f'[gpio.{BUTTON}]\npin = "SIM{BUTTON_LINE}"\ndirection = "in"\nedge = "both"\n')
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "agent"), env.get("PYTHONPATH")) if p)
        native = REPO / "build" / "native" / "niche-port"
        if "NICHE_PORT" not in env and native.exists():
            env["NICHE_PORT"] = str(native)
        with open(self.tmp / "agent.log", "wb") as log:
            self.agent = subprocess.Popen([sys.executable, "-m", "niche.agent", "-c", str(toml)],
                                          stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                          env=env, start_new_session=True, preexec_fn=self._pdeathsig)
        self.out(f"setup  niche-agent -c {toml}: led1..led4 on SIM0-SIM3, button on SIM{BUTTON_LINE}, "
                 f"pid {self.agent.pid}")

    def connect(self) -> None:
        import paho.mqtt.client as mqtt
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"niche-demo-view-{os.getpid()}")
        c.on_connect = lambda client, userdata, flags, reason, props: client.subscribe(f"{PREFIX}/#", qos=1)
        c.on_message = self.on_message
        c.connect("127.0.0.1", self.port, keepalive=30)
        c.loop_start()
        self.client = c

    def tail(self, name: str, n: int = 15) -> str:
        try:
            lines = (self.tmp / name).read_text(errors="replace").splitlines()[-n:]
        except OSError:
            return ""
        return "\n".join(f"  {name}: {ln}" for ln in lines)

    # -- MQTT -------------------------------------------------------------------

    def on_message(self, client, userdata, msg) -> None:
        payload = msg.payload.decode(errors="replace")
        sub = msg.topic[len(PREFIX) + 1:] if msg.topic.startswith(PREFIX + "/") else msg.topic
        name = old = None
        with self.cond:
            self.messages.append((time.monotonic() - self.t0, msg.topic, payload, msg.retain))
            if sub == "status":
                self.status = payload
            elif sub.startswith("gpio/") and sub.count("/") == 1:
                name = sub[5:]
                old, self.state[name] = self.state.get(name), payload
            self.cond.notify_all()
        if not self.live:
            self.out(f"mqtt   {msg.topic} {payload}{'  (retained)' if msg.retain else ''}")
            if name is not None:
                with self.lock:
                    board = self.board_line()
                self.out(f"board  {board}")
        if name == BUTTON and payload == "ON" and old == "OFF":
            # the rule: a press blinks every LED three times, through the agent
            for led in LEDS:
                self.cmd(led, "blink", '{"on_ms": 100, "off_ms": 100, "count": 3}', quiet=True)
            if not self.live:
                self.out("rule   button pressed: blink every LED 3 times")

    def cmd(self, name: str, verb: str, payload: str, quiet: bool = False) -> None:
        self.client.publish(f"{PREFIX}/gpio/{name}/{verb}", payload, qos=0)  # as mosquitto_pub

    def wait(self, pred, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not (got := pred()) and not self.stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(min(left, WAIT_SLICE_S))
            return bool(got) and not self.stop.is_set()

    # -- the script -------------------------------------------------------------

    def pause(self, s: float) -> None:
        if self.stop.wait(s):
            raise Stop("stopped")

    def expect(self, name: str, want: bool, timeout: float = 3.0, why: str = "") -> None:
        line = LEDS[name]
        deadline = time.monotonic() + timeout
        while self.level(line) is not want:
            if time.monotonic() > deadline:
                self.fail(f"{name} (SIM{line}) is not {'ON' if want else 'OFF'} after {timeout:g} s {why}")
                return
            self.pause(0.01)

    def drive(self, v: int) -> None:
        (self.mnt / "sim" / str(BUTTON_LINE)).write_text(f"{v}\n")

    def script(self) -> None:
        names = list(LEDS)
        self.say("1/7 set: every LED ON, one after the other")
        for n in names:
            self.cmd(n, "set", "ON")
            self.pause(0.3)
        for n in names:
            self.expect(n, True)
        self.pause(0.5)
        self.say("2/7 set TOGGLE: led2 and led4 go OFF, then ON, then everything OFF")
        for _ in range(2):
            self.cmd("led2", "set", "TOGGLE")
            self.cmd("led4", "set", "TOGGLE")
            self.pause(0.5)
        for n in names:
            self.expect(n, True)
        for n in names:
            self.cmd(n, "set", "OFF")
        for n in names:
            self.expect(n, False)
        self.pause(0.4)
        self.say('3/7 blink: led1 5 times, {"on_ms": 150, "off_ms": 150, "count": 5}')
        c0 = self.changes(LEDS["led1"])
        self.cmd("led1", "blink", '{"on_ms": 150, "off_ms": 150, "count": 5}')
        deadline = time.monotonic() + 5
        while self.changes(LEDS["led1"]) < c0 + 10 and time.monotonic() < deadline:
            self.pause(0.02)
        if self.changes(LEDS["led1"]) < c0 + 10:
            self.fail(f"led1 changed {self.changes(LEDS['led1']) - c0} times, not 10, blinking 5 times")
        self.expect("led1", False)
        self.pause(0.3)
        self.say('4/7 pulse: led4 ON for 600 ms, {"ms": 600}')
        self.cmd("led4", "pulse", '{"ms": 600}')
        self.expect("led4", True, 1)
        self.expect("led4", False, 2)
        self.pause(0.3)
        self.say("5/7 chase: a 150 ms pulse on each LED in turn, there and back, twice")
        for _ in range(2):
            for n in names + names[-2:0:-1]:
                self.cmd(n, "pulse", "150")
                self.pause(0.12)
        for n in names:
            self.expect(n, False, 2)
        self.pause(0.3)
        self.say(f"6/7 press the button: echo 1 > {self.mnt}/sim/{BUTTON_LINE}; the demo's rule "
                 "blinks every LED 3 times; then release it")
        self.drive(1)
        if not self.wait(lambda: self.state.get(BUTTON) == "ON", 3):
            self.fail(f"{PREFIX}/gpio/{BUTTON} did not say ON after the press")
        for n in names:
            self.expect(n, True, 2, "(the rule's blink)")
        self.pause(0.4)
        self.drive(0)
        if not self.wait(lambda: self.state.get(BUTTON) == "OFF", 3):
            self.fail(f"{PREFIX}/gpio/{BUTTON} did not say OFF after the release")
        for n in names:
            self.expect(n, False, 3)
        self.pause(0.3)
        self.say('7/7 blink: led3 until a set, {"on_ms": 250, "off_ms": 250, "count": null}')
        self.cmd("led3", "blink", '{"on_ms": 250, "off_ms": 250, "count": null}')
        self.expect("led3", True, 1)
        if self.live:
            return
        self.pause(1.2)
        self.say("    set OFF stops the blink")
        self.cmd("led3", "set", "OFF")
        self.expect("led3", False)
        c0 = self.changes(LEDS["led3"])
        self.pause(0.6)
        if self.changes(LEDS["led3"]) != c0:
            self.fail("led3 kept blinking after set OFF")

    # -- the two faces ------------------------------------------------------------

    def run_plain(self) -> int:
        print(self.hints(), flush=True)
        self.script()
        if self.duration is not None:
            left = self.duration - (time.monotonic() - self.t0)
            if left > 0:
                self.say(f"script done; watching for {left:.0f} s more (Ctrl-C stops)")
                deadline = time.monotonic() + left
                while not self.stop.wait(WAIT_SLICE_S) and time.monotonic() < deadline:
                    pass
        return 0

    def run_live(self) -> int:
        from rich.console import Console
        from rich.live import Live

        console = Console()
        console.print(self.hints(), highlight=False, markup=False)
        done = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            try:
                self.script()
                self.step = ("script done: the board is yours (commands above); led3 blinks until a "
                             "set; Ctrl-C stops everything")
            except Stop:
                pass
            except BaseException as e:  # shown, and the demo stops
                errors.append(e)
            finally:
                done.set()

        threading.Thread(target=run, name="demo-script", daemon=True).start()
        with Live(get_renderable=self.render, console=console, refresh_per_second=15,
                  redirect_stdout=False, redirect_stderr=False):
            while True:
                time.sleep(0.1)
                if errors:
                    raise errors[0]
                if self.agent.poll() is not None:
                    raise RuntimeError(f"niche-agent exited with {self.agent.returncode}\n"
                                       f"{self.tail('agent.log')}")
                if self.duration is not None and time.monotonic() - self.t0 >= self.duration:
                    break
        return 0

    def render(self):
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table
        from rich.text import Text

        board = Table.grid(padding=(0, 4))
        for _ in range(len(LEDS) + 1):
            board.add_column(justify="center")
        dots, names, pins, mq = [], [], [], []
        for n, i in LEDS.items():
            lv = self.level(i)
            dots.append(Text("?" if lv is None else "●" if lv else "○",
                             style=f"bold {COLOURS[n]}" if lv else "grey42"))
            names.append(Text(n, style="bold"))
            pins.append(Text(f"SIM{i}", style="dim"))
            mq.append(Text(self.state.get(n, "-"), style="dim"))
        b = self.level(BUTTON_LINE)
        dots.append(Text("▣ pressed" if b else "□ released", style="bold magenta" if b else "grey62"))
        names.append(Text(BUTTON, style="bold"))
        pins.append(Text(f"SIM{BUTTON_LINE}", style="dim"))
        mq.append(Text(self.state.get(BUTTON, "-"), style="dim"))
        for row in (dots, names, pins, mq):
            board.add_row(*row)
        status = Text.assemble(("agent ", "dim"), (self.status, "bold green" if self.status == "online"
                                                   else "bold red"),
                               (f"   broker 127.0.0.1:{self.port}   simulator {self.mnt}", "dim"))
        msgs = Table(box=None, padding=(0, 1))
        msgs.add_column("t", justify="right", style="dim", width=8)
        msgs.add_column("topic", no_wrap=True, overflow="ellipsis")
        msgs.add_column("payload", overflow="ellipsis", no_wrap=True)
        with self.lock:
            recent = list(self.messages)
        for t, topic, payload, retain in recent:
            style = ("cyan" if topic.endswith(("/set", "/blink", "/pulse")) else
                     "red" if topic.endswith("/error") else "green")
            msgs.add_row(f"{t:.3f}", Text(topic, style=style),
                         Text(payload + ("  (retained)" if retain else ""), style=style))
        footer = Text(self.step, style="bold yellow" if self.step.startswith("FAILED") else "bold")
        if self.duration is not None:
            footer.append(f"   (stops in {max(0.0, self.duration - (time.monotonic() - self.t0)):.0f} s)",
                          style="dim")
        return Group(
            Panel(Group(board, Text(""), status), title="niche demo: board sim",
                  subtitle="LEDs as the simulator sees them; last line: the agent's retained state",
                  border_style="blue"),
            Panel(msgs, title=f"last MQTT messages on {PREFIX}/#", border_style="blue", height=14),
            footer,
        )

    # -- main, tear-down ------------------------------------------------------------

    def main(self) -> int:
        rc = 0
        old = {s: signal.signal(s, _raise_stop) for s in (signal.SIGTERM, signal.SIGHUP)}
        try:
            self.setup()
            rc = self.run_live() if self.live else self.run_plain()
        except (KeyboardInterrupt, Stop) as e:
            print(f"\nniche demo: {'Ctrl-C' if isinstance(e, KeyboardInterrupt) else e}: stopping",
                  flush=True)
        except Exception as e:
            print(f"niche demo: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
            rc = 1
        finally:
            self.stop.set()
            for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # a second Ctrl-C waits
                signal.signal(s, signal.SIG_IGN)
            if self.failures:
                print("niche demo: FAILED:\n  " + "\n  ".join(self.failures), file=sys.stderr)
                print(self.tail("agent.log"), file=sys.stderr)
                rc = 1
            if not self.teardown():
                rc = 1
            for s, h in old.items():
                signal.signal(s, h)
            signal.signal(signal.SIGINT, signal.default_int_handler)
        return rc

    def _end(self, proc: subprocess.Popen | None, what: str, timeout: float) -> str:
        if proc is None:
            return f"{what}: not started"
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
            return f"{what} exited {proc.returncode}"
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
            return f"{what} did not stop in {timeout:g} s: killed"

    def teardown(self) -> bool:
        ok = True
        done = []
        if self.agent is not None:
            said = self._end(self.agent, "niche-agent (SIGTERM)", 15)
            ok &= said.endswith(" 0")
            done.append(said)
            if self.client is not None:  # its last word, "offline"
                self.wait(lambda: self.status == "offline", 2)
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
        # the port and its line holders go with the agent; make sure
        deadline = time.monotonic() + 5
        left = [p for k in ("port", "lines") for p in self.pids.get(k, [])]
        while time.monotonic() < deadline and any(alive(p) for p in left):
            time.sleep(0.05)
        for p in left:
            if alive(p):
                ok = False
                done.append(f"pid {p} ({comm(p)}) outlived the agent: killed")
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p, signal.SIGKILL)
        if self.broker is not None:
            done.append(self._end(self.broker, "mosquitto", 10))
        if self.sim is not None:
            err = self.sim.stop()
            from niche.gpio.sim import is_mounted
            if is_mounted(self.mnt):
                ok = False
                done.append(f"simulator: {self.mnt} still mounted {err}")
            else:
                done.append("simulator unmounted")
        if self.tmp is not None:
            from niche.gpio.sim import is_mounted
            if not is_mounted(self.mnt):
                shutil.rmtree(self.tmp, ignore_errors=True)
                done.append(f"removed {self.tmp}")
            ok &= not self.tmp.exists()
        print("niche demo: stopped: " + "; ".join(done), flush=True)
        return ok


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="demo.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--once", action="store_true",
                    help="run the scripted sequence once, print plain lines, exit (also when "
                         "stdout is not a terminal)")
    ap.add_argument("--duration", type=float, metavar="N",
                    help="stop after N seconds (default: wait for Ctrl-C; with --once: exit after "
                         "the script)")
    ap.add_argument("--port", type=int, default=0, help="the broker's port (default: a free one)")
    ns = ap.parse_args(argv)
    if os.geteuid() != 0:
        print(not_root_message(), file=sys.stderr)
        return 1
    if str(REPO / "agent") not in sys.path:
        try:
            import niche  # noqa: F401
        except ImportError:
            sys.path.insert(0, str(REPO / "agent"))
    try:
        why = preflight()
    except KeyboardInterrupt:
        return 130
    if why:
        print(why, file=sys.stderr)
        return 1
    live = not ns.once and sys.stdout.isatty()
    if live:
        try:
            import rich.live  # noqa: F401
        except ImportError:
            print("niche demo: no rich here (pip install rich): plain lines instead", file=sys.stderr)
            live = False
    return Demo(live=live, duration=ns.duration, port=ns.port).main()


if __name__ == "__main__":
    sys.exit(main())
