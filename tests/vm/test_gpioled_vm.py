"""examples/gpioled on real kernels (VM lane): gpio-sim through the GPIO
character device and through legacy sysfs, and the raspi0 guest's real
bcm2835 driver by board pin name.

gpioled.py runs on the host with ``--serial`` and drives the guest's port
(its PID 1 service: gpioled does the port's privilege drop in a forked
child of it, so the guest's port stays root for the next test). One session
at a time on a serial line, so the guest side is checked before and after
through our own ``niche.Port(serial)``: the chip and line found by label,
the line released again (no consumer, not exported), gpio-sim's view of the
line back at its pull, no child of the guest's port left behind; and what
the sandboxed child and the port's stand-in read back from their own
/proc/self/status (``-v``): high UID/GID, no capabilities, no_new_privs,
PID 1 of a PID namespace of its own.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import niche
import pytest
from niche.gpio import ChipNotFound, chips
from niche.gpio.sysfs import chip_base
from niche.sandbox import read_file

pytestmark = pytest.mark.vm

ROOT = Path(__file__).resolve().parents[2]
PY = str(ROOT / "build/venv/bin/python") if (ROOT / "build/venv/bin/python").exists() else sys.executable
SCRIPT = ROOT / "examples" / "gpioled" / "gpioled.py"
T = 15
UID_MIN = 0x10000000
COUNT = 4
LABEL = "niche-sim"
CHARDEV_LINE, SYSFS_LINE = 5, 6  # lines of the gpio-sim chip nothing else here uses


def session(vm_guest) -> niche.Port:
    if "/stub/" in vm_guest.guest.config.get("port", ""):
        pytest.skip("guest runs the stub port (make vm-selftest)")
    return niche.Port(serial=vm_guest, start_timeout=T)


def sim_value_path(vm_guest, line: int) -> str:
    m = re.search(r"NICHE-SIM dev=(\S+) chip=(\S+)", vm_guest.guest.console_text())
    assert m, "no NICHE-SIM line on the guest's console"
    return f"/sys/devices/platform/{m.group(1)}/{m.group(2)}/sim_gpio{line}/value"


def children_of_root(port: niche.Port) -> list[int]:
    return sorted(c.pid for c in port.cpid([], timeout=T))


def gpioled(vm_guest, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PY, str(SCRIPT), "--serial", str(vm_guest), "-v", "--interval-ms", "30", *args],
                          capture_output=True, text=True, timeout=180, cwd=ROOT)


def check_verbose(err: str) -> None:
    """What the child and the port's stand-in read back from their own status."""
    lines = {m.group(1): m for m in re.finditer(
        r"gpioled: (child|port) pid (\d+) uid (\d+) gid (\d+) CapEff (\w+) CapPrm (\w+) "
        r"NoNewPrivs (\d) NSpid ([\d ]+)", err)}
    assert set(lines) == {"child", "port"}, err
    for who, m in lines.items():
        assert int(m.group(3)) >= UID_MIN and int(m.group(4)) >= UID_MIN, (who, m.group(0))
        assert int(m.group(5), 16) == 0 and int(m.group(6), 16) == 0, (who, m.group(0))
        assert m.group(7) == "1", (who, m.group(0))
    nspid = lines["child"].group(8).split()
    assert len(nspid) == 2 and nspid[-1] == "1", nspid  # PID 1 of its own PID namespace
    assert lines["child"].group(3) != lines["port"].group(3)


def blinks(name: str, count: int) -> list[str]:
    return [f"{name} {v}" for _ in range(count) for v in ("high", "low")]


def test_gpioled_chardev(vm_guest) -> None:
    with session(vm_guest) as port:
        if vm_guest.guest.arch == "raspi0":
            chip = chips.find_chip(port.root, ("pinctrl-bcm2835",), timeout=T)
            spec, args, offset = "PIN11", ["--board", "rpi", "--chardev", "PIN11"], 17  # BCM GPIO17
            value_path = None
        else:
            chip = chips.find_chip(port.root, (LABEL,), timeout=T)
            spec, offset = f"{LABEL}:{CHARDEV_LINE}", CHARDEV_LINE
            args = ["--chardev", spec]
            value_path = sim_value_path(vm_guest, offset)
        before = children_of_root(port)
        assert chips.line_info(port.root, chip.path, offset, timeout=T).consumer == ""
    r = gpioled(vm_guest, *args, str(COUNT))
    assert r.returncode == 0, f"{spec}: {r.stderr}"
    assert r.stdout.splitlines() == blinks(f"{chip.name}:{offset}", COUNT)
    check_verbose(r.stderr)
    with session(vm_guest) as port:
        assert children_of_root(port) == before
        # released: the line has no consumer any more
        assert chips.line_info(port.root, chip.path, offset, timeout=T).consumer == ""
        if value_path:
            # gpio-sim puts a released line back at its pull (down): low
            assert read_file(port.root, value_path, timeout=T).strip() == b"0"


def test_gpioled_chardev_busy(vm_guest) -> None:
    """A line held elsewhere: gpioled says who holds it, exits 1, leaves nothing."""
    if vm_guest.guest.arch == "raspi0":
        pytest.skip("gpio-sim guests only")
    from niche import gpio

    with session(vm_guest) as port:
        before = children_of_root(port)
        chip = chips.find_chip(port.root, (LABEL,), timeout=T)
        # The holder is a child of the guest's port: it outlives this session
        # (no end of file on a serial line), and gpioled --reattach keeps it.
        line = gpio.request(port, f"{LABEL}:{CHARDEV_LINE}", direction="out", consumer="holder",
                            timeout=T)
        held_by = line.process.pid
    try:
        r = gpioled(vm_guest, "--reattach", "--chardev", f"{LABEL}:{CHARDEV_LINE}", "1")
        assert r.returncode == 1, r.stderr
        assert "busy: held by holder" in r.stderr
        assert r.stdout == ""
        with niche.Port(serial=vm_guest, start_timeout=T, reattach=True) as port:
            assert held_by in port.children  # gpioled left the holder alone
    finally:
        # a fresh session ends what the previous ones left: the holder too
        with session(vm_guest) as port:
            assert children_of_root(port) == before
            assert chips.line_info(port.root, chip.path, CHARDEV_LINE, timeout=T).consumer == ""


def test_gpioled_sysfs(vm_guest) -> None:
    if vm_guest.guest.arch == "raspi0":
        pytest.skip("gpio-sim guests only")
    with session(vm_guest) as port:
        try:
            base = chip_base(port.root, "/sys/class/gpio", [LABEL], timeout=T)
        except ChipNotFound as e:
            pytest.skip(f"no legacy sysfs GPIO in this guest: {e}")
        number = base + SYSFS_LINE
        chip = chips.find_chip(port.root, (LABEL,), timeout=T)
        before = children_of_root(port)
        assert f"gpio{number}" not in port.root.readdir("/sys/class/gpio", timeout=T)
    r = gpioled(vm_guest, str(number), str(COUNT))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == blinks(f"gpio{number}", COUNT)
    check_verbose(r.stderr)
    with session(vm_guest) as port:
        assert children_of_root(port) == before
        assert f"gpio{number}" not in port.root.readdir("/sys/class/gpio", timeout=T)  # unexported
        assert chips.line_info(port.root, chip.path, SYSFS_LINE, timeout=T).consumer == ""
        assert read_file(port.root, sim_value_path(vm_guest, SYSFS_LINE), timeout=T).strip() == b"0"
