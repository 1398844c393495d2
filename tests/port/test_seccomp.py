"""Seccomp filters built by niche.seccomp, loaded through the port into
real processes on the real kernel (issue 4): kill, allow, trap, errno,
log, raw programs, and the port's own event loop under a filter."""

from __future__ import annotations

import errno
import os
import sys

import niche
import pytest
from niche import seccomp, uapi
from porthelpers import not_under_asan, read_all_until_exit, wait_event, wait_exit

T = 10


def _seccomp_available() -> bool:
    try:
        with open("/proc/self/status") as f:
            return any(line.startswith("Seccomp:") for line in f)
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _seccomp_available(), reason="kernel without seccomp")


def run_python(port, chain, code: str, prog: bytes | None = None):
    """Fork a child of chain, load prog into it, exec `python3 -c code`;
    returns (stdout, stderr, exit event)."""
    c = port.fork(chain, timeout=T)
    child = [*chain, c]
    if prog is not None:
        seccomp.apply(port, child, prog, timeout=T)
    port.execvp(child, sys.executable, [sys.executable, "-c", code], timeout=T)
    port.eof(child, timeout=T)
    out, ev = read_all_until_exit(port, child)
    err = port.stderr(child, timeout=0.2)
    return out, err, ev


RAW_SYSCALL = """
import ctypes, sys
libc = ctypes.CDLL(None, use_errno=True)
r = libc.syscall({nr})
print(r, ctypes.get_errno(), flush=True)
"""


# --- the builder ------------------------------------------------------------


def test_allow_list_program_shape(port):
    prog = seccomp.allow_list(port, [], ["read", "SYS_write"], "kill")
    insns = seccomp.decode(prog)
    ld = port.seccomp_constant([], "BPF_LD") | port.seccomp_constant([], "BPF_W") | \
        port.seccomp_constant([], "BPF_ABS")
    ret = port.seccomp_constant([], "BPF_RET") | port.seccomp_constant([], "BPF_K")
    jeq = port.seccomp_constant([], "BPF_JMP") | port.seccomp_constant([], "BPF_JEQ") | \
        port.seccomp_constant([], "BPF_K")
    kill = port.seccomp_constant([], "SECCOMP_RET_KILL_PROCESS")
    allow = port.seccomp_constant([], "SECCOMP_RET_ALLOW")
    # The architecture check comes first.
    assert insns[0] == (ld, 0, 0, uapi.offsetof("struct seccomp_data", "arch"))
    assert insns[1] == (jeq, 1, 0, port.seccomp_constant([], "AUDIT_ARCH_NATIVE"))
    assert insns[2] == (ret, 0, 0, kill)
    assert insns[3] == (ld, 0, 0, uapi.offsetof("struct seccomp_data", "nr"))
    nrs = sorted([port.syscall_constant([], "SYS_read"), port.syscall_constant([], "SYS_write")])
    assert insns[4:8] == [(jeq, 0, 1, nrs[0]), (ret, 0, 0, allow), (jeq, 0, 1, nrs[1]), (ret, 0, 0, allow)]
    assert insns[8] == (ret, 0, 0, kill)
    assert len(insns) == 9
    assert len(prog) == 9 * uapi.sizeof("struct sock_filter")


def test_action_values(port):
    c = lambda n: port.seccomp_constant([], n)  # noqa: E731
    assert seccomp.action_value(port, [], "kill") == c("SECCOMP_RET_KILL_PROCESS")
    assert seccomp.action_value(port, [], "trap") == c("SECCOMP_RET_TRAP")
    assert seccomp.action_value(port, [], "log") == c("SECCOMP_RET_LOG")
    assert seccomp.action_value(port, [], "allow") == c("SECCOMP_RET_ALLOW")
    eperm = port.errno_constant([], "EPERM")
    assert seccomp.action_value(port, [], "errno:EPERM") == c("SECCOMP_RET_ERRNO") | eperm
    assert seccomp.action_value(port, [], "ERRNO:eperm") == c("SECCOMP_RET_ERRNO") | eperm
    assert seccomp.action_value(port, [], "errno:13") == c("SECCOMP_RET_ERRNO") | 13
    for bad in ("explode", "errno", "errno:ENOSUCH", "kill:3", "errno:999999"):
        with pytest.raises(ValueError):
            seccomp.action_value(port, [], bad)
    with pytest.raises(TypeError):
        seccomp.action_value(port, [], True)


def test_unknown_syscall_names(port):
    with pytest.raises(ValueError, match="nosuchcall.*missing='ignore'"):
        seccomp.allow_list(port, [], ["read", "nosuchcall"])
    prog = seccomp.allow_list(port, [], ["read", "nosuchcall"], missing="ignore")
    assert len(seccomp.decode(prog)) == 4 + 2 + 1
    with pytest.raises(TypeError):
        seccomp.allow_list(port, [], "read")
    with pytest.raises(ValueError):
        seccomp.allow_list(port, [], ["read"], missing="maybe")


def test_apply_checks_the_program(port):
    with pytest.raises(ValueError):
        seccomp.apply(port, [], b"")
    with pytest.raises(ValueError):
        seccomp.apply(port, [], b"\0" * 7)
    with pytest.raises(TypeError):
        seccomp.apply(port, [], "prog")
    assert port.getpid([], timeout=T) == port.pid  # nothing reached the port


# --- actions on the port's own event-loop processes -------------------------


def test_kill(port):
    c = port.fork([], timeout=T)
    seccomp.apply(port, [c], seccomp.allow_list(port, [c], ["getpid"], "kill", port_loop=True))
    assert port.getpid([c], timeout=T) == c
    with pytest.raises(niche.ProcessExited) as ei:
        port.getuid([c], timeout=T)
    assert ei.value.event == ("termsig", "sigsys")
    assert wait_exit(port, [c]) == ("termsig", "sigsys")
    with pytest.raises(niche.BadPid):
        port.getpid([c], timeout=T)
    assert port.getpid([], timeout=T) == port.pid  # the rest of the tree is fine


@not_under_asan
def test_allow_listed_calls_keep_working(port):
    c = port.fork([], timeout=T)
    prog = seccomp.allow_list(port, [c], ["getpid", "getppid", "getcwd", "chdir", "uname"], "kill",
                              port_loop=True)
    seccomp.apply(port, [c], prog, timeout=T)
    for _ in range(200):
        assert port.getpid([c], timeout=T) == c
    assert port.getppid([c], timeout=T) == port.pid
    port.chdir([c], "/tmp", timeout=T)
    assert port.getcwd([c], timeout=T) == "/tmp"
    port.exit([c], 0, timeout=T)
    assert wait_exit(port, [c]) == ("exit_status", 0)


@not_under_asan
def test_port_loop_syscalls_keep_the_loop_alive(port):
    """A process allowed only PORT_LOOP_SYSCALLS (+ getpid) answers calls,
    traps signals through its signalfd, and exits cleanly when asked."""
    c = port.fork([], timeout=T)
    port.sigaction([c], "sigusr1", "sig_info", timeout=T)
    seccomp.apply(port, [c], seccomp.allow_list(port, [c], ["getpid"], "kill", port_loop=True), timeout=T)
    for _ in range(50):
        assert port.getpid([c], timeout=T) == c
    port.kill([], c, "sigusr1", timeout=T)
    ev = wait_event(port, [c])
    assert ev[:2] == ("signal", "sigusr1")
    info = uapi.unpack("struct signalfd_siginfo", ev[2])
    assert info.ssi_signo == port.signal_constant([], "SIGUSR1")
    assert info.ssi_pid == port.pid
    assert port.sigaction([c], "sigusr1", "", timeout=T) == "sig_info"
    assert port.getpid([c], timeout=T) == c
    port.exit([c], 3, timeout=T)
    assert wait_exit(port, [c]) == ("exit_status", 3)


def test_filtered_loop_relays_its_childs_stdio(port):
    """Filtered after forking and exec'ing a child, the loop still relays
    that child's stdin and stdout, reaps it and reports its exit."""
    c = port.fork([], timeout=T)
    g = port.fork([c], timeout=T)
    port.execvp([c, g], "cat", ["cat"], timeout=T)
    s = port.fork([c], timeout=T)
    port.execvp([c, s], "sleep", ["sleep", "100"], timeout=T)
    seccomp.apply(port, [c], seccomp.allow_list(port, [c], [], "kill", port_loop=True), timeout=T)
    data = bytes(range(256)) * 1200
    port.stdin([c, g], data, timeout=T)
    port.eof([c, g], timeout=T)
    out, ev = read_all_until_exit(port, [c, g])
    assert out == data
    assert ev == ("exit_status", 0)
    port.kill([c], s, "sigterm", timeout=T)  # kill(2) from the filtered process
    assert wait_exit(port, [c, s]) == ("termsig", "sigterm")
    assert port.getopt([c], "maxchild", timeout=T) is not None


def test_filtered_loop_shuts_down_cleanly(make_port):
    p = make_port()
    c = p.fork([], timeout=T)
    seccomp.apply(p, [c], seccomp.allow_list(p, [c], [], "kill", port_loop=True), timeout=T)
    assert p.cpid([], timeout=T)[0].pid == c
    # close_and_check (the fixture's teardown) makes sure the filtered
    # process leaves with the rest of the tree.


def test_errno_action_in_the_loop(port):
    c = port.fork([], timeout=T)
    seccomp.apply(port, [c], seccomp.deny_list(port, [c], ["chdir"], "errno:EPERM"), timeout=T)
    with pytest.raises(PermissionError):
        port.chdir([c], "/", timeout=T)
    assert port.getpid([c], timeout=T) == c  # everything else works
    seccomp.apply(port, [c], seccomp.deny_list(port, [c], ["mkdir"], "errno:ENOTDIR"), timeout=T)
    with pytest.raises(NotADirectoryError):
        port.mkdir([c], "/tmp/niche-never-made", 0o700, timeout=T)
    assert not os.path.exists("/tmp/niche-never-made")


def test_log_action_allows(port):
    c = port.fork([], timeout=T)
    seccomp.apply(port, [c], seccomp.deny_list(port, [c], ["getcwd"], "log"), timeout=T)
    assert port.getcwd([c], timeout=T) == port.getcwd([], timeout=T)


def test_filters_stack_and_are_inherited(port):
    c = port.fork([], timeout=T)
    seccomp.apply(port, [c], seccomp.deny_list(port, [c], ["chdir"], "errno:EACCES"), timeout=T)
    g = port.fork([c], timeout=T)
    with pytest.raises(PermissionError):
        port.chdir([c, g], "/", timeout=T)
    # A later, looser filter cannot lift the first one.
    seccomp.apply(port, [c, g], seccomp.deny_list(port, [c, g], ["mkdir"], "allow"), timeout=T)
    with pytest.raises(PermissionError):
        port.chdir([c, g], "/", timeout=T)


# --- actions on exec'd programs ----------------------------------------------


def test_errno_action_seen_by_an_execd_program(port):
    """getppid made with the raw system call fails with EPERM (Python's
    os.getppid never reports errors)."""
    nr = port.syscall_constant([], "SYS_getppid")
    prog = seccomp.deny_list(port, [], ["getppid"], "errno:EPERM")
    out, err, ev = run_python(port, [], RAW_SYSCALL.format(nr=nr), prog)
    assert ev == ("exit_status", 0), err
    assert out.split() == [b"-1", str(port.errno_constant([], "EPERM")).encode()]


def test_kill_action_on_an_execd_program(port):
    nr = port.syscall_constant([], "SYS_getppid")
    prog = seccomp.deny_list(port, [], ["getppid"], "kill")
    out, err, ev = run_python(port, [], RAW_SYSCALL.format(nr=nr), prog)
    assert ev == ("termsig", "sigsys")
    assert out == b""


def test_trap_kills_an_execd_program_without_a_handler(port):
    nr = port.syscall_constant([], "SYS_getppid")
    prog = seccomp.deny_list(port, [], ["getppid"], "trap")
    out, err, ev = run_python(port, [], RAW_SYSCALL.format(nr=nr), prog)
    assert ev == ("termsig", "sigsys")


def test_trap_delivers_sigsys_to_an_execd_handler(port):
    nr = port.syscall_constant([], "SYS_getppid")
    code = f"""
import ctypes, signal
got = []
signal.signal(signal.SIGSYS, lambda s, f: got.append(s))
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall({nr})
print("trapped", got == [signal.SIGSYS], flush=True)
"""
    prog = seccomp.deny_list(port, [], ["getppid"], "trap")
    out, err, ev = run_python(port, [], code, prog)
    assert ev == ("exit_status", 0), err
    assert out == b"trapped True\n"


def test_trap_in_the_loop_with_sig_info_gives_a_signal_event(port):
    """Regression: the kernel forces a seccomp SIGSYS (a blocked one is reset
    to SIG_DFL), so the loop catches it with a handler instead of its signalfd."""
    c = port.fork([], timeout=T)
    port.sigaction([c], "sigsys", "sig_info", timeout=T)
    seccomp.apply(port, [c], seccomp.deny_list(port, [c], ["getppid"], "trap"), timeout=T)
    port.getppid([c], timeout=T)  # the value of a skipped call: not the parent's PID
    ev = wait_event(port, [c])
    assert ev[:2] == ("signal", "sigsys")
    info = uapi.unpack("struct signalfd_siginfo", ev[2])
    assert info.ssi_signo == port.signal_constant([], "SIGSYS")
    assert info.ssi_syscall == port.syscall_constant([], "SYS_getppid")
    assert info.ssi_arch == port.seccomp_constant([], "AUDIT_ARCH_NATIVE")
    assert info.ssi_call_addr != 0


def test_trapped_call_in_the_loop_fails_and_the_loop_serves_on(port):
    c = port.fork([], timeout=T)
    port.sigaction([c], "sigsys", "sig_info", timeout=T)
    seccomp.apply(port, [c], seccomp.deny_list(port, [c], ["chdir"], "trap"), timeout=T)
    chdir_nr = port.syscall_constant([], "SYS_chdir")
    for _ in range(3):
        with pytest.raises(OSError) as e:
            port.chdir([c], "/", timeout=T)
        assert e.value.errno == errno.ENOSYS
        ev = wait_event(port, [c])
        assert ev[:2] == ("signal", "sigsys")
        assert uapi.unpack("struct signalfd_siginfo", ev[2]).ssi_syscall == chdir_nr
    assert port.getpid([c], timeout=T) == c
    g = port.fork([c], timeout=T)  # a child of the loop gets its own SIGSYS pipe
    with pytest.raises(OSError):
        port.chdir([c, g], "/", timeout=T)
    assert wait_event(port, [c, g])[:2] == ("signal", "sigsys")
    assert port.event([c], timeout=0.2) is None  # not delivered to its parent
    port.sigaction([c], "sigsys", "sig_dfl", timeout=T)  # back to the kernel's default
    with pytest.raises(niche.ProcessExited):
        port.chdir([c], "/", timeout=T)
    assert wait_exit(port, [c]) == ("termsig", "sigsys")


def test_allow_list_on_an_execd_program(port):
    """An allow list that is too short for the program kills it; the same
    list plus what it needs lets it run."""
    c = port.fork([], timeout=T)
    # The loop must keep running until the exec: port_loop, plus execve.
    prog = seccomp.allow_list(port, [c], ["execve"], "kill", port_loop=True)
    seccomp.apply(port, [c], prog, timeout=T)
    try:
        port.execvp([c], "/bin/true", ["true"], timeout=T)
    except niche.ProcessExited:
        pass  # it may die before its parent has seen the exec
    # /bin/true is dynamically linked: the loader needs openat and more.
    assert wait_exit(port, [c]) == ("termsig", "sigsys")

    d = port.fork([], timeout=T)
    probe = [sys.executable, "-c", "print('ok')"]
    # What python3 -c needs, as seen with strace -f -c on Debian 12, plus
    # a wide margin: still an allow list, still killing anything else.
    needed = ["execve", "brk", "mmap", "munmap", "mprotect", "openat", "open", "read", "write", "close",
              "fstat", "newfstatat", "stat", "lstat", "lseek", "pread64", "access", "arch_prctl",
              "set_tid_address", "set_robust_list", "rseq", "prlimit64", "getrandom", "rt_sigaction",
              "rt_sigprocmask", "ioctl", "getdents64", "readlink", "getcwd", "fcntl", "dup", "sysinfo",
              "futex", "gettid", "getpid", "getuid", "geteuid", "getgid", "getegid", "uname", "statx",
              "clock_gettime", "exit_group", "exit", "madvise", "sigaltstack", "mremap", "poll"]
    prog = seccomp.allow_list(port, [d], needed, "kill", port_loop=True, missing="ignore")
    seccomp.apply(port, [d], prog, timeout=T)
    port.execvp([d], probe[0], probe, timeout=T)
    port.eof([d], timeout=T)
    out, ev = read_all_until_exit(port, [d])
    assert (out, ev) == (b"ok\n", ("exit_status", 0)), port.stderr([d], timeout=0.2)


# --- raw programs --------------------------------------------------------------


def _raw_deny(port, chain, name: str, errno_name: str) -> bytes:
    """A hand-assembled program (what a user could write without the
    builder): sock_filter instructions packed with the cffi cdef."""
    k = lambda n: port.seccomp_constant(chain, n)  # noqa: E731
    ld = k("BPF_LD") | k("BPF_W") | k("BPF_ABS")
    jeq = k("BPF_JMP") | k("BPF_JEQ") | k("BPF_K")
    ret = k("BPF_RET") | k("BPF_K")
    return uapi.pack_array("struct sock_filter", [
        {"code": ld, "k": uapi.offsetof("struct seccomp_data", "arch")},
        {"code": jeq, "jt": 1, "jf": 0, "k": k("AUDIT_ARCH_NATIVE")},
        {"code": ret, "k": k("SECCOMP_RET_KILL_PROCESS")},
        {"code": ld, "k": uapi.offsetof("struct seccomp_data", "nr")},
        {"code": jeq, "jt": 0, "jf": 1, "k": port.syscall_constant(chain, f"SYS_{name}")},
        {"code": ret, "k": k("SECCOMP_RET_ERRNO") | port.errno_constant(chain, errno_name)},
        {"code": ret, "k": k("SECCOMP_RET_ALLOW")},
    ])


def test_raw_program_bytes(port):
    c = port.fork([], timeout=T)
    port.prctl([c], "PR_SET_NO_NEW_PRIVS", 1, 0, 0, 0, timeout=T)
    port.seccomp([c], "SECCOMP_SET_MODE_FILTER", 0, _raw_deny(port, [c], "chdir", "EACCES"), timeout=T)
    with pytest.raises(PermissionError):
        port.chdir([c], "/", timeout=T)
    assert port.getpid([c], timeout=T) == c


def test_raw_sock_fprog_cstruct(port):
    """The alcove way: a sock_fprog cstruct with a pointer to the
    instructions (layout from the cdef: the port here is native)."""
    c = port.fork([], timeout=T)
    insns = _raw_deny(port, [c], "chdir", "ENOENT")
    n = len(insns) // uapi.sizeof("struct sock_filter")
    off = uapi.offsetof("struct sock_fprog", "filter")
    head = uapi.pack("struct sock_fprog", len=n)[:off]
    port.prctl([c], "PR_SET_NO_NEW_PRIVS", 1, 0, 0, 0, timeout=T)
    port.seccomp([c], "SECCOMP_SET_MODE_FILTER", 0, [head, ("ptr", insns)], timeout=T)
    with pytest.raises(FileNotFoundError):
        port.chdir([c], "/", timeout=T)


def test_bad_raw_programs_are_refused(port):
    c = port.fork([], timeout=T)
    port.prctl([c], "PR_SET_NO_NEW_PRIVS", 1, 0, 0, 0, timeout=T)
    with pytest.raises(OSError):  # not a multiple of 8 bytes
        port.seccomp([c], "SECCOMP_SET_MODE_FILTER", 0, b"\0" * 12, timeout=T)
    k = lambda n: port.seccomp_constant([c], n)  # noqa: E731
    # A program that does not end in a return is rejected by the kernel.
    bad = uapi.pack_array("struct sock_filter", [{"code": k("BPF_LD") | k("BPF_W") | k("BPF_ABS"), "k": 0}])
    with pytest.raises(OSError):
        port.seccomp([c], "SECCOMP_SET_MODE_FILTER", 0, bad, timeout=T)
    assert port.getpid([c], timeout=T) == c
