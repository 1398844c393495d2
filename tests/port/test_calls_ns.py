"""Namespaces, mounts, chroot and TUNSETIFF through the port, as root (issue 4).

Ported from alcove's suite: getpid is 1 in a new PID namespace, the
hostname of a new UTS namespace (clone, setns and unshare variants), bind
and tmpfs mounts with umount in a private mount namespace, chroot then
getcwd, and a tap device in a new network namespace. What a user relies
on is checked from outside as well: the host's hostname and mounts stay
untouched.
"""

from __future__ import annotations

import errno
import os
import socket
import struct

import pytest
from porthelpers import proc_stat, read_all_until_exit

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="namespaces and mounts need root")

T = 10


def _mounts(pid: int | str) -> list[tuple[str, str]]:
    """(mount point, fs type) of every mount seen by pid."""
    out = []
    with open(f"/proc/{pid}/mounts") as f:
        for line in f:
            parts = line.split()
            out.append((parts[1], parts[2]))
    return out


def _private_ns_child(port):
    """A child in a new mount namespace whose mount tree is private."""
    c = port.clone([], ["CLONE_NEWNS"], timeout=T)
    port.mount([c], "none", "/", "", ["MS_REC", "MS_PRIVATE"], "", timeout=T)
    return c


# --------------------------------------------------------------------------
# PID namespace


def test_getpid_is_1_in_a_new_pid_namespace(port, port_pid):
    c = port.clone([], "CLONE_NEWPID", timeout=T)
    # inside, the child is init of its namespace; outside, a normal PID
    assert port.getpid([c], timeout=T) == 1
    assert port.getppid([c], timeout=T) == 0  # its parent is in another namespace
    assert c != 1 and proc_stat(c)[1] == port_pid
    # its own children are numbered inside the namespace
    g = port.fork([c], timeout=T)
    assert port.getpid([c, g], timeout=T) == g
    assert port.getppid([c, g], timeout=T) == 1
    assert 1 < g < 100  # a fresh namespace numbers from 1


# --------------------------------------------------------------------------
# UTS namespace


def test_sethostname_in_new_uts_namespace_changes_only_there(port):
    host = os.uname().nodename
    c = port.clone([], ["clone_newuts"], timeout=T)
    assert port.gethostname([c], timeout=T) == host  # a copy of the parent's
    assert port.sethostname([c], "niche-box", timeout=T) is None
    assert port.gethostname([c], timeout=T) == "niche-box"
    # children forked later share the namespace
    g = port.fork([c], timeout=T)
    assert port.gethostname([c, g], timeout=T) == "niche-box"
    # an exec'd program sees it too
    port.execvp([c, g], "hostname", ["hostname"], timeout=T)
    out, ev = read_all_until_exit(port, [c, g])
    assert (out, ev) == (b"niche-box\n", ("exit_status", 0))
    # nowhere else
    assert os.uname().nodename == host
    assert socket.gethostname() == host
    assert port.gethostname([], timeout=T) == host
    other = port.fork([], timeout=T)
    assert port.gethostname([other], timeout=T) == host


def test_sethostname_outside_a_new_namespace_would_change_the_host(port):
    """Guard of the test above: a plain fork shares the host's UTS namespace."""
    c = port.fork([], timeout=T)
    assert os.readlink(f"/proc/{c}/ns/uts") == os.readlink("/proc/self/ns/uts")


def test_setns_into_another_childs_uts_namespace(port):
    host = os.uname().nodename
    a = port.clone([], ["CLONE_NEWUTS"], timeout=T)
    port.sethostname([a], "niche-setns", timeout=T)
    b = port.fork([], timeout=T)
    assert port.gethostname([b], timeout=T) == host
    fd = port.open([b], f"/proc/{a}/ns/uts", "O_RDONLY", timeout=T)
    assert isinstance(fd, int) and fd >= 0
    assert port.setns([b], fd, "CLONE_NEWUTS", timeout=T) is None
    assert port.gethostname([b], timeout=T) == "niche-setns"
    assert os.readlink(f"/proc/{b}/ns/uts") == os.readlink(f"/proc/{a}/ns/uts")
    # nstype 0 (the default) accepts any namespace type
    c = port.fork([], timeout=T)
    fd2 = port.open([c], f"/proc/{a}/ns/uts", "O_RDONLY", timeout=T)
    port.setns([c], fd2, timeout=T)
    assert port.gethostname([c], timeout=T) == "niche-setns"
    assert os.uname().nodename == host


def test_setns_with_the_wrong_nstype_is_einval(port):
    a = port.clone([], ["CLONE_NEWUTS"], timeout=T)
    b = port.fork([], timeout=T)
    fd = port.open([b], f"/proc/{a}/ns/uts", "O_RDONLY", timeout=T)
    with pytest.raises(OSError) as ei:
        port.setns([b], fd, "CLONE_NEWNET", timeout=T)
    assert ei.value.errno == errno.EINVAL
    assert port.gethostname([b], timeout=T) == os.uname().nodename


def test_unshare_uts_then_sethostname(port):
    host = os.uname().nodename
    c = port.fork([], timeout=T)
    before = os.readlink(f"/proc/{c}/ns/uts")
    assert port.unshare([c], "CLONE_NEWUTS", timeout=T) is None
    assert os.readlink(f"/proc/{c}/ns/uts") != before
    port.sethostname([c], b"niche-unshared", timeout=T)  # bytes work too
    assert port.gethostname([c], timeout=T) == "niche-unshared"
    assert os.uname().nodename == host
    assert port.gethostname([], timeout=T) == host


# --------------------------------------------------------------------------
# mounts


def test_tmpfs_mount_and_umount_in_a_private_mount_namespace(port, tmp_path):
    target = str(tmp_path)
    c = _private_ns_child(port)
    port.mount([c], "tmpfs", target, "tmpfs", 0, "size=1m,mode=0755", timeout=T)
    assert (target, "tmpfs") in _mounts(c)
    assert (target, "tmpfs") not in _mounts("self")  # the host is untouched
    # what is made inside lands on the tmpfs, invisible outside
    port.mkdir([c], f"{target}/inside", 0o755, timeout=T)
    assert port.readdir([c], target, timeout=T) == ["inside"]
    assert os.listdir(target) == []
    # a read-only remount refuses new entries
    port.mount([c], "tmpfs", target, "", ["MS_REMOUNT", "MS_RDONLY"], "", timeout=T)
    with pytest.raises(OSError) as ei:
        port.mkdir([c], f"{target}/other", 0o755, timeout=T)
    assert ei.value.errno == errno.EROFS
    assert port.umount([c], target, timeout=T) is None
    assert (target, "tmpfs") not in _mounts(c)
    assert port.readdir([c], target, timeout=T) == []


def test_umount2_detach_while_a_file_is_open(port, tmp_path):
    target = str(tmp_path)
    c = _private_ns_child(port)
    port.mount([c], "tmpfs", target, "tmpfs", 0, "", timeout=T)
    fd = port.open([c], f"{target}/f", ["O_RDWR", "O_CREAT"], 0o644, timeout=T)
    assert port.write([c], fd, b"on tmpfs", timeout=T) == 8
    assert os.listdir(target) == []
    with pytest.raises(OSError) as ei:
        port.umount([c], target, timeout=T)
    assert ei.value.errno == errno.EBUSY
    port.umount2([c], target, "MNT_DETACH", timeout=T)
    assert (target, "tmpfs") not in _mounts(c)
    assert port.readdir([c], target, timeout=T) == []
    # the open descriptor still reaches the detached file system
    port.lseek([c], fd, 0, "SEEK_SET", timeout=T)
    assert port.read([c], fd, 100, timeout=T) == b"on tmpfs"


def test_umount_removes_a_tmpfs(port, tmp_path):
    target = str(tmp_path)
    c = _private_ns_child(port)
    port.mount([c], "tmpfs", target, "tmpfs", [], "", timeout=T)
    port.mkdir([c], f"{target}/d", 0o755, timeout=T)
    assert port.readdir([c], target, timeout=T) == ["d"]
    assert port.umount([c], target, timeout=T) is None
    assert (target, "tmpfs") not in _mounts(c)
    assert port.readdir([c], target, timeout=T) == []
    # a second umount: nothing mounted there any more
    with pytest.raises(OSError) as ei:
        port.umount([c], target, timeout=T)
    assert ei.value.errno == errno.EINVAL


def test_bind_mount_shows_the_source_only_inside(port, tmp_path):
    src = tmp_path / "src"
    dst = tmp_path / "dst"
    src.mkdir()
    dst.mkdir()
    (src / "a").write_text("from src\n")
    c = _private_ns_child(port)
    port.mount([c], str(src), str(dst), "", "MS_BIND", "", timeout=T)
    assert port.readdir([c], str(dst), timeout=T) == ["a"]
    fd = port.open([c], str(dst / "a"), "O_RDONLY", timeout=T)
    assert port.read([c], fd, 100, timeout=T) == b"from src\n"
    assert os.listdir(dst) == []  # outside: still the empty directory
    # writes through the bind mount reach the source
    fd = port.open([c], str(dst / "b"), ["O_WRONLY", "O_CREAT"], 0o600, timeout=T)
    port.write([c], fd, b"x", timeout=T)
    assert (src / "b").read_bytes() == b"x"
    # a child in the same namespace sees it; a sibling outside does not
    g = port.fork([c], timeout=T)
    assert sorted(port.readdir([c, g], str(dst), timeout=T)) == ["a", "b"]
    s = port.fork([], timeout=T)
    assert port.readdir([s], str(dst), timeout=T) == []
    port.umount2([c], str(dst), "MNT_DETACH", timeout=T)
    assert port.readdir([c], str(dst), timeout=T) == []


def test_mount_with_an_unknown_fs_type_is_enodev(port, tmp_path):
    c = _private_ns_child(port)
    with pytest.raises(OSError) as ei:
        port.mount([c], "none", str(tmp_path), "no-such-fs", 0, "", timeout=T)
    assert ei.value.errno == errno.ENODEV
    assert port.getpid([c], timeout=T) == c


def test_mount_flag_names_are_case_insensitive_and_unknown_ones_enotsup(port, tmp_path):
    c = _private_ns_child(port)
    port.mount([c], "tmpfs", str(tmp_path), "tmpfs", ["ms_nosuid", "MS_NODEV"], "", timeout=T)
    assert (str(tmp_path), "tmpfs") in _mounts(c)
    with pytest.raises(OSError) as ei:
        port.mount([c], "tmpfs", str(tmp_path), "tmpfs", ["MS_NO_SUCH_FLAG"], "", timeout=T)
    assert ei.value.errno == errno.ENOTSUP


# --------------------------------------------------------------------------
# chroot


def test_chroot_then_getcwd(port, tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "file").write_text("x")
    c = port.fork([], timeout=T)
    assert port.chroot([c], str(root), timeout=T) is None
    port.chdir([c], "/", timeout=T)
    assert port.getcwd([c], timeout=T) == "/"
    assert sorted(port.readdir([c], "/", timeout=T)) == ["file", "sub"]
    port.chdir([c], "/sub", timeout=T)
    assert port.getcwd([c], timeout=T) == "/sub"
    # ".." at the new root stays there
    port.chdir([c], "/../..", timeout=T)
    assert port.getcwd([c], timeout=T) == "/"
    with pytest.raises(FileNotFoundError):
        port.open([c], str(tmp_path / "root" / "file"), "O_RDONLY", timeout=T)
    # the kernel agrees on the new root; the port itself is not chrooted
    assert os.readlink(f"/proc/{c}/root") == str(root)
    assert port.getcwd([], timeout=T) == os.readlink(f"/proc/{port.pid}/cwd")
    assert os.readlink(f"/proc/{port.pid}/root") == "/"


def test_chroot_into_a_missing_directory(port, tmp_path):
    c = port.fork([], timeout=T)
    with pytest.raises(FileNotFoundError):
        port.chroot([c], str(tmp_path / "missing"), timeout=T)
    assert os.readlink(f"/proc/{c}/root") == "/"


# --------------------------------------------------------------------------
# TUNSETIFF in a new network namespace


def _ifreq(port, chain, name: bytes, flags: list[str]) -> bytes:
    value = 0
    for f in flags:
        v = port.ioctl_constant(chain, f, timeout=T)
        assert v is not None, f
        value |= v
    # struct ifreq: char ifr_name[16]; union { short ifr_flags; ... } (24 bytes)
    return name.ljust(16, b"\0") + struct.pack("=h", value).ljust(24, b"\0")


@pytest.mark.skipif(not os.path.exists("/dev/net/tun"), reason="no /dev/net/tun")
def test_ioctl_tunsetiff_in_a_new_network_namespace(port):
    c = port.clone([], ["CLONE_NEWNET"], timeout=T)
    fd = port.open([c], "/dev/net/tun", "O_RDWR", timeout=T)
    req = _ifreq(port, [c], b"", ["IFF_TAP", "IFF_NO_PI"])
    result, ifr = port.ioctl([c], fd, "TUNSETIFF", req, timeout=T)
    assert result == 0
    assert isinstance(ifr, bytes) and len(ifr) == len(req)
    name = ifr[:16].split(b"\0")[0]
    assert name == b"tap0"  # the first tap of a fresh namespace
    # the device lives in the child's namespace only
    with open(f"/proc/{c}/net/dev") as f:
        assert "tap0:" in f.read()
    assert os.readlink(f"/proc/{c}/ns/net") != os.readlink("/proc/self/ns/net")
    # a named device keeps its name
    fd2 = port.open([c], "/dev/net/tun", "O_RDWR", timeout=T)
    _, ifr2 = port.ioctl([c], fd2, "TUNSETIFF", _ifreq(port, [c], b"niche%d", ["IFF_TUN", "IFF_NO_PI"]),
                         timeout=T)
    assert ifr2[:16].split(b"\0")[0] == b"niche0"
    # TUNGETIFF reads it back through a buffer
    _, got = port.ioctl([c], fd2, "TUNGETIFF", bytes(40), timeout=T)
    assert got[:16].split(b"\0")[0] == b"niche0"


def test_ioctl_on_a_non_tun_descriptor_is_an_oserror(port):
    c = port.fork([], timeout=T)
    fd = port.open([c], "/dev/null", "O_RDWR", timeout=T)
    with pytest.raises(OSError) as ei:
        port.ioctl([c], fd, "TUNSETIFF", bytes(40), timeout=T)
    assert ei.value.errno in (errno.ENOTTY, errno.EINVAL, errno.EBADFD)
    assert port.getpid([c], timeout=T) == c
