"""Signals through the port (issue 4).

Ported from alcove's suite: sigaction sig_ign / sig_dfl / sig_info, the
("termsig", "sigterm") event after kill, `sh -c 'kill -9 $$'` giving
("termsig", "sigkill"), signaloneof (a child that ignores SIGTERM still
dies when its parent goes), and prctl PR_SET_PDEATHSIG / PR_GET_PDEATHSIG.
"""

from __future__ import annotations

import errno
import os
import signal
import struct
import time

import niche
import pytest
from porthelpers import (
    close_and_check,
    free_pid,
    identity,
    read_stdout,
    still_there,
    wait_event,
    wait_exit,
    wait_until,
)

T = 10


def _sig_ignored(pid: int, sig: int) -> bool:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("SigIgn:"):
                return bool(int(line.split()[1], 16) & (1 << (sig - 1)))
    raise AssertionError("no SigIgn line")


# --------------------------------------------------------------------------
# sigaction


def test_sigaction_sig_ign_then_sig_dfl(port):
    c = port.fork([], timeout=T)
    assert port.sigaction([c], "SIGTERM", "", timeout=T) == "sig_dfl"  # "" only reads
    assert port.sigaction([c], "SIGTERM", "sig_ign", timeout=T) == "sig_dfl"
    assert _sig_ignored(c, signal.SIGTERM)
    assert port.sigaction([c], "sigterm", "", timeout=T) == "sig_ign"
    port.kill([], c, "SIGTERM", timeout=T)
    time.sleep(0.2)
    assert port.getpid([c], timeout=T) == c  # ignored: still serving
    assert port.event([c], timeout=0.2) is None
    assert port.sigaction([c], "SIGTERM", "sig_dfl", timeout=T) == "sig_ign"
    assert not _sig_ignored(c, signal.SIGTERM)
    port.kill([], c, "SIGTERM", timeout=T)
    assert wait_event(port, [c]) == ("termsig", "sigterm")
    with pytest.raises(niche.BadPid):
        port.getpid([c], timeout=T)


def test_sigaction_sig_ign_survives_exec(port):
    c = port.fork([], timeout=T)
    port.sigaction([c], "SIGINT", "sig_ign", timeout=T)
    port.execvp([c], "/bin/sh", ["sh", "-c", "echo ready; exec sleep 100"], timeout=T)
    assert read_stdout(port, [c], 6) == b"ready\n"
    assert _sig_ignored(c, signal.SIGINT)
    os.kill(c, signal.SIGINT)
    assert port.event([c], timeout=0.3) is None
    os.kill(c, signal.SIGTERM)
    assert wait_exit(port, [c]) == ("termsig", "sigterm")


def test_sigaction_sig_info_traps_the_signal_as_an_event(port):
    c = port.fork([], timeout=T)
    assert port.sigaction([c], "SIGUSR1", "sig_info", timeout=T) == "sig_dfl"
    for _ in range(2):  # still trapped after the first delivery
        os.kill(c, signal.SIGUSR1)
        ev = wait_event(port, [c])
        assert ev[:2] == ("signal", "sigusr1")
        info = ev[2]
        assert isinstance(info, bytes) and len(info) >= 12
        assert struct.unpack_from("=i", info)[0] == signal.SIGUSR1
        assert port.getpid([c], timeout=T) == c
    # sig_dfl again: the signal kills
    assert port.sigaction([c], "SIGUSR1", "sig_dfl", timeout=T) == "sig_info"
    port.kill([], c, "SIGUSR1", timeout=T)
    assert wait_event(port, [c]) == ("termsig", "sigusr1")


def test_sigaction_cannot_catch_sigkill_or_sigstop(port):
    c = port.fork([], timeout=T)
    for sig in ("SIGKILL", "SIGSTOP"):
        with pytest.raises(OSError) as ei:
            port.sigaction([c], sig, "sig_ign", timeout=T)
        assert ei.value.errno == errno.EINVAL
    with pytest.raises(OSError) as ei:
        port.sigaction([c], "SIGUSR2", "no_such_handler", timeout=T)
    assert ei.value.errno == errno.EINVAL
    assert port.sigaction([c], "SIGUSR2", "", timeout=T) == "sig_dfl"


# --------------------------------------------------------------------------
# kill and termsig


def test_kill_sigterm_gives_termsig_sigterm(port):
    c = port.fork([], timeout=T)
    port.execvp([c], "sleep", ["sleep", "100"], timeout=T)
    ident = identity(c)
    port.kill([], c, "sigterm", timeout=T)
    assert wait_exit(port, [c]) == ("termsig", "sigterm")
    assert wait_until(lambda: not still_there(ident), 5)


def test_kill_sigterm_of_a_forked_child(port):
    a = port.fork([], timeout=T)
    b = port.fork([a], timeout=T)
    port.kill([a], b, signal.SIGTERM, timeout=T)  # from its parent, by number
    assert wait_event(port, [a, b]) == ("termsig", "sigterm")
    assert port.cpid([a], timeout=T) == []
    assert port.getpid([a], timeout=T) == a


def test_sh_killing_itself_with_sigkill_gives_termsig_sigkill(port):
    c = port.fork([], timeout=T)
    port.execvp([c], "/bin/sh", ["sh", "-c", "kill -9 $$"], timeout=T)
    assert wait_exit(port, [c]) == ("termsig", "sigkill")


def test_exit_status_is_not_a_termsig(port):
    c = port.fork([], timeout=T)
    port.execvp([c], "/bin/sh", ["sh", "-c", "exit 137"], timeout=T)
    assert wait_exit(port, [c]) == ("exit_status", 137)


def test_kill_of_a_missing_process_is_processlookuperror(port):
    c = port.fork([], timeout=T)
    with pytest.raises(ProcessLookupError):
        port.kill([c], free_pid(), "SIGTERM", timeout=T)
    port.kill([c], c, 0, timeout=T)  # signal 0: it exists


# --------------------------------------------------------------------------
# signaloneof


TRAP_TERM = 'trap "" TERM; echo ready; exec sleep 100'


def test_signaloneof_9_kills_a_child_that_ignores_sigterm_when_its_parent_exits(port):
    a = port.fork([], timeout=T)
    b = port.fork([a], timeout=T)
    assert port.getcpid([a], b, "signaloneof", timeout=T) == signal.SIGTERM  # the default
    assert port.setcpid([a], b, "signaloneof", 9, timeout=T) is True
    assert port.getcpid([a], b, "signaloneof", timeout=T) == 9
    port.execvp([a, b], "/bin/sh", ["sh", "-c", TRAP_TERM], timeout=T)
    assert read_stdout(port, [a, b], 6) == b"ready\n"
    assert _sig_ignored(b, signal.SIGTERM)
    t0 = time.monotonic()
    port.exit([a], 0, timeout=T)
    # well within the port's grace period before it would SIGKILL anyway
    assert wait_exit(port, [a, b], timeout=4) == ("termsig", "sigkill")
    assert time.monotonic() - t0 < 4
    assert wait_exit(port, [a]) == ("exit_status", 0)


def test_signaloneof_9_on_close_of_the_port():
    port = niche.Port()
    c = port.fork([], timeout=T)
    port.setcpid([], c, "signaloneof", 9, timeout=T)
    port.execvp([c], "/bin/sh", ["sh", "-c", TRAP_TERM], timeout=T)
    assert read_stdout(port, [c], 6) == b"ready\n"
    ident = identity(c)
    t0 = time.monotonic()
    close_and_check(port, timeout=30)
    assert time.monotonic() - t0 < 4  # no grace period needed: SIGKILL at once
    assert not still_there(ident)


def test_signaloneof_option_is_inherited_by_children_forked_later(port):
    a = port.fork([], timeout=T)
    assert port.setopt([a], "signaloneof", 9, timeout=T) is True
    b = port.fork([a], timeout=T)
    assert port.getcpid([a], b, "signaloneof", timeout=T) == 9
    port.execvp([a, b], "/bin/sh", ["sh", "-c", TRAP_TERM], timeout=T)
    assert read_stdout(port, [a, b], 6) == b"ready\n"
    port.exit([a], 0, timeout=T)
    assert wait_exit(port, [a, b], timeout=4) == ("termsig", "sigkill")


# --------------------------------------------------------------------------
# prctl PR_SET_PDEATHSIG


def test_prctl_pdeathsig_set_and_get(port):
    c = port.fork([], timeout=T)
    assert port.prctl([c], "PR_GET_PDEATHSIG", bytes(4), timeout=T) == (0, struct.pack("=i", 0), 0, 0, 0)
    assert port.prctl([c], "PR_SET_PDEATHSIG", signal.SIGKILL, timeout=T) == (0, signal.SIGKILL, 0, 0, 0)
    res, got, *_ = port.prctl([c], "PR_GET_PDEATHSIG", bytes(4), timeout=T)
    assert res == 0 and struct.unpack("=i", got)[0] == signal.SIGKILL
    usr1 = port.signal_constant([c], "SIGUSR1", timeout=T)
    port.prctl([c], "pr_set_pdeathsig", usr1, timeout=T)
    _, got, *_ = port.prctl([c], "PR_GET_PDEATHSIG", bytes(4), timeout=T)
    assert struct.unpack("=i", got)[0] == usr1
    with pytest.raises(OSError) as ei:
        port.prctl([c], "PR_SET_PDEATHSIG", 1000, timeout=T)
    assert ei.value.errno == errno.EINVAL


def test_pdeathsig_kills_an_exec_d_program_when_its_parent_is_sigkilled(port):
    a = port.fork([], timeout=T)
    b = port.fork([a], timeout=T)
    port.prctl([a, b], "PR_SET_PDEATHSIG", signal.SIGKILL, timeout=T)
    port.execvp([a, b], "/bin/sh", ["sh", "-c", TRAP_TERM], timeout=T)
    assert read_stdout(port, [a, b], 6) == b"ready\n"
    ident = identity(b)
    os.kill(a, signal.SIGKILL)  # a cannot signal b: only the kernel can
    assert wait_event(port, [a]) == ("termsig", "sigkill")
    assert wait_until(lambda: not still_there(ident), 5), "pdeathsig did not kill the orphan"
