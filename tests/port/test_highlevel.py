"""port.cmd, port.sh and port.task on the real port (issue 4)."""

from __future__ import annotations

import pickle
import threading

import niche
import pytest
from porthelpers import all_pids, descendants, wait_until

T = 10


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def _all_sleeps() -> list[int]:
    return [p for p in all_pids() if _cmdline(p).startswith(b"sleep\0")]


def cpids(port, chain):
    return sorted(c.pid for c in port.cpid(chain, timeout=T))


def test_cmd_returns_stdout(port):
    assert port.cmd([], ["echo", "hello", "world"]) == b"hello world\n"
    assert port.cmd([], ["/bin/echo", "-n", "x"]) == b"x"
    assert cpids(port, []) == []  # the child is gone


def test_cmd_bytes_arguments_and_binary_output(port):
    out = port.cmd([], [b"printf", b"\\001\\377\\000z"])
    assert out == b"\x01\xff\x00z"


def test_cmd_input(port):
    assert port.cmd([], ["cat"], input=b"abc\n") == b"abc\n"
    data = bytes(range(256)) * 4096  # 1 MiB, more than any pipe buffer
    assert port.cmd([], ["cat"], input=data, timeout=30) == data
    assert port.cmd([], ["wc", "-c"], input=data, timeout=30).strip() == str(len(data)).encode()


def test_cmd_stdin_is_closed_without_input(port):
    assert port.cmd([], ["cat"], timeout=T) == b""


def test_cmd_input_not_all_read(port):
    """The command exits without reading all its input: no error for that."""
    assert port.cmd([], ["head", "-c", "3"], input=b"x" * (1 << 20), timeout=T) == b"xxx"


def test_cmd_env(port):
    out = port.cmd([], ["/usr/bin/env"], env={"A": "1", "B": "two words"})
    assert sorted(out.decode().splitlines()) == ["A=1", "B=two words"]
    # PATH from env is used for the lookup.
    assert port.cmd([], ["sh", "-c", "echo $X"], env={"PATH": "/usr/bin:/bin", "X": "y"}) == b"y\n"
    # The chain's own environment is untouched.
    assert port.getenv([], "A") is None


def test_cmd_failure(port):
    with pytest.raises(niche.CommandFailed) as ei:
        port.cmd([], ["sh", "-c", "echo out; echo oops >&2; exit 3"])
    e = ei.value
    assert isinstance(e, niche.PortError)
    assert e.argv == ["sh", "-c", "echo out; echo oops >&2; exit 3"]
    assert e.status == ("exit_status", 3)
    assert e.stdout == b"out\n"
    assert e.stderr == b"oops\n"
    assert "status 3" in str(e) and "oops" in str(e)
    again = pickle.loads(pickle.dumps(e))
    assert (again.argv, again.status, again.stdout, again.stderr) == (e.argv, e.status, e.stdout, e.stderr)


def test_cmd_killed_by_a_signal(port):
    with pytest.raises(niche.CommandFailed) as ei:
        port.sh([], "kill -9 $$")
    assert ei.value.status == ("termsig", "sigkill")
    assert "sigkill" in str(ei.value)


def test_cmd_exec_failure(port):
    with pytest.raises(FileNotFoundError):
        port.cmd([], ["/nonexistent/program"])
    with pytest.raises(FileNotFoundError):
        port.cmd([], ["niche-no-such-command"])
    assert wait_until(lambda: cpids(port, []) == [], 5)  # no child left behind


def test_cmd_timeout_kills(port):
    with pytest.raises(TimeoutError) as ei:
        port.sh([], "echo started; sleep 30.123; echo never", timeout=1)
    assert ei.value.stdout == b"started\n"
    assert wait_until(lambda: cpids(port, []) == [], 5)
    # The shell's own child went with it (the whole process group).
    assert wait_until(lambda: not any(
        b"30.123" in _cmdline(p) for p in descendants(port.pid) + _all_sleeps()), 5)
    assert port.cmd([], ["true"]) == b""  # the port carries on


def test_cmd_bad_arguments(port):
    with pytest.raises(TypeError):
        port.cmd([], "echo hi")
    with pytest.raises(TypeError):
        port.cmd([], [])
    with pytest.raises(TypeError):
        port.cmd([], ["cat"], input="text")
    with pytest.raises(TypeError):
        port.cmd([], ["env"], env=[("A", "1")])
    with pytest.raises(TypeError):
        port.sh([], ["echo"])
    assert cpids(port, []) == []


def test_sh(port):
    assert port.sh([], "echo $((6 * 7))") == b"42\n"
    assert port.sh([], "cat; echo done", input=b"in\n") == b"in\ndone\n"
    with pytest.raises(niche.CommandFailed) as ei:
        port.sh([], "exit 1")
    assert ei.value.argv == ["/bin/sh", "-c", "exit 1"]


def test_cmd_deeper_in_the_tree(port):
    c = port.fork([], timeout=T)
    g = port.fork([c], timeout=T)
    assert port.sh([c, g], "echo $PPID").strip() == str(g).encode()
    assert cpids(port, [c, g]) == []


def test_cmd_from_threads(port):
    results: dict[int, bytes] = {}

    def run(i: int) -> None:
        results[i] = port.cmd([], ["sh", "-c", f"sleep 0.{i % 3}; echo {i}"], timeout=30)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {i: f"{i}\n".encode() for i in range(8)}


def test_cmd_in_a_new_namespace(port):
    box = port.clone([], ["clone_newuts"], timeout=T)
    port.sethostname([box], "niche-box", timeout=T)
    assert port.cmd([box], ["hostname"]) == b"niche-box\n"


# --- task -----------------------------------------------------------------------


def test_task_with_a_filter(port):
    t = port.task([], ["getpid", "sethostname"])
    assert isinstance(t, niche.Process)
    assert t.chain[:-1] == ()
    assert t.pid in cpids(port, [])
    with pytest.raises(niche.Undefined):
        t.getpid()
    with pytest.raises(niche.Undefined):
        port.sethostname(list(t.chain), "nope", timeout=T)
    assert t.getppid() == port.pid  # not filtered
    # The filter holds in what it forks, too (filters are inherited).
    child = t.fork()
    with pytest.raises(niche.Undefined):
        child.getpid()


def test_task_with_allow(port):
    t = port.task([], niche.allow(["getpid", "exit"]))
    assert t.getpid() == t.pid
    with pytest.raises(niche.Undefined):
        t.getuid()
    with pytest.raises(niche.Undefined):
        t.fork()
    t.exit(0)


def test_task_subprocess_calls(port):
    t = port.task([], [], ["getuid"])
    assert t.getuid() == 0 or t.getuid() > 0  # allowed in the task itself
    child = t.fork()
    with pytest.raises(niche.Undefined):
        child.getuid()


def test_task_without_filter_and_deeper(port):
    outer = port.task([])
    inner = port.task(outer.chain, ["chdir"])
    assert inner.chain[:-1] == outer.chain
    with pytest.raises(niche.Undefined):
        inner.chdir("/")
    outer.chdir("/")  # the parent is not filtered


def test_task_cloned_into_namespaces(port):
    t = port.task([], ["sethostname"], clone=["clone_newpid", "clone_newuts"])
    assert t.getpid() == 1
    with pytest.raises(niche.Undefined):
        t.sethostname("x")


def test_task_bad_filter_leaves_nothing_behind(port):
    with pytest.raises(ValueError):
        port.task([], ["no_such_call"])
    with pytest.raises(TypeError):
        port.task([], "getpid")
    assert wait_until(lambda: cpids(port, []) == [], 5)
