"""Events: exit status, termsig, trapped signals, and what calls to dead or
exec'd processes raise (issue 3)."""

from __future__ import annotations

import os
import signal
import struct
import time

import niche
import pytest
from porthelpers import (
    CallThread,
    chain_of_depth,
    gone_or_zombie,
    proc_stat,
    read_stdout,
    wait_event,
    wait_exit,
    wait_until,
)

T = 10


def cpids(port, chain):
    return sorted(c.pid for c in port.cpid(chain, timeout=T))


@pytest.mark.parametrize("status", [0, 3, 255])
def test_exit_status_event_of_exec_d_program(port, status):
    c = port.fork([], timeout=T)
    port.execvp([c], "/bin/sh", ["sh", "-c", f"exit {status}"], timeout=T)
    assert wait_exit(port, [c]) == ("exit_status", status)


def test_exit_call_gives_exit_status_event(port):
    c = port.fork([], timeout=T)
    assert port.exit([c], 7, timeout=T) is None
    ev = wait_event(port, [c])
    assert ev == ("exit_status", 7)
    assert ev[0] == "exit_status" and ev[1] == 7
    assert wait_until(lambda: cpids(port, []) == [], 10)
    assert port.event([c], timeout=0.3) is None  # exactly one exit event


def test_kill_sigkill_gives_termsig(port):
    c = port.fork([], timeout=T)
    port.execvp([c], "sleep", ["sleep", "100"], timeout=T)
    port.kill([], c, "sigkill", timeout=T)
    assert wait_exit(port, [c]) == ("termsig", "sigkill")


def test_kill_forked_child_with_sigterm(port):
    c = port.fork([], timeout=T)
    port.kill([], c, "SIGTERM", timeout=T)
    assert wait_event(port, [c]) == ("termsig", "sigterm")


def test_kill_from_inside_the_chain(port):
    a = port.fork([], timeout=T)
    b = port.fork([a], timeout=T)
    port.execvp([a, b], "sleep", ["sleep", "100"], timeout=T)
    port.kill([a], b, "sigkill", timeout=T)
    assert wait_exit(port, [a, b]) == ("termsig", "sigkill")


def test_exit_event_arrives_under_the_dead_childs_own_chain(port):
    chain = chain_of_depth(port, 4)
    port.exit(chain, 9, timeout=T)
    assert wait_event(port, chain) == ("exit_status", 9)
    # not under its parent's (or any ancestor's) chain
    for i in range(4):
        assert port.event(chain[:i], timeout=0.3) is None
    # the parent is alive and no longer lists it
    assert port.getpid(chain[:3], timeout=T) == chain[2]
    assert wait_until(lambda: cpids(port, chain[:3]) == [], 10)


def test_exec_d_grandchild_exit_event_under_its_chain(port):
    a = port.fork([], timeout=T)
    b = port.fork([a], timeout=T)
    port.execvp([a, b], "/bin/sh", ["sh", "-c", "exit 4"], timeout=T)
    assert wait_exit(port, [a, b]) == ("exit_status", 4)
    assert port.event([a], timeout=0.3) is None


def test_call_to_exited_pid_raises_badpid(port):
    c = port.fork([], timeout=T)
    port.exit([c], 0, timeout=T)
    assert wait_event(port, [c]) == ("exit_status", 0)
    with pytest.raises(niche.BadPid):
        port.getpid([c], timeout=T)
    with pytest.raises(niche.BadPid):
        port.fork([c], timeout=T)
    assert port.cpid([], timeout=T) == []


def test_calls_after_the_exit_event_raise_badpid_every_time(port):
    # the exit event means the process is gone: a call made after it was
    # never in flight while the process died, so it is BadPid, not
    # ProcessExited, however quickly it follows the event
    got = []
    for _ in range(100):
        c = port.fork([], timeout=T)
        port.exit([c], 0, timeout=T)
        assert wait_event(port, [c]) == ("exit_status", 0)
        try:
            port.getpid([c], timeout=T)
            got.append("answered")
        except niche.PortError as e:
            got.append(type(e).__name__)
    assert set(got) == {"BadPid"}, {k: got.count(k) for k in set(got)}


def test_call_to_exec_d_pid_raises_badpid(port):
    c = port.fork([], timeout=T)
    port.execvp([c], "cat", ["cat"], timeout=T)
    with pytest.raises(niche.BadPid):
        port.getpid([c], timeout=T)
    with pytest.raises(niche.BadPid):
        port.fork([c], timeout=T)
    with pytest.raises(niche.BadPid):
        port.getpid([c, 12345], timeout=T)
    # yet its stdio still works
    port.stdin([c], b"alive\n", timeout=T)
    assert read_stdout(port, [c], 6) == b"alive\n"


def _stop(port, pid):
    port.kill([], pid, "sigstop", timeout=T)
    assert wait_until(lambda: proc_stat(pid)[0] == "T", 5)


def test_process_exited_when_child_dies_with_call_in_flight(port):
    c = port.fork([], timeout=T)
    _stop(port, c)
    call = CallThread(port.getpid, [c], timeout=30)
    call.start()
    time.sleep(0.5)  # let the call reach the stopped child
    assert call.is_alive()
    port.kill([], c, "sigkill", timeout=T)
    _, exc = call.outcome(20)
    assert isinstance(exc, niche.ProcessExited), repr(exc)
    assert isinstance(exc, niche.PortError)
    assert "sigkill" in str(exc).lower() or "sigkill" in repr(exc.args).lower()
    # the port goes on
    assert port.getpid([], timeout=T) > 0


def test_process_exited_when_grandparent_dies_with_call_in_flight(port):
    a = port.fork([], timeout=T)
    g = port.fork([a], timeout=T)
    try:
        _stop(port, g)
        call = CallThread(port.getpid, [a, g], timeout=30)
        call.start()
        time.sleep(0.5)
        assert call.is_alive()
        port.kill([], a, "sigkill", timeout=T)
        _, exc = call.outcome(20)
        assert isinstance(exc, niche.ProcessExited), repr(exc)
        assert wait_event(port, [a]) == ("termsig", "sigkill")
        # later calls to the chain raise BadPid
        with pytest.raises(niche.BadPid):
            port.getpid([a, g], timeout=T)
        # g was orphaned while stopped; once continued it sees the end of
        # its control socket and exits by itself (it may stay a zombie of
        # init, which is not the port's to reap)
        os.kill(g, signal.SIGCONT)
        assert wait_until(lambda: proc_stat(g) is None or proc_stat(g)[0] == "Z", 10)
    finally:
        try:
            os.kill(g, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_sigaction_sig_info_traps_signal_as_event(port):
    c = port.fork([], timeout=T)
    old = port.sigaction([c], "sigusr1", "sig_info", timeout=T)
    assert old == "sig_dfl"
    assert port.sigaction([c], "SIGUSR1", "", timeout=T) == "sig_info"
    port.kill([], c, "sigusr1", timeout=T)
    ev = wait_event(port, [c])
    assert ev[:2] == ("signal", "sigusr1")
    assert len(ev) == 3
    info = ev[2]
    assert isinstance(info, bytes) and len(info) >= 12
    # raw siginfo_t: si_signo comes first
    assert struct.unpack("=i", info[:4])[0] == signal.SIGUSR1
    # the process survived and keeps serving
    assert port.getpid([c], timeout=T) == c
    port.kill([], c, "sigusr1", timeout=T)
    assert wait_event(port, [c])[:2] == ("signal", "sigusr1")
    # back to the default: the signal kills
    assert port.sigaction([c], "sigusr1", "sig_dfl", timeout=T) == "sig_info"
    port.kill([], c, "sigusr1", timeout=T)
    assert wait_exit(port, [c]) == ("termsig", "sigusr1")


def test_sigaction_sig_ign(port):
    c = port.fork([], timeout=T)
    port.sigaction([c], "sigusr2", "sig_ign", timeout=T)
    port.kill([], c, "sigusr2", timeout=T)
    assert port.getpid([c], timeout=T) == c
    assert port.event([c], timeout=0.3) is None


def test_option_exit_status_0_suppresses_exit_events(port):
    assert port.setopt([], "exit_status", 0, timeout=T) is True
    c = port.fork([], timeout=T)
    port.exit([c], 3, timeout=T)
    assert wait_until(lambda: cpids(port, []) == [], 10)
    assert port.event([c], timeout=0.5) is None
    # the process is gone all the same
    with pytest.raises(niche.BadPid):
        port.getpid([c], timeout=T)
    # termsig events are not affected by exit_status
    d = port.fork([], timeout=T)
    port.kill([], d, "sigkill", timeout=T)
    assert wait_event(port, [d]) == ("termsig", "sigkill")


def test_option_termsig_0_suppresses_termsig_events(port):
    assert port.setopt([], "termsig", 0, timeout=T) is True
    c = port.fork([], timeout=T)
    port.kill([], c, "sigkill", timeout=T)
    assert wait_until(lambda: cpids(port, []) == [], 10)
    assert port.event([c], timeout=0.5) is None
    d = port.fork([], timeout=T)
    port.exit([d], 2, timeout=T)
    assert wait_event(port, [d]) == ("exit_status", 2)


def test_port_option_exit_status_0_from_constructor():
    with niche.Port(exit_status=0) as port:
        c = port.fork([], timeout=T)
        port.execvp([c], "true", ["true"], timeout=T)
        assert wait_until(lambda: cpids(port, []) == [], 10)
        assert port.event([c], timeout=0.5) is None


def test_events_are_kept_per_process(port):
    kids = [port.fork([], timeout=T) for _ in range(5)]
    for k in kids:
        port.sigaction([k], "sigusr1", "sig_info", timeout=T)
        port.kill([], k, "sigusr1", timeout=T)
    for k in reversed(kids):
        assert wait_event(port, [k])[:2] == ("signal", "sigusr1")
    for i, k in enumerate(kids):
        port.exit([k], i, timeout=T)
    for i, k in reversed(list(enumerate(kids))):
        assert wait_event(port, [k]) == ("exit_status", i)


def test_port_itself_traps_a_signal(port, port_pid):
    assert port.sigaction([], "sigusr2", "sig_info", timeout=T) == "sig_dfl"
    os.kill(port_pid, signal.SIGUSR2)
    ev = wait_event(port, [])
    assert ev[:2] == ("signal", "sigusr2")
    assert struct.unpack("=i", ev[2][:4])[0] == signal.SIGUSR2
    assert port.getpid([], timeout=T) == port_pid


def test_exit_in_the_middle_of_a_chain_takes_the_rest_down(port):
    chain = chain_of_depth(port, 4)
    leaf = port.fork(chain, timeout=T)
    port.execvp(chain + [leaf], "sleep", ["sleep", "1000"], timeout=T)
    below = [*chain[1:], leaf]
    idents = [(p, proc_stat(p)[2]) for p in below]
    port.exit(chain[:1], 0, timeout=T)
    assert wait_event(port, chain[:1]) == ("exit_status", 0)
    # every process below sees the end of its input and goes, the exec'd
    # leaf gets its signaloneof
    assert wait_until(lambda: all(gone_or_zombie(i) for i in idents), 10), [
        (p, proc_stat(p)) for p, _ in idents
    ]
    with pytest.raises(niche.BadPid):
        port.getpid(chain, timeout=T)


def test_close_with_a_call_in_flight_ends_the_call():
    port = niche.Port()
    c = port.fork([], timeout=T)
    port.kill([], c, "sigstop", timeout=T)
    assert wait_until(lambda: proc_stat(c)[0] == "T", 5)
    call = CallThread(port.getpid, [c], timeout=60)
    call.start()
    time.sleep(0.3)
    closer = CallThread(port.close)
    closer.start()
    _, exc = call.outcome(30)
    assert isinstance(exc, (niche.PortClosed, niche.ProcessExited)), repr(exc)
    _, exc = closer.outcome(30)
    assert exc is None
    assert proc_stat(c) is None


def test_exit_event_is_not_held_back_by_a_background_process(port):
    """A program that leaves a background child holding its stdout still
    gets its exit event when it exits."""
    c = port.fork([], timeout=T)
    port.execvp([c], "/bin/sh", ["sh", "-c", "sleep 60 & echo $!"], timeout=T)
    bg = None
    try:
        out = read_stdout(port, [c], 2)
        bg = int(out)
        assert wait_exit(port, [c], timeout=10) == ("exit_status", 0)
        with pytest.raises(niche.BadPid):
            port.getpid([c], timeout=T)
    finally:
        if bg is not None:
            os.kill(bg, signal.SIGKILL)


def test_stopped_and_continued_program_is_not_reported_dead(port):
    c = port.fork([], timeout=T)
    port.execvp([c], "cat", ["cat"], timeout=T)
    os.kill(c, signal.SIGSTOP)
    assert wait_until(lambda: proc_stat(c)[0] == "T", 5)
    assert port.event([c], timeout=0.5) is None
    os.kill(c, signal.SIGCONT)
    assert port.event([c], timeout=0.5) is None
    port.stdin([c], b"still here\n", timeout=T)
    assert read_stdout(port, [c], 11) == b"still here\n"
    assert [p.pid for p in port.cpid([], timeout=T)] == [c]
    port.kill([], c, "sigsegv", timeout=T)
    assert wait_exit(port, [c]) == ("termsig", "sigsegv")


def test_events_in_a_new_pid_namespace_use_its_pids(port):
    box = port.clone([], ["clone_newpid"], timeout=T)
    inner = port.fork([box], timeout=T)
    assert port.getpid([box, inner], timeout=T) == inner  # a PID of the namespace
    port.execvp([box, inner], "/bin/sh", ["sh", "-c", "exit 6"], timeout=T)
    assert wait_exit(port, [box, inner]) == ("exit_status", 6)
    port.exit([box], 0, timeout=T)
    assert wait_event(port, [box]) == ("exit_status", 0)
