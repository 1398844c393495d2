"""The calls of issue 4 with the port running as nobody (65534).

The port is started through setpriv from a copy of the binary in a 0755
directory, as in test_unprivileged.py. What needs privilege fails with the
errno a user expects (EPERM, EACCES); what an unprivileged user may do
works, namespaces included where the kernel lets an unprivileged user
create a user namespace.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import stat
import struct
import tempfile

import niche
import pytest
from porthelpers import (
    PORT_BIN,
    close_and_check,
    proc_uid,
    read_all_until_exit,
    read_stdout,
    wait_event,
    wait_exit,
)

pytestmark = [
    pytest.mark.unprivileged,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to nobody"),
    pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv(1)"),
]

T = 10
NOBODY = 65534
DROP = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


@pytest.fixture
def world_dir():
    """A directory nobody may enter and write in (the checkout may sit under 0700)."""
    d = tempfile.mkdtemp(prefix="niche-ucalls-", dir="/tmp")
    os.chmod(d, 0o777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def uport(world_dir):
    bindir = tempfile.mkdtemp(prefix="niche-ubin-", dir="/tmp")
    os.chmod(bindir, 0o755)
    prog = os.path.join(bindir, "niche-port")
    shutil.copyfile(PORT_BIN, prog)
    os.chmod(prog, 0o755)
    p = niche.Port(progname=prog, exec_prefix=DROP)
    try:
        yield p
    finally:
        close_and_check(p)
        shutil.rmtree(bindir, ignore_errors=True)


def _userns_child(uport, flags, map_root=True):
    """A child cloned into a new user namespace plus flags; skips when the
    kernel does not let an unprivileged user do that. With map_root, the
    child's UID/GID 0 inside map to nobody outside."""
    try:
        c = uport.clone([], ["CLONE_NEWUSER", *flags], timeout=T)
    except PermissionError:
        pytest.skip("unprivileged user namespaces are not allowed here")
    if map_root:
        for name, data in (("setgroups", b"deny"), ("uid_map", b"0 65534 1\n"), ("gid_map", b"0 65534 1\n")):
            fd = uport.open([c], f"/proc/self/{name}", "O_WRONLY", timeout=T)
            assert uport.write([c], fd, data, timeout=T) == len(data)
            uport.close([c], fd, timeout=T)
    return c


# --------------------------------------------------------------------------
# credentials


def test_credentials_are_nobody(uport):
    c = uport.fork([], timeout=T)
    assert uport.getuid([c], timeout=T) == NOBODY
    assert uport.getgid([c], timeout=T) == NOBODY
    assert uport.getresuid([c], timeout=T) == (NOBODY, NOBODY, NOBODY)
    assert uport.getresgid([c], timeout=T) == (NOBODY, NOBODY, NOBODY)
    assert uport.getgroups([c], timeout=T) == []
    assert proc_uid(c) == [NOBODY] * 4


def test_setuid_setgid_setgroups_need_privilege(uport):
    c = uport.fork([], timeout=T)
    for call, args in (("setuid", (0,)), ("setgid", (0,)), ("setgroups", ([0],)),
                       ("setresuid", (0, 0, 0)), ("setresgid", (0, 0, 0))):
        with pytest.raises(PermissionError) as ei:
            getattr(uport, call)([c], *args, timeout=T)
        assert ei.value.errno == errno.EPERM, call
    # to the IDs it has: allowed
    uport.setuid([c], NOBODY, timeout=T)
    uport.setgid([c], NOBODY, timeout=T)
    with pytest.raises(PermissionError):
        uport.setgroups([c], [], timeout=T)  # even clearing them needs CAP_SETGID
    assert uport.getresuid([c], timeout=T) == (NOBODY, NOBODY, NOBODY)


# --------------------------------------------------------------------------
# namespaces, mounts, chroot


def test_namespace_calls_without_a_user_namespace_are_eperm(uport, world_dir):
    c = uport.fork([], timeout=T)
    with pytest.raises(PermissionError):
        uport.unshare([c], "CLONE_NEWUTS", timeout=T)
    with pytest.raises(PermissionError):
        uport.sethostname([c], "nope", timeout=T)
    with pytest.raises(PermissionError):
        uport.clone([c], ["CLONE_NEWPID"], timeout=T)
    with pytest.raises(PermissionError):
        uport.mount([c], "tmpfs", world_dir, "tmpfs", 0, "", timeout=T)
    with pytest.raises(PermissionError):
        uport.umount([c], "/proc", timeout=T)
    with pytest.raises(PermissionError):
        uport.chroot([c], world_dir, timeout=T)
    assert uport.gethostname([c], timeout=T) == os.uname().nodename
    assert uport.getpid([c], timeout=T) == c


def test_setns_into_a_root_namespace_is_refused(uport, port):
    a = port.clone([], ["CLONE_NEWUTS"], timeout=T)
    port.sethostname([a], "root-only", timeout=T)
    c = uport.fork([], timeout=T)
    with pytest.raises(PermissionError):
        fd = uport.open([c], f"/proc/{a}/ns/uts", "O_RDONLY", timeout=T)
        uport.setns([c], fd, "CLONE_NEWUTS", timeout=T)
    assert uport.gethostname([c], timeout=T) == os.uname().nodename


def test_getpid_is_1_in_new_user_and_pid_namespaces(uport):
    c = _userns_child(uport, ["CLONE_NEWPID"], map_root=False)
    assert uport.getpid([c], timeout=T) == 1
    g = uport.fork([c], timeout=T)
    assert uport.getppid([c, g], timeout=T) == 1


def test_sethostname_in_new_user_and_uts_namespaces(uport):
    host = os.uname().nodename
    c = _userns_child(uport, ["CLONE_NEWUTS"])
    assert uport.getuid([c], timeout=T) == 0  # root inside ...
    assert proc_uid(c) == [NOBODY] * 4  # ... nobody outside
    uport.sethostname([c], "nobody-box", timeout=T)
    assert uport.gethostname([c], timeout=T) == "nobody-box"
    assert os.uname().nodename == host
    assert uport.gethostname([], timeout=T) == host


def test_setns_and_unshare_within_user_namespaces(uport):
    host = os.uname().nodename
    a = _userns_child(uport, ["CLONE_NEWUTS"])
    uport.sethostname([a], "ns-a", timeout=T)
    # unshare: a child of a makes a UTS namespace of its own
    b = uport.fork([a], timeout=T)
    uport.unshare([a, b], "CLONE_NEWUTS", timeout=T)
    uport.sethostname([a, b], "ns-b", timeout=T)
    assert uport.gethostname([a, b], timeout=T) == "ns-b"
    assert uport.gethostname([a], timeout=T) == "ns-a"
    # setns: another child of a joins b's namespace
    d = uport.fork([a], timeout=T)
    fd = uport.open([a, d], f"/proc/{b}/ns/uts", "O_RDONLY", timeout=T)
    uport.setns([a, d], fd, "CLONE_NEWUTS", timeout=T)
    assert uport.gethostname([a, d], timeout=T) == "ns-b"
    assert os.uname().nodename == host


def test_tmpfs_and_bind_mounts_in_new_user_and_mount_namespaces(uport, world_dir):
    src = os.path.join(world_dir, "src")
    dst = os.path.join(world_dir, "dst")
    os.mkdir(src)
    os.mkdir(dst)
    os.chmod(src, 0o777)
    c = _userns_child(uport, ["CLONE_NEWNS"])
    uport.mount([c], "none", "/", "", ["MS_REC", "MS_PRIVATE"], "", timeout=T)
    uport.mount([c], "tmpfs", src, "tmpfs", 0, "size=1m", timeout=T)
    uport.mkdir([c], f"{src}/made", 0o755, timeout=T)
    uport.mount([c], src, dst, "", "MS_BIND", "", timeout=T)
    assert uport.readdir([c], dst, timeout=T) == ["made"]
    assert os.listdir(src) == [] and os.listdir(dst) == []  # the host sees nothing
    uport.umount([c], dst, timeout=T)
    uport.umount([c], src, timeout=T)
    assert uport.readdir([c], src, timeout=T) == []


def test_chroot_in_a_new_user_namespace(uport, world_dir):
    os.mkdir(os.path.join(world_dir, "inside"))
    c = _userns_child(uport, [])
    uport.chroot([c], world_dir, timeout=T)
    uport.chdir([c], "/inside", timeout=T)
    assert uport.getcwd([c], timeout=T) == "/inside"
    assert uport.readdir([c], "/", timeout=T) == ["inside"]


@pytest.mark.skipif(
    not os.path.exists("/dev/net/tun") or stat.S_IMODE(os.stat("/dev/net/tun").st_mode) & 0o006 != 0o006,
    reason="/dev/net/tun is not open to everyone here",
)
def test_tunsetiff_in_new_user_and_network_namespaces(uport):
    c = _userns_child(uport, ["CLONE_NEWNET"])
    fd = uport.open([c], "/dev/net/tun", "O_RDWR", timeout=T)
    flags = uport.ioctl_constant([c], "IFF_TAP", timeout=T) | uport.ioctl_constant([c], "IFF_NO_PI")
    req = bytes(16) + struct.pack("=h", flags).ljust(24, b"\0")
    res, ifr = uport.ioctl([c], fd, "TUNSETIFF", req, timeout=T)
    assert res == 0 and ifr[:16].split(b"\0")[0] == b"tap0"
    # outside a namespace of its own: refused
    d = uport.fork([], timeout=T)
    fd = uport.open([d], "/dev/net/tun", "O_RDWR", timeout=T)
    with pytest.raises(PermissionError):
        uport.ioctl([d], fd, "TUNSETIFF", req, timeout=T)


# --------------------------------------------------------------------------
# files


def test_chmod_then_eacces_and_eperm_on_a_file_not_owned(uport, world_dir):
    own = os.path.join(world_dir, "own")
    c = uport.fork([], timeout=T)
    fd = uport.open([c], own, ["O_WRONLY", "O_CREAT"], 0o644, timeout=T)
    uport.write([c], fd, b"mine", timeout=T)
    assert os.stat(own).st_uid == NOBODY
    uport.chmod([c], own, 0o000, timeout=T)
    assert stat.S_IMODE(os.stat(own).st_mode) == 0
    with pytest.raises(PermissionError) as ei:
        uport.open([c], own, "O_RDONLY", timeout=T)
    assert ei.value.errno == errno.EACCES
    uport.chmod([c], own, 0o600, timeout=T)  # the owner may always chmod
    fd = uport.open([c], own, "O_RDONLY", timeout=T)
    assert uport.read([c], fd, 10, timeout=T) == b"mine"
    # a root file: no chmod (EPERM), no open when 0600 (EACCES)
    theirs = os.path.join(world_dir, "theirs")
    with open(theirs, "w") as f:
        f.write("root's")
    os.chmod(theirs, 0o600)
    with pytest.raises(PermissionError) as ei:
        uport.chmod([c], theirs, 0o666, timeout=T)
    assert ei.value.errno == errno.EPERM
    with pytest.raises(PermissionError) as ei:
        uport.open([c], theirs, "O_RDONLY", timeout=T)
    assert ei.value.errno == errno.EACCES
    with pytest.raises(PermissionError):
        uport.chown([c], own, 0, 0, timeout=T)
    assert stat.S_IMODE(os.stat(theirs).st_mode) == 0o600


def test_file_calls_as_nobody(uport, world_dir):
    c = uport.fork([], timeout=T)
    with pytest.raises(FileNotFoundError):
        uport.open([c], "/nonexistent", "O_RDONLY", timeout=T)
    uport.chdir([c], world_dir, timeout=T)
    assert uport.getcwd([c], timeout=T) == world_dir
    uport.mkfifo([c], "fifo", 0o600, timeout=T)
    assert stat.S_ISFIFO(os.stat(os.path.join(world_dir, "fifo")).st_mode)
    fd = uport.open([c], "f", ["O_RDWR", "O_CREAT"], 0o644, timeout=T)
    uport.write([c], fd, b"data", timeout=T)
    uport.lseek([c], fd, 0, "SEEK_SET", timeout=T)
    assert uport.read([c], fd, 10, timeout=T) == b"data"
    uport.symlink([c], "f", "sym", timeout=T)
    uport.link([c], "f", "hard", timeout=T)
    assert sorted(uport.readdir([c], ".", timeout=T)) == ["f", "fifo", "hard", "sym"]
    uport.unlink([c], "hard", timeout=T)
    uport.unlink([c], "sym", timeout=T)
    assert uport.fcntl([c], fd, "F_SETFD", 1, timeout=T) == 0
    assert uport.fcntl([c], fd, "F_GETFD", 0, timeout=T) == 1
    null = uport.open([c], "/dev/null", "O_RDONLY", timeout=T)
    assert uport.select([c], [null], [], [], None, timeout=T) == ([null], [], [])
    s = uport.socket([c], "AF_INET", "SOCK_STREAM", 0, timeout=T)
    assert os.readlink(f"/proc/{c}/fd/{s}").startswith("socket:[")
    with pytest.raises(PermissionError):
        uport.socket([c], "AF_INET", "SOCK_RAW", 1, timeout=T)  # needs CAP_NET_RAW
    with pytest.raises(PermissionError):
        uport.open([c], "/etc/shadow", "O_RDONLY", timeout=T)


@pytest.mark.skipif(
    not os.path.exists("/proc/sys/fs/protected_hardlinks")
    or open("/proc/sys/fs/protected_hardlinks").read().strip() != "1",
    reason="protected_hardlinks is off",
)
def test_link_to_a_file_not_owned_is_eperm(uport, world_dir):
    theirs = os.path.join(world_dir, "theirs")
    with open(theirs, "w"):
        pass
    os.chmod(theirs, 0o600)
    c = uport.fork([], timeout=T)
    with pytest.raises(PermissionError):
        uport.link([c], theirs, os.path.join(world_dir, "hard"), timeout=T)


# --------------------------------------------------------------------------
# resources, priority, sessions


def test_setrlimit_nofile_64_then_getrlimit_and_no_way_back(uport):
    c = uport.fork([], timeout=T)
    uport.setrlimit([c], "RLIMIT_NOFILE", (64, 64), timeout=T)
    assert uport.getrlimit([c], "RLIMIT_NOFILE", timeout=T) == niche.Rlimit(64, 64)
    with pytest.raises(PermissionError):
        uport.setrlimit([c], "RLIMIT_NOFILE", (128, 128), timeout=T)
    assert uport.getrlimit([c], "RLIMIT_NOFILE", timeout=T) == niche.Rlimit(64, 64)


def test_nofile_32_limits_maxchild_to_4_as_nobody(uport):
    c = uport.fork([], timeout=T)
    uport.setrlimit([c], "RLIMIT_NOFILE", (32, 32), timeout=T)
    assert uport.getopt([c], "maxchild", timeout=T) == 4
    for _ in range(4):
        uport.fork([c], timeout=T)
    with pytest.raises(BlockingIOError) as ei:
        uport.fork([c], timeout=T)
    assert ei.value.errno == errno.EAGAIN


def test_setpriority_lowering_the_nice_value_is_eacces(uport):
    c = uport.fork([], timeout=T)
    base = uport.getpriority([c], "PRIO_PROCESS", 0, timeout=T)
    uport.setpriority([c], "PRIO_PROCESS", 0, base + 5, timeout=T)  # nicer: allowed
    assert uport.getpriority([c], "PRIO_PROCESS", 0, timeout=T) == base + 5
    assert os.getpriority(os.PRIO_PROCESS, c) == base + 5
    with pytest.raises(PermissionError) as ei:
        uport.setpriority([c], "PRIO_PROCESS", 0, base, timeout=T)  # back up: not without privilege
    assert ei.value.errno == errno.EACCES
    assert uport.getpriority([c], "PRIO_PROCESS", 0, timeout=T) == base + 5


def test_process_groups_and_sessions_as_nobody(uport):
    c = uport.fork([], timeout=T)
    uport.setpgid([c], 0, 0, timeout=T)
    assert uport.getpgrp([c], timeout=T) == c
    d = uport.fork([], timeout=T)
    assert uport.setsid([d], timeout=T) == d
    assert uport.getsid([d], 0, timeout=T) == d


def test_prctl_as_nobody(uport):
    c = uport.fork([], timeout=T)
    uport.prctl([c], "PR_SET_NAME", b"nobody-proc\0", timeout=T)
    _, name, *_ = uport.prctl([c], "PR_GET_NAME", bytes(16), timeout=T)
    assert name.split(b"\0")[0] == b"nobody-proc"
    uport.prctl([c], "PR_SET_PDEATHSIG", signal.SIGKILL, timeout=T)
    _, got, *_ = uport.prctl([c], "PR_GET_PDEATHSIG", bytes(4), timeout=T)
    assert struct.unpack("=i", got)[0] == signal.SIGKILL


# --------------------------------------------------------------------------
# signals, exec, filter


def test_signals_as_nobody(uport):
    c = uport.fork([], timeout=T)
    assert uport.sigaction([c], "SIGTERM", "sig_ign", timeout=T) == "sig_dfl"
    uport.kill([], c, "SIGTERM", timeout=T)
    assert uport.getpid([c], timeout=T) == c
    uport.sigaction([c], "SIGTERM", "sig_dfl", timeout=T)
    uport.kill([], c, "SIGTERM", timeout=T)
    assert wait_event(uport, [c]) == ("termsig", "sigterm")
    d = uport.fork([], timeout=T)
    uport.execvp([d], "/bin/sh", ["sh", "-c", "kill -9 $$"], timeout=T)
    assert wait_exit(uport, [d]) == ("termsig", "sigkill")
    with pytest.raises(PermissionError):
        uport.kill([], 1, "SIGTERM", timeout=T)


def test_stderr_and_exit_status_as_nobody(uport):
    c = uport.fork([], timeout=T)
    g = uport.fork([c], timeout=T)
    uport.execvp([c, g], "/bin/sh", ["sh", "-c", "id -u; echo oops >&2; exit 2"], timeout=T)
    assert read_stdout(uport, [c, g], 5, stream="stderr") == b"oops\n"
    out, ev = read_all_until_exit(uport, [c, g])
    assert (out, ev) == (b"65534\n", ("exit_status", 2))


def test_filter_as_nobody(uport):
    c = uport.fork([], timeout=T)
    uport.filter([c], niche.allow(["getpid", "fork"]), timeout=T)
    assert uport.getpid([c], timeout=T) == c
    with pytest.raises(niche.Undefined):
        uport.getuid([c], timeout=T)
    g = uport.fork([c], timeout=T)
    with pytest.raises(niche.Undefined):
        uport.getuid([c, g], timeout=T)


def test_bad_arguments_as_nobody(uport):
    c = uport.fork([], timeout=T)
    with pytest.raises(TypeError):
        uport.chdir([c], 1, timeout=T)
    with pytest.raises(OSError) as ei:
        uport.open([c], "/dev/null", "O_NOPE", timeout=T)
    assert ei.value.errno == errno.ENOTSUP
    with pytest.raises(OSError) as ei:
        uport.read([c], -1, 1, timeout=T)
    assert ei.value.errno == errno.EBADF
    with pytest.raises(ValueError):
        uport.chdir([c], "/\0", timeout=T)
    with pytest.raises(niche.Undefined):
        uport.pledge([c], "stdio", "", timeout=T)
    assert uport.getpid([c], timeout=T) == c
