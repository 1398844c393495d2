"""Shared fixtures and helpers for the port integration tests (issue 3).

Everything here runs the real port (build/native/niche-port) and real
processes; nothing is mocked. Helpers inspect /proc directly so that the
tests do not trust the port's own account of its process tree.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import niche
import pytest

ROOT = Path(__file__).resolve().parents[2]
# The binary niche.Port() runs by default: NICHE_PORT, else the build's.
PORT_BIN = Path(os.environ.get("NICHE_PORT") or ROOT / "build" / "native" / "niche-port")
# `make test-asan`: PORT_BIN is the ASan+UBSan build, whose runtime has its own
# allocator (quarantine) and makes system calls of its own.
ASAN = os.environ.get("NICHE_ASAN") == "1"
not_under_asan = pytest.mark.skipif(ASAN, reason="the ASan runtime's own system calls are outside "
                                                 "the allow-list (the production port is tested)")

# Linux generic values, used only to check what the port reports.
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWPID = 0x20000000

# The test modules import the helpers below as `porthelpers`: an alias that
# does not depend on how pytest names conftest modules.
sys.modules.setdefault("porthelpers", sys.modules[__name__])


_CLOSED: list = []  # the ports closed here (kept alive: ids get reused)


def close_and_check(p, timeout: float = 30.0) -> None:
    """Close the port p and check that it and its whole tree are gone.

    The tree is snapshotted from /proc just before closing; every process
    in it (the port included) must have exited and been reaped.
    """
    if any(q is p for q in _CLOSED):
        return
    _CLOSED.append(p)
    try:
        root = p.getpid([], timeout=5)
    except Exception:  # the test may have killed or closed the port
        root = None
    tree = []
    if root is not None:
        tree = [i for i in (identity(x) for x in [root, *descendants(root)]) if i]
    t = CallThread(p.close)
    t.start()
    _, exc = t.outcome(timeout)
    if exc is not None:
        raise exc
    assert wait_until(lambda: not any(still_there(i) for i in tree), 10), (
        "processes left behind after close: "
        + ", ".join(f"{i[0]} {proc_stat(i[0])}" for i in tree if still_there(i))
    )


@pytest.fixture
def port() -> Iterator[niche.Port]:
    """A port with default options; closed afterwards, leaving no process."""
    p = niche.Port()
    try:
        yield p
    finally:
        close_and_check(p)


@pytest.fixture
def make_port():
    """make_port(**kw) starts a port; each is closed and checked at teardown."""
    ports = []

    def make(**kw):
        p = niche.Port(**kw)
        ports.append(p)
        return p

    yield make
    for p in ports:
        close_and_check(p)


@pytest.fixture
def port_pid(port) -> int:
    return port.getpid([], timeout=10)


# --------------------------------------------------------------------------
# /proc helpers


def proc_stat(pid: int) -> tuple[str, int, int] | None:
    """(state, ppid, starttime) of pid, or None when it does not exist."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # comm may contain spaces and parentheses: split after the last ')'.
    rest = data[data.rindex(b")") + 2 :].split()
    state = rest[0].decode()
    ppid = int(rest[1])
    starttime = int(rest[19])
    return state, ppid, starttime


def all_pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def children_of(pid: int) -> list[int]:
    """Direct children of pid (any state, zombies included)."""
    out = []
    for p in all_pids():
        st = proc_stat(p)
        if st is not None and st[1] == pid:
            out.append(p)
    return sorted(out)


def descendants(pid: int) -> list[int]:
    """All descendants of pid, found by walking parent pids in /proc."""
    parent: dict[int, int] = {}
    for p in all_pids():
        st = proc_stat(p)
        if st is not None:
            parent[p] = st[1]
    kids: dict[int, list[int]] = {}
    for p, pp in parent.items():
        kids.setdefault(pp, []).append(p)
    out: list[int] = []
    todo = [pid]
    while todo:
        cur = todo.pop()
        for k in kids.get(cur, []):
            out.append(k)
            todo.append(k)
    return sorted(out)


def identity(pid: int) -> tuple[int, int] | None:
    """(pid, starttime): survives pid reuse checks."""
    st = proc_stat(pid)
    return None if st is None else (pid, st[2])


def still_there(ident: tuple[int, int]) -> bool:
    """True when the very process ident names still exists (zombies count)."""
    st = proc_stat(ident[0])
    return st is not None and st[2] == ident[1]


def gone_or_zombie(ident: tuple[int, int]) -> bool:
    """True when the process ident names no longer runs.

    A zombie counts as gone: an orphan whose new parent (init) does not
    reap it stays a zombie, and that is not the port's doing.
    """
    st = proc_stat(ident[0])
    return st is None or st[2] != ident[1] or st[0] == "Z"


def zombies_of(pid: int) -> list[int]:
    out = []
    for p in children_of(pid):
        st = proc_stat(p)
        if st is not None and st[0] == "Z":
            out.append(p)
    return out


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def proc_uid(pid: int) -> list[int]:
    """The Uid: line of /proc/<pid>/status (real, effective, saved, fs)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return [int(x) for x in line.split()[1:]]
    raise AssertionError(f"no Uid line for {pid}")


def wait_until(pred: Callable[[], bool], timeout: float = 10.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if pred():
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)


def free_pid() -> int:
    """A PID that names no process right now (for ESRCH / bad-pid cases)."""
    used = set(all_pids())
    with open("/proc/sys/kernel/pid_max") as f:
        pid_max = int(f.read())
    for cand in range(pid_max - 1, 1, -1):
        if cand not in used:
            return cand
    raise AssertionError("no free pid")


# --------------------------------------------------------------------------
# port helpers


def chain_of_depth(port, depth: int, timeout: float = 10) -> list[int]:
    """Fork a chain of `depth` processes, each the child of the previous."""
    chain: list[int] = []
    for _ in range(depth):
        pid = port.fork(chain, timeout=timeout)
        chain = chain + [pid]
    return chain


def wait_event(port, chain, timeout: float = 10.0):
    """The next event of chain; fails the test when none comes in time."""
    ev = port.event(chain, timeout=timeout)
    assert ev is not None, f"no event for {chain} within {timeout}s"
    return tuple(ev)


def wait_exit(port, chain, timeout: float = 10.0):
    """The next exit event (exit_status or termsig) of chain, skipping others."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no exit event for {chain} within {timeout}s"
        ev = port.event(chain, timeout=left)
        if ev is not None and ev[0] in ("exit_status", "termsig"):
            return tuple(ev)


def read_stdout(port, chain, n: int, timeout: float = 30.0, stream: str = "stdout") -> bytes:
    """Read at least n bytes of stdout (or stderr) from chain.

    Returns what arrived (possibly more than n); fails when n bytes do not
    arrive within timeout.
    """
    get = getattr(port, stream)
    buf = bytearray()
    deadline = time.monotonic() + timeout
    while len(buf) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{stream} of {chain}: got {len(buf)} of {n} bytes within {timeout}s")
        data = get(chain, timeout=min(left, 1.0))
        assert isinstance(data, bytes)
        buf += data
    return bytes(buf)


def read_all_until_exit(port, chain, timeout: float = 30.0, stream: str = "stdout"):
    """Everything the exec'd process writes until its exit event, and that event.

    After the exit event the stream is drained until it stays empty for a
    moment, so output forwarded together with (or after) the event counts.
    """
    get = getattr(port, stream)
    buf = bytearray()
    deadline = time.monotonic() + timeout
    ev = None
    while ev is None:
        left = deadline - time.monotonic()
        assert left > 0, f"no exit event for {chain} within {timeout}s (got {len(buf)} bytes)"
        buf += get(chain, timeout=min(left, 0.2))
        e = port.event(chain, timeout=0)
        if e is not None and e[0] in ("exit_status", "termsig"):
            ev = tuple(e)
    while True:
        more = get(chain, timeout=0.3)
        if not more:
            break
        buf += more
    return bytes(buf), ev


class CallThread(threading.Thread):
    """Run fn(*args, **kw) in a thread, keeping its result or exception."""

    def __init__(self, fn, *args, **kw):
        super().__init__(daemon=True)
        self.fn, self.args, self.kw = fn, args, kw
        self.result = None
        self.exc: BaseException | None = None

    def run(self):
        try:
            self.result = self.fn(*self.args, **self.kw)
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.exc = e

    def outcome(self, timeout: float):
        self.join(timeout)
        assert not self.is_alive(), f"{self.fn} still running after {timeout}s"
        return self.result, self.exc
