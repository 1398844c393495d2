"""make demo (tools/demo.py): the simulator, a private mosquitto and niche-agent.

Runs the demo for real (root, /dev/fuse, mosquitto, the built port): once in
plain mode, once driven by the printed mosquitto_pub command and stopped
with Ctrl-C (SIGINT), once in the live view on a pseudo-terminal; each time
it must leave no process, no mount and no temporary directory behind.  And
as an unprivileged user it must say what to do and exit 1.
"""

from __future__ import annotations

import os
import pty
import re
import select
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "tools" / "demo.py"
LEDS = ("led1", "led2", "led3", "led4")


def cannot_run() -> str | None:
    if os.geteuid() != 0:
        return "the demo runs as root (FUSE with allow_other, the port's sandboxes)"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    for cmd in ("fusermount3", "mosquitto", "mosquitto_pub"):
        if shutil.which(cmd, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin") is None:
            return f"no {cmd} (apt-get install fuse3 mosquitto mosquitto-clients)"
    try:
        import mfusepy  # noqa: F401
        import paho.mqtt.client  # noqa: F401
    except (ImportError, OSError) as e:
        return f"{e}"
    if not (REPO / "build" / "native" / "niche-port").exists() and not os.environ.get("NICHE_PORT"):
        return "no build/native/niche-port (make)"
    return None


needs_demo = pytest.mark.skipif(cannot_run() is not None, reason=cannot_run() or "")


@pytest.fixture(autouse=True)
def ctrl_c_reaches_the_demo():
    """A demo started with SIGINT ignored keeps ignoring it (Python installs its
    Ctrl-C handler only over SIG_DFL), and a non-interactive shell starts its
    background jobs so: pytest run with `&` would pass that on. A handler here
    is reset to SIG_DFL in the exec'd demo, as in a terminal."""
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, old)


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    return stat[stat.rindex(b")") + 2:][:1] != b"Z"


def _cmdlines() -> dict[int, str]:
    out = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                out[int(d)] = Path(f"/proc/{d}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                    errors="replace")
            except OSError:
                pass
    return out


def check_clean(out: str) -> None:
    """Nothing of the demo is left: processes, mount, temporary directory."""
    m = re.search(r"setup  temporary directory (\S+)", out)
    assert m, out
    tmp = m.group(1)
    m = re.search(r"^\s*[\d.]+\s+pids\s+(.*)$", out, re.M)
    assert m, out
    pids = {k: [int(p) for p in v.split(",") if p] for k, v in
            (kv.split("=", 1) for kv in m.group(1).split())}
    assert set(pids) == {"sim", "broker", "agent", "port", "lines"}, pids
    assert len(pids["lines"]) == 5, pids  # one sandboxed holder per line
    deadline = time.monotonic() + 5
    left = [p for v in pids.values() for p in v]
    while time.monotonic() < deadline and any(_alive(p) for p in left):
        time.sleep(0.05)
    assert [p for p in left if _alive(p)] == [], f"left running: {pids}"
    users = [f"{pid}: {c}" for pid, c in _cmdlines().items() if tmp in c]
    assert users == [], users
    mounts = Path("/proc/mounts").read_text()
    assert tmp not in mounts, mounts
    assert not os.path.exists(tmp)
    assert "niche demo: stopped: niche-agent (SIGTERM) exited 0; mosquitto exited 0; simulator unmounted; " \
           f"removed {tmp}" in out, out


def broker_port(out: str) -> int:
    m = re.search(r"setup  mosquitto on 127\.0\.0\.1:(\d+) ", out)
    assert m, out
    return int(m.group(1))


@needs_demo
def test_demo_once() -> None:
    p = subprocess.run([sys.executable, str(DEMO), "--once"], capture_output=True, text=True, timeout=120,
                       cwd=REPO)
    out = p.stdout
    assert p.returncode == 0, out + p.stderr
    assert "FAILED" not in out + p.stderr
    port = broker_port(out)
    # the hints: the right port and topics
    pub = f"mosquitto_pub -h 127.0.0.1 -p {port} -t niche/demo/gpio"
    assert f"mosquitto_sub -h 127.0.0.1 -p {port} -t 'niche/demo/#' -v" in out
    for hint in (f"{pub}/led1/set -m ON", f"{pub}/led2/set -m TOGGLE", f"{pub}/led3/blink -m '{{",
                 f"{pub}/led4/pulse -m '{{\"ms\": 500}}'"):
        assert hint in out, hint
    assert re.search(r"echo 1 > /tmp/niche-demo-\w+/gpio/sim/8", out)
    # the commands, and the LEDs changing
    for verb in ("set ON", "set TOGGLE", "set OFF", "blink {", "pulse "):
        v, arg = verb.split(" ")
        assert re.search(rf"mqtt   niche/demo/gpio/led\d/{v} {re.escape(arg)}", out), verb
    for led in LEDS:
        assert re.search(rf"mqtt   niche/demo/gpio/{led} ON$", out, re.M), led
        assert re.search(rf"mqtt   niche/demo/gpio/{led} OFF$", out, re.M), led
    assert "board  led1 ● led2 ● led3 ● led4 ●   button ○ (released)" in out
    assert "board  led1 ○ led2 ○ led3 ○ led4 ○   button ○ (released)" in out
    # blink led1 5 times: ten changes reported
    blink = out[out.index("step   3/7"):out.index("step   4/7")]
    assert len(re.findall(r"mqtt   niche/demo/gpio/led1 (?:ON|OFF)$", blink, re.M)) == 10, blink
    # the button press, and the rule's blink
    assert re.search(r"mqtt   niche/demo/gpio/button ON$", out, re.M)
    assert re.search(r"button ● \(pressed\)", out)
    assert "rule   button pressed: blink every LED 3 times" in out
    press = out[out.index("step   6/7"):out.index("step   7/7")]
    assert re.search(r"mqtt   niche/demo/gpio/button OFF$", press, re.M)
    assert len(re.findall(r"mqtt   niche/demo/gpio/led\d ON$", press, re.M)) == 12, press
    assert "mqtt   niche/demo/status online" in out
    assert "mqtt   niche/demo/status offline" in out
    check_clean(out)


def _read_until(proc: subprocess.Popen, pattern: str, timeout: float, buf: list[str],
                since: int = 0) -> re.Match:
    """Read proc's lines into buf until pattern matches what came after the first `since` chars."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, "".join(buf)[since:], re.M)
        if m:
            return m
        r, _, _ = select.select([proc.stdout], [], [], 0.2)
        if r:  # raw reads: a buffered reader would hide lines from select
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                break
            buf.append(chunk.decode(errors="replace"))
    raise AssertionError(f"no {pattern!r} in {timeout} s:\n{''.join(buf)}")


@needs_demo
def test_demo_driven_by_the_hints_then_ctrl_c() -> None:
    """The printed mosquitto_pub line works as printed; Ctrl-C tears everything down."""
    proc = subprocess.Popen([sys.executable, str(DEMO), "--once", "--duration", "90"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    buf: list[str] = []
    try:
        _read_until(proc, r"step   script done; watching", 60, buf)
        hint = _read_until(proc, r"^  (mosquitto_pub .*led1/set -m ON)$", 1, buf).group(1)
        start = len("".join(buf))
        subprocess.run(shlex.split(hint), check=True, timeout=10)
        _read_until(proc, r"mqtt   niche/demo/gpio/led1 ON$", 10, buf, start)
        hint = _read_until(proc, r"^  (mosquitto_pub .*led4/pulse .*)$", 1, buf).group(1)
        start = len("".join(buf))
        subprocess.run(shlex.split(hint), check=True, timeout=10)
        _read_until(proc, r"mqtt   niche/demo/gpio/led4 ON$[\s\S]*mqtt   niche/demo/gpio/led4 OFF$", 10, buf,
                    start)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does to the foreground group
        rest = proc.communicate(timeout=60)[0].decode(errors="replace")
    finally:
        if proc.poll() is None:  # a failure above: let it clean up, as on Ctrl-C
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
    out = "".join(buf) + rest
    assert proc.returncode == 0, out
    assert "niche demo: Ctrl-C: stopping" in out
    assert "mqtt   niche/demo/status offline" in out
    check_clean(out)


@needs_demo
def test_demo_live_view_on_a_terminal() -> None:
    pytest.importorskip("rich.live")
    pid, fd = pty.fork()
    if pid == 0:  # the child: the demo on a 110x40 terminal
        try:
            import fcntl
            import termios
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 110, 0, 0))
            os.environ.update(TERM="xterm-256color", COLUMNS="110", LINES="40")
            os.chdir(REPO)
            os.execv(sys.executable, [sys.executable, str(DEMO), "--duration", "12"])
        finally:
            os._exit(127)
    data = b""
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(fd, 65536)
                except OSError:
                    break
                if not chunk:
                    break
                data += chunk
    finally:
        done, status = os.waitpid(pid, os.WNOHANG)
        if not done:
            os.kill(pid, signal.SIGINT)
            time.sleep(20)
            os.kill(pid, signal.SIGKILL)
            done, status = os.waitpid(pid, 0)
        os.close(fd)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", data.decode(errors="replace")).replace("\r", "")
    assert os.waitstatus_to_exitcode(status) == 0, text[-3000:]
    assert "niche demo: board sim" in text
    assert "last MQTT messages on niche/demo/#" in text
    assert "●" in text and "○" in text and "▣ pressed" in text
    assert "\x1b[" in data.decode(errors="replace")  # colour: rich drew it
    assert f"mosquitto_pub -h 127.0.0.1 -p {broker_port(text)} -t niche/demo/gpio/led1/set -m ON" in text
    check_clean(text)


@pytest.mark.unprivileged
@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("setpriv") is None,
                    reason="needs root and setpriv(1) to become an unprivileged user")
def test_demo_says_what_to_do_when_not_root() -> None:
    p = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                        sys.executable, str(DEMO), "--once"],
                       capture_output=True, text=True, timeout=60, cwd="/")
    assert p.returncode == 1, p.stdout + p.stderr
    err = p.stderr
    assert "must run as root (you are uid 65534)" in err
    assert "sudo make demo" in err
    assert f"sudo {sys.executable} {DEMO}" in err
    assert "/dev/fuse" in err
    assert "fuse3" in err and "mosquitto" in err and "mosquitto-clients" in err
    assert "apt-get install" in err
    assert p.stdout == ""
    assert not re.search(r"Traceback", err)


@needs_demo
def test_demo_cleans_up_after_a_killed_demo() -> None:
    """SIGKILL leaves no chance to clean up: the next demo does it (and spares a running one)."""
    proc = subprocess.Popen([sys.executable, str(DEMO), "--once", "--duration", "90"], cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    buf: list[str] = []
    try:
        _read_until(proc, r"step   1/7", 60, buf)
    finally:
        proc.kill()  # the demo only: its simulator and broker live on
        proc.wait(10)
        proc.stdout.close()
    first = "".join(buf)
    tmp = re.search(r"setup  temporary directory (\S+)", first).group(1)
    assert tmp in Path("/proc/mounts").read_text()
    p = subprocess.run([sys.executable, str(DEMO), "--once"], capture_output=True, text=True, timeout=120,
                       cwd=REPO)
    assert p.returncode == 0, p.stdout + p.stderr
    assert f"setup  cleaned up {tmp}, left by a demo (pid {proc.pid}) that was killed" in p.stdout
    check_clean(p.stdout)
    assert tmp not in Path("/proc/mounts").read_text()
    assert not os.path.exists(tmp)
    left = [f"{pid}: {c}" for pid, c in _cmdlines().items() if tmp in c]
    assert left == []
