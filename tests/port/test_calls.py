"""Process, credential and resource calls through the port (issue 4).

Ported from alcove's suite: setuid/setgid/setgroups and their getters,
setpgid, getsid/setsid, get/setpriority, gethostname, setrlimit/getrlimit
(and nofile limiting maxchild), prctl PR_SET_NAME, stress (1000 calls, 100
forks), a 5-deep pipeline, execvp in the middle of a chain, stderr,
PIPE_BUF atomicity, flowcontrol, a process-tree leader exiting, the
BSD-only calls, and bad arguments that never harm the port.

The namespace, file, signal and filter calls are in test_calls_ns.py,
test_calls_fs.py, test_calls_signals.py and test_calls_filter.py; the
unprivileged variants in test_calls_unprivileged.py.
"""

from __future__ import annotations

import errno
import os
import resource
import signal
import threading
import time

import niche
import pytest
from porthelpers import (
    CLONE_NEWNS,
    chain_of_depth,
    children_of,
    descendants,
    free_pid,
    gone_or_zombie,
    identity,
    proc_stat,
    proc_uid,
    read_all_until_exit,
    read_stdout,
    still_there,
    wait_event,
    wait_exit,
    wait_until,
    zombies_of,
)

T = 10
NOBODY = 65534

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def _status_line(pid: int, key: str) -> list[str]:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return line.split()[1:]
    raise AssertionError(f"no {key} line for {pid}")


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    return data[data.rindex(")") + 2 :].split()


# --------------------------------------------------------------------------
# credentials


@root_only
def test_setuid_setgid_65534(port):
    c = port.fork([], timeout=T)
    assert port.getuid([c], timeout=T) == 0
    assert port.getresuid([c], timeout=T) == (0, 0, 0)
    assert port.setgid([c], NOBODY, timeout=T) is None
    assert port.setuid([c], NOBODY, timeout=T) is None
    assert port.getuid([c], timeout=T) == NOBODY
    assert port.getgid([c], timeout=T) == NOBODY
    assert port.getresuid([c], timeout=T) == (NOBODY, NOBODY, NOBODY)
    assert port.getresgid([c], timeout=T) == (NOBODY, NOBODY, NOBODY)
    assert proc_uid(c) == [NOBODY] * 4
    assert _status_line(c, "Gid") == [str(NOBODY)] * 4
    # for good: root cannot be regained
    with pytest.raises(PermissionError) as ei:
        port.setuid([c], 0, timeout=T)
    assert ei.value.errno == errno.EPERM
    # only that child changed
    assert port.getuid([], timeout=T) == 0
    # children forked later and exec'd programs inherit it
    g = port.fork([c], timeout=T)
    assert port.getresuid([c, g], timeout=T) == (NOBODY, NOBODY, NOBODY)
    port.execvp([c, g], "id", ["id", "-u"], timeout=T)
    out, ev = read_all_until_exit(port, [c, g])
    assert (out, ev) == (b"65534\n", ("exit_status", 0))


@root_only
def test_setresuid_setresgid(port):
    c = port.fork([], timeout=T)
    port.setresgid([c], 1001, 1002, 1003, timeout=T)
    assert port.getresgid([c], timeout=T) == (1001, 1002, 1003)
    assert port.getgid([c], timeout=T) == 1001
    port.setresuid([c], 2001, 2002, 0, timeout=T)
    assert port.getresuid([c], timeout=T) == (2001, 2002, 0)
    assert proc_uid(c)[:3] == [2001, 2002, 0]
    # the saved set-user-ID 0 lets it back
    port.setresuid([c], 0, 0, 0, timeout=T)
    assert port.getresuid([c], timeout=T) == (0, 0, 0)


@root_only
def test_setgroups(port):
    c = port.fork([], timeout=T)
    assert port.setgroups([c], [1, 2, 3000], timeout=T) is None
    assert sorted(port.getgroups([c], timeout=T)) == [1, 2, 3000]
    assert _status_line(c, "Groups") == ["1", "2", "3000"]
    port.setgroups([c], [], timeout=T)
    assert port.getgroups([c], timeout=T) == []
    assert _status_line(c, "Groups") == []
    # dropped to nobody, it cannot set them any more
    port.setgid([c], NOBODY, timeout=T)
    port.setuid([c], NOBODY, timeout=T)
    with pytest.raises(PermissionError):
        port.setgroups([c], [0], timeout=T)
    assert port.getgroups([c], timeout=T) == []


# --------------------------------------------------------------------------
# process groups and sessions


def test_setpgid(port):
    c = port.fork([], timeout=T)
    assert port.getpgrp([c], timeout=T) == port.getpgrp([], timeout=T)
    assert port.setpgid([c], 0, 0, timeout=T) is None
    assert port.getpgrp([c], timeout=T) == c
    assert int(_stat_fields(c)[2]) == c  # the kernel's pgrp
    # its child joins it, then moves into a group of its own
    g = port.fork([c], timeout=T)
    assert port.getpgrp([c, g], timeout=T) == c
    port.setpgid([c], g, g, timeout=T)
    assert port.getpgrp([c, g], timeout=T) == g
    port.setpgid([c, g], 0, c, timeout=T)
    assert port.getpgrp([c, g], timeout=T) == c
    with pytest.raises(ProcessLookupError):
        port.setpgid([c], free_pid(), 0, timeout=T)


def test_getsid_setsid(port):
    # the port runs in a session of its own (started with start_new_session)
    assert port.getsid([], 0, timeout=T) == port.pid
    with pytest.raises(PermissionError):
        port.setsid([], timeout=T)  # a session leader cannot make another
    c = port.fork([], timeout=T)
    assert port.getsid([c], 0, timeout=T) == port.pid
    assert port.getsid([], c, timeout=T) == port.pid
    assert port.setsid([c], timeout=T) == c
    assert port.getsid([c], 0, timeout=T) == c
    assert port.getpgrp([c], timeout=T) == c
    assert int(_stat_fields(c)[3]) == c  # the kernel's session
    assert os.getsid(c) == c
    with pytest.raises(ProcessLookupError):
        port.getsid([c], free_pid(), timeout=T)


# --------------------------------------------------------------------------
# priority, hostname


def test_getpriority_setpriority(port):
    c = port.fork([], timeout=T)
    base = os.getpriority(os.PRIO_PROCESS, c)
    assert port.getpriority([c], "PRIO_PROCESS", 0, timeout=T) == base
    assert port.getpriority([], "prio_process", c, timeout=T) == base
    port.setpriority([c], "PRIO_PROCESS", 0, 10, timeout=T)
    assert port.getpriority([c], "PRIO_PROCESS", 0, timeout=T) == 10
    assert os.getpriority(os.PRIO_PROCESS, c) == 10
    if os.geteuid() == 0:  # raising the priority needs privilege
        port.setpriority([c], "PRIO_PROCESS", 0, -5, timeout=T)
        assert os.getpriority(os.PRIO_PROCESS, c) == -5
    # out of range is clamped by the kernel, as in C
    port.setpriority([c], "PRIO_PROCESS", 0, 100, timeout=T)
    assert port.getpriority([c], "PRIO_PROCESS", 0, timeout=T) == 19
    with pytest.raises(ProcessLookupError):
        port.getpriority([c], "PRIO_PROCESS", free_pid(), timeout=T)


def test_gethostname(port):
    c = port.fork([], timeout=T)
    assert port.gethostname([], timeout=T) == os.uname().nodename
    assert port.gethostname([c], timeout=T) == os.uname().nodename


# --------------------------------------------------------------------------
# resource limits


def test_setrlimit_nofile_64_then_getrlimit(port):
    c = port.fork([], timeout=T)
    assert port.setrlimit([c], "RLIMIT_NOFILE", (64, 64), timeout=T) is None
    got = port.getrlimit([c], "RLIMIT_NOFILE", timeout=T)
    assert got == niche.Rlimit(64, 64)
    assert isinstance(got, niche.Rlimit) and (got.cur, got.max) == (64, 64)
    assert resource.prlimit(c, resource.RLIMIT_NOFILE) == (64, 64)
    # a list works as a pair too, and cur below max
    port.setrlimit([c], "rlimit_nofile", [32, 64], timeout=T)
    assert port.getrlimit([c], "RLIMIT_NOFILE", timeout=T) == niche.Rlimit(32, 64)
    with pytest.raises(OSError) as ei:
        port.setrlimit([c], "RLIMIT_NOFILE", (128, 64), timeout=T)  # cur above max
    assert ei.value.errno == errno.EINVAL


def test_getrlimit_agrees_with_the_kernel_unlimited_included(port):
    c = port.fork([], timeout=T)
    for name in ("RLIMIT_NOFILE", "RLIMIT_CORE", "RLIMIT_STACK", "RLIMIT_AS", "RLIMIT_CPU"):
        res = getattr(resource, name)
        assert port.getrlimit([c], name, timeout=T) == resource.prlimit(c, res), name
    # unlimited round-trips as Python's RLIM_INFINITY
    inf = resource.RLIM_INFINITY
    port.setrlimit([c], "RLIMIT_CPU", (inf, inf), timeout=T)
    assert port.getrlimit([c], "RLIMIT_CPU", timeout=T) == niche.Rlimit(inf, inf)


def test_nofile_32_limits_maxchild_to_4_and_the_fifth_fork_is_eagain(port):
    c = port.fork([], timeout=T)
    port.setrlimit([c], "RLIMIT_NOFILE", (32, 32), timeout=T)
    assert port.getopt([c], "maxchild", timeout=T) == 4
    kids = [port.fork([c], timeout=T) for _ in range(4)]
    assert len(set(kids)) == 4
    for k in kids:
        assert port.getpid([c, k], timeout=T) == k
    with pytest.raises(BlockingIOError) as ei:
        port.fork([c], timeout=T)
    assert ei.value.errno == errno.EAGAIN
    assert sorted(p.pid for p in port.cpid([c], timeout=T)) == sorted(kids)
    assert children_of(c) == sorted(kids)
    # one exits: there is room again
    port.exit([c, kids[0]], 0, timeout=T)
    assert wait_exit(port, [c, kids[0]]) == ("exit_status", 0)
    k5 = port.fork([c], timeout=T)
    assert port.getpid([c, k5], timeout=T) == k5
    # the limit is the process's own: the port itself is not limited
    assert port.getopt([], "maxchild", timeout=T) > 4


def test_nofile_64_gives_maxchild_12(port):
    c = port.fork([], timeout=T)
    port.setrlimit([c], "RLIMIT_NOFILE", (64, 64), timeout=T)
    assert port.getopt([c], "maxchild", timeout=T) == 12


# --------------------------------------------------------------------------
# prctl PR_SET_NAME, setproctitle


def _comm(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as f:
        return f.read().rstrip("\n")


def test_prctl_set_name_read_back_with_get_name(port):
    c = port.fork([], timeout=T)
    res, arg2, arg3, arg4, arg5 = port.prctl([c], "PR_SET_NAME", b"niche-proc\0", timeout=T)
    assert res == 0 and (arg3, arg4, arg5) == (0, 0, 0)
    assert _comm(c) == "niche-proc"
    res, name, *_ = port.prctl([c], "PR_GET_NAME", bytes(16), timeout=T)
    assert res == 0 and len(name) == 16
    assert name.split(b"\0")[0] == b"niche-proc"
    # names are cut to 15 bytes by the kernel
    port.prctl([c], "pr_set_name", b"a-very-long-process-name\0", timeout=T)
    _, name, *_ = port.prctl([c], "PR_GET_NAME", bytes(16), timeout=T)
    assert name.split(b"\0")[0] == b"a-very-long-pro"
    assert _comm(c) == "a-very-long-pro"
    assert _comm(port.pid) != "a-very-long-pro"


def test_setproctitle_sets_the_name(port):
    c = port.fork([], timeout=T)
    assert port.setproctitle([c], "niche-title", timeout=T) is None
    assert _comm(c) == "niche-title"
    _, name, *_ = port.prctl([c], "PR_GET_NAME", bytes(16), timeout=T)
    assert name.split(b"\0")[0] == b"niche-title"


def test_prctl_with_an_unknown_option_is_einval(port):
    c = port.fork([], timeout=T)
    with pytest.raises(OSError) as ei:
        port.prctl([c], 0x7FFF_FFF0, timeout=T)
    assert ei.value.errno == errno.EINVAL
    assert port.getpid([c], timeout=T) == c


# --------------------------------------------------------------------------
# stress


def test_1000_calls(port):
    a = port.fork([], timeout=T)
    b = port.fork([a], timeout=T)
    t0 = time.monotonic()
    for i in range(1000):
        kind = i % 4
        if kind == 0:
            assert port.getpid([a, b], timeout=T) == b
        elif kind == 1:
            port.setenv([a, b], "NICHE_N", str(i), 1, timeout=T)
        elif kind == 2:
            assert port.getenv([a, b], "NICHE_N", timeout=T) == str(i - 1)
        else:
            assert port.getppid([a], timeout=T) == port.pid
    assert time.monotonic() - t0 < 60
    assert port.protocol_errors == []


def test_1000_calls_from_4_threads(port):
    kids = [port.fork([], timeout=T) for _ in range(4)]
    errors: list[BaseException] = []

    def run(k):
        try:
            for _ in range(250):
                assert port.getpid([k], timeout=T) == k
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in kids]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert errors == []


def test_100_forks(port):
    c = port.fork([], timeout=T)
    kids = [port.fork([c], timeout=T) for _ in range(100)]
    assert len(set(kids)) == 100
    for k in kids:
        assert port.getpid([c, k], timeout=T) == k
    assert sorted(p.pid for p in port.cpid([c], timeout=T)) == sorted(kids)
    assert children_of(c) == sorted(kids)
    for k in kids:
        port.exit([c, k], 0, timeout=T)
    for k in kids:
        assert wait_exit(port, [c, k]) == ("exit_status", 0)
    assert wait_until(lambda: port.cpid([c], timeout=T) == [] and not zombies_of(c), 10)
    assert children_of(c) == []
    # the process goes on forking
    k = port.fork([c], timeout=T)
    assert port.getpid([c, k], timeout=T) == k


# --------------------------------------------------------------------------
# pipelines


def test_5_deep_pipeline_of_exec_d_processes(port):
    """Five programs, each at a deeper level of the tree, wired through the
    port's stdio: what one prints is fed to the next."""
    stages = [
        ["tr", "a-z", "A-Z"],
        ["rev"],
        ["sed", "-u", "s/^/> /"],
        ["tr", "-d", "0-9"],
        ["cat", "-n"],
    ]
    holders = chain_of_depth(port, 5)
    chains = []
    for depth, argv in enumerate(stages, 1):
        pid = port.fork(holders[:depth], timeout=T)
        chain = [*holders[:depth], pid]
        port.execvp(chain, argv[0], argv, timeout=T)
        chains.append(chain)
    assert [len(ch) for ch in chains] == [2, 3, 4, 5, 6]
    lines = [f"line {i} abc" for i in range(200)]
    data = "".join(x + "\n" for x in lines).encode()
    port.stdin(chains[0], data, timeout=T)
    port.eof(chains[0], timeout=T)
    for src, dst in zip(chains, chains[1:], strict=False):
        out, ev = read_all_until_exit(port, src)
        assert ev == ("exit_status", 0)
        port.stdin(dst, out, timeout=T)
        port.eof(dst, timeout=T)
    out, ev = read_all_until_exit(port, chains[-1])
    assert ev == ("exit_status", 0)
    want = [
        f"{n + 1:6d}\t> " + "".join(ch for ch in x.upper()[::-1] if not ch.isdigit())
        for n, x in enumerate(lines)
    ]
    assert out.decode().splitlines() == want


def test_execvp_in_the_middle_of_a_chain(port):
    a, b, c = chain_of_depth(port, 3)
    below = identity(c)
    port.execvp([a, b], "cat", ["cat"], timeout=T)
    # b is cat now; its former child loses its parent's loop and goes
    assert wait_until(lambda: gone_or_zombie(below), 10)
    with pytest.raises(niche.BadPid):
        port.getpid([a, b], timeout=T)
    with pytest.raises(niche.BadPid):
        port.getpid([a, b, c], timeout=T)
    # its parent keeps serving calls, also while cat runs
    assert port.getpid([a], timeout=T) == a
    d = port.fork([a], timeout=T)
    assert port.getppid([a, d], timeout=T) == a
    port.stdin([a, b], b"through the middle\n", timeout=T)
    assert read_stdout(port, [a, b], 19) == b"through the middle\n"
    assert port.getcwd([a], timeout=T)
    port.eof([a, b], timeout=T)
    assert wait_exit(port, [a, b]) == ("exit_status", 0)
    assert port.getpid([a, d], timeout=T) == d


def test_stderr_of_sh_reaches_stderr(port):
    chain = chain_of_depth(port, 3)
    port.execvp(chain, "/bin/sh", ["sh", "-c", "echo to-out; echo to-err >&2; exit 3"], timeout=T)
    err = read_stdout(port, chain, 7, stream="stderr")
    out, ev = read_all_until_exit(port, chain)
    assert err == b"to-err\n"
    assert out == b"to-out\n"
    assert ev == ("exit_status", 3)
    assert port.stderr(chain, timeout=0.2) == b""


def test_pipe_buf_writes_are_atomic(port, tmp_path):
    """Several writers write PIPE_BUF-sized records into one pipe (a fifo
    read by cat): no record is ever split by another's bytes."""
    pipe_buf = os.pathconf("/", "PC_PIPE_BUF")
    fifo = str(tmp_path / "fifo")
    port.mkfifo([], fifo, 0o600, timeout=T)
    reader = port.fork([], timeout=T)
    port.execvp([reader], "cat", ["cat", fifo], timeout=T)
    writers = [port.fork([], timeout=T) for _ in range(4)]
    fds = [port.open([w], fifo, "O_WRONLY", timeout=T) for w in writers]
    rounds = 40
    errors: list[BaseException] = []

    def write(w, fd, letter):
        try:
            for _ in range(rounds):
                assert port.write([w], fd, letter * pipe_buf, timeout=T) == pipe_buf
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(w, fd, b"ABCD"[i : i + 1]))
               for i, (w, fd) in enumerate(zip(writers, fds, strict=True))]
    for t in threads:
        t.start()
    total = 4 * rounds * pipe_buf
    out = read_stdout(port, [reader], total, timeout=60)
    for t in threads:
        t.join(30)
    assert errors == []
    assert len(out) == total
    for off in range(0, total, pipe_buf):
        rec = out[off : off + pipe_buf]
        assert rec == rec[:1] * pipe_buf, f"record at {off} interleaved"
    for letter in b"ABCD":
        assert out.count(letter) == rounds * pipe_buf
    for w in writers:
        port.exit([w], 0, timeout=T)
    assert wait_exit(port, [reader]) == ("exit_status", 0)


def test_pipe_buf_writes_of_exec_d_writers_are_atomic(port):
    """The same through the port's own stdout pipe: four sh loops write
    PIPE_BUF-sized lines into the stdout of one exec'd process."""
    pipe_buf = os.pathconf("/", "PC_PIPE_BUF")
    c = port.fork([], timeout=T)
    # printf of one PIPE_BUF-sized line is a single write(2)
    line = "%s" + "\\n"
    script = (
        f'for l in A B C D; do (x=$(printf "%0{pipe_buf - 1}d" 0 | tr 0 $l); '
        f'i=0; while [ $i -lt 50 ]; do printf "{line}" "$x"; i=$((i+1)); done) & done; wait'
    )
    port.execvp([c], "/bin/sh", ["sh", "-c", script], timeout=T)
    out, ev = read_all_until_exit(port, [c], timeout=60)
    assert ev == ("exit_status", 0)
    assert len(out) == 4 * 50 * pipe_buf
    recs = out.split(b"\n")[:-1]
    assert len(recs) == 200
    for r in recs:
        assert len(r) == pipe_buf - 1 and r == r[:1] * len(r)


# --------------------------------------------------------------------------
# flowcontrol


def test_flowcontrol_0_reads_nothing_until_set(port):
    c = port.fork([], timeout=T)
    assert port.setcpid([], c, "flowcontrol", 0, timeout=T) is True
    port.execvp([c], "/bin/sh", ["sh", "-c", "echo one; sleep 0.5; echo two; exec cat"], timeout=T)
    assert port.stdout([c], timeout=1.5) == b""
    assert port.getcpid([], c, "flowcontrol", timeout=T) == 0
    # one read allowed: the pending bytes (both lines by now) come at once
    assert port.setcpid([], c, "flowcontrol", 1, timeout=T) is True
    assert read_stdout(port, [c], 8) == b"one\ntwo\n"
    assert port.getcpid([], c, "flowcontrol", timeout=T) == 0
    port.stdin([c], b"three\n", timeout=T)
    assert port.stdout([c], timeout=1) == b""
    port.setcpid([], c, "flowcontrol", -1, timeout=T)
    assert read_stdout(port, [c], 6) == b"three\n"


def test_flowcontrol_2_gives_exactly_two_reads_then_stops(port):
    c = port.fork([], timeout=T)
    assert port.setcpid([], c, "flowcontrol", 2, timeout=T) is True
    script = "for i in 1 2 3 4 5; do echo $i; sleep 0.4; done; exec cat"
    port.execvp([c], "/bin/sh", ["sh", "-c", script], timeout=T)
    got = read_stdout(port, [c], 4)
    # the lines come 0.4 s apart: each read takes one; two reads, then none
    got += port.stdout([c], timeout=2.5)
    assert got == b"1\n2\n"
    assert port.getcpid([], c, "flowcontrol", timeout=T) == 0
    port.setcpid([], c, "flowcontrol", -1, timeout=T)
    assert read_stdout(port, [c], 6) == b"3\n4\n5\n"


def test_flowcontrol_does_not_stop_other_children(port):
    held = port.fork([], timeout=T)
    free = port.fork([], timeout=T)
    port.setcpid([], held, "flowcontrol", 0, timeout=T)
    port.execvp([held], "/bin/sh", ["sh", "-c", "echo held; exec cat"], timeout=T)
    port.execvp([free], "cat", ["cat"], timeout=T)
    port.stdin([free], b"free\n", timeout=T)
    assert read_stdout(port, [free], 5) == b"free\n"
    assert port.stdout([held], timeout=0.3) == b""


# --------------------------------------------------------------------------
# a process-tree leader exiting


def test_a_leader_exiting_takes_its_tree_down_and_events_arrive(port, port_pid):
    leader = port.fork([], timeout=T)
    worker = port.fork([leader], timeout=T)
    sub = port.fork([leader, worker], timeout=T)
    prog = port.fork([leader], timeout=T)
    port.execvp([leader, prog], "sleep", ["sleep", "100"], timeout=T)
    tree = [identity(p) for p in (leader, worker, sub, prog)]
    port.exit([leader], 0, timeout=T)
    assert wait_exit(port, [leader]) == ("exit_status", 0)
    # the exec'd program got the leader's signaloneof (SIGTERM)
    assert wait_exit(port, [leader, prog]) == ("termsig", "sigterm")
    assert wait_until(lambda: not any(still_there(i) for i in tree), 10)
    assert zombies_of(port_pid) == []
    assert port.cpid([], timeout=T) == []
    for chain in ([leader], [leader, worker], [leader, worker, sub]):
        with pytest.raises(niche.BadPid):
            port.getpid(chain, timeout=T)
    # the port goes on
    c = port.fork([], timeout=T)
    assert port.getpid([c], timeout=T) == c


def test_a_leader_killed_leaves_no_forked_process_behind(port, port_pid):
    leader = port.fork([], timeout=T)
    kids = [port.fork([leader], timeout=T) for _ in range(3)]
    grand = port.fork([leader, kids[0]], timeout=T)
    tree = [identity(p) for p in (leader, *kids, grand)]
    os.kill(leader, signal.SIGKILL)
    assert wait_event(port, [leader]) == ("termsig", "sigkill")
    # every forked process below notices its parent is gone and exits
    assert wait_until(lambda: all(gone_or_zombie(i) for i in tree), 10)
    assert zombies_of(port_pid) == []
    with pytest.raises(niche.BadPid):
        port.getpid([leader, kids[1]], timeout=T)


# --------------------------------------------------------------------------
# BSD-only calls


BSD_CALLS = [
    ("jail", (b"",), "FreeBSD"),
    ("jail_attach", (1,), "FreeBSD"),
    ("jail_remove", (1,), "FreeBSD"),
    ("pledge", ("stdio", ""), "OpenBSD"),
    ("unveil", ("/", "r"), "OpenBSD"),
    ("cap_enter", (), "FreeBSD"),
    ("cap_getmode", (), "FreeBSD"),
    ("cap_fcntls_limit", (0, 0), "FreeBSD"),
    ("cap_ioctls_limit", (0, [1]), "FreeBSD"),
    ("cap_rights_limit", (0, [1]), "FreeBSD"),
    ("procctl", (0, 0, 0, None), "FreeBSD"),
]


@pytest.mark.parametrize(("call", "args", "platform"), BSD_CALLS, ids=[c[0] for c in BSD_CALLS])
def test_bsd_only_calls_raise_undefined_naming_the_platform(port, call, args, platform):
    c = port.fork([], timeout=T)
    for chain in ([], [c]):
        with pytest.raises(niche.Undefined) as ei:
            getattr(port, call)(chain, *args, timeout=T)
        msg = str(ei.value)
        assert platform in msg and call in msg
    child = niche.Process(port, [c])
    with pytest.raises(niche.Undefined):
        getattr(child, call)(*args, timeout=T)
    assert port.getpid([c], timeout=T) == c


# --------------------------------------------------------------------------
# bad arguments never harm the port


def _still_serving(port, c):
    assert port.getpid([], timeout=T) == port.pid
    assert port.getpid([c], timeout=T) == c
    g = port.fork([c], timeout=T)
    assert port.getpid([c, g], timeout=T) == g
    port.exit([c, g], 0, timeout=T)
    assert wait_exit(port, [c, g]) == ("exit_status", 0)
    assert port.protocol_errors == []


WRONG_TYPES = [
    ("chdir", (42,)),
    ("chdir", (None,)),
    ("open", ("/dev/null", "O_RDONLY", "0644")),
    ("open", ("/dev/null", 1.5)),
    ("kill", ("1", 0)),
    ("kill", (1, True)),
    ("setrlimit", ("RLIMIT_NOFILE", 64)),
    ("setrlimit", ("RLIMIT_NOFILE", (1, 2, 3))),
    ("setgroups", ([1, "2"],)),
    ("setgroups", ("12",)),
    ("write", (1, "text")),
    ("read", (0, "10")),
    ("select", ([None], [], [], 0)),
    ("execvp", ("true", "true")),
    ("execve", ("/bin/true", ["true"], "A=1")),
    ("prctl", ("PR_SET_NAME", 1.5)),
    ("ioctl", (0, "FIONREAD", "text")),
    ("sethostname", (["x"],)),
    ("setenv", ("A", 1, 1)),
]


@pytest.mark.parametrize(("call", "args"), WRONG_TYPES,
                         ids=[f"{c}-{i}" for i, (c, _) in enumerate(WRONG_TYPES)])
def test_wrong_type_raises_typeerror(port, call, args):
    c = port.fork([], timeout=T)
    with pytest.raises(TypeError):
        getattr(port, call)([c], *args, timeout=T)
    _still_serving(port, c)


UNKNOWN_CONSTANTS = [
    ("open", ("/dev/null", "O_NO_SUCH_FLAG")),
    ("open", ("/dev/null", ["O_RDONLY", "O_NO_SUCH_FLAG"])),
    ("kill", (1, "SIGNOPE")),
    ("setrlimit", ("RLIMIT_NOPE", (1, 1))),
    ("getrlimit", ("RLIMIT_NOPE",)),
    ("clone", ("CLONE_NOPE",)),
    ("unshare", (["CLONE_NEWUTS", "CLONE_NOPE"],)),
    ("prctl", ("PR_NOPE",)),
    ("ioctl", (0, "NO_SUCH_IOCTL", 0)),
    ("sigaction", ("SIGNOPE", "sig_ign")),
    ("mount", ("none", "/", "", "MS_NOPE", "")),
    ("socket", ("AF_NOPE", "SOCK_STREAM")),
    ("fcntl", (0, "F_NOPE", 0)),
    ("lseek", (0, 0, "SEEK_NOPE")),
    ("getpriority", ("PRIO_NOPE", 0)),
    ("seccomp", ("SECCOMP_NOPE", 0, b"")),
]


@pytest.mark.parametrize(("call", "args"), UNKNOWN_CONSTANTS,
                         ids=[f"{c}-{i}" for i, (c, _) in enumerate(UNKNOWN_CONSTANTS)])
def test_unknown_constant_name_raises_enotsup(port, call, args):
    c = port.fork([], timeout=T)
    with pytest.raises(OSError) as ei:
        getattr(port, call)([c], *args, timeout=T)
    assert ei.value.errno == errno.ENOTSUP
    _still_serving(port, c)


def test_unknown_constant_lookups_return_none(port):
    for fn in ("clone_constant", "signal_constant", "file_constant", "ioctl_constant", "mount_constant",
               "prctl_constant", "rlimit_constant", "fcntl_constant", "syscall_constant",
               "seccomp_constant"):
        assert getattr(port, fn)([], "NO_SUCH_CONSTANT_NAME", timeout=T) is None, fn
    assert port.rlimit_constant([], "rlimit_nofile", timeout=T) == resource.RLIMIT_NOFILE
    assert port.signal_constant([], "SIGKILL", timeout=T) == signal.SIGKILL
    assert port.clone_constant([], "CLONE_NEWNS", timeout=T) == CLONE_NEWNS


NEGATIVE_FD = [
    ("read", (-1, 10)),
    ("write", (-1, b"x")),
    ("lseek", (-1, 0, "SEEK_SET")),
    ("fcntl", (-1, "F_GETFD", 0)),
    ("close", (-1,)),
    ("setns", (-1, 0)),
    ("ioctl", (-1, "FIONREAD", bytes(4))),
    ("connect", (-1, b"\x01\x00/x\x00")),
]


@pytest.mark.parametrize(("call", "args"), NEGATIVE_FD, ids=[c for c, _ in NEGATIVE_FD])
def test_negative_fd_raises_ebadf(port, call, args):
    c = port.fork([], timeout=T)
    with pytest.raises(OSError) as ei:
        getattr(port, call)([c], *args, timeout=T)
    assert ei.value.errno == errno.EBADF
    _still_serving(port, c)


def test_select_with_a_negative_fd_is_an_oserror(port):
    c = port.fork([], timeout=T)
    with pytest.raises(OSError) as ei:
        port.select([c], [-1], [], [], 0, timeout=T)
    assert ei.value.errno in (errno.EBADF, errno.EINVAL)
    _still_serving(port, c)


NUL_PATHS = [
    ("chdir", ("/tmp\0/etc",)),
    ("open", ("/dev/null\0x", "O_RDONLY")),
    ("readdir", ("/\0",)),
    ("mkdir", ("/tmp/a\0b", 0o755)),
    ("unlink", ("/tmp/x\0",)),
    ("symlink", ("a", "/tmp/b\0c")),
    ("chroot", (b"/\0",)),
    ("execvp", ("sh", ["sh", "-c\0"])),
    ("execve", ("/bin/sh", ["sh"], ["A=\0"])),
    ("sethostname", ("a\0b",)),
    ("setenv", ("A\0B", "1", 1)),
    ("mount", ("none", "/\0", "", 0, "")),
]


@pytest.mark.parametrize(("call", "args"), NUL_PATHS, ids=[f"{c}-{i}" for i, (c, _) in enumerate(NUL_PATHS)])
def test_path_with_nul_raises_valueerror(port, call, args):
    c = port.fork([], timeout=T)
    cwd = port.getcwd([c], timeout=T)
    with pytest.raises(ValueError):
        getattr(port, call)([c], *args, timeout=T)
    assert port.getcwd([c], timeout=T) == cwd  # nothing was done, not even a cut path
    _still_serving(port, c)


def test_bad_chains_raise_before_sending(port):
    with pytest.raises(TypeError):
        port.getpid("1", timeout=T)
    with pytest.raises(TypeError):
        port.getpid([1.0], timeout=T)
    with pytest.raises(ValueError):
        port.getpid([-1], timeout=T)
    with pytest.raises(niche.BadPid):
        port.getpid([free_pid()], timeout=T)
    assert port.getpid([], timeout=T) == port.pid


def test_integers_out_of_the_64_bit_range_raise_valueerror(port):
    c = port.fork([], timeout=T)
    with pytest.raises(ValueError):
        port.read([c], 2**64, 1, timeout=T)
    with pytest.raises(ValueError):
        port.kill([c], c, -(2**63) - 1, timeout=T)
    _still_serving(port, c)


# Regression (found by this suite, fixed in 4a8397e): integers beyond the C
# type's range were silently truncated (fd 2**32+1 became fd 1, uid 2**32 uid 0).


def test_fd_beyond_int_range_is_not_another_fd(port):
    c = port.fork([], timeout=T)
    with pytest.raises((OSError, ValueError, OverflowError)):
        port.write([c], 2**32 + 1, b"oops\n", timeout=T)  # must not write to fd 1
    assert port.stdout([c], timeout=0.5) == b""


@root_only
def test_uid_beyond_range_does_not_become_another_uid(port):
    c = port.fork([], timeout=T)
    with pytest.raises((OSError, ValueError, OverflowError)):
        port.setuid([c], 2**32 + NOBODY, timeout=T)  # must not drop to 65534 ...
    assert port.getuid([c], timeout=T) == 0
    with pytest.raises((OSError, ValueError, OverflowError)):
        port.setuid([c], 2**32, timeout=T)  # ... nor "succeed" staying root


# --------------------------------------------------------------------------
# clone flags that would break the event loop


def _close_killing_leftovers(p) -> list[int]:
    """Close p; SIGKILL and return whatever of its tree outlived the close."""
    try:
        root = p.getpid([], timeout=2)
        tree = [i for i in (identity(x) for x in [root, *descendants(root)]) if i]
    except Exception:  # noqa: BLE001 - the port may be wedged
        tree = []
    p.close(timeout=15)
    left = [i for i in tree if still_there(i) and proc_stat(i[0])[0] != "Z"]
    for pid, _ in left:
        os.kill(pid, signal.SIGKILL)
    return [pid for pid, _ in left]


@pytest.mark.parametrize("flag", ["CLONE_VM", "CLONE_THREAD", "CLONE_SIGHAND", "CLONE_VFORK", "CLONE_FILES",
                                  "CLONE_FS", "CLONE_PARENT"])
def test_clone_flags_sharing_the_loop_are_einval(port, flag):
    c = port.fork([], timeout=T)
    with pytest.raises(OSError) as ei:
        port.clone([c], [flag], timeout=T)
    assert ei.value.errno == errno.EINVAL
    _still_serving(port, c)


def test_clone_files_is_refused_and_the_caller_keeps_serving():
    """Regression (fixed in 4a8397e): the clone's set-up closed descriptors in
    the shared table, the caller lost its loop and close() left it behind."""
    p = niche.Port()
    try:
        c = p.fork([], timeout=T)
        with pytest.raises(OSError) as ei:
            p.clone([c], ["CLONE_FILES"], timeout=3)
        assert ei.value.errno == errno.EINVAL
        assert p.getpid([c], timeout=3) == c
    finally:
        left = _close_killing_leftovers(p)
    assert left == []


def test_clone_parent_child_exit_is_reported(port):
    """Regression (fixed in 4a8397e): a CLONE_PARENT child is the port's, not
    the caller's; its exit gave no event and it stayed in cpid for good."""
    c = port.fork([], timeout=T)
    try:
        r = port.clone([c], ["CLONE_PARENT"], timeout=T)
    except OSError as e:  # refusing the flag is as good
        assert e.errno == errno.EINVAL
        return
    port.exit([c, r], 0, timeout=T)
    assert wait_exit(port, [c, r], timeout=5) == ("exit_status", 0)
    assert port.cpid([c], timeout=T) == []


def test_huge_ptr_size_is_a_valueerror_or_oserror(port):
    """Regression (fixed in 4a8397e): the port rejected the frame with a
    ProtocolError instead of a ValueError before sending."""
    c = port.fork([], timeout=T)
    try:
        with pytest.raises((ValueError, OSError)):
            port.alloc([c], [("ptr", 2**31)], timeout=T)
    finally:
        _still_serving(port, c)
