"""Privilege audit (issue 10): every process of the port's tree that holds a
GPIO line or runs a driver, read from the outside through /proc, against the
agent and the port. The PIDs come from the port's own process tree
(/proc children), never from what the agent says.

Also what the root port itself keeps after start-up (docs/security.md)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from conftest import children, descendants, to_toml, wait_until
from niche.sandbox import UID_MIN

# outputs, inputs, a sysfs-backend line, and a driver with a seccomp
# allow-list and a cgroup: every kind of process the agent makes
LINES = {
    "led": {"pin": "SIM3"},
    "lamp": {"pin": "SIM4", "initial": "ON"},
    "btn": {"pin": "SIM5", "direction": "in", "debounce_ms": 20},
    "door": {"pin": "sysfs:6", "direction": "in"},
    "dled": {"pin": "SIM9"},
}
# what /bin/cat needs to start and copy stdin to stdout (plus the loader's calls)
CAT_CALLS = ["read", "write", "openat", "open", "close", "fstat", "newfstatat", "mmap", "munmap",
             "mprotect", "brk", "arch_prctl", "access", "pread64", "fadvise64", "exit_group",
             "rseq", "set_tid_address", "set_robust_list", "prlimit64", "getrandom", "futex",
             "rt_sigaction", "rt_sigprocmask", "lseek", "ioctl", "sigaltstack", "statfs"]
CAPS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")


def status(pid: int) -> dict[str, str]:
    text = Path(f"/proc/{pid}/status").read_text()
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def namespaces(pid: int) -> dict[str, str]:
    d = f"/proc/{pid}/ns"
    return {n: os.readlink(f"{d}/{n}") for n in os.listdir(d)}


def same_root(a: int, b: int) -> bool:
    sa, sb = os.stat(f"/proc/{a}/root/"), os.stat(f"/proc/{b}/root/")
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def assert_unprivileged(pid: int, agent_pid: int, *, seccomp: bool) -> dict[str, str]:
    st, agent = status(pid), status(agent_pid)
    for key in ("Uid", "Gid"):
        ids = {int(x) for x in st[key].split()}
        assert len(ids) == 1 and min(ids) >= UID_MIN, (pid, key, st[key])  # all four, high
        assert ids.isdisjoint(int(x) for x in agent[key].split()), (pid, key)
    assert st["Groups"] == "", (pid, st["Groups"])
    for cap in CAPS:
        assert int(st[cap], 16) == 0, (pid, cap, st[cap])
    assert st["NoNewPrivs"] == "1", pid
    if seccomp:
        assert st["Seccomp"] == "2", (pid, st["Seccomp"])
    return st


def test_every_line_holder_and_driver_is_unprivileged(broker, sim, agent_factory, client_factory):
    client = client_factory(broker)
    a = agent_factory(broker, sim, start=False, lines=LINES)
    a.cfg["driver"] = {"echo": {"command": ["/bin/cat"], "gpio": ["dled"], "allow": CAT_CALLS,
                                "memory_max": 64 << 20, "pids_max": 8}}
    a.path.write_text(to_toml(a.cfg))
    m = client.mark()
    a.start()
    client.wait_topic(a.topic("status"), "online", since=m, timeout=15)
    assert a.wait_log("driver echo running", timeout=15), a.log()[-3000:]
    port = a.port_pid()
    holders = {n: a.holder_pid(n) for n in (3, 4, 5, 6)}
    # the driver: the port's descendant that runs cat (its comm after exec)
    driver = wait_until(lambda: [p for p in descendants(port)
                                 if Path(f"/proc/{p}/comm").read_text().strip() == "cat"])
    assert len(driver) == 1, descendants(port)
    driver_pid = driver[0]
    audited = set(holders.values()) | {driver_pid}
    # nothing in the tree escapes the audit: every descendant is a holder, the
    # driver, or a process the sandbox made that still runs the port's loop as root
    # inside new namespaces (the parent of a holder, which holds nothing)
    for p in set(descendants(port)) - audited:
        with contextlib.suppress(FileNotFoundError):
            assert not os.listdir(f"/proc/{p}/fd") or namespaces(p) != namespaces(port), p

    port_ns = namespaces(port)
    for n, pid in holders.items():
        assert_unprivileged(pid, a.pid, seccomp=False)
        ns = namespaces(pid)
        for kind in ("ipc", "mnt", "net", "pid", "uts"):  # sandbox.NAMESPACES
            assert ns[kind] != port_ns[kind], (n, kind)
        assert not same_root(pid, port), n  # chrooted into its gpioN directory
        assert os.readlink(f"/proc/{pid}/root").endswith(f"/gpio{n}"), n

    st = assert_unprivileged(driver_pid, a.pid, seccomp=True)
    assert int(st["Seccomp_filters"]) >= 1
    ns = namespaces(driver_pid)
    for kind in ("ipc", "mnt", "net", "pid", "uts"):  # DriverConfig.namespaces' default
        assert ns[kind] != port_ns[kind], kind
    # its own cgroup, with the limits, not the agent's
    cg = Path(f"/proc/{driver_pid}/cgroup").read_text()
    assert f"niche-{a.id}-echo" in cg, cg
    assert f"niche-{a.id}-echo" not in Path(f"/proc/{a.pid}/cgroup").read_text()


def test_what_the_root_port_keeps(broker, sim, agent_factory, client_factory):
    """docs/security.md, "What the root port keeps": uid 0 and the full
    capability set (it exports/requests lines, clones namespaces, chroots and
    setuids its children), no no_new_privs, no seccomp; its parent is the agent."""
    client = client_factory(broker)
    a = agent_factory(broker, sim, start=False, lines={"led": {"pin": "SIM3"}})
    m = client.mark()
    a.start()
    client.wait_topic(a.topic("status"), "online", since=m, timeout=15)
    port = a.port_pid()
    assert port in children(a.pid)
    st = status(port)
    assert st["Uid"].split() == ["0"] * 4 and st["Gid"].split() == ["0"] * 4
    last = int(Path("/proc/sys/kernel/cap_last_cap").read_text())
    full = (1 << (last + 1)) - 1
    for cap in ("CapPrm", "CapEff", "CapBnd"):
        assert int(st[cap], 16) == full & int(status(os.getpid())["CapBnd"], 16), cap
    assert int(st["CapAmb"], 16) == 0
    assert st["NoNewPrivs"] == "0" and st["Seccomp"] == "0"
    assert namespaces(port) == namespaces(os.getpid())  # the host's: it makes the new ones
    assert same_root(port, os.getpid())
