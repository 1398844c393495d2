"""examples/gpioled against the GPIO simulator (fast lane).

gpioled.py runs as a real subprocess (its own niche-port) with
``--sysfs-root`` on a niche-gpio-sim mounted for this module. What it did is
checked from outside: the simulator's per-line change counter (sim/N.changes)
for the toggles, the sysfs tree for the unexport, and /proc for the two
processes of the port while it blinks: the child holding the pin (high UID,
no capabilities, no_new_privs, its own namespaces, chrooted in gpioN/, only
the value file open) and the port process itself (dropped to a non-root UID,
keeping only the unexport descriptor).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from examplehelpers import MARK, PY, ROOT, children, marked_pids

SCRIPT = ROOT / "examples" / "gpioled" / "gpioled.py"
UID_MIN = 0x10000000  # niche.sandbox's random identities are at least this
NS = ("pid", "net", "mnt", "uts", "ipc")


@pytest.fixture(scope="module")
def sim_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A niche-gpio-sim of our own, mounted for the module and unmounted after."""
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as e:
        pytest.skip(f"mfusepy not usable: {e}")
    if not os.path.exists("/dev/fuse") or shutil.which("fusermount3") is None:
        pytest.skip("FUSE is not usable here (/dev/fuse, fusermount3)")
    from niche.gpio.sim import Simulator, is_mounted

    mp = tmp_path_factory.mktemp("gpioled-sim") / "gpio"
    sim = Simulator(mp, timeout=20)
    sim.start()
    try:
        yield sim.root
    finally:
        with contextlib.suppress(Exception):
            sim.stop()
        assert not is_mounted(mp), f"{mp} still mounted"


def sim_int(root: Path, name: str) -> int:
    return int((root / "sim" / name).read_text())


def exported(root: Path) -> list[int]:
    return sorted(int(p.name[4:]) for p in root.glob("gpio[0-9]*"))


def start(*args: str) -> tuple[subprocess.Popen, str]:
    mark = secrets.token_hex(8)
    env = dict(os.environ, **{MARK: mark})
    p = subprocess.Popen([PY, str(SCRIPT), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env, cwd=ROOT)
    return p, mark


def run(*args: str, timeout: float = 60) -> tuple[int, str, str, str]:
    p, mark = start(*args)
    try:
        out, err = p.communicate(timeout=timeout)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate(timeout=10)
    return p.returncode, out, err, mark


def assert_nothing_left(mark: str, timeout: float = 5) -> None:
    """No process of the run (the port and its child carry its mark) is alive."""
    deadline = time.monotonic() + timeout
    while left := marked_pids(mark):
        assert time.monotonic() < deadline, f"left behind: {left}"
        time.sleep(0.05)


def status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def fd_targets(pid: int) -> list[str]:
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return out


def blinks(name: str, count: int) -> list[str]:
    return [f"{name} {v}" for _ in range(count) for v in ("high", "low")]


def test_blinks_and_unexports(sim_root: Path) -> None:
    pin, count = 3, 6
    before = sim_int(sim_root, f"{pin}.changes")
    rc, out, err, mark = run("--sysfs-root", str(sim_root), str(pin), str(count), "--interval-ms", "20")
    assert rc == 0, err
    assert out.splitlines() == blinks(f"gpio{pin}", count)
    # seen from outside: COUNT blinks are 2*COUNT level changes (COUNT rising
    # edges), ending low; and the pin is unexported again
    assert sim_int(sim_root, f"{pin}.changes") - before == 2 * count
    assert sim_int(sim_root, str(pin)) == 0
    assert pin not in exported(sim_root)
    assert_nothing_left(mark)


def test_privileges_while_blinking(sim_root: Path) -> None:
    pin, count = 4, 6
    before = sim_int(sim_root, f"{pin}.changes")
    p, mark = start("--sysfs-root", str(sim_root), str(pin), str(count), "--interval-ms", "300", "-v")
    try:
        # the gpioled process -> its niche-port -> the child holding the pin;
        # both have dropped to non-root UIDs once the first line is printed
        assert p.stdout is not None
        first = p.stdout.readline()
        assert first == f"gpio{pin} high\n"
        ports = children(p.pid)
        assert len(ports) == 1, ports
        port = ports[0]
        holders = children(port)
        assert len(holders) == 1, holders
        holder = holders[0]
        assert Path(f"/proc/{port}/exe").resolve().name == "niche-port"

        st = status(holder)
        uid, gid = int(st["Uid"].split()[0]), int(st["Gid"].split()[0])
        assert uid >= UID_MIN and gid >= UID_MIN, st["Uid"]
        assert len(set(st["Uid"].split())) == 1 and len(set(st["Gid"].split())) == 1
        assert st["Groups"] == ""
        for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
            assert int(st[cap], 16) == 0, (cap, st[cap])
        assert st["NoNewPrivs"] == "1"
        assert st["NSpid"].split()[-1] == "1"  # PID 1 of its own PID namespace
        for ns in NS:
            assert os.readlink(f"/proc/{holder}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns
        # chrooted in gpioN/, and the value file is the only file it holds
        assert os.readlink(f"/proc/{holder}/root") == str(sim_root / f"gpio{pin}")
        files = [t for t in fd_targets(holder) if t.startswith("/")]
        assert files == [str(sim_root / f"gpio{pin}" / "value")], files

        pst = status(port)
        puid = int(pst["Uid"].split()[0])
        assert puid >= UID_MIN and puid != uid, pst["Uid"]
        assert len(set(pst["Uid"].split())) == 1
        assert int(pst["CapEff"], 16) == 0 and int(pst["CapPrm"], 16) == 0
        assert pst["NoNewPrivs"] == "1"
        for ns in ("net", "mnt", "uts", "ipc"):  # the port left the host's too
            assert os.readlink(f"/proc/{port}/ns/{ns}") != os.readlink(f"/proc/self/ns/{ns}"), ns
        pfiles = [t for t in fd_targets(port) if t.startswith("/")]
        assert pfiles == [str(sim_root / "unexport")], pfiles

        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.communicate(timeout=10)
    assert p.returncode == 0, err
    assert (first + out).splitlines() == blinks(f"gpio{pin}", count)
    assert f"child pid {holder} uid {uid} gid {gid} CapEff 0000000000000000" in err
    assert f"port pid {port} uid {puid}" in err
    assert sim_int(sim_root, f"{pin}.changes") - before == 2 * count
    assert pin not in exported(sim_root)
    assert_nothing_left(mark)


def test_board_pin_name(sim_root: Path) -> None:
    before = sim_int(sim_root, "7.changes")
    rc, out, err, mark = run("--sysfs-root", str(sim_root), "--board", "sim", "SIM7", "2",
                             "--interval-ms", "10")
    assert rc == 0, err
    assert out.splitlines() == blinks("gpio7", 2)
    assert sim_int(sim_root, "7.changes") - before == 4
    assert 7 not in exported(sim_root)
    assert_nothing_left(mark)


def test_already_exported(sim_root: Path) -> None:
    """EBUSY on export means someone exported it already: fine, and it is
    unexported at the end all the same."""
    fd = os.open(sim_root / "export", os.O_WRONLY)
    try:
        os.write(fd, b"9")
    finally:
        os.close(fd)
    assert 9 in exported(sim_root)
    rc, out, err, mark = run("--sysfs-root", str(sim_root), "9", "1", "--interval-ms", "10")
    assert rc == 0, err
    assert out.splitlines() == blinks("gpio9", 1)
    assert 9 not in exported(sim_root)
    assert_nothing_left(mark)


def test_default_count(sim_root: Path) -> None:
    rc, out, err, mark = run("--sysfs-root", str(sim_root), "11", "--interval-ms", "5")
    assert rc == 0, err
    assert out.splitlines() == blinks("gpio11", 10)
    assert_nothing_left(mark)


def test_bad_pin(sim_root: Path) -> None:
    rc, out, err, mark = run("--sysfs-root", str(sim_root), "40", "1")
    assert rc == 1
    assert out == ""
    assert "GPIO 40 does not exist" in err
    assert exported(sim_root) == []
    assert_nothing_left(mark)


def test_unknown_board_pin(sim_root: Path) -> None:
    rc, out, err, mark = run("--sysfs-root", str(sim_root), "--board", "sim", "P9_12", "1")
    assert rc == 1
    assert "no pin 'P9_12' on the sim board" in err and "SIM31" in err
    assert_nothing_left(mark)


@pytest.mark.parametrize("args", [[], ["3", "0"], ["--chardev", "gpiochip0:1", "5", "2"], ["x"]])
def test_usage(sim_root: Path, args: list[str]) -> None:
    rc, out, err, _ = run("--sysfs-root", str(sim_root), *args)
    assert rc in (1, 2), err
    assert out == ""


@pytest.mark.skipif(any(Path("/dev").glob("gpiochip*")), reason="this machine has GPIO chips")
def test_chardev_without_chips() -> None:
    rc, out, err, mark = run("--chardev", "gpiochip0:17", "1")
    assert rc == 1
    assert "CONFIG_GPIO_CDEV" in err
    assert_nothing_left(mark)
