"""Basic calls of the port: version, fork chains, options, env, cwd, constants,
clone, and the errors a user gets (issue 3)."""

from __future__ import annotations

import errno
import os
import signal
import stat
import sys
import tempfile
import textwrap

import niche
import pytest
from porthelpers import (
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUTS,
    chain_of_depth,
    children_of,
    free_pid,
    proc_stat,
    read_stdout,
    wait_event,
    wait_until,
)

T = 10  # timeout of every call: a hang fails fast


def cpids(port, chain):
    return sorted(c.pid for c in port.cpid(chain, timeout=T))


# --------------------------------------------------------------------------
# version, fork, getpid, chains


def test_version(port):
    v = port.version([], timeout=T)
    assert isinstance(v, str) and v.strip()
    child = port.fork([], timeout=T)
    # every process of the tree runs the same port
    assert port.version([child], timeout=T) == v


def test_fork_getpid_getppid(port, port_pid):
    assert port_pid != os.getpid()
    assert proc_stat(port_pid)[1] == os.getpid()  # the port is our child
    child = port.fork([], timeout=T)
    assert isinstance(child, int) and child > 0
    assert port.getpid([child], timeout=T) == child
    assert port.getppid([child], timeout=T) == port_pid
    # the kernel agrees: the child is a real process whose parent is the port
    st = proc_stat(child)
    assert st is not None and st[1] == port_pid
    assert cpids(port, []) == [child]


def test_two_children_are_distinct(port, port_pid):
    a = port.fork([], timeout=T)
    b = port.fork([], timeout=T)
    assert a != b
    assert port.getpid([a], timeout=T) == a
    assert port.getpid([b], timeout=T) == b
    assert cpids(port, []) == sorted([a, b])
    assert children_of(port_pid) == sorted([a, b])


def test_chain_16_deep(port, port_pid):
    chain = chain_of_depth(port, 16)
    assert len(set(chain)) == 16
    assert port.getpid(chain, timeout=T) == chain[-1]
    assert port.getppid(chain, timeout=T) == chain[-2]
    # every link is the kernel's parent of the next
    parents = [port_pid, *chain[:-1]]
    for pid, parent in zip(chain, parents, strict=True):
        assert proc_stat(pid)[1] == parent
    # every intermediate process answers on its own
    for i in range(1, 16):
        assert port.getpid(chain[:i], timeout=T) == chain[i - 1]


def test_fork_at_maxforkdepth_fails_with_eagain(port):
    assert port.getopt([], "maxforkdepth", timeout=T) == 16
    chain = chain_of_depth(port, 16)
    with pytest.raises(OSError) as ei:
        port.fork(chain, timeout=T)
    assert ei.value.errno == errno.EAGAIN
    assert isinstance(ei.value, BlockingIOError)
    # the process at the limit is still fine and has no child
    assert port.getpid(chain, timeout=T) == chain[-1]
    assert cpids(port, chain) == []


def test_setopt_maxforkdepth_zero_stops_any_fork(port):
    assert port.setopt([], "maxforkdepth", 0, timeout=T) is True
    assert port.getopt([], "maxforkdepth", timeout=T) == 0
    with pytest.raises(BlockingIOError) as ei:
        port.fork([], timeout=T)
    assert ei.value.errno == errno.EAGAIN
    assert cpids(port, []) == []


def test_maxforkdepth_is_inherited_and_counts_depth(port):
    assert port.setopt([], "maxforkdepth", 2, timeout=T) is True
    a = port.fork([], timeout=T)
    assert port.getopt([a], "maxforkdepth", timeout=T) == 2
    b = port.fork([a], timeout=T)
    with pytest.raises(BlockingIOError):
        port.fork([a, b], timeout=T)


def test_maxchild_gives_eagain(port):
    assert port.setopt([], "maxchild", 2, timeout=T) is True
    assert port.getopt([], "maxchild", timeout=T) == 2
    a = port.fork([], timeout=T)
    b = port.fork([], timeout=T)
    with pytest.raises(BlockingIOError) as ei:
        port.fork([], timeout=T)
    assert ei.value.errno == errno.EAGAIN
    assert cpids(port, []) == sorted([a, b])
    # a slot is free again once a child has exited and been reaped
    port.exit([a], 0, timeout=T)
    assert wait_event(port, [a]) == ("exit_status", 0)
    assert wait_until(lambda: cpids(port, []) == [b], 10)
    c = port.fork([], timeout=T)
    assert port.getpid([c], timeout=T) == c


def test_port_options_from_constructor():
    with niche.Port(maxchild=3, maxforkdepth=4, signaloneof=9) as port:
        assert port.getopt([], "maxchild", timeout=T) == 3
        assert port.getopt([], "maxforkdepth", timeout=T) == 4
        assert port.getopt([], "signaloneof", timeout=T) == 9
        chain = chain_of_depth(port, 4)
        with pytest.raises(BlockingIOError):
            port.fork(chain, timeout=T)


# --------------------------------------------------------------------------
# getopt / setopt / cpid / getcpid / setcpid


def test_getopt_defaults(port):
    assert port.getopt([], "maxforkdepth", timeout=T) == 16
    assert port.getopt([], "exit_status", timeout=T) == 1
    assert port.getopt([], "termsig", timeout=T) == 1
    assert port.getopt([], "flowcontrol", timeout=T) == -1
    assert port.getopt([], "signaloneof", timeout=T) == 15
    maxchild = port.getopt([], "maxchild", timeout=T)
    assert isinstance(maxchild, int) and maxchild > 0
    assert port.getopt([], "no_such_option", timeout=T) is None
    assert port.setopt([], "no_such_option", 1, timeout=T) is False


def test_setopt_applies_to_children_forked_later(port):
    before = port.fork([], timeout=T)
    root_maxchild = port.getopt([], "maxchild", timeout=T)
    assert port.setopt([], "signaloneof", 9, timeout=T) is True
    assert port.getopt([], "signaloneof", timeout=T) == 9
    after = port.fork([], timeout=T)
    assert port.getopt([after], "signaloneof", timeout=T) == 9
    assert port.getopt([before], "signaloneof", timeout=T) == 15
    # options are per process: setting one in a child leaves the parent alone
    assert port.setopt([after], "maxchild", 5, timeout=T) is True
    assert port.getopt([after], "maxchild", timeout=T) == 5
    assert port.getopt([], "maxchild", timeout=T) == root_maxchild
    assert port.getopt([before], "maxchild", timeout=T) == root_maxchild


def test_cpid_lists_children_with_their_options(port):
    assert port.cpid([], timeout=T) == []
    a = port.fork([], timeout=T)
    b = port.fork([], timeout=T)
    procs = port.cpid([], timeout=T)
    assert sorted(p.pid for p in procs) == sorted([a, b])
    for p in procs:
        assert isinstance(p, niche.ChildProc)
        assert p.flowcontrol == -1
        assert p.signaloneof == 15
        for fd in (p.fdctl, p.stdin, p.stdout, p.stderr):
            assert isinstance(fd, int)
    # a grandchild is listed by its parent only
    g = port.fork([a], timeout=T)
    assert cpids(port, [a]) == [g]
    assert cpids(port, []) == sorted([a, b])


def test_getcpid_setcpid(port):
    a = port.fork([], timeout=T)
    assert port.getcpid([], a, "pid", timeout=T) == a
    assert port.getcpid([], a, "signaloneof", timeout=T) == 15
    assert port.getcpid([], a, "flowcontrol", timeout=T) == -1
    assert port.setcpid([], a, "signaloneof", 9, timeout=T) is True
    assert port.getcpid([], a, "signaloneof", timeout=T) == 9
    assert port.setcpid([], a, "flowcontrol", 10, timeout=T) is True
    assert port.getcpid([], a, "flowcontrol", timeout=T) == 10
    (cp,) = port.cpid([], timeout=T)
    assert (cp.pid, cp.signaloneof, cp.flowcontrol) == (a, 9, 10)
    # unknown child or option: None / False, no error
    other = free_pid()
    assert port.getcpid([], other, "pid", timeout=T) is None
    assert port.setcpid([], other, "signaloneof", 9, timeout=T) is False
    assert port.getcpid([], a, "no_such_option", timeout=T) is None


def test_setcpid_signaloneof_chooses_the_signal_sent_on_close(tmp_path):
    script = textwrap.dedent(
        """
        trap 'echo "$1" > "$2"; exit 0' USR1
        trap 'echo term > "$2"; exit 0' TERM
        echo ready
        while :; do sleep 0.05; done
        """
    )
    results = {}
    with niche.Port() as port:
        for name, sig in (("usr1", signal.SIGUSR1), ("term", None)):
            c = port.fork([], timeout=T)
            if sig is not None:
                assert port.setcpid([], c, "signaloneof", int(sig), timeout=T) is True
            out = tmp_path / name
            results[name] = out
            port.execvp([c], "/bin/sh", ["sh", "-c", script, "sh", name, str(out)], timeout=T)
            data = b""
            while b"ready" not in data:
                chunk = port.stdout([c], timeout=T)
                assert chunk, "child did not start"
                data += chunk
    assert results["usr1"].read_text() == "usr1\n"
    assert results["term"].read_text() == "term\n"


# --------------------------------------------------------------------------
# environment


def test_env_calls(port):
    c = port.fork([], timeout=T)
    assert port.getenv([c], "NICHE_TEST_VAR", timeout=T) is None
    assert port.setenv([c], "NICHE_TEST_VAR", "one", 1, timeout=T) is None
    assert port.getenv([c], "NICHE_TEST_VAR", timeout=T) == "one"
    # overwrite=0 keeps the value
    port.setenv([c], "NICHE_TEST_VAR", "two", 0, timeout=T)
    assert port.getenv([c], "NICHE_TEST_VAR", timeout=T) == "one"
    port.setenv([c], b"NICHE_TEST_VAR", b"three", 1, timeout=T)
    assert port.getenv([c], "NICHE_TEST_VAR", timeout=T) == "three"
    env = port.environ([c], timeout=T)
    assert isinstance(env, list) and all(isinstance(e, str) for e in env)
    assert "NICHE_TEST_VAR=three" in env
    # the environment is the child's own
    assert port.getenv([], "NICHE_TEST_VAR", timeout=T) is None
    assert port.unsetenv([c], "NICHE_TEST_VAR", timeout=T) is None
    assert port.getenv([c], "NICHE_TEST_VAR", timeout=T) is None
    assert "NICHE_TEST_VAR=three" not in port.environ([c], timeout=T)
    port.setenv([c], "X1", "1", 1, timeout=T)
    assert port.clearenv([c], timeout=T) is None
    assert port.environ([c], timeout=T) == []
    assert port.getenv([c], "X1", timeout=T) is None
    assert port.environ([], timeout=T) != []


def test_env_inherited_by_children_forked_later(port):
    port.setenv([], "NICHE_INHERIT", "yes", 1, timeout=T)
    c = port.fork([], timeout=T)
    assert port.getenv([c], "NICHE_INHERIT", timeout=T) == "yes"


def test_env_names_are_str_with_surrogateescape(port):
    c = port.fork([], timeout=T)
    port.setenv([c], b"NICHE_RAW", b"a\xffb", 1, timeout=T)
    value = port.getenv([c], "NICHE_RAW", timeout=T)
    assert value == os.fsdecode(b"a\xffb")
    assert os.fsencode(value) == b"a\xffb"
    assert os.fsdecode(b"NICHE_RAW=a\xffb") in port.environ([c], timeout=T)


def test_setenv_invalid_name_is_einval(port):
    c = port.fork([], timeout=T)
    with pytest.raises(OSError) as ei:
        port.setenv([c], "A=B", "x", 1, timeout=T)
    assert ei.value.errno == errno.EINVAL


# --------------------------------------------------------------------------
# chdir / getcwd


def test_chdir_getcwd(port, tmp_path):
    c = port.fork([], timeout=T)
    assert port.chdir([c], "/", timeout=T) is None
    assert port.getcwd([c], timeout=T) == "/"
    d = tmp_path / "dir"
    d.mkdir()
    port.chdir([c], str(d), timeout=T)
    assert port.getcwd([c], timeout=T) == os.path.realpath(d)
    # the kernel agrees
    assert os.readlink(f"/proc/{c}/cwd") == os.path.realpath(d)
    # the parent's cwd is its own
    assert port.getcwd([], timeout=T) != os.path.realpath(d)


def test_chdir_bytes_and_undecodable_names(port, tmp_path):
    c = port.fork([], timeout=T)
    raw = os.fsencode(tmp_path) + b"/d\xe9j\xe0"
    os.mkdir(raw)
    port.chdir([c], raw, timeout=T)
    cwd = port.getcwd([c], timeout=T)
    assert isinstance(cwd, str)
    assert os.fsencode(cwd) == os.path.realpath(raw)


def test_chdir_errors(port, tmp_path):
    c = port.fork([], timeout=T)
    with pytest.raises(FileNotFoundError) as ei:
        port.chdir([c], str(tmp_path / "missing"), timeout=T)
    assert ei.value.errno == errno.ENOENT
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(NotADirectoryError) as ei:
        port.chdir([c], str(f), timeout=T)
    assert ei.value.errno == errno.ENOTDIR
    # the failed calls changed nothing
    port.chdir([c], "/", timeout=T)
    assert port.getcwd([c], timeout=T) == "/"


# --------------------------------------------------------------------------
# constants


def test_constant_lookups(port):
    assert port.clone_constant([], "CLONE_NEWPID", timeout=T) == CLONE_NEWPID
    assert port.clone_constant([], "clone_newpid", timeout=T) == CLONE_NEWPID
    assert port.clone_constant([], "Clone_NewNS", timeout=T) == CLONE_NEWNS
    assert port.clone_constant([], "CLONE_NOPE", timeout=T) is None
    assert port.signal_constant([], "SIGKILL", timeout=T) == signal.SIGKILL
    assert port.signal_constant([], "sigusr1", timeout=T) == signal.SIGUSR1
    assert port.signal_constant([], "sigbogus", timeout=T) is None
    assert port.errno_constant([], "EAGAIN", timeout=T) == errno.EAGAIN
    assert port.errno_constant([], "enoent", timeout=T) == errno.ENOENT
    assert port.errno_constant([], "ENOPE", timeout=T) is None
    assert port.errno_id([], errno.ENOENT, timeout=T) == "enoent"
    assert port.errno_id([], errno.EPERM, timeout=T) == "eperm"
    assert port.signal_id([], signal.SIGKILL, timeout=T) == "sigkill"
    assert port.signal_id([], signal.SIGTERM, timeout=T) == "sigterm"
    # a child answers the same
    c = port.fork([], timeout=T)
    assert port.signal_constant([c], "SIGTERM", timeout=T) == signal.SIGTERM


@pytest.mark.parametrize("sig", ["SIGUSR1", "sigusr1", "SigUsr1", int(signal.SIGUSR1), ["sigusr1"]])
def test_constant_arguments_accept_names_ints_and_lists(port, sig):
    c = port.fork([], timeout=T)
    port.kill([], c, sig, timeout=T)
    assert wait_event(port, [c]) == ("termsig", "sigusr1")


def test_unknown_constant_name_raises_enotsup(port):
    c = port.fork([], timeout=T)
    with pytest.raises(OSError) as ei:
        port.kill([], c, "SIGNOPE", timeout=T)
    assert ei.value.errno == errno.ENOTSUP
    with pytest.raises(OSError) as ei:
        port.clone([], ["clone_newns", "clone_nope"], timeout=T)
    assert ei.value.errno == errno.ENOTSUP
    # nothing happened: the child lives, no new child
    assert port.getpid([c], timeout=T) == c
    assert cpids(port, []) == [c]


# --------------------------------------------------------------------------
# clone


def _ns(pid, kind):
    return os.readlink(f"/proc/{pid}/ns/{kind}")


@pytest.mark.parametrize(
    "flags",
    [
        "CLONE_NEWPID",
        "clone_newpid",
        ["clone_newpid", "CLONE_NEWNS"],
        CLONE_NEWPID | CLONE_NEWUTS,
        [CLONE_NEWPID, "clone_newuts"],
    ],
    ids=["name", "lower", "list", "int", "mixed"],
)
def test_clone_newpid(port, port_pid, flags):
    c = port.clone([], flags, timeout=T)
    assert isinstance(c, int) and c > 1
    assert proc_stat(c)[1] == port_pid  # c is a host PID
    assert port.getpid([c], timeout=T) == 1
    assert port.getppid([c], timeout=T) == 0
    assert _ns(c, "pid") != _ns(os.getpid(), "pid")
    # the chain uses PIDs as each parent sees them
    g = port.fork([c], timeout=T)
    assert port.getpid([c, g], timeout=T) == g
    assert port.getppid([c, g], timeout=T) == 1
    assert [p.pid for p in port.cpid([c], timeout=T)] == [g]


def test_clone_namespaces_are_the_ones_asked_for(port):
    c = port.clone([], ["clone_newuts"], timeout=T)
    assert _ns(c, "uts") != _ns(os.getpid(), "uts")
    assert _ns(c, "pid") == _ns(os.getpid(), "pid")
    assert port.getpid([c], timeout=T) == c


# --------------------------------------------------------------------------
# process handles


def test_process_handles(port, port_pid):
    root = port.root
    assert isinstance(root, niche.Process)
    assert list(root.chain) == [] and root.getpid(timeout=T) == port_pid
    child = root.fork(timeout=T)
    assert isinstance(child, niche.Process)
    assert list(child.chain) == [child.pid]
    assert child.getpid(timeout=T) == child.pid
    grand = child.fork(timeout=T)
    assert list(grand.chain) == [child.pid, grand.pid]
    assert grand.getppid(timeout=T) == child.pid
    box = root.clone(["clone_newpid"], timeout=T)
    assert box.getpid(timeout=T) == 1
    child.execvp("/bin/cat", ["/bin/cat"], timeout=T)
    child.stdin(b"via handle\n", timeout=T)
    assert read_stdout(port, child.chain, 11) == b"via handle\n"


# --------------------------------------------------------------------------
# errors


def test_call_to_unknown_pid_raises_badpid(port):
    nope = free_pid()
    with pytest.raises(niche.BadPid):
        port.getpid([nope], timeout=T)
    c = port.fork([], timeout=T)
    with pytest.raises(niche.BadPid):
        port.getpid([c, nope], timeout=T)
    # a process that exists but is not a child of the port
    with pytest.raises(niche.BadPid):
        port.getpid([os.getpid()], timeout=T)
    # a grandchild named directly is not a child of the port
    g = port.fork([c], timeout=T)
    with pytest.raises(niche.BadPid):
        port.getpid([g], timeout=T)
    assert issubclass(niche.BadPid, niche.PortError)
    assert port.getpid([c, g], timeout=T) == g


def test_errno_errors_are_oserror_subclasses(port):
    c = port.fork([], timeout=T)
    with pytest.raises(ProcessLookupError) as ei:
        port.kill([c], free_pid(), 0, timeout=T)
    assert ei.value.errno == errno.ESRCH
    with pytest.raises(FileNotFoundError) as ei:
        port.execve([c], "/nonexistent/prog", ["prog"], [], timeout=T)
    assert ei.value.errno == errno.ENOENT
    d = tempfile.mkdtemp()
    try:
        with pytest.raises(PermissionError) as ei:
            port.execve([c], d + "/", [d], [], timeout=T)  # a directory
        assert ei.value.errno == errno.EACCES
    finally:
        os.rmdir(d)
    # after failed execs the child is still serving calls
    assert port.getpid([c], timeout=T) == c


def test_error_from_deep_in_the_chain(port):
    chain = chain_of_depth(port, 5)
    with pytest.raises(FileNotFoundError):
        port.chdir(chain, "/nonexistent/dir", timeout=T)
    assert port.getpid(chain, timeout=T) == chain[-1]


def test_timeout_raises_timeouterror_and_late_reply_is_dropped(port):
    c = port.fork([], timeout=T)
    port.kill([], c, "SIGSTOP", timeout=T)
    assert wait_until(lambda: proc_stat(c)[0] == "T", 5)
    with pytest.raises(TimeoutError):
        port.getpid([c], timeout=0.5)
    with pytest.raises(TimeoutError):
        port.getenv([c], "HOME", timeout=0.5)
    # other processes are served meanwhile
    other = port.fork([], timeout=T)
    assert port.getpid([other], timeout=T) == other
    port.kill([], c, "SIGCONT", timeout=T)
    # the late replies to the timed-out calls do not answer later calls
    port.setenv([c], "NICHE_AFTER", "v", 1, timeout=T)
    for _ in range(3):
        assert port.getpid([c], timeout=T) == c
        assert port.getenv([c], "NICHE_AFTER", timeout=T) == "v"


BAD_ARGS = [
    ("chain str", lambda p: p.getpid("123", timeout=T), TypeError),
    ("chain of str", lambda p: p.getpid(["123"], timeout=T), TypeError),
    ("chain None", lambda p: p.fork(None, timeout=T), TypeError),
    ("chain float", lambda p: p.fork([1.5], timeout=T), TypeError),
    ("int for str", lambda p: p.getenv([], 123, timeout=T), TypeError),
    ("str for int", lambda p: p.setenv([], "A", "b", "1", timeout=T), TypeError),
    # exec calls name pid 1, never a child of the port: if they were sent
    # they would fail with BadPid instead of replacing anything
    ("argv a str", lambda p: p.execvp([1], "/bin/true", "/bin/true", timeout=T), TypeError),
    ("argv of int", lambda p: p.execvp([1], "/bin/true", [1, 2], timeout=T), TypeError),
    ("envp None", lambda p: p.execve([1], "/bin/true", ["true"], None, timeout=T), TypeError),
    ("data int", lambda p: p.stdin([1], 12345, timeout=T), TypeError),
    ("const float", lambda p: p.clone([], 1.5, timeout=T), TypeError),
    ("const None", lambda p: p.kill([], 1, None, timeout=T), TypeError),
    ("missing arg", lambda p: p.chdir([], timeout=T), TypeError),
    ("extra arg", lambda p: p.getpid([], 1, timeout=T), TypeError),
    ("unknown kw", lambda p: p.getpid([], bogus=1, timeout=T), TypeError),
    ("negative pid", lambda p: p.fork([-5], timeout=T), (ValueError, niche.BadPid)),
    ("int too big", lambda p: p.exit([], 2**70, timeout=T), (ValueError, OverflowError)),
    ("pid too big", lambda p: p.fork([2**40], timeout=T), (ValueError, OverflowError)),
]


@pytest.mark.parametrize("fn,exc", [b[1:] for b in BAD_ARGS], ids=[b[0] for b in BAD_ARGS])
def test_bad_python_arguments_raise_before_sending(port, port_pid, fn, exc):
    env_before = port.environ([], timeout=T)
    cwd_before = port.getcwd([], timeout=T)
    with pytest.raises(exc):
        fn(port)
    # nothing reached the port: it is the same process, unchanged, serving
    assert port.getpid([], timeout=T) == port_pid
    assert port.cpid([], timeout=T) == []
    assert port.environ([], timeout=T) == env_before
    assert port.getcwd([], timeout=T) == cwd_before
    assert proc_stat(port_pid)[0] != "Z"


def test_nul_in_string_argument_does_not_truncate(port, tmp_path):
    c = port.fork([], timeout=T)
    port.chdir([c], "/", timeout=T)
    target = str(tmp_path)
    with pytest.raises((ValueError, OSError)):
        port.chdir([c], target + "\0/nonexistent", timeout=T)
    assert port.getcwd([c], timeout=T) == "/"


# --------------------------------------------------------------------------
# handshake


def _fake_port(tmp_path, body: str):
    path = tmp_path / "fake-port"
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


def test_handshake_other_version_is_porterror(tmp_path):
    prog = _fake_port(
        tmp_path,
        """
        import os, struct, time
        os.read(0, 10)
        body = struct.pack(">H", 99) + b"fake 9.9"
        os.write(1, b"NC\\x81\\x00" + struct.pack(">I", len(body)) + body)
        time.sleep(5)
        """,
    )
    with pytest.raises(niche.PortError) as ei:
        niche.Port(progname=prog)
    assert "version" in str(ei.value).lower()


def test_handshake_with_something_that_is_not_a_port(tmp_path):
    prog = _fake_port(
        tmp_path,
        """
        import os
        os.write(1, b"hello, I am not a port\\n")
        """,
    )
    with pytest.raises(niche.PortError):
        niche.Port(progname=prog)


def test_handshake_with_a_port_that_exits(tmp_path):
    with pytest.raises(niche.PortError):
        niche.Port(progname="/bin/true")


def test_calls_after_close_raise_portclosed():
    port = niche.Port()
    c = port.fork([], timeout=T)
    port.close()
    with pytest.raises(niche.PortClosed):
        port.getpid([], timeout=T)
    with pytest.raises(niche.PortClosed):
        port.getpid([c], timeout=T)
    assert issubclass(niche.PortClosed, niche.PortError)


def test_port_env_argument(make_port):
    port = make_port(env={"NICHE_ENV_TEST": "yes", "PATH": os.environ.get("PATH", "/bin")})
    assert port.getenv([], "NICHE_ENV_TEST", timeout=T) == "yes"
    c = port.fork([], timeout=T)
    assert port.getenv([c], "NICHE_ENV_TEST", timeout=T) == "yes"


def test_close_twice_and_close_inside_with_are_fine():
    port = niche.Port()
    port.close()
    port.close()
    with niche.Port() as port:
        port.close()
    with pytest.raises(niche.PortClosed):
        port.getpid([], timeout=T)


@pytest.mark.parametrize(
    "options,exc",
    [({"no_such_option": 1}, ValueError), ({"maxchild": "8"}, TypeError)],
    ids=["unknown option", "str value"],
)
def test_bad_port_options_fail_loudly(options, exc):
    with pytest.raises(exc):
        niche.Port(**options)


def test_missing_port_binary_is_porterror(tmp_path):
    with pytest.raises(niche.PortError):
        niche.Port(progname=str(tmp_path / "no-such-niche-port"))
