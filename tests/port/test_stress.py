"""Many processes, many threads, and a clean shutdown (issue 3)."""

from __future__ import annotations

import glob
import os
import random
import signal
import subprocess
import sys
import textwrap
import threading

import niche
import pytest
from porthelpers import (
    CallThread,
    chain_of_depth,
    children_of,
    close_and_check,
    descendants,
    fd_count,
    gone_or_zombie,
    identity,
    proc_stat,
    read_stdout,
    still_there,
    wait_event,
    wait_exit,
    wait_until,
    zombies_of,
)

T = 10


def test_1000_fork_exit_cycles_leave_no_zombie_and_no_fd(port, port_pid):
    def cycle(i):
        c = port.fork([], timeout=T)
        port.exit([c], i % 256, timeout=T)
        assert wait_event(port, [c]) == ("exit_status", i % 256)

    cycle(0)
    assert wait_until(lambda: children_of(port_pid) == [], 10)
    fds = fd_count(port_pid)
    for i in range(1, 1000):
        cycle(i)
    assert wait_until(lambda: children_of(port_pid) == [], 10), (
        f"children left: {[(p, proc_stat(p)) for p in children_of(port_pid)]}"
    )
    assert zombies_of(port_pid) == []
    # where the kernel has /proc/<pid>/task/*/children, it agrees
    for task in glob.glob(f"/proc/{port_pid}/task/*/children"):
        with open(task) as f:
            assert f.read().split() == []
    assert port.cpid([], timeout=T) == []
    assert fd_count(port_pid) == fds, sorted(os.listdir(f"/proc/{port_pid}/fd"))


def test_300_fork_exec_cycles_leave_no_zombie_and_no_fd(port, port_pid):
    def cycle(i):
        c = port.fork([], timeout=T)
        port.execvp([c], "/bin/sh", ["sh", "-c", f"echo {i}; echo e{i} >&2"], timeout=T)
        assert read_stdout(port, [c], len(f"{i}\n")) == f"{i}\n".encode()
        assert wait_exit(port, [c]) == ("exit_status", 0)

    cycle(0)
    assert wait_until(lambda: children_of(port_pid) == [], 10)
    fds = fd_count(port_pid)
    for i in range(1, 300):
        cycle(i)
    assert wait_until(lambda: children_of(port_pid) == [], 10)
    assert zombies_of(port_pid) == []
    assert fd_count(port_pid) == fds, sorted(os.listdir(f"/proc/{port_pid}/fd"))


def test_kill_cycles_in_a_chain_leave_no_zombie(port):
    parent = chain_of_depth(port, 3)
    ppid = parent[-1]
    for _ in range(100):
        c = port.fork(parent, timeout=T)
        port.kill(parent, c, "sigkill", timeout=T)
        assert wait_event(port, parent + [c]) == ("termsig", "sigkill")
    assert wait_until(lambda: children_of(ppid) == [], 10)
    assert port.cpid(parent, timeout=T) == []


def test_100_concurrent_children(make_port):
    n = 100
    port = make_port(maxchild=n + 10)
    port_pid = port.getpid([], timeout=T)
    kids = [port.fork([], timeout=T) for _ in range(n)]
    assert len(set(kids)) == n
    assert sorted(c.pid for c in port.cpid([], timeout=T)) == sorted(kids)
    assert children_of(port_pid) == sorted(kids)
    for k in kids:
        assert port.getpid([k], timeout=T) == k
    for k in kids:
        port.execvp([k], "cat", ["cat"], timeout=T)
    for k in kids:
        port.stdin([k], b"%d\n" % k, timeout=T)
    for k in kids:
        assert read_stdout(port, [k], len(b"%d\n" % k)) == b"%d\n" % k
    for k in kids:
        port.eof([k], timeout=T)
    for k in kids:
        assert wait_exit(port, [k]) == ("exit_status", 0)
    assert wait_until(lambda: children_of(port_pid) == [], 10)


def test_calls_from_8_threads_at_once(port, port_pid):
    n_threads, rounds = 8, 200
    kids = [port.fork([], timeout=T) for _ in range(n_threads)]
    grand = [port.fork([k], timeout=T) for k in kids]
    for i, k in enumerate(kids):
        port.setenv([k], "NICHE_THREAD", str(i), 1, timeout=T)
    barrier = threading.Barrier(n_threads)
    errors: list[str] = []

    def worker(i):
        k, g = kids[i], grand[i]
        try:
            barrier.wait(T)
            for r in range(rounds):
                got = port.getpid([k], timeout=T)
                if got != k:
                    errors.append(f"thread {i} round {r}: getpid {got} != {k}")
                got = port.getenv([k], "NICHE_THREAD", timeout=T)
                if got != str(i):
                    errors.append(f"thread {i} round {r}: getenv {got!r} != {i}")
                got = port.getppid([k, g], timeout=T)
                if got != k:
                    errors.append(f"thread {i} round {r}: getppid {got} != {k}")
                got = port.getpid([], timeout=T)
                if got != port_pid:
                    errors.append(f"thread {i} round {r}: root getpid {got}")
                try:
                    port.chdir([k, g], f"/nonexistent/{i}/{r}", timeout=T)
                    errors.append(f"thread {i} round {r}: chdir succeeded")
                except FileNotFoundError:
                    pass
        except BaseException as e:  # noqa: BLE001
            errors.append(f"thread {i}: {e!r}")

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert errors == []


def test_threads_with_stdio_and_forks_at_once(port):
    """Each thread runs its own cat while others fork and exit."""
    errors: list[str] = []

    def cat_worker(i):
        try:
            c = port.fork([], timeout=T)
            port.execvp([c], "cat", ["cat"], timeout=T)
            for r in range(50):
                msg = f"t{i}r{r}\n".encode() * 50
                port.stdin([c], msg, timeout=T)
                got = read_stdout(port, [c], len(msg))
                if got != msg:
                    errors.append(f"cat {i} round {r}: {got[:40]!r}")
            port.eof([c], timeout=T)
            ev = wait_exit(port, [c])
            if ev != ("exit_status", 0):
                errors.append(f"cat {i}: {ev}")
        except BaseException as e:  # noqa: BLE001
            errors.append(f"cat {i}: {e!r}")

    def fork_worker(i):
        try:
            for r in range(50):
                c = port.fork([], timeout=T)
                port.exit([c], r, timeout=T)
                ev = wait_event(port, [c])
                if ev != ("exit_status", r):
                    errors.append(f"fork {i} round {r}: {ev}")
        except BaseException as e:  # noqa: BLE001
            errors.append(f"fork {i}: {e!r}")

    threads = [threading.Thread(target=cat_worker, args=(i,), daemon=True) for i in range(4)]
    threads += [threading.Thread(target=fork_worker, args=(i,), daemon=True) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert errors == []


def test_8_threads_stream_through_their_own_cat(port):
    """Large stdin and stdout of 8 programs at once, each byte-exact."""
    errors: list[str] = []

    def worker(i):
        rng = random.Random(i)
        try:
            c = port.fork([], timeout=T)
            port.execvp([c], "cat", ["cat"], timeout=T)
            for r in range(4):
                data = rng.randbytes(rng.randrange(1, 2 << 20))
                writer = CallThread(port.stdin, [c], data, timeout=60)
                writer.start()
                out = read_stdout(port, [c], len(data), timeout=60)
                _, exc = writer.outcome(60)
                if exc is not None or out != data:
                    errors.append(f"cat {i} round {r}: {exc!r}, {len(out)} of {len(data)}")
            port.eof([c], timeout=T)
            ev = wait_exit(port, [c])
            if ev != ("exit_status", 0):
                errors.append(f"cat {i}: {ev}")
        except BaseException as e:  # noqa: BLE001
            errors.append(f"cat {i}: {e!r}")

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(200)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert errors == []


TRAP_TERM_SCRIPT = "trap '' TERM; echo ready; exec sleep 1000"


def _start_tree(port):
    """A tree with forked, exec'd, deep and namespaced processes."""
    a = port.fork([], timeout=T)
    b = port.fork([a], timeout=T)
    port.fork([a, b], timeout=T)
    cat = port.fork([a], timeout=T)
    port.execvp([a, cat], "cat", ["cat"], timeout=T)
    sleeper = port.fork([], timeout=T)
    port.execvp([sleeper], "sleep", ["sleep", "1000"], timeout=T)
    deep = chain_of_depth(port, 6)
    port.execvp(deep, "sleep", ["sleep", "1000"], timeout=T)
    box = port.clone([], ["clone_newpid"], timeout=T)
    inner = port.fork([box], timeout=T)
    port.execvp([box, inner], "sleep", ["sleep", "1000"], timeout=T)
    return a


def test_close_leaves_no_process():
    port = niche.Port()
    port_pid = port.getpid([], timeout=T)
    _start_tree(port)
    tree = [identity(p) for p in [port_pid, *descendants(port_pid)]]
    # port; a, b, b's child; cat; sleeper; 6 deep; box, inner
    assert len(tree) == 14
    close_and_check(port)
    assert not any(still_there(i) for i in tree)
    # every later call raises PortClosed
    with pytest.raises(niche.PortClosed):
        port.getpid([], timeout=T)


def test_close_kills_a_child_that_ignores_signaloneof():
    port = niche.Port()
    port_pid = port.getpid([], timeout=T)
    c = port.fork([], timeout=T)
    port.execvp([c], "/bin/sh", ["sh", "-c", TRAP_TERM_SCRIPT], timeout=T)
    assert read_stdout(port, [c], 6) == b"ready\n"
    tree = [identity(p) for p in [port_pid, *descendants(port_pid)]]
    close_and_check(port, timeout=60)
    assert not any(still_there(i) for i in tree)


def test_port_killed_takes_its_tree_down():
    port = niche.Port()
    stopped = None
    own_exec: list[int] = []
    try:
        port_pid = port.getpid([], timeout=T)
        _start_tree(port)
        # A SIGKILLed port cannot signal the programs it exec'd itself; every
        # other process sees the end of its input and cleans up below it.
        exe = os.readlink(f"/proc/{port_pid}/exe")
        tree = [
            identity(p)
            for p in descendants(port_pid)
            if proc_stat(p)[1] != port_pid or os.readlink(f"/proc/{p}/exe") == exe
        ]
        own_exec = [p for p in children_of(port_pid) if os.readlink(f"/proc/{p}/exe") != exe]
        assert len(own_exec) == 1  # the sleeper
        stopped = port.fork([], timeout=T)
        port.kill([], stopped, "sigstop", timeout=T)
        assert wait_until(lambda: proc_stat(stopped)[0] == "T", 5)
        call = CallThread(port.getpid, [stopped], timeout=60)
        call.start()
        os.kill(port_pid, signal.SIGKILL)
        # the pending call and every later one raise PortClosed
        _, exc = call.outcome(30)
        assert isinstance(exc, niche.PortClosed), repr(exc)
        with pytest.raises(niche.PortClosed):
            port.getpid([], timeout=T)
        # the children see the end of their control socket and go
        assert wait_until(lambda: all(gone_or_zombie(i) for i in tree), 20), [
            (i[0], proc_stat(i[0])) for i in tree if not gone_or_zombie(i)
        ]
    finally:
        for pid in [stopped, *own_exec]:
            if pid is not None:
                os.kill(pid, signal.SIGKILL)
        port.close()


def test_python_side_dying_takes_the_port_and_tree_down(tmp_path):
    script = textwrap.dedent(
        """
        import sys, time
        import niche
        p = niche.Port()
        c = p.fork([], timeout=10)
        g = p.fork([c], timeout=10)
        p.execvp([c, g], "sleep", ["sleep", "1000"], timeout=10)
        s = p.fork([], timeout=10)
        p.execvp([s], "sleep", ["sleep", "1000"], timeout=10)
        print(p.getpid([], timeout=10), flush=True)
        time.sleep(1000)
        """
    )
    env = dict(os.environ)
    # the same niche package as this test's
    pkg_dir = os.path.dirname(os.path.dirname(os.path.abspath(niche.__file__)))
    env["PYTHONPATH"] = pkg_dir + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, env=env, cwd=str(tmp_path)
    )
    try:
        line = proc.stdout.readline()
        port_pid = int(line)
        assert wait_until(lambda: len(descendants(port_pid)) == 3, 10)  # c, g, s
        tree = [identity(p) for p in [port_pid, *descendants(port_pid)]]
        proc.kill()
        proc.wait(10)
        # the port is our orphan now; it exits on the end of its stdin and
        # takes every process with it
        assert wait_until(lambda: all(gone_or_zombie(i) for i in tree), 20), [
            (i[0], proc_stat(i[0])) for i in tree if not gone_or_zombie(i)
        ]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _ipc_fds(pid: int) -> set[str]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith(("pipe:", "socket:")):
            out.add(target)
    return out


def test_children_hold_no_descriptor_of_their_siblings(port):
    """A child holding a sibling's pipe or control socket would keep that
    sibling from ever seeing the end of its input (and its output open)."""
    kids = [port.fork([], timeout=T) for _ in range(4)]
    for k in kids[:2]:
        port.execvp([k], "sleep", ["sleep", "100"], timeout=T)
    kids += [port.fork([], timeout=T) for _ in range(4)]
    deep = port.fork([kids[-1]], timeout=T)
    fds = {p: _ipc_fds(p) for p in [*kids, deep]}
    # siblings share nothing (a parent and its child do share their pipes)
    pairs = [(a, b) for i, a in enumerate(kids) for b in kids[i + 1 :]]
    pairs += [(deep, k) for k in kids[:-1]]
    for a, b in pairs:
        shared = fds[a] & fds[b]
        assert not shared, f"{a} and {b} share {shared}"


def test_calls_racing_a_dying_process_never_hang(port):
    """Calls sent while the process exits get an answer, ProcessExited or
    BadPid: never silence."""
    outcomes: dict[str, int] = {}
    for i in range(100):
        chain = chain_of_depth(port, 1 + i % 3)
        stop = threading.Event()

        def hammer(chain=chain, stop=stop):
            while not stop.is_set():
                try:
                    port.getpid(chain, timeout=10)
                    key = "answered"
                except (niche.ProcessExited, niche.BadPid) as e:
                    key = type(e).__name__
                    stop.set()
                except TimeoutError:
                    key = "TimeoutError"
                    stop.set()
                outcomes[key] = outcomes.get(key, 0) + 1

        t = threading.Thread(target=hammer, daemon=True)
        t.start()
        port.exit(chain, 0, timeout=T)
        t.join(30)
        stop.set()
        assert not t.is_alive()
        assert wait_event(port, chain) == ("exit_status", 0)
        if len(chain) > 1:
            port.exit(chain[:1], 0, timeout=T)
            wait_event(port, chain[:1])
    assert "TimeoutError" not in outcomes, outcomes
