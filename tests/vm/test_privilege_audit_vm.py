"""Privilege audit in the VM guests (issue 10): every child of the guest's
port that holds a line (chardev on gpio-sim, and sysfs), read from the
guest's /proc through the port's own calls. The PIDs come from the port's
tree (``cpid``), not from the Line objects. The call surface has no
readlink/stat, so the namespaces are told apart by what they show: a second
``NSpid`` level (PID) and fresh mount IDs in ``mountinfo`` (mount); the
guests have only ``lo``, so the network, UTS and IPC namespaces are compared
by inode on the simulator (tests/agent/test_privilege_audit.py) only."""

from __future__ import annotations

import pytest
from niche.sandbox import UID_MIN
from test_gpio_chardev import Guest, T, guest, guest_port, sim, sysfs, sysfs_request  # noqa: F401

pytestmark = [pytest.mark.vm, pytest.mark.timeout(300)]
CAPS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")


def mount_ids(g: Guest, pid: int | str) -> set[str]:
    return {ln.split()[0] for ln in g.read(f"/proc/{pid}/mountinfo").splitlines()}


def test_every_line_holder_in_the_guest_is_unprivileged(sim: Guest) -> None:  # noqa: F811
    sim.request(2, direction="out", initial=True)
    sim.request(3, direction="in", edge="both")
    sysfs_request(sim, 4, direction="out")
    holders = sim.children()  # the port's own tree
    assert len(holders) == 3, holders
    port = sim.status("self")
    assert port["Uid"].split() == ["0"] * 4
    port_mounts = mount_ids(sim, "self")
    for pid in holders:
        st = sim.status(pid)
        for key in ("Uid", "Gid"):
            ids = set(st[key].split())
            assert len(ids) == 1 and int(ids.pop()) >= UID_MIN, (pid, key, st[key])
        assert st["Groups"] == "", pid
        for cap in CAPS:
            assert int(st[cap], 16) == 0, (pid, cap, st[cap])
        assert st["NoNewPrivs"] == "1", pid
        assert st["NSpid"].split() == [str(pid), "1"], pid  # its own PID namespace
        assert not mount_ids(sim, pid) & port_mounts, pid  # its own mount namespace
    # no holder sees the guest's /: the sysfs one is chrooted into its gpioN
    # directory, the chardev ones into an empty tmpfs of their own mount namespace
    roots = {pid: set(sim.root.readdir(f"/proc/{pid}/root", timeout=T)) - {".", ".."} for pid in holders}
    host = set(sim.root.readdir("/proc/self/root", timeout=T))
    assert all(r != host for r in roots.values()), roots
    assert sorted("value" in r for r in roots.values()) == [False, False, True], roots
    assert sum(r == set() for r in roots.values()) == 2, roots
