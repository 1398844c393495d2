"""Seccomp BPF programs by system call name, so nobody writes raw BPF.

    from niche import seccomp
    prog = seccomp.allow_list(port, chain, ["getpid"], action="kill", port_loop=True)
    seccomp.apply(port, chain, prog)

A program is ``bytes``: the ``struct sock_filter`` instructions, which
``port.seccomp(chain, "SECCOMP_SET_MODE_FILTER", 0, prog)`` loads (the port
wraps them in a ``sock_fprog`` of its own pointer size). Every number in a
program comes from the port the filter is meant for: system call numbers
(``syscall_constant``), ``SECCOMP_RET_*``, ``BPF_*`` opcodes and the
port's own ``AUDIT_ARCH_NATIVE`` (``seccomp_constant``); the offsets of
``seccomp_data.arch`` and ``.nr`` come from the cffi cdef in
:mod:`niche.uapi`. So a program built against an ARM port is an ARM
program, wherever Python runs.

Programs start with the architecture check: a system call made with
another architecture's calling convention (``int 0x80`` on x86_64, say) is
killed, since its numbers mean other calls.

Actions (``action=`` and ``default=``): ``"allow"``, ``"kill"`` (the whole
process, SIGSYS), ``"kill_thread"``, ``"trap"`` (SIGSYS delivered to the
process, which may handle it), ``"log"`` (allowed, and logged by the
kernel), ``"errno:EPERM"`` (or ``"errno:1"``: the call fails with that
errno), ``"trace"``/``"trace:N"``, or an int (a raw ``SECCOMP_RET_*``
value).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Sequence
from typing import Any

from . import uapi

__all__ = [
    "PORT_LOOP_SYSCALLS", "action_value", "allow_list", "apply", "decode", "deny_list",
    "syscall_numbers",
]

# What a niche-port event-loop process needs to keep running and answering
# calls: found by strace on the port (x86_64, musl) and widened with the
# names other architectures and libcs use for the same thing (arm has
# fcntl64, mmap2, sigreturn; arm64 has no epoll_wait). Names a platform
# does not have are skipped. The calls a user makes in a filtered process
# need their own system calls on top (getpid for port.getpid, ...).
PORT_LOOP_SYSCALLS: tuple[str, ...] = (
    # waiting for and reading requests, sending replies and output
    "epoll_pwait", "epoll_pwait2", "epoll_wait", "epoll_ctl",
    "read", "readv", "write", "writev",
    "recv", "recvfrom", "recvmsg", "send", "sendto", "sendmsg",
    # children: their exit, their pipes, signals (signalfd)
    "wait4", "waitid", "close", "fcntl", "fcntl64", "kill",
    "rt_sigprocmask", "sigprocmask", "rt_sigaction", "rt_sigreturn", "sigreturn",
    "restart_syscall", "signalfd4", "signalfd",
    # memory (musl malloc)
    "brk", "mmap", "mmap2", "munmap", "mremap", "madvise",
    # shutdown: closing children's sockets, the 5 s straggler timer, exit
    "shutdown", "clock_gettime", "clock_gettime64", "gettimeofday",
    "exit", "exit_group",
)

_ACTIONS = {
    "allow": "SECCOMP_RET_ALLOW",
    "kill": "SECCOMP_RET_KILL_PROCESS",
    "kill_process": "SECCOMP_RET_KILL_PROCESS",
    "kill_thread": "SECCOMP_RET_KILL_THREAD",
    "trap": "SECCOMP_RET_TRAP",
    "log": "SECCOMP_RET_LOG",
    "errno": "SECCOMP_RET_ERRNO",
    "trace": "SECCOMP_RET_TRACE",
}

_ARCH_OFF = uapi.offsetof("struct seccomp_data", "arch")
_NR_OFF = uapi.offsetof("struct seccomp_data", "nr")

# Constant values of each port, by family and upper-case name: a port's
# constants never change, and a program needs dozens of them.
_cache: weakref.WeakKeyDictionary[Any, dict[tuple[str, str], int | None]] = weakref.WeakKeyDictionary()


def _const(port: Any, chain: Sequence[int], family: str, name: str) -> int | None:
    table = _cache.setdefault(port, {})
    key = (family, name.upper())
    if key not in table:
        table[key] = getattr(port, f"{family}_constant")(list(chain), name)
    return table[key]


def _need(port: Any, chain: Sequence[int], family: str, name: str) -> int:
    v = _const(port, chain, family, name)
    if v is None:
        raise ValueError(f"the port does not know {name} ({family} constants): it was built "
                         "without it, or for a platform that lacks it")
    return v


class _Asm:
    """Assembles instructions with the port's BPF opcodes."""

    def __init__(self, port: Any, chain: Sequence[int]) -> None:
        self.port, self.chain = port, chain
        self.insns: list[dict[str, int]] = []

    def op(self, *names: str) -> int:
        code = 0
        for n in names:
            code |= _need(self.port, self.chain, "seccomp", f"BPF_{n}")
        return code

    def load_word(self, offset: int) -> None:
        self.insns.append({"code": self.op("LD", "W", "ABS"), "jt": 0, "jf": 0, "k": offset})

    def jump(self, cond: str, k: int, jt: int, jf: int) -> None:
        self.insns.append({"code": self.op("JMP", cond, "K"), "jt": jt, "jf": jf, "k": k & 0xFFFFFFFF})

    def ret(self, k: int) -> None:
        self.insns.append({"code": self.op("RET", "K"), "jt": 0, "jf": 0, "k": k & 0xFFFFFFFF})

    def program(self) -> bytes:
        limit = _const(self.port, self.chain, "seccomp", "BPF_MAXINSNS")
        if limit is not None and len(self.insns) > limit:
            raise ValueError(f"the program has {len(self.insns)} instructions; "
                             f"the kernel takes at most {limit}")
        return uapi.pack_array("struct sock_filter", self.insns)


def action_value(port: Any, chain: Sequence[int], action: str | int) -> int:
    """The ``SECCOMP_RET_*`` value of an action name (see the module doc)."""
    if isinstance(action, bool):
        raise TypeError("an action is a name or an int, not a bool")
    if isinstance(action, int):
        return action & 0xFFFFFFFF
    if not isinstance(action, str):
        raise TypeError(f"an action is a name or an int, not {type(action).__name__}")
    name, _, arg = action.strip().lower().partition(":")
    if name not in _ACTIONS:
        raise ValueError(f"unknown seccomp action {action!r}: use one of {', '.join(sorted(_ACTIONS))}, "
                         "e.g. 'errno:EPERM'")
    if name == "kill" or name == "kill_process":
        value = _const(port, chain, "seccomp", "SECCOMP_RET_KILL_PROCESS")
        if value is None:  # kernels and headers before 4.14
            value = _need(port, chain, "seccomp", "SECCOMP_RET_KILL")
    else:
        value = _need(port, chain, "seccomp", _ACTIONS[name])
    if name == "errno":
        if not arg:
            raise ValueError("the errno action needs an errno: 'errno:EPERM' or 'errno:1'")
        value |= _data(port, chain, _errno(port, chain, arg))
    elif name == "trace":
        value |= _data(port, chain, int(arg, 0) if arg else 0)
    elif arg:
        raise ValueError(f"the {name} action takes no argument: {action!r}")
    return value


def _errno(port: Any, chain: Sequence[int], arg: str) -> int:
    try:
        return int(arg, 0)
    except ValueError:
        pass
    n = _const(port, chain, "errno", arg.upper())
    if n is None:
        raise ValueError(f"unknown errno name {arg!r} on the port's platform")
    return n


def _data(port: Any, chain: Sequence[int], n: int) -> int:
    mask = _need(port, chain, "seccomp", "SECCOMP_RET_DATA")
    if not 0 <= n <= mask:
        raise ValueError(f"seccomp return data {n} is out of range 0..{mask}")
    return n


def syscall_numbers(port: Any, chain: Sequence[int], names: Iterable[str], *,
                    missing: str = "error") -> dict[str, int]:
    """The numbers of system calls on the port's architecture, by name
    (``"read"`` or ``"SYS_read"``). Names the port does not know raise
    ``ValueError`` listing them all, or are left out with
    ``missing="ignore"``."""
    if missing not in ("error", "ignore"):
        raise ValueError("missing must be 'error' or 'ignore'")
    if isinstance(names, (str, bytes)):
        raise TypeError("names must be a list of system call names, not a single string")
    out: dict[str, int] = {}
    unknown: list[str] = []
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"a system call name is a str, not {type(name).__name__}")
        bare = name[4:] if name[:4].lower() == "sys_" else name
        n = _const(port, chain, "syscall", f"SYS_{bare}")
        if n is None:
            unknown.append(bare)
        else:
            out[bare] = n
    if unknown and missing == "error":
        arch = _const(port, chain, "seccomp", "AUDIT_ARCH_NATIVE")
        raise ValueError(
            f"system calls unknown on the port's architecture (AUDIT_ARCH {arch:#x}): "
            f"{', '.join(unknown)}; check the names, or pass missing='ignore' to skip them"
            if arch is not None else f"unknown system calls: {', '.join(unknown)}")
    return out


def _build(port: Any, chain: Sequence[int], numbers: Iterable[int], on_match: int, default: int,
           deny_foreign: bool) -> bytes:
    a = _Asm(port, chain)
    kill = action_value(port, chain, "kill")
    # 1. The architecture: another ABI's numbers mean other calls.
    a.load_word(_ARCH_OFF)
    a.jump("JEQ", _need(port, chain, "seccomp", "AUDIT_ARCH_NATIVE"), 1, 0)
    a.ret(kill)
    # 2. The call number.
    a.load_word(_NR_OFF)
    if deny_foreign:
        # x86_64's x32 ABI shares AUDIT_ARCH_X86_64 but sets a high bit in
        # nr: a deny list must not let those through. The port knows the
        # bit only where it exists.
        x32 = _const(port, chain, "syscall", "__X32_SYSCALL_BIT")
        if x32 is None:
            x32 = _const(port, chain, "seccomp", "__X32_SYSCALL_BIT")
        if x32:
            a.jump("JGE", x32, 0, 1)
            a.ret(kill)
    # 3. One JEQ per call: a match returns on_match, a miss skips that RET.
    for n in sorted(set(numbers)):
        a.jump("JEQ", n, 0, 1)
        a.ret(on_match)
    a.ret(default)
    return a.program()


def allow_list(port: Any, chain: Sequence[int], names: Iterable[str], action: str | int = "kill", *,
               port_loop: bool = False, missing: str = "error") -> bytes:
    """A program allowing only the named system calls; any other gets
    ``action`` (default ``"kill"``). ``port_loop=True`` also allows
    :data:`PORT_LOOP_SYSCALLS`, so a filtered event-loop process keeps
    answering calls (those missing on the platform are skipped)."""
    numbers = syscall_numbers(port, chain, names, missing=missing)
    if port_loop:
        numbers.update(syscall_numbers(port, chain, PORT_LOOP_SYSCALLS, missing="ignore"))
    allow = action_value(port, chain, "allow")
    return _build(port, chain, numbers.values(), allow, action_value(port, chain, action), False)


def deny_list(port: Any, chain: Sequence[int], names: Iterable[str], action: str | int = "kill", *,
              missing: str = "error") -> bytes:
    """A program giving the named system calls ``action`` (default
    ``"kill"``) and allowing every other."""
    numbers = syscall_numbers(port, chain, names, missing=missing)
    allow = action_value(port, chain, "allow")
    return _build(port, chain, numbers.values(), action_value(port, chain, action), allow, True)


def apply(port: Any, chain: Sequence[int], prog: bytes, *, flags: Any = 0,
          no_new_privs: bool = True, timeout: float | None = None) -> None:
    """Load prog into the process at chain (and every process it forks or
    execs later; seccomp filters are never lifted). Sets
    ``PR_SET_NO_NEW_PRIVS`` first, which an unprivileged process needs and
    which keeps setuid programs from gaining privileges past the filter."""
    if not isinstance(prog, (bytes, bytearray, memoryview)):
        raise TypeError(f"a seccomp program is bytes of sock_filter instructions, not {type(prog).__name__}")
    prog = bytes(prog)
    size = uapi.sizeof("struct sock_filter")
    if not prog or len(prog) % size:
        raise ValueError(f"a seccomp program is a non-empty multiple of {size} bytes, got {len(prog)}")
    if no_new_privs:
        port.prctl(list(chain), "PR_SET_NO_NEW_PRIVS", 1, 0, 0, 0, timeout=timeout)
    port.seccomp(list(chain), "SECCOMP_SET_MODE_FILTER", flags, prog, timeout=timeout)


def decode(prog: bytes) -> list[tuple[int, int, int, int]]:
    """The instructions of a program as (code, jt, jf, k) tuples."""
    size = uapi.sizeof("struct sock_filter")
    if len(prog) % size:
        raise ValueError(f"a seccomp program is a multiple of {size} bytes, got {len(prog)}")
    out = []
    for i in range(0, len(prog), size):
        f = uapi.unpack("struct sock_filter", prog[i : i + size])
        out.append((f.code, f.jt, f.jf, f.k))
    return out
