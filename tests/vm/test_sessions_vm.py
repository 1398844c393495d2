"""Issue 10 on each guest's real serial line and kernel: sessions (a new
niche.Port finds a clean tree, or reattaches knowingly) and a seccomp trap
aimed at an event-loop process (a sigsys event; the call fails with ENOSYS,
set in the architecture's return register). A few seconds a guest."""

from __future__ import annotations

import errno

import niche
import pytest
from niche import seccomp, uapi

pytestmark = pytest.mark.vm

T = 15


def _real_port(vm_guest) -> None:
    if "/stub/" in vm_guest.guest.config.get("port", ""):
        pytest.skip("guest runs the stub port (make vm-selftest)")


def test_sessions_on_the_line(vm_guest):
    _real_port(vm_guest)
    with niche.Port(serial=vm_guest, start_timeout=T) as p:
        loop = p.fork([], timeout=T)
        sleeper = p.fork([loop], timeout=T)
        p.execvp([loop, sleeper], "/niche-port", ["niche-port"], timeout=T)  # waits on its stdin
    with niche.Port(serial=vm_guest, start_timeout=T, reattach=True) as p:
        assert loop in p.children
        assert p.getpid([loop], timeout=T) == loop
        p.kill([], sleeper, 0, timeout=T)  # still there
    with niche.Port(serial=vm_guest, start_timeout=T) as p:
        assert p.children == ()
        for pid in (loop, sleeper):
            with pytest.raises(OSError) as e:
                p.kill([], pid, 0, timeout=T)
            assert e.value.errno == errno.ESRCH


def test_seccomp_trap_in_the_loop(vm_guest):
    _real_port(vm_guest)
    with niche.Port(serial=vm_guest, start_timeout=T) as p:
        c = p.fork([], timeout=T)
        p.sigaction([c], "sigsys", "sig_info", timeout=T)
        seccomp.apply(p, [c], seccomp.deny_list(p, [c], ["chdir"], "trap"), timeout=T)
        with pytest.raises(OSError) as e:
            p.chdir([c], "/", timeout=T)
        assert e.value.errno == errno.ENOSYS
        _, ev = p.next_event([[c]], timeout=T) or (None, ())
        assert ev[:2] == ("signal", "sigsys")
        info = uapi.unpack("struct signalfd_siginfo", ev[2])
        assert info.ssi_syscall == p.syscall_constant([], "SYS_chdir")
        assert info.ssi_arch == p.seccomp_constant([], "AUDIT_ARCH_NATIVE")
        assert p.getpid([c], timeout=T) == c
