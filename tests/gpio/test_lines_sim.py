"""niche.gpio's sysfs backend against the simulator (niche-gpio-sim, mounted
by the ``sim`` fixture of tests/gpio/conftest.py), with a real port.

The simulator's ``sim/N`` is the outside world of line N: the tests read
what an output drives there and drive inputs from there. The holder of each
line (``line.process``) is inspected from outside, through /proc, as an
administrator would: its IDs, capabilities, namespaces, descriptors, root.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import niche
import pytest
from niche import gpio
from niche.gpio import Line, LineReleased, SysfsLine, UnknownPin
from niche.sandbox import UID_MAX, UID_MIN
from simhelpers import SimWorld, wait_until

pytestmark = pytest.mark.timeout(90)

T = 10  # seconds, for every port call


def reap(port: niche.Port, wait: float = 3.0) -> None:
    """Kill whatever holder a failed test left (a released one is gone within ``wait``)."""
    deadline = time.monotonic() + wait
    while (left := port.cpid([], timeout=T)) and time.monotonic() < deadline:
        time.sleep(0.02)
    for c in left:
        with contextlib.suppress(ProcessLookupError):
            port.kill([], c.pid, "SIGKILL", timeout=T)


@pytest.fixture
def port(sim: SimWorld) -> Iterator[niche.Port]:
    # after sim: torn down first, so the simulator is reset with no holder left
    with niche.Port() as p:
        yield p
        reap(p)


@pytest.fixture
def req(port: niche.Port, sim: SimWorld) -> Iterator:
    """request(pin, **kw) on the sim board; every line is released at the end."""
    made: list[Line] = []

    def request(pin: str | int, **kw) -> SysfsLine:
        if isinstance(pin, int):
            pin = f"SIM{pin}"
        line = gpio.request(kw.pop("on", port), pin, board="sim", sysfs_root=str(sim.root), timeout=T, **kw)
        made.append(line)
        assert isinstance(line, SysfsLine)
        return line

    yield request
    for line in made:
        line.release()


def status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: v.strip() for k, _, v in (ln.partition(":") for ln in text.splitlines())}


def fds(pid: int) -> dict[int, str]:
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):
            out[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
    return out


def collect(line: Line, n: int, timeout: float = 5.0) -> list[bool]:
    """The levels of the next n edges (waits up to timeout for all of them)."""
    got: list[bool] = []
    deadline = time.monotonic() + timeout
    while len(got) < n and (left := deadline - time.monotonic()) > 0:
        got += [e.rising for e in line.edges(timeout=left)]
    return got


# -- outputs -------------------------------------------------------------------


def test_output_drives_the_outside_world(req, sim: SimWorld) -> None:
    line = req(3, direction="out")
    assert sim.read(3, "direction") == "out"
    assert sim.level(3) == 0 and line.get() is False
    line.on()
    assert sim.level(3) == 1 and line.get() is True and line.value is True
    line.off()
    assert sim.level(3) == 0 and line.value is False
    line.value = 1
    assert sim.level(3) == 1
    line.set(False)
    assert sim.level(3) == 0
    assert [sim.level(n) for n in range(32) if n != 3] == [0] * 31  # only line 3 moved


@pytest.mark.parametrize("initial", [False, True])
def test_initial_value(req, sim: SimWorld, initial: bool) -> None:
    line = req(4, direction="out", initial=initial)
    assert sim.level(4) == int(initial)
    assert sim.read(4, "direction") == "out"
    # direction was set with "high"/"low": the line never showed the other level
    assert sim.changes(4) == int(initial)
    assert line.get() is initial


def test_active_low_output(req, sim: SimWorld) -> None:
    line = req(5, direction="out", initial=True, active_low=True)
    assert sim.read(5, "active_low") == "1"
    assert sim.level(5) == 0  # logical on = physically low
    assert line.get() is True
    line.off()
    assert sim.level(5) == 1 and line.get() is False
    line.on()
    assert sim.level(5) == 0 and line.get() is True
    assert sim.changes(5) == 2  # never a glitch to high at the request


def test_active_low_output_initial_off(req, sim: SimWorld) -> None:
    line = req(5, direction="out", initial=False, active_low=True)
    assert sim.level(5) == 1 and line.get() is False


def test_toggle(req, sim: SimWorld) -> None:
    line = req(6, direction="out")
    assert line.toggle() is True and sim.level(6) == 1
    assert line.toggle() is False and sim.level(6) == 0
    for _ in range(10):
        line.toggle()
    assert sim.level(6) == 0 and sim.changes(6) == 12


def test_toggle_active_low(req, sim: SimWorld) -> None:
    line = req(6, direction="out", active_low=True)
    assert sim.level(6) == 1
    assert line.toggle() is True and sim.level(6) == 0


def test_input_cannot_be_set(req, sim: SimWorld) -> None:
    line = req(7, direction="in")
    with pytest.raises(ValueError):
        line.on()
    with pytest.raises(ValueError):
        line.toggle()
    assert sim.read(7, "direction") == "in"


# -- inputs --------------------------------------------------------------------


def test_input_follows_outside(req, sim: SimWorld) -> None:
    line = req(8, direction="in")
    assert sim.read(8, "direction") == "in" and sim.read(8, "edge") == "none"
    assert line.get() is False
    sim.drive(8, 1)
    assert line.get() is True and line.value is True
    sim.drive(8, 0)
    assert line.get() is False
    assert line.edges(timeout=0.2) == []  # no edge detection asked for


def test_active_low_input(req, sim: SimWorld) -> None:
    line = req(9, direction="in", active_low=True)
    assert line.get() is True  # physically low
    sim.drive(9, 1)
    assert line.get() is False


# drive the line through these physical levels, one at a time
LEVELS = [1, 0, 1, 0, 1, 0]


@pytest.mark.parametrize(
    "edge,active_low",
    [
        ("rising", False),
        ("falling", False),
        ("both", False),
        ("rising", True),
        ("falling", True),
        ("both", True),
    ],
)
def test_edges(req, sim: SimWorld, edge: str, active_low: bool) -> None:
    line = req(10, direction="in", edge=edge, active_low=active_low)
    assert sim.read(10, "edge") == edge
    assert line.edges(timeout=0.2) == []  # nothing yet
    fired = sim.edges(10)  # the simulator counts from its mount on
    got = []
    for level in LEVELS:
        sim.drive(10, level)
        logical = bool(level) != active_low
        if edge == "both" or (edge == "rising") == logical:
            got += collect(line, 1)
            assert got[-1:] == [logical], (level, got)
        else:  # not an edge asked for: nothing may arrive
            assert line.edges(timeout=0.15) == [], level
    want = {"both": 6, "rising": 3, "falling": 3}[edge]
    assert len(got) == want
    assert line.edges(timeout=0.2) == []
    assert sim.edges(10) - fired == want  # the simulator agrees on what fired


def test_edges_wait_for_the_first(req, sim: SimWorld) -> None:
    """edges(timeout) returns as soon as an edge is there, not at the timeout."""
    line = req(11, direction="in", edge="both")
    t0 = time.monotonic()
    sim.drive(11, 1)
    got = line.edges(timeout=5)
    assert [e.rising for e in got] == [True]
    assert time.monotonic() - t0 < 2
    assert got[0].value is True


def test_edges_queue_while_nobody_reads(req, sim: SimWorld) -> None:
    line = req(12, direction="in", edge="rising")
    for _ in range(3):
        sim.drive(12, 1)
        time.sleep(0.1)  # let the holder read each one (sysfs only says "changed")
        sim.drive(12, 0)
        time.sleep(0.1)
    assert collect(line, 3) == [True, True, True]


# -- release -------------------------------------------------------------------


def test_release_unexports(req, port: niche.Port, sim: SimWorld) -> None:
    line = req(13, direction="out", initial=True)
    pid = line.process.pid
    assert sim.exported() == [13]
    line.release()
    assert line.released
    assert sim.exported() == []
    assert wait_until(lambda: not any(c.pid == pid for c in port.cpid([], timeout=T)), 5)
    assert wait_until(lambda: not os.path.exists(f"/proc/{pid}"), 5), "holder not reaped"
    line.release()  # twice is fine
    for call in (line.get, line.on, line.off, line.toggle, lambda: line.edges(0.1)):
        with pytest.raises(LineReleased):
            call()


def test_context_manager_releases(port: niche.Port, sim: SimWorld) -> None:
    with gpio.request(port, "SIM14", board="sim", sysfs_root=str(sim.root), timeout=T) as line:
        assert sim.exported() == [14]
    assert line.released and sim.exported() == []


def test_request_again_after_release(req, sim: SimWorld) -> None:
    first = req(15, direction="out", initial=True)
    first.release()
    second = req(15, direction="in", edge="both")
    assert sim.exported() == [15] and sim.read(15, "direction") == "in"
    sim.drive(15, 1)
    assert collect(second, 1) == [True]
    second.release()
    third = req(15, direction="out")
    third.on()
    assert sim.level(15) == 1


def test_many_lines_at_once(req, port: niche.Port, sim: SimWorld) -> None:
    lines = [req(n, direction="out") for n in range(16, 24)]
    assert sim.exported() == list(range(16, 24))
    assert len({ln.process.pid for ln in lines}) == 8
    assert len({status(ln.process.pid)["Uid"] for ln in lines}) == 8  # an identity each
    for i, ln in enumerate(lines):
        ln.set(i % 2)
    assert [sim.level(n) for n in range(16, 24)] == [0, 1] * 4
    for ln in lines:
        ln.release()
    assert sim.exported() == []


# -- errors --------------------------------------------------------------------


def test_unknown_pin_lists_valid_names(port: niche.Port, sim: SimWorld) -> None:
    with pytest.raises(UnknownPin) as ei:
        gpio.request(port, "SIM32", board="sim", sysfs_root=str(sim.root), timeout=T)
    msg = str(ei.value)
    assert "SIM32" in msg and "SIM0" in msg and "SIM31" in msg
    with pytest.raises(UnknownPin) as ei:
        gpio.request(port, "P9_99", board="beaglebone", timeout=T)
    assert "P9_12" in str(ei.value)
    assert sim.exported() == [] and port.cpid([], timeout=T) == []


class Tripwire:
    """Stands in for the port: any use of it fails the test."""

    def __getattr__(self, name: str):
        raise AssertionError(f"gpio.request touched the port ({name}) before checking its arguments")


BAD = [
    (ValueError, dict(pin="SIM1", direction="sideways")),
    (ValueError, dict(pin="SIM1", direction="in", edge="up")),
    (ValueError, dict(pin="SIM1", direction="in", bias="strong")),
    (ValueError, dict(pin="SIM1", direction="in", debounce_ms=-1)),
    (ValueError, dict(pin="SIM1", direction="in", debounce_ms=5000)),
    (ValueError, dict(pin="SIM1", direction="out", edge="both")),
    (ValueError, dict(pin="SIM1", backend="magic")),
    (ValueError, dict(pin="gpiochip0:1", backend="sysfs")),  # sysfs needs a number
    (ValueError, dict(pin="USR0", board="beaglebone", direction="in")),  # an LED
    (TypeError, dict(pin=None)),
    (TypeError, dict(pin=1)),
    (TypeError, dict(pin="")),
    (TypeError, dict(pin="SIM1", direction="in", debounce_ms="10")),
    (UnknownPin, dict(pin="SIM1", board="no-such-board")),
]


@pytest.mark.parametrize("exc,kw", BAD, ids=[repr(kw) for _, kw in BAD])
def test_bad_arguments_touch_nothing(exc: type, kw: dict) -> None:
    kw = {"board": "sim", **kw}
    pin = kw.pop("pin")
    with pytest.raises(exc):
        gpio.request(Tripwire(), pin, timeout=T, **kw)  # type: ignore[arg-type]


def test_bad_arguments_with_a_real_port(port: niche.Port, sim: SimWorld) -> None:
    before = [sim.changes(n) for n in range(32)]
    for exc, kw in BAD:
        kw = {"board": "sim", **kw}
        with pytest.raises(exc):
            gpio.request(port, kw.pop("pin"), sysfs_root=str(sim.root), timeout=T, **kw)
    assert sim.exported() == [] and port.cpid([], timeout=T) == []
    assert [sim.changes(n) for n in range(32)] == before


# -- the holder, seen from outside ---------------------------------------------


def test_holder_is_a_host_pid_child_of_the_port(req, port: niche.Port) -> None:
    line = req(1, direction="out")
    proc = line.process
    pid = proc.pid
    # cloned by the port's root, which lives in our PID namespace: the chain's
    # last PID is a host PID, and the holder is PID 1 of its own namespace
    assert proc.chain == (pid,)
    assert status(port.pid)["NSpid"].split() == [str(port.pid)]
    st = status(pid)
    assert st["PPid"] == str(port.pid)
    assert st["NSpid"].split() == [str(pid), "1"]
    assert proc.getpid(timeout=T) == 1
    assert os.readlink(f"/proc/{pid}/exe") == os.readlink(f"/proc/{port.pid}/exe")


@pytest.mark.parametrize("direction", ["out", "in"])
def test_holder_privileges(req, direction: str) -> None:
    line = req(2, direction=direction, **({"edge": "both"} if direction == "in" else {}))
    st = status(line.process.pid)
    uids, gids = st["Uid"].split(), st["Gid"].split()
    assert len(set(uids)) == 1 and UID_MIN <= int(uids[0]) <= UID_MAX, uids  # real, eff, saved, fs
    assert len(set(gids)) == 1 and UID_MIN <= int(gids[0]) <= UID_MAX, gids
    assert st["Groups"] == ""
    for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
        assert int(st[cap], 16) == 0, (cap, st[cap])
    assert st["NoNewPrivs"] == "1"
    assert (int(uids[0]), int(gids[0])) == (line.sandbox.identity.uid, line.sandbox.identity.gid)


def test_holder_namespaces(req, port: niche.Port) -> None:
    pid = req(2, direction="out").process.pid
    for ns in ("pid", "mnt", "net", "uts", "ipc"):
        mine = os.readlink(f"/proc/self/ns/{ns}")
        assert os.readlink(f"/proc/{port.pid}/ns/{ns}") == mine, ns  # the port root is not sandboxed
        assert os.readlink(f"/proc/{pid}/ns/{ns}") != mine, ns
    # and inside: no network but its own loopback, its own hostname
    assert os.readlink(f"/proc/{pid}/ns/user") == os.readlink("/proc/self/ns/user")


def test_two_holders_share_no_namespace(req) -> None:
    a, b = req(2, direction="out").process.pid, req(3, direction="out").process.pid
    for ns in ("pid", "mnt", "net", "uts", "ipc"):
        assert os.readlink(f"/proc/{a}/ns/{ns}") != os.readlink(f"/proc/{b}/ns/{ns}"), ns


LOOP = ("anon_inode:[eventpoll]", "anon_inode:[signalfd]", "socket:[")  # the port's own loop


@pytest.mark.parametrize("direction", ["out", "in"])
def test_holder_keeps_only_the_value_descriptor(req, sim: SimWorld, direction: str) -> None:
    line = req(20, direction=direction, **({"edge": "rising"} if direction == "in" else {}))
    got = fds(line.process.pid)
    rest = {fd: t for fd, t in got.items() if fd > 2 and not t.startswith(LOOP)}
    assert rest == {line.fd: str(sim.gpio(20) / "value")}, got
    loop = [t for fd, t in got.items() if fd > 2 and t.startswith(LOOP)]
    assert len(loop) <= 4, got  # epoll, signalfd, the control socket


def test_holder_is_chrooted_into_gpioN(req, sim: SimWorld) -> None:
    line = req(21, direction="out")
    pid = line.process.pid
    assert os.readlink(f"/proc/{pid}/root") == str(sim.gpio(21))
    assert os.readlink(f"/proc/{pid}/cwd") == str(sim.gpio(21))
    # inside, / is gpio21: "value" is there, the rest of the system is not
    assert sorted(line.process.readdir("/", timeout=T)) == sorted(os.listdir(sim.gpio(21)))
    with pytest.raises(OSError):
        line.process.open("/export", ["O_WRONLY"], timeout=T)


def test_holder_cannot_open_files_for_writing(req) -> None:
    """Dropped to a stranger's UID, the holder cannot open the (root-owned)
    files of its own directory: it writes only through the kept descriptor."""
    line = req(22, direction="out")
    with pytest.raises(PermissionError):
        line.process.open("/direction", ["O_WRONLY"], timeout=T)
    with pytest.raises(PermissionError):
        line.process.open("/value", ["O_WRONLY"], timeout=T)


# -- a holder that dies --------------------------------------------------------


@pytest.mark.parametrize("direction", ["out", "in"])
def test_killed_holder_raises_line_released(req, port: niche.Port, sim: SimWorld, direction: str) -> None:
    line = req(25, direction=direction)
    other = req(26, direction="out")
    os.kill(line.process.pid, signal.SIGKILL)  # its chain PID is a host PID
    assert wait_until(lambda: not any(c.pid == line.process.pid for c in port.cpid([], timeout=T)), 5)
    with pytest.raises(LineReleased):
        line.get()
    with pytest.raises(LineReleased):
        line.get()  # and stays so
    assert line.released
    # the port keeps serving: its root, the other line, and new requests
    assert port.getpid([], timeout=T) == port.pid
    other.on()
    assert sim.level(26) == 1
    again = req(27, direction="out", initial=True)
    assert sim.level(27) == 1
    again.release()


def test_killed_input_holder_ends_edges(req, port: niche.Port) -> None:
    line = req(28, direction="in", edge="both")
    os.kill(line.process.pid, signal.SIGKILL)
    with pytest.raises(LineReleased):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            line.edges(timeout=0.5)
    assert port.getpid([], timeout=T) == port.pid


def test_killed_holder_set_raises(req, port: niche.Port) -> None:
    line = req(29, direction="out")
    os.kill(line.process.pid, signal.SIGKILL)
    assert wait_until(lambda: not any(c.pid == line.process.pid for c in port.cpid([], timeout=T)), 5)
    with pytest.raises(LineReleased):
        line.on()


def test_release_after_holder_died_still_unexports(req, port: niche.Port, sim: SimWorld) -> None:
    line = req(30, direction="out")
    os.kill(line.process.pid, signal.SIGKILL)
    assert wait_until(lambda: not any(c.pid == line.process.pid for c in port.cpid([], timeout=T)), 5)
    with pytest.raises(LineReleased):
        line.get()
    line.release()
    assert sim.exported() == []
