"""Privilege handling for sandboxed children, explicit and in one place.

Every process that holds a GPIO line (or runs a driver) is made here, the
same way, in this order:

1. cloned from a parent process of the port into new namespaces (IPC,
   mount, network, PID, UTS by default), so it sees no other process, no
   network and its own mount table;
2. left with only the descriptors it needs (the line, the value file):
   every other descriptor it inherited is closed;
3. chrooted: into a directory it needs (the sysfs backend: the line's own
   ``gpioN`` directory) or, with its own mount namespace, into an empty
   read-only tmpfs that exists only there (the chardev and LED backends: a
   descriptor is all they use), so no process holding a line sees the
   host's files;
4. given resource limits (no forks, few files);
5. its capability bounding set emptied (``PR_CAPBSET_DROP`` of every
   capability, while it still has CAP_SETPCAP, i.e. before the UID
   change): setuid clears the effective/permitted sets, but only an empty
   bounding set guarantees that no file capability or set-user-ID-root
   program can hand one back;
6. dropped to a random high UID and GID with no supplementary groups;
   from root to a non-zero UID the kernel clears every capability;
7. ``no_new_privs`` set, so nothing it could exec regains privilege;
8. checked: the IDs, the empty capability sets (bounding set included) and
   ``NoNewPrivs`` are read
   back from ``/proc/self/status`` *by the sandboxed process itself*, and a
   mismatch is an error, not a warning.
"""

from __future__ import annotations

import errno
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from .port import Process

NAMESPACES = ("clone_newipc", "clone_newns", "clone_newnet", "clone_newpid", "clone_newuts")
# Covered, in the child's own mount namespace only, by the empty root (any
# directory that exists on every board would do: this one does wherever the
# port runs, and /proc/self/status is opened before).
EMPTY_ROOT_AT = "/proc"
# High enough to collide with no account; below 2**31 - 1 (-1 means "unchanged").
UID_MIN, UID_MAX = 0x10000000, 0x7FFFFFF0
# No forks (the count is per UID, and the UID is fresh), few descriptors.
# Not RLIMIT_FSIZE: FUSE (the simulator) checks it on every write.
DEFAULT_LIMITS = {"RLIMIT_NPROC": (0, 0), "RLIMIT_NOFILE": (16, 16)}


class SandboxError(RuntimeError):
    """A sandboxed process did not end up with the privileges it should have."""


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int

    @classmethod
    def random(cls) -> Identity:
        """A fresh UID/GID pair nobody else uses: two sandboxes never share
        an identity, so they cannot signal or ptrace each other."""
        rng = random.SystemRandom()
        return cls(rng.randint(UID_MIN, UID_MAX), rng.randint(UID_MIN, UID_MAX))


@dataclass
class Sandbox:
    """A sandboxed process and what was done to it."""

    process: Process
    identity: Identity
    fds: tuple[int, ...]
    namespaces: tuple[str, ...]
    status: dict[str, str] = field(default_factory=dict)  # its /proc/self/status


def read_file(proc: Process, path: str, *, timeout: float | None = None) -> bytes:
    """The whole content of a (small) file, read by the process itself."""
    fd = proc.open(path, ["O_RDONLY", "O_CLOEXEC"], timeout=timeout)
    try:
        chunks = []
        while chunk := proc.read(fd, 65536, timeout=timeout):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        proc.close(fd, timeout=timeout)


def proc_status(proc: Process, fd: int | None = None, *, timeout: float | None = None) -> dict[str, str]:
    """The process's /proc/self/status, read by itself; through ``fd`` (an
    open /proc/self/status, read from the start) once it is chrooted."""
    if fd is None:
        text = read_file(proc, "/proc/self/status", timeout=timeout)
    else:
        proc.lseek(fd, 0, "SEEK_SET", timeout=timeout)
        chunks = []
        while chunk := proc.read(fd, 65536, timeout=timeout):
            chunks.append(chunk)
        text = b"".join(chunks)
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.decode().splitlines())}


def keep_only(proc: Process, keep: Iterable[int], *, timeout: float | None = None) -> None:
    """Close every descriptor of the process but ``keep``, its stdio and the
    descriptors of its event loop (which the port refuses to close)."""
    keep = set(keep) | {0, 1, 2}
    for name in proc.readdir("/proc/self/fd", timeout=timeout):
        fd = int(name)
        if fd in keep:
            continue
        try:
            proc.close(fd, timeout=timeout)
        except OSError:
            pass  # the loop's own descriptors, or readdir's, already closed


def set_limits(proc: Process, limits: Mapping[str, int | tuple[int, int]], *,
               timeout: float | None = None) -> None:
    """setrlimit each resource; a single number is both the soft and the hard limit."""
    for resource, lim in limits.items():
        proc.setrlimit(resource, (lim, lim) if isinstance(lim, int) else lim, timeout=timeout)


def drop_bounding_set(proc: Process, *, timeout: float | None = None) -> None:
    """Empty the capability bounding set: capabilities 0, 1, ... until the
    kernel says EINVAL (past its last one), so no /proc read is needed (the
    process may already be chrooted)."""
    for cap in range(64):
        try:
            proc.prctl("PR_CAPBSET_DROP", cap, 0, 0, 0, timeout=timeout)
        except OSError as e:
            if e.errno == errno.EINVAL:
                return
            raise


def drop_privileges(proc: Process, identity: Identity, *, timeout: float | None = None) -> None:
    """Steps 5-7 in order: the bounding set needs CAP_SETPCAP, setresgid
    needs CAP_SETGID, both gone once setresuid has run."""
    proc.setgroups([], timeout=timeout)
    proc.setresgid(identity.gid, identity.gid, identity.gid, timeout=timeout)
    drop_bounding_set(proc, timeout=timeout)
    proc.setresuid(identity.uid, identity.uid, identity.uid, timeout=timeout)
    proc.prctl("PR_SET_NO_NEW_PRIVS", 1, 0, 0, 0, timeout=timeout)


def verify(proc: Process, identity: Identity, status_fd: int | None = None, *,
           timeout: float | None = None, groups: bool = False) -> dict[str, str]:
    """Read back what the process is; raise SandboxError on any privilege
    left. ``groups=True`` accepts supplementary groups (an unprivileged
    process keeps its own, e.g. gpio)."""
    st = proc_status(proc, status_fd, timeout=timeout)
    want_uid = " ".join([str(identity.uid)] * 4)
    want_gid = " ".join([str(identity.gid)] * 4)
    problems = []
    if " ".join(st.get("Uid", "").split()) != want_uid:
        problems.append(f"Uid is {st.get('Uid')!r}")
    if " ".join(st.get("Gid", "").split()) != want_gid:
        problems.append(f"Gid is {st.get('Gid')!r}")
    if st.get("Groups", "") and not groups:
        problems.append(f"supplementary groups {st['Groups']!r}")
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        if int(st.get(cap, "0"), 16):
            problems.append(f"{cap} is {st[cap]}")
    if st.get("NoNewPrivs") != "1":
        problems.append("no_new_privs is not set")
    if problems:
        raise SandboxError(f"sandboxed process {proc.pid} kept privileges: {', '.join(problems)}")
    return st


def sandbox(
    parent: Process,
    *,
    keep_fds: Sequence[int] = (),
    namespaces: Sequence[str] = NAMESPACES,
    chroot: str | None = None,
    limits: dict[str, tuple[int, int]] | None = None,
    identity: Identity | None = None,
    timeout: float | None = None,
) -> Sandbox:
    """Make a sandboxed child of ``parent`` that keeps only ``keep_fds``.

    The descriptors must be open in ``parent``: the child inherits them
    across clone. On any failure the half-made child is killed.

    A parent that is not root (a port run as the agent's user, with the
    lines reachable through the gpio group) cannot make namespaces or change
    UIDs: its child keeps its UID and gets no namespaces, but still only its
    descriptors, its limits, no capabilities and no_new_privs.
    """
    uid = parent.getresuid(timeout=timeout)[1]
    if uid != 0:
        namespaces = ()
        identity = Identity(uid, parent.getresgid(timeout=timeout)[1])
    identity = identity or Identity.random()
    child = parent.clone(list(namespaces), timeout=timeout) if namespaces else parent.fork(timeout=timeout)
    try:
        keep_only(child, keep_fds, timeout=timeout)
        # opened now, read after the drop: a chrooted process has no /proc
        status_fd = child.open("/proc/self/status", ["O_RDONLY", "O_CLOEXEC"], timeout=timeout)
        if chroot is None and uid == 0 and "clone_newns" in namespaces:
            # private first: a mount under a shared / would reach the host
            child.mount("none", "/", "", ["MS_REC", "MS_PRIVATE"], "", timeout=timeout)
            child.mount("niche-empty", EMPTY_ROOT_AT, "tmpfs",
                        ["MS_RDONLY", "MS_NOSUID", "MS_NODEV", "MS_NOEXEC"], "size=4k,mode=0555",
                        timeout=timeout)
            chroot = EMPTY_ROOT_AT
        if chroot is not None:
            child.chdir(chroot, timeout=timeout)
            child.chroot(".", timeout=timeout)
            child.chdir("/", timeout=timeout)
        set_limits(child, DEFAULT_LIMITS if limits is None else limits, timeout=timeout)
        if uid == 0:
            drop_privileges(child, identity, timeout=timeout)
        else:
            child.prctl("PR_SET_NO_NEW_PRIVS", 1, 0, 0, 0, timeout=timeout)
        status = verify(child, identity, status_fd, timeout=timeout, groups=uid != 0)
        child.close(status_fd, timeout=timeout)
    except BaseException:
        try:
            parent.kill(child.pid, "SIGKILL", timeout=timeout)
        except (OSError, RuntimeError):
            pass
        raise
    return Sandbox(child, identity, tuple(keep_fds), tuple(namespaces), status)


__all__ = [
    "DEFAULT_LIMITS", "Identity", "NAMESPACES", "Sandbox", "SandboxError", "drop_bounding_set",
    "drop_privileges",
    "keep_only", "proc_status", "read_file", "sandbox", "set_limits", "verify",
]
