"""Standard I/O of exec'd processes: stdin, stdout, stderr, eof (issue 3)."""

from __future__ import annotations

import os
import random

import niche
import pytest
from porthelpers import (
    CallThread,
    chain_of_depth,
    read_all_until_exit,
    read_stdout,
    wait_exit,
)

T = 10


def test_execve_with_environment_prints_exactly_that(port):
    c = port.fork([], timeout=T)
    port.execve([c], "/usr/bin/env", ["/usr/bin/env"], ["FOO=bar", "BAR=1234567"], timeout=T)
    out, ev = read_all_until_exit(port, [c])
    assert out == b"FOO=bar\nBAR=1234567\n"
    assert ev == ("exit_status", 0)


def test_execve_env_accepts_bytes(port):
    c = port.fork([], timeout=T)
    port.execve([c], b"/usr/bin/env", [b"env"], [b"RAW=\xff\xfe"], timeout=T)
    out, ev = read_all_until_exit(port, [c])
    assert out == b"RAW=\xff\xfe\n"
    assert ev == ("exit_status", 0)


def test_execvp_searches_path_and_keeps_environment(port):
    c = port.fork([], timeout=T)
    port.setenv([c], "NICHE_KEPT", "kept", 1, timeout=T)
    port.execvp([c], "sh", ["sh", "-c", 'printf "%s|%s" "$0" "$NICHE_KEPT"'], timeout=T)
    out, ev = read_all_until_exit(port, [c])
    assert out == b"sh|kept"
    assert ev == ("exit_status", 0)


def test_cat_echoes_stdin(port):
    c = port.fork([], timeout=T)
    port.execvp([c], "/bin/cat", ["/bin/cat"], timeout=T)
    port.stdin([c], b"hello\n", timeout=T)
    assert read_stdout(port, [c], 6) == b"hello\n"
    for i in range(20):
        msg = f"line {i}\n".encode()
        port.stdin([c], msg, timeout=T)
        assert read_stdout(port, [c], len(msg)) == msg
    # nothing came on stderr
    assert port.stderr([c], timeout=0.2) == b""


def test_stdout_with_nothing_returns_empty_bytes(port):
    c = port.fork([], timeout=T)
    port.execvp([c], "/bin/cat", ["/bin/cat"], timeout=T)
    assert port.stdout([c], timeout=0) == b""
    assert port.stdout([c], timeout=0.2) == b""
    assert port.stdout([c]) == b""  # default timeout 0


def test_stdout_joins_what_has_arrived(port):
    c = port.fork([], timeout=T)
    port.execvp([c], "sh", ["sh", "-c", "echo a; echo b; echo c; exec sleep 100"], timeout=T)
    out = read_stdout(port, [c], 6)
    assert out == b"a\nb\nc\n"
    port.kill([], c, "sigkill", timeout=T)
    assert wait_exit(port, [c]) == ("termsig", "sigkill")


def test_eof_ends_cat(port):
    c = port.fork([], timeout=T)
    port.execvp([c], "cat", ["cat"], timeout=T)
    port.stdin([c], b"last words\n", timeout=T)
    assert port.eof([c], timeout=T) is None
    out, ev = read_all_until_exit(port, [c])
    assert out == b"last words\n"
    assert ev == ("exit_status", 0)


def test_eof_right_after_large_stdin_loses_nothing(port):
    c = port.fork([], timeout=T)
    port.execvp([c], "cat", ["cat"], timeout=T)
    data = random.Random(3).randbytes(1 << 20)
    port.stdin([c], data, timeout=60)
    port.eof([c], timeout=T)
    out, ev = read_all_until_exit(port, [c], timeout=60)
    assert len(out) == len(data)
    assert out == data
    assert ev == ("exit_status", 0)


def test_stderr(port):
    c = port.fork([], timeout=T)
    port.execvp([c], "/bin/sh", ["sh", "-c", "echo x >&2; echo y"], timeout=T)
    err = read_stdout(port, [c], 2, stream="stderr")
    out, ev = read_all_until_exit(port, [c])
    assert err == b"x\n"
    assert out == b"y\n"
    assert ev == ("exit_status", 0)
    assert port.stderr([c], timeout=0.2) == b""


def test_yes_head_2mib_at_end_of_16_deep_chain(port):
    chain = chain_of_depth(port, 16)
    n = 2097152
    port.execvp(chain, "/bin/sh", ["/bin/sh", "-c", f"yes | head -c {n}"], timeout=T)
    out, ev = read_all_until_exit(port, chain, timeout=120)
    assert len(out) == n
    assert out == b"y\n" * (n // 2)
    assert ev == ("exit_status", 0)


def test_large_stdin_through_cat_comes_back_identical(port):
    c = port.fork([], timeout=T)
    port.execvp([c], "cat", ["cat"], timeout=T)
    data = random.Random(8).randbytes(8 << 20)
    writer = CallThread(port.stdin, [c], data, timeout=120)
    writer.start()
    out = read_stdout(port, [c], len(data), timeout=120)
    result, exc = writer.outcome(120)
    assert exc is None and result is None
    assert len(out) == len(data)
    assert out == data
    port.eof([c], timeout=T)
    rest, ev = read_all_until_exit(port, [c])
    assert rest == b""
    assert ev == ("exit_status", 0)


def test_many_small_stdin_writes_stay_in_order(port):
    c = port.fork([], timeout=T)
    port.execvp([c], "cat", ["cat"], timeout=T)
    pieces = [f"{i:06d}\n".encode() for i in range(5000)]
    writer = CallThread(lambda: [port.stdin([c], p, timeout=60) for p in pieces])
    writer.start()
    want = b"".join(pieces)
    out = read_stdout(port, [c], len(want), timeout=120)
    _, exc = writer.outcome(60)
    assert exc is None
    assert out == want


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _gated_cat(port, gate):
    """A child that does not read stdin until `gate` exists, then is cat."""
    c = port.fork([], timeout=T)
    script = f'while [ ! -e "{gate}" ]; do sleep 0.05; done; exec cat'
    port.execvp([c], "/bin/sh", ["sh", "-c", script], timeout=T)
    return c


def test_stdin_to_a_child_that_does_not_read_applies_back_pressure(port, tmp_path):
    gate = tmp_path / "go"
    c = _gated_cat(port, gate)
    data = random.Random(16).randbytes(16 << 20)
    port_pid = port.getpid([], timeout=T)
    rss_before = _rss_kib(port_pid)
    writer = CallThread(port.stdin, [c], data, timeout=120)
    writer.start()
    # while the child does not read, the call cannot complete (the data is
    # far more than any bounded buffer) ...
    writer.join(1.5)
    assert writer.is_alive(), f"stdin returned without the child reading: {writer.exc!r}"
    # ... and the port does not take it all in: its buffering is bounded
    grown = _rss_kib(port_pid) - rss_before
    assert grown < 8 * 1024, f"port grew by {grown} KiB for 16 MiB of pending stdin"
    # ... and the port keeps serving every other process meanwhile
    other = port.fork([], timeout=T)
    assert port.getpid([other], timeout=T) == other
    port.execvp([other], "cat", ["cat"], timeout=T)
    port.stdin([other], b"still served\n", timeout=T)
    assert read_stdout(port, [other], 13) == b"still served\n"
    # once the child reads, everything arrives, in order
    gate.touch()
    out = read_stdout(port, [c], len(data), timeout=120)
    result, exc = writer.outcome(60)
    assert exc is None and result is None
    assert out == data


def test_stdin_timeout_on_a_child_that_does_not_read(port, tmp_path):
    gate = tmp_path / "go"
    c = _gated_cat(port, gate)
    data = random.Random(17).randbytes(16 << 20)
    with pytest.raises(TimeoutError):
        port.stdin([c], data, timeout=2)
    # the port still serves
    assert port.getpid([], timeout=T) > 0
    # what was delivered is a prefix of the data: nothing lost in the
    # middle, nothing reordered
    gate.touch()
    port.eof([c], timeout=60)
    out, ev = read_all_until_exit(port, [c], timeout=60)
    assert ev == ("exit_status", 0)
    assert len(out) > 0
    assert out == data[: len(out)]


def test_stdin_to_exited_program_raises_epipe_or_badpid(port):
    c = port.fork([], timeout=T)
    port.execvp([c], "true", ["true"], timeout=T)
    assert wait_exit(port, [c]) == ("exit_status", 0)
    with pytest.raises((BrokenPipeError, niche.BadPid, niche.ProcessExited)):
        port.stdin([c], b"x" * (1 << 20), timeout=T)


@pytest.mark.parametrize("depth", [1, 8])
def test_output_written_right_before_exit_is_never_lost(port, depth):
    parent = chain_of_depth(port, depth - 1)
    want = b"".join(b"%d\n" % i for i in range(1, 20001))
    for round_ in range(10):
        pid = port.fork(parent, timeout=T)
        chain = parent + [pid]
        status = round_ % 3
        port.execvp(chain, "/bin/sh", ["sh", "-c", f"seq 1 20000; exit {status}"], timeout=T)
        out = read_stdout(port, chain, len(want), timeout=60)
        assert out == want
        ev = wait_exit(port, chain)
        assert ev == ("exit_status", status)
        assert port.stdout(chain, timeout=0.2) == b""


@pytest.mark.parametrize("depth", [1, 8])
def test_small_output_and_stderr_right_before_exit(port, depth):
    parent = chain_of_depth(port, depth - 1)
    for i in range(20):
        pid = port.fork(parent, timeout=T)
        chain = parent + [pid]
        port.execvp(chain, "/bin/sh", ["sh", "-c", f"printf out{i}; printf err{i} >&2"], timeout=T)
        out = read_stdout(port, chain, len(f"out{i}"))
        err = read_stdout(port, chain, len(f"err{i}"), stream="stderr")
        assert (out, err) == (f"out{i}".encode(), f"err{i}".encode())
        assert wait_exit(port, chain) == ("exit_status", 0)


def test_output_of_a_process_killed_right_after_writing(port):
    c = port.fork([], timeout=T)
    port.execvp([c], "/bin/sh", ["sh", "-c", "head -c 300000 /dev/zero; kill -9 $$"], timeout=T)
    out = read_stdout(port, [c], 300000, timeout=60)
    assert out == bytes(300000)
    assert wait_exit(port, [c]) == ("termsig", "sigkill")


def test_stdio_of_two_children_is_kept_apart(port):
    a = port.fork([], timeout=T)
    b = port.fork([], timeout=T)
    port.execvp([a], "cat", ["cat"], timeout=T)
    port.execvp([b], "cat", ["cat"], timeout=T)
    for _ in range(10):
        port.stdin([a], b"A" * 1000, timeout=T)
        port.stdin([b], b"B" * 1000, timeout=T)
    assert read_stdout(port, [a], 10000) == b"A" * 10000
    assert read_stdout(port, [b], 10000) == b"B" * 10000


def test_exec_inherits_no_port_descriptors(port):
    c = port.fork([], timeout=T)
    port.execvp([c], "/bin/sh", ["sh", "-c", "ls /proc/self/fd"], timeout=T)
    out, ev = read_all_until_exit(port, [c])
    assert ev == ("exit_status", 0)
    fds = sorted(int(x) for x in out.split())
    # stdin, stdout, stderr and the fd ls itself opens for /proc/self/fd
    assert fds[:3] == [0, 1, 2]
    assert len(fds) <= 4, f"exec'd program inherited descriptors: {fds}"


def test_exec_failure_leaves_child_usable(port):
    c = port.fork([], timeout=T)
    with pytest.raises(FileNotFoundError):
        port.execvp([c], "no-such-program-niche", ["x"], timeout=T)
    assert port.getpid([c], timeout=T) == c
    port.execvp([c], "cat", ["cat"], timeout=T)
    port.stdin([c], b"ok\n", timeout=T)
    assert read_stdout(port, [c], 3) == b"ok\n"
    os.kill(c, 0)  # still there


def test_flowcontrol_0_holds_output_until_enabled(port):
    c = port.fork([], timeout=T)
    assert port.setcpid([], c, "flowcontrol", 0, timeout=T) is True
    port.execvp([c], "/bin/sh", ["sh", "-c", "echo held; exec cat"], timeout=T)
    # the output is not read while flow control is 0 ...
    assert port.stdout([c], timeout=1) == b""
    # ... and nothing is lost when it is lifted
    assert port.setcpid([], c, "flowcontrol", -1, timeout=T) is True
    assert read_stdout(port, [c], 5) == b"held\n"
    port.stdin([c], b"more\n", timeout=T)
    assert read_stdout(port, [c], 5) == b"more\n"


def test_flowcontrol_n_reads_n_messages_then_stops(port):
    want = b"".join(b"%d\n" % i for i in range(1, 200001))
    c = port.fork([], timeout=T)
    assert port.setcpid([], c, "flowcontrol", 1, timeout=T) is True
    port.execvp([c], "/bin/sh", ["sh", "-c", "seq 1 200000; exec cat"], timeout=T)
    first = read_stdout(port, [c], 1)
    first += port.stdout([c], timeout=1)
    assert 0 < len(first) < len(want)
    assert want.startswith(first)
    assert port.setcpid([], c, "flowcontrol", -1, timeout=T) is True
    rest = read_stdout(port, [c], len(want) - len(first), timeout=60)
    assert first + rest == want


def test_flowcontrol_option_is_the_default_for_new_children(port):
    assert port.setopt([], "flowcontrol", 0, timeout=T) is True
    c = port.fork([], timeout=T)
    assert port.getcpid([], c, "flowcontrol", timeout=T) == 0
    port.execvp([c], "/bin/sh", ["sh", "-c", "echo x; exec cat"], timeout=T)
    assert port.stdout([c], timeout=1) == b""
    port.setcpid([], c, "flowcontrol", -1, timeout=T)
    assert read_stdout(port, [c], 2) == b"x\n"


def test_stdin_after_eof_raises_brokenpipe(port):
    c = port.fork([], timeout=T)
    port.execvp([c], "/bin/sh", ["sh", "-c", "cat; exec sleep 100"], timeout=T)
    port.stdin([c], b"", timeout=T)  # nothing: fine
    port.stdin([c], b"before\n", timeout=T)
    port.eof([c], timeout=T)
    assert read_stdout(port, [c], 7) == b"before\n"
    with pytest.raises(BrokenPipeError):
        port.stdin([c], b"after\n", timeout=T)
    assert port.stdout([c], timeout=0.3) == b""


def test_frames_larger_than_a_pipe_buffer(port):
    # up and down: a 200 kB env value; down: 200 kB of arguments
    c = port.fork([], timeout=T)
    big = "x" * 200_000
    port.setenv([c], "NICHE_BIG", big, 1, timeout=T)
    assert port.getenv([c], "NICHE_BIG", timeout=T) == big
    assert f"NICHE_BIG={big}" in port.environ([c], timeout=T)
    port.unsetenv([c], "NICHE_BIG", timeout=T)
    # a call over the documented frame limit (NICHE_MAX_FRAME, 257 KiB) is
    # refused before it is sent
    with pytest.raises(ValueError):
        port.setenv([c], "NICHE_HUGE", "z" * 300_000, 1, timeout=T)
    assert port.getenv([c], "NICHE_HUGE", timeout=T) is None
    # one argument is at most 128 KiB (MAX_ARG_STRLEN): send two
    args = ["y" * 100_000] * 2
    script = 'printf %s "$1$2" | wc -c'
    port.execvp([c], "/bin/sh", ["sh", "-c", script, "sh", *args], timeout=T)
    out, ev = read_all_until_exit(port, [c])
    assert (out.strip(), ev) == (b"200000", ("exit_status", 0))


@pytest.mark.parametrize("depth", [1, 4])
def test_output_is_complete_when_the_exit_event_arrives(port, depth):
    """Waiting for the exit event, then reading, gets all of the output."""
    want = b"".join(b"%d\n" % i for i in range(1, 20001))
    parent = chain_of_depth(port, depth - 1)
    for _ in range(10):
        pid = port.fork(parent, timeout=T)
        chain = parent + [pid]
        port.execvp(chain, "/bin/sh", ["sh", "-c", "seq 1 20000; echo err >&2"], timeout=T)
        assert wait_exit(port, chain) == ("exit_status", 0)
        assert port.stdout(chain, timeout=0) == want
        assert port.stderr(chain, timeout=0) == b"err\n"


def test_stdin_to_a_program_that_exits_without_reading_fails(port):
    c = port.fork([], timeout=T)
    port.execvp([c], "/bin/sh", ["sh", "-c", "sleep 0.5; exit 3"], timeout=T)
    with pytest.raises((BrokenPipeError, niche.ProcessExited, niche.BadPid)):
        port.stdin([c], b"x" * (16 << 20), timeout=30)
    assert wait_exit(port, [c]) == ("exit_status", 3)
    assert port.getpid([], timeout=T) > 0


def _sig_masks(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/status") as f:
        return {
            k: int(v, 16)
            for k, v in (line.split(":", 1) for line in f)
            if k in ("SigBlk", "SigIgn", "SigCgt")
        }


@pytest.mark.parametrize("depth", [1, 3])
def test_exec_d_program_starts_with_default_signals(port, depth):
    """The port blocks and ignores signals for its own loop (SIGCHLD,
    SIGPIPE, ...): the programs it runs must not inherit that."""
    chain = chain_of_depth(port, depth)
    port.sigaction(chain, "sigusr1", "sig_info", timeout=T)  # trapped: reset by exec
    port.execvp(chain, "sleep", ["sleep", "100"], timeout=T)
    masks = _sig_masks(chain[-1])
    assert masks == {"SigBlk": 0, "SigIgn": 0, "SigCgt": 0}, {k: hex(v) for k, v in masks.items()}
    # a pipeline whose reader exits early ends quietly (SIGPIPE is default)
    c = port.fork(chain[:-1], timeout=T)
    port.execvp(chain[:-1] + [c], "/bin/sh", ["sh", "-c", "yes | head -c 10"], timeout=T)
    out, ev = read_all_until_exit(port, chain[:-1] + [c])
    assert (out, ev) == (b"y\n" * 5, ("exit_status", 0))
    assert port.stderr(chain[:-1] + [c], timeout=0) == b""


def _stdin_pipe_size(pid: int) -> int:
    import fcntl

    fd = os.open(f"/proc/{pid}/fd/0", os.O_RDONLY | os.O_NONBLOCK)
    try:
        return fcntl.fcntl(fd, fcntl.F_GETPIPE_SZ)
    finally:
        os.close(fd)


def test_a_stream_gets_a_big_stdin_pipe_and_an_idle_program_does_not(port):
    """A program fed a stream that fills its stdin pipe gets a 1 MiB pipe
    (fewer wake-ups); one that is never fed keeps the kernel's default, so
    idle children do not count against the user's pipe-user-pages-soft."""
    fed, idle = port.fork([], timeout=T), port.fork([], timeout=T)
    for c in (fed, idle):
        port.execvp([c], "sh", ["sh", "-c", "sleep 0.5; exec wc -c"], timeout=T)
    default = _stdin_pipe_size(idle)
    data = os.urandom(3 << 20)
    port.stdin([fed], data, timeout=60)
    assert _stdin_pipe_size(fed) == 1 << 20 > default
    assert _stdin_pipe_size(idle) == default
    port.eof([fed], timeout=T)
    out = b""
    while not out.endswith(b"\n"):
        out += port.stdout([fed], timeout=T)
    assert int(out) == len(data)
