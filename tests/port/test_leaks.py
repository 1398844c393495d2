"""Leaks (issue 10): 10,000 cycles of fork/exit and of exec'd commands
through a 4-deep chain leave no zombie, the same descriptors in every
process of the tree and a port RSS grown by less than 1 MB.

Counted in /proc, not from the port's own account. Each test costs about
10-20 s (about 1,300 fork/exit and 600 execs at depth 4 per second).
"""

from __future__ import annotations

import os
import time

from porthelpers import (
    ASAN,
    all_pids,
    chain_of_depth,
    descendants,
    proc_stat,
    read_stdout,
    wait_event,
    wait_exit,
    wait_until,
)

T = 10
CYCLES = 10_000
WARMUP = 1_000  # settles the allocator's arenas before RSS is compared
RSS_GROWTH_KB = 1024


def vm_rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS line for {pid}")


def tree_fds(root: int) -> dict[int, dict[int, str]]:
    """What every descriptor of every process of root's tree names (a
    descriptor closed and another opened in its place shows too)."""
    return {
        p: {int(fd): os.readlink(f"/proc/{p}/fd/{fd}") for fd in os.listdir(f"/proc/{p}/fd")}
        for p in [root, *descendants(root)]
    }


def zombies_in_tree(root: int) -> list[tuple[int, tuple[str, int, int] | None]]:
    tree = {root, *descendants(root)}
    out = []
    for p in all_pids():
        st = proc_stat(p)
        if st is not None and st[0] == "Z" and st[1] in tree:
            out.append((p, st))
    return out


def run_cycles(port, port_pid: int, cycle, settled) -> None:
    """Warm up, snapshot the tree, run CYCLES cycles, compare."""
    for i in range(WARMUP):
        cycle(i)
    assert wait_until(settled, T)
    fds, rss = tree_fds(port_pid), vm_rss_kb(port_pid)
    t0 = time.monotonic()
    for i in range(CYCLES):
        cycle(i)
    took = time.monotonic() - t0
    assert wait_until(settled, T), f"tree not back to its start: {descendants(port_pid)}"
    assert zombies_in_tree(port_pid) == []
    after = tree_fds(port_pid)
    assert after == fds, {p: (fds.get(p), after.get(p)) for p in fds.keys() | after.keys()
                          if fds.get(p) != after.get(p)}
    grown = vm_rss_kb(port_pid) - rss
    print(f"{CYCLES} cycles in {took:.1f} s ({CYCLES / took:.0f}/s); port VmRSS {rss} kB, grew {grown} kB; "
          f"fds {[len(v) for v in after.values()]}")
    if not ASAN:  # ASan's quarantine holds freed memory by design; LSan checks leaks there
        assert grown < RSS_GROWTH_KB, f"port VmRSS grew by {grown} kB over {CYCLES} cycles"


def test_10000_fork_exit_cycles_leak_nothing(port, port_pid):
    def cycle(i):
        c = port.fork([], timeout=T)
        port.exit([c], i % 256, timeout=T)
        assert wait_event(port, [c]) == ("exit_status", i % 256)

    run_cycles(port, port_pid, cycle, lambda: descendants(port_pid) == [])


def test_10000_execs_through_a_4_deep_chain_leak_nothing(port, port_pid):
    chain = chain_of_depth(port, 4)

    def cycle(i):
        c = port.fork(chain, timeout=T)
        port.execvp([*chain, c], "/bin/echo", ["echo", str(i)], timeout=T)
        assert read_stdout(port, [*chain, c], len(f"{i}\n")) == f"{i}\n".encode()
        assert wait_exit(port, [*chain, c]) == ("exit_status", 0)

    run_cycles(port, port_pid, cycle, lambda: descendants(port_pid) == sorted(chain))
