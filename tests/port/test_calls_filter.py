"""Call filters (issue 4): filter(chain, calls, subprocess_calls) and niche.allow.

Ported from alcove's suite: a filter with one call, with allow([...]), with
an empty list; filters are inherited by processes forked later and are
never lifted; a filtered call raises niche.Undefined. As in alcove, a
filtered process keeps proxying the data and events of its children.
"""

from __future__ import annotations

import os
import signal

import niche
import pytest
from porthelpers import read_all_until_exit, read_stdout, wait_exit

T = 10


def test_filter_one_call(port):
    c = port.fork([], timeout=T)
    sibling = port.fork([], timeout=T)
    assert port.filter([c], ["getpid"], timeout=T) is None
    with pytest.raises(niche.Undefined) as ei:
        port.getpid([c], timeout=T)
    assert "getpid" in str(ei.value)
    assert not isinstance(ei.value, OSError)
    assert isinstance(ei.value, niche.PortError)
    # every other call works, and no other process is filtered
    assert port.getppid([c], timeout=T) == port.pid
    assert port.getcwd([c], timeout=T)
    assert port.getpid([sibling], timeout=T) == sibling
    assert port.getpid([], timeout=T) == port.pid
    # the denial is per call, every time
    with pytest.raises(niche.Undefined):
        port.getpid([c], timeout=T)


def test_filter_with_allow_denies_every_other_call(port):
    c = port.fork([], timeout=T)
    port.filter([c], niche.allow(["getpid", "fork", "getppid"]), timeout=T)
    assert port.getpid([c], timeout=T) == c
    for call, args in (("getcwd", ()), ("getuid", ()), ("chdir", ("/",)), ("kill", (c, 0)),
                       ("open", ("/dev/null", "O_RDONLY")), ("execvp", ("true", ["true"]))):
        with pytest.raises(niche.Undefined):
            getattr(port, call)([c], *args, timeout=T)
    # the allowed calls keep working, also in a child (which inherits the filter)
    g = port.fork([c], timeout=T)
    assert port.getppid([c, g], timeout=T) == c
    with pytest.raises(niche.Undefined):
        port.getcwd([c, g], timeout=T)
    # the Undefined replies did not disturb the process
    assert port.getpid([c], timeout=T) == c


def test_filter_with_an_empty_allow_list(port):
    c = port.fork([], timeout=T)
    port.filter([c], niche.allow([]), timeout=T)
    for call in ("getpid", "getppid", "fork", "version", "filter"):
        with pytest.raises(niche.Undefined):
            getattr(port, call)([c], *(([],) if call == "filter" else ()), timeout=T)
    # the process still runs and is still the port's child
    assert [p.pid for p in port.cpid([], timeout=T)] == [c]
    os.kill(c, 0)


def test_filter_with_an_empty_list_changes_nothing(port):
    c = port.fork([], timeout=T)
    assert port.filter([c], [], timeout=T) is None
    assert port.filter([c], [], [], timeout=T) is None
    assert port.filter([c], [], None, timeout=T) is None
    assert port.getpid([c], timeout=T) == c
    g = port.fork([c], timeout=T)
    assert port.getpid([c, g], timeout=T) == g
    assert port.getcwd([c, g], timeout=T)
    # filter itself is still allowed, and works
    port.filter([c], ["getcwd"], timeout=T)
    with pytest.raises(niche.Undefined):
        port.getcwd([c], timeout=T)


def test_filter_is_inherited_by_later_forks_only(port):
    c = port.fork([], timeout=T)
    before = port.fork([c], timeout=T)
    port.filter([c], ["getcwd"], timeout=T)
    after = port.fork([c], timeout=T)
    deeper = port.fork([c, after], timeout=T)
    for chain in ([c], [c, after], [c, after, deeper]):
        with pytest.raises(niche.Undefined):
            port.getcwd(chain, timeout=T)
        assert port.getpid(chain, timeout=T) == chain[-1]
    # a child forked before the filter keeps every call
    assert port.getcwd([c, before], timeout=T)


def test_subprocess_calls_apply_to_later_children_not_the_process(port):
    c = port.fork([], timeout=T)
    port.filter([c], [], ["getpid"], timeout=T)
    assert port.getpid([c], timeout=T) == c
    g = port.fork([c], timeout=T)
    with pytest.raises(niche.Undefined):
        port.getpid([c, g], timeout=T)
    gg = port.fork([c, g], timeout=T)  # and their children in turn
    with pytest.raises(niche.Undefined):
        port.getpid([c, g, gg], timeout=T)
    assert port.getppid([c, g, gg], timeout=T) == g
    # allow() works for subprocesses too
    d = port.fork([], timeout=T)
    port.filter([d], [], niche.allow(["getppid"]), timeout=T)
    assert port.getcwd([d], timeout=T)
    e = port.fork([d], timeout=T)
    assert port.getppid([d, e], timeout=T) == d
    with pytest.raises(niche.Undefined):
        port.getcwd([d, e], timeout=T)


def test_filter_is_never_lifted(port):
    c = port.fork([], timeout=T)
    port.filter([c], ["getpid"], timeout=T)
    port.filter([c], [], timeout=T)
    port.filter([c], niche.allow(["getpid", "filter"]), timeout=T)  # allow adds denials only
    with pytest.raises(niche.Undefined):
        port.getpid([c], timeout=T)
    with pytest.raises(niche.Undefined):
        port.getcwd([c], timeout=T)  # denied by the allow list now


def test_filtering_filter_freezes_the_filter(port):
    c = port.fork([], timeout=T)
    port.filter([c], ["filter"], timeout=T)
    with pytest.raises(niche.Undefined):
        port.filter([c], [], timeout=T)
    assert port.getpid([c], timeout=T) == c


def test_filter_applies_as_user_and_on_the_port_process(port):
    port.filter([], ["gethostname"], timeout=T)
    with pytest.raises(niche.Undefined):
        port.gethostname([], timeout=T)
    c = port.fork([], timeout=T)  # inherited from the port
    with pytest.raises(niche.Undefined):
        port.gethostname([c], timeout=T)
    assert port.getpid([c], timeout=T) == c


def test_filter_exec_keeps_a_process_from_becoming_a_program(port):
    c = port.fork([], timeout=T)
    port.filter([c], ["execve", "execvp", "fexecve"], timeout=T)
    with pytest.raises(niche.Undefined):
        port.execvp([c], "true", ["true"], timeout=T)
    with pytest.raises(niche.Undefined):
        port.execve([c], "/bin/true", ["true"], [], timeout=T)
    assert port.getpid([c], timeout=T) == c


def test_a_filtered_process_still_forwards_output_and_events(port):
    c = port.fork([], timeout=T)
    g = port.fork([c], timeout=T)
    port.execvp([c, g], "/bin/sh", ["sh", "-c", "echo before; sleep 0.5; echo after; exec sleep 100"],
                timeout=T)
    assert read_stdout(port, [c, g], 7) == b"before\n"
    port.filter([c], niche.allow([]), timeout=T)
    assert read_stdout(port, [c, g], 6) == b"after\n"
    os.kill(g, signal.SIGTERM)
    assert wait_exit(port, [c, g]) == ("termsig", "sigterm")
    # and it reaped its child
    with open(f"/proc/{c}/task/{c}/children") as f:
        assert f.read().split() == []


def test_allow_does_not_cut_the_stdin_of_an_exec_d_child(port):
    """Regression (fixed in 4a8397e): allow([...]) denied stdin/eof too. In
    alcove stdin is data, not a call: a filtered process keeps proxying it."""
    c = port.fork([], timeout=T)
    g = port.fork([c], timeout=T)
    port.execvp([c, g], "cat", ["cat"], timeout=T)
    port.filter([c], niche.allow(["getpid"]), timeout=T)
    port.stdin([c, g], b"still fed\n", timeout=T)
    assert read_stdout(port, [c, g], 10) == b"still fed\n"
    port.eof([c, g], timeout=T)
    assert wait_exit(port, [c, g]) == ("exit_status", 0)


def test_filter_bad_arguments_raise_before_sending(port):
    c = port.fork([], timeout=T)
    with pytest.raises(TypeError):
        port.filter([c], "getpid", timeout=T)  # a string is not a list of calls
    with pytest.raises(ValueError):
        port.filter([c], ["no_such_call"], timeout=T)
    with pytest.raises(TypeError):
        port.filter([c], [3.5], timeout=T)
    with pytest.raises(TypeError):
        niche.allow([None])
    for data_call in ("stdin", "eof"):  # data to an exec'd child, never filtered
        with pytest.raises(ValueError):
            port.filter([c], [data_call], timeout=T)
    # nothing was applied
    assert port.getpid([c], timeout=T) == c
    # call names are case-insensitive
    port.filter([c], ["GetPid"], timeout=T)
    with pytest.raises(niche.Undefined):
        port.getpid([c], timeout=T)


def test_filter_of_a_process_handle(port):
    child = port.root.fork(timeout=T)
    child.filter(niche.allow(["getpid", "execvp", "stdin", "eof"]), timeout=T)
    assert child.getpid(timeout=T) == child.pid
    with pytest.raises(niche.Undefined):
        child.fork(timeout=T)
    child.execvp("/bin/sh", ["sh", "-c", "echo sandboxed"], timeout=T)
    out, ev = read_all_until_exit(port, child.chain)
    assert (out, ev) == (b"sandboxed\n", ("exit_status", 0))
