"""Each VM-lane guest boots, sees its gpiochips, and its port answers the
handshake over the guest's serial line (a qemu pty on the host)."""

from __future__ import annotations

import os
import termios
import tty

import pytest
from framing import HELLO_UP, hello_frame, parse_hello, read_frame

pytestmark = pytest.mark.vm


def open_raw(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
    tty.setraw(fd)
    termios.tcflush(fd, termios.TCIOFLUSH)
    return fd


def test_guest_ready(vm_guest):
    g = vm_guest.guest
    con = g.console_text()
    assert f"NICHE-READY arch={g.arch}" in con
    assert g.boot_seconds is not None and g.boot_seconds < 120


def test_gpiochips(vm_guest):
    g = vm_guest.guest
    chips = {c["label"]: c for c in g.gpiochips()}
    if g.arch == "raspi0":
        # the real BCM2835 driver, as on a Raspberry Pi Zero
        assert chips.get("pinctrl-bcm2835", {}).get("lines") == 54, chips
    else:
        assert chips.get("niche-sim", {}).get("lines") == 16, chips
        assert chips.get("gpio-mockup-A", {}).get("lines") == 8, chips
    if g.arch in ("arm64", "armhf"):
        assert chips.get("9030000.pl061", {}).get("lines") == 8, chips


def test_raw_hello(vm_guest):
    fd = open_raw(vm_guest)
    try:
        os.write(fd, hello_frame())
        kind, body = read_frame(fd, timeout=15)
    finally:
        os.close(fd)
    assert kind == HELLO_UP
    version, port_version = parse_hello(body)
    assert version == 1, port_version


def test_port_over_serial(vm_guest):
    """niche.Port's serial transport against the port in the guest."""
    if "/stub/" in vm_guest.guest.config.get("port", ""):
        pytest.skip("guest runs the stub port (make vm-selftest)")
    import niche

    p = niche.Port(serial=vm_guest, start_timeout=15)
    try:
        assert p.pid > 0
        assert p.getpid([], timeout=15) == p.pid
    finally:
        p.close(timeout=5)


def test_poweroff_when_port_exits():
    """init powers the guest off when the port exits (its own guest: the
    session's guests stay up)."""
    from guest import Guest, qemu_problem, vm_unavailable

    arch = "arm64"  # the fastest to boot
    if qemu_problem(arch):
        vm_unavailable(qemu_problem(arch))
    g = Guest(arch)
    path = g.start()
    try:
        if "/stub/" in g.config.get("port", ""):
            pytest.skip("guest runs the stub port (make vm-selftest)")
        import niche

        p = niche.Port(serial=path, start_timeout=15)
        try:
            p.exit([], 3, timeout=15)
        finally:
            p.close(timeout=5)
        rc = g.wait_exit(timeout=60)
        assert rc is not None, f"guest did not power off\n{g.logs()}"
        assert "NICHE-PORT-EXIT status=3" in g.console_text()
    finally:
        g.stop()
