"""File, descriptor and socket calls through the port (issue 4).

Ported from alcove's suite: chdir, chmod then EACCES after dropping to an
unprivileged UID and EPERM on a file the process does not own, open of a
missing file, read/write/lseek/close, readdir, mkfifo, symlink/link/unlink,
fcntl FD_CLOEXEC, select on /dev/null and socket. Every result is checked
against the file system or /proc, not only against the port's answer.
"""

from __future__ import annotations

import errno
import os
import shutil
import socket
import stat
import struct
import tempfile
import time

import pytest
from porthelpers import read_all_until_exit

T = 10
NOBODY = 65534

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop privileges")


@pytest.fixture
def world_dir():
    """A directory anyone may enter and write (tmp_path may sit under 0700)."""
    d = tempfile.mkdtemp(prefix="niche-calls-", dir="/tmp")
    os.chmod(d, 0o777)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _fd_flags(pid: int, fd: int) -> int:
    with open(f"/proc/{pid}/fdinfo/{fd}") as f:
        for line in f:
            if line.startswith("flags:"):
                return int(line.split()[1], 8)
    raise AssertionError("no flags line")


# --------------------------------------------------------------------------
# chdir


def test_chdir_changes_where_relative_paths_and_programs_start(port, tmp_path):
    (tmp_path / "here").write_text("relative\n")
    c = port.fork([], timeout=T)
    assert port.chdir([c], str(tmp_path), timeout=T) is None
    assert port.getcwd([c], timeout=T) == str(tmp_path)
    fd = port.open([c], "here", "O_RDONLY", timeout=T)
    assert port.read([c], fd, 100, timeout=T) == b"relative\n"
    assert os.readlink(f"/proc/{c}/cwd") == str(tmp_path)
    # only the child moved
    assert port.getcwd([], timeout=T) != str(tmp_path)
    # a child forked later starts there, and so does an exec'd program
    g = port.fork([c], timeout=T)
    assert port.getcwd([c, g], timeout=T) == str(tmp_path)
    port.execvp([c, g], "/bin/sh", ["sh", "-c", "pwd"], timeout=T)
    out, ev = read_all_until_exit(port, [c, g])
    assert (out, ev) == (str(tmp_path).encode() + b"\n", ("exit_status", 0))


def test_chdir_to_a_file_is_notadirectoryerror(port, tmp_path):
    f = tmp_path / "f"
    f.write_text("")
    c = port.fork([], timeout=T)
    with pytest.raises(NotADirectoryError):
        port.chdir([c], str(f), timeout=T)
    with pytest.raises(FileNotFoundError):
        port.chdir([c], str(tmp_path / "missing"), timeout=T)
    assert port.getcwd([c], timeout=T) == port.getcwd([], timeout=T)


# --------------------------------------------------------------------------
# chmod and permissions


def test_chmod_sets_the_mode(port, tmp_path):
    f = tmp_path / "f"
    f.write_text("x")
    c = port.fork([], timeout=T)
    for mode in (0o600, 0o4755, 0o000, 0o644):
        assert port.chmod([c], str(f), mode, timeout=T) is None
        assert stat.S_IMODE(os.stat(f).st_mode) == mode
    with pytest.raises(FileNotFoundError):
        port.chmod([c], str(tmp_path / "missing"), 0o644, timeout=T)


@root_only
def test_chmod_then_eacces_after_setuid_and_eperm_on_a_file_not_owned(port, world_dir):
    path = os.path.join(world_dir, "secret")
    c = port.fork([], timeout=T)
    fd = port.open([c], path, ["O_WRONLY", "O_CREAT", "O_EXCL"], 0o644, timeout=T)
    assert os.stat(path).st_uid == 0
    port.chmod([c], path, 0o600, timeout=T)
    port.setgid([c], NOBODY, timeout=T)
    port.setuid([c], NOBODY, timeout=T)
    # a mode 0600 root file: nobody may not open it ...
    with pytest.raises(PermissionError) as ei:
        port.open([c], path, "O_RDONLY", timeout=T)
    assert ei.value.errno == errno.EACCES
    # ... nor change its mode, not being its owner
    with pytest.raises(PermissionError) as ei:
        port.chmod([c], path, 0o666, timeout=T)
    assert ei.value.errno == errno.EPERM
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # a descriptor opened before the drop still works
    assert port.write([c], fd, b"kept", timeout=T) == 4
    with open(path, "rb") as f:
        assert f.read() == b"kept"
    # its own files: chmod works, and mode 000 locks even the owner out
    own = os.path.join(world_dir, "own")
    port.open([c], own, ["O_WRONLY", "O_CREAT"], 0o644, timeout=T)
    assert os.stat(own).st_uid == NOBODY
    port.chmod([c], own, 0o000, timeout=T)
    with pytest.raises(PermissionError) as ei:
        port.open([c], own, "O_RDONLY", timeout=T)
    assert ei.value.errno == errno.EACCES
    port.chmod([c], own, 0o400, timeout=T)
    port.open([c], own, "O_RDONLY", timeout=T)


@root_only
def test_chown(port, tmp_path):
    f = tmp_path / "f"
    f.write_text("")
    c = port.fork([], timeout=T)
    assert port.chown([c], str(f), NOBODY, NOBODY, timeout=T) is None
    st = os.stat(f)
    assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY)
    port.chown([c], str(f), -1, 0, timeout=T)  # -1 leaves the owner
    st = os.stat(f)
    assert (st.st_uid, st.st_gid) == (NOBODY, 0)


# --------------------------------------------------------------------------
# open, read, write, lseek, close


def test_open_nonexistent_raises_filenotfounderror(port):
    c = port.fork([], timeout=T)
    with pytest.raises(FileNotFoundError) as ei:
        port.open([c], "/nonexistent", "O_RDONLY", timeout=T)
    assert ei.value.errno == errno.ENOENT
    with pytest.raises(FileNotFoundError):
        port.open([], "/nonexistent", "O_RDONLY", timeout=T)
    # neither the child nor the port is harmed
    assert port.getpid([c], timeout=T) == c
    assert port.getpid([], timeout=T) == port.pid


def test_open_errors_are_the_builtin_subclasses(port, tmp_path):
    (tmp_path / "f").write_text("")
    c = port.fork([], timeout=T)
    with pytest.raises(FileExistsError):
        port.open([c], str(tmp_path / "f"), ["O_WRONLY", "O_CREAT", "O_EXCL"], 0o644, timeout=T)
    with pytest.raises(IsADirectoryError):
        port.open([c], str(tmp_path), "O_WRONLY", timeout=T)
    with pytest.raises(NotADirectoryError):
        port.open([c], str(tmp_path / "f" / "x"), "O_RDONLY", timeout=T)


def test_read_write_lseek_on_a_file(port, tmp_path):
    path = tmp_path / "data"
    c = port.fork([], timeout=T)
    fd = port.open([c], str(path), ["O_RDWR", "O_CREAT", "O_TRUNC"], 0o600, timeout=T)
    assert isinstance(fd, int) and fd > 2
    assert os.path.exists(f"/proc/{c}/fd/{fd}")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert port.write([c], fd, b"hello world", timeout=T) == 11
    assert path.read_bytes() == b"hello world"
    assert port.read([c], fd, 100, timeout=T) == b""  # at the end
    assert port.lseek([c], fd, 0, "SEEK_SET", timeout=T) is None
    assert port.read([c], fd, 5, timeout=T) == b"hello"
    assert port.read([c], fd, 100, timeout=T) == b" world"
    port.lseek([c], fd, -5, "SEEK_END", timeout=T)
    assert port.read([c], fd, 100, timeout=T) == b"world"
    port.lseek([c], fd, 6, "SEEK_SET", timeout=T)
    port.write([c], fd, b"WORLD", timeout=T)
    assert path.read_bytes() == b"hello WORLD"
    port.lseek([c], fd, -5, "SEEK_CUR", timeout=T)
    assert port.read([c], fd, 1, timeout=T) == b"W"
    # binary data, NULs included, both ways
    blob = bytes(range(256)) * 64
    port.lseek([c], fd, 0, "SEEK_SET", timeout=T)
    assert port.write([c], fd, blob, timeout=T) == len(blob)
    port.lseek([c], fd, 0, "SEEK_SET", timeout=T)
    assert port.read([c], fd, len(blob), timeout=T) == blob
    with pytest.raises(OSError) as ei:
        port.lseek([c], fd, -1, "SEEK_SET", timeout=T)
    assert ei.value.errno == errno.EINVAL


def test_write_to_a_read_only_descriptor_is_ebadf(port, tmp_path):
    (tmp_path / "f").write_text("x")
    c = port.fork([], timeout=T)
    fd = port.open([c], str(tmp_path / "f"), "O_RDONLY", timeout=T)
    with pytest.raises(OSError) as ei:
        port.write([c], fd, b"y", timeout=T)
    assert ei.value.errno == errno.EBADF
    assert (tmp_path / "f").read_text() == "x"


def test_close_a_descriptor(port, tmp_path):
    c = port.fork([], timeout=T)
    fd = port.open([c], str(tmp_path / "f"), ["O_RDWR", "O_CREAT"], 0o600, timeout=T)
    assert port.close([c], fd, timeout=T) is None
    assert not os.path.exists(f"/proc/{c}/fd/{fd}")
    with pytest.raises(OSError) as ei:
        port.read([c], fd, 1, timeout=T)
    assert ei.value.errno == errno.EBADF
    with pytest.raises(OSError) as ei:
        port.close([c], fd, timeout=T)
    assert ei.value.errno == errno.EBADF


def test_close_a_descriptor_through_a_process_handle(port, tmp_path):
    child = port.root.fork(timeout=T)
    fd = child.open(str(tmp_path / "f"), ["O_RDWR", "O_CREAT"], 0o600, timeout=T)
    assert child.close(fd, timeout=T) is None
    assert not os.path.exists(f"/proc/{child.pid}/fd/{fd}")


# --------------------------------------------------------------------------
# readdir


def test_readdir(port, tmp_path):
    for name in ("a", "b.txt", ".hidden"):
        (tmp_path / name).write_text("")
    (tmp_path / "sub").mkdir()
    os.symlink("a", tmp_path / "link")
    odd = os.fsencode(str(tmp_path)) + b"/odd\xff"
    open(odd, "w").close()
    c = port.fork([], timeout=T)
    names = port.readdir([c], str(tmp_path), timeout=T)
    assert all(isinstance(n, str) for n in names)
    assert sorted(names) == sorted(os.listdir(tmp_path))  # "." and ".." left out
    assert "odd\udcff" in names  # undecodable names survive (surrogateescape)
    assert port.readdir([c], str(tmp_path / "sub"), timeout=T) == []
    with pytest.raises(FileNotFoundError):
        port.readdir([c], str(tmp_path / "missing"), timeout=T)
    with pytest.raises(NotADirectoryError):
        port.readdir([c], str(tmp_path / "a"), timeout=T)


def test_readdir_of_a_large_directory(port, tmp_path):
    want = {f"entry-{i:05d}-" + "x" * 100 for i in range(3000)}
    for n in want:
        (tmp_path / n).touch()
    c = port.fork([], timeout=T)
    assert set(port.readdir([c], str(tmp_path), timeout=T)) == want


def test_mkdir_rmdir(port, tmp_path):
    d = tmp_path / "d"
    c = port.fork([], timeout=T)
    port.mkdir([c], str(d), 0o750, timeout=T)
    assert d.is_dir()
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o750 & ~_umask()
    with pytest.raises(FileExistsError):
        port.mkdir([c], str(d), 0o750, timeout=T)
    (d / "f").touch()
    with pytest.raises(OSError) as ei:
        port.rmdir([c], str(d), timeout=T)
    assert ei.value.errno == errno.ENOTEMPTY
    (d / "f").unlink()
    port.rmdir([c], str(d), timeout=T)
    assert not d.exists()


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


# --------------------------------------------------------------------------
# mkfifo


def test_mkfifo_carries_data_between_descriptors(port, tmp_path):
    fifo = tmp_path / "fifo"
    c = port.fork([], timeout=T)
    assert port.mkfifo([c], str(fifo), 0o600, timeout=T) is None
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert stat.S_IMODE(os.stat(fifo).st_mode) == 0o600 & ~_umask()
    with pytest.raises(FileExistsError):
        port.mkfifo([c], str(fifo), 0o600, timeout=T)
    r = port.open([c], str(fifo), ["O_RDONLY", "O_NONBLOCK"], timeout=T)
    w = port.open([c], str(fifo), "O_WRONLY", timeout=T)
    with pytest.raises(BlockingIOError):
        port.read([c], r, 100, timeout=T)  # empty, with a writer: EAGAIN
    assert port.write([c], w, b"through the fifo", timeout=T) == 16
    assert port.read([c], r, 100, timeout=T) == b"through the fifo"


def test_mkfifo_feeds_an_exec_d_program(port, tmp_path):
    fifo = str(tmp_path / "fifo")
    holder = port.fork([], timeout=T)
    port.mkfifo([holder], fifo, 0o600, timeout=T)
    reader = port.fork([], timeout=T)
    port.execvp([reader], "cat", ["cat", fifo], timeout=T)
    w = port.open([holder], fifo, "O_WRONLY", timeout=T)  # returns once cat has it open
    port.write([holder], w, b"fifo to cat\n", timeout=T)
    port.exit([holder], 0, timeout=T)  # the writer's end closes: cat sees EOF
    out, ev = read_all_until_exit(port, [reader])
    assert (out, ev) == (b"fifo to cat\n", ("exit_status", 0))


# --------------------------------------------------------------------------
# symlink, link, unlink


def test_symlink_link_unlink(port, tmp_path):
    target = tmp_path / "target"
    target.write_text("content")
    c = port.fork([], timeout=T)
    port.chdir([c], str(tmp_path), timeout=T)
    assert port.symlink([c], "target", "sym", timeout=T) is None
    assert os.readlink(tmp_path / "sym") == "target"
    assert (tmp_path / "sym").read_text() == "content"
    assert port.link([c], "target", "hard", timeout=T) is None
    assert os.stat(tmp_path / "hard").st_ino == os.stat(target).st_ino
    assert os.stat(target).st_nlink == 2
    with pytest.raises(FileExistsError):
        port.link([c], "target", "hard", timeout=T)
    with pytest.raises(FileExistsError):
        port.symlink([c], "elsewhere", "sym", timeout=T)
    # a dangling symlink can be made and removed
    port.symlink([c], str(tmp_path / "nowhere"), str(tmp_path / "dangling"), timeout=T)
    assert os.path.islink(tmp_path / "dangling") and not os.path.exists(tmp_path / "dangling")
    assert port.unlink([c], "hard", timeout=T) is None
    assert os.stat(target).st_nlink == 1
    port.unlink([c], "sym", timeout=T)  # removes the link, not the target
    port.unlink([c], str(tmp_path / "dangling"), timeout=T)
    assert sorted(os.listdir(tmp_path)) == ["target"]
    with pytest.raises(FileNotFoundError):
        port.unlink([c], "sym", timeout=T)
    with pytest.raises(IsADirectoryError):
        port.unlink([c], str(tmp_path), timeout=T)
    with pytest.raises(FileNotFoundError):
        port.link([c], "missing", "other", timeout=T)


# --------------------------------------------------------------------------
# fcntl


def test_fcntl_fd_cloexec(port):
    c = port.fork([], timeout=T)
    cloexec = port.fcntl_constant([c], "FD_CLOEXEC", timeout=T)
    o_cloexec = port.file_constant([c], "O_CLOEXEC", timeout=T)
    assert cloexec == 1 and o_cloexec  # FD_CLOEXEC is 1 on every Linux
    fd = port.open([c], "/dev/null", "O_RDONLY", timeout=T)
    assert port.fcntl([c], fd, "F_GETFD", 0, timeout=T) == 0
    assert not _fd_flags(c, fd) & o_cloexec
    assert port.fcntl([c], fd, "F_SETFD", cloexec, timeout=T) == 0
    assert port.fcntl([c], fd, "F_GETFD", 0, timeout=T) == cloexec
    assert _fd_flags(c, fd) & o_cloexec
    assert port.fcntl([c], fd, "f_setfd", 0, timeout=T) == 0
    assert port.fcntl([c], fd, "F_GETFD", 0, timeout=T) == 0
    # O_CLOEXEC at open time shows up as FD_CLOEXEC
    fd2 = port.open([c], "/dev/null", ["O_RDONLY", "O_CLOEXEC"], timeout=T)
    assert port.fcntl([c], fd2, "F_GETFD", 0, timeout=T) == cloexec
    # F_GETFL gives the access mode
    assert port.fcntl([c], fd, "F_GETFL", 0, timeout=T) & 3 == port.file_constant([c], "O_RDONLY")


def test_fd_cloexec_decides_what_an_exec_d_program_inherits(port):
    c = port.fork([], timeout=T)
    keep = port.open([c], "/dev/null", "O_RDONLY", timeout=T)
    drop = port.open([c], "/dev/null", "O_RDONLY", timeout=T)
    port.fcntl([c], drop, "F_SETFD", port.fcntl_constant([c], "FD_CLOEXEC"), timeout=T)
    script = f"test -e /proc/self/fd/{keep} && echo keep; test -e /proc/self/fd/{drop} && echo drop; :"
    port.execvp([c], "/bin/sh", ["sh", "-c", script], timeout=T)
    out, ev = read_all_until_exit(port, [c])
    assert (out, ev) == (b"keep\n", ("exit_status", 0))


def test_fcntl_on_a_bad_descriptor_is_ebadf(port):
    c = port.fork([], timeout=T)
    with pytest.raises(OSError) as ei:
        port.fcntl([c], 9999, "F_GETFD", 0, timeout=T)
    assert ei.value.errno == errno.EBADF


# --------------------------------------------------------------------------
# select


def test_select_on_dev_null_is_readable(port):
    c = port.fork([], timeout=T)
    fd = port.open([c], "/dev/null", "O_RDWR", timeout=T)
    assert port.select([c], [fd], [], [], None, timeout=T) == ([fd], [], [])
    assert port.select([c], [fd], [fd], [], (0, 0), timeout=T) == ([fd], [fd], [])
    assert port.select([c], [], [fd], [], 0, timeout=T) == ([], [fd], [])


def test_select_times_out_on_an_empty_fifo(port, tmp_path):
    fifo = str(tmp_path / "fifo")
    c = port.fork([], timeout=T)
    port.mkfifo([c], fifo, 0o600, timeout=T)
    r = port.open([c], fifo, ["O_RDONLY", "O_NONBLOCK"], timeout=T)
    w = port.open([c], fifo, "O_WRONLY", timeout=T)
    t0 = time.monotonic()
    assert port.select([c], [r], [], [], (0, 200_000), timeout=T) == ([], [], [])
    assert time.monotonic() - t0 >= 0.15
    port.write([c], w, b"x", timeout=T)
    assert port.select([c], [r], [], [], 0.5, timeout=T) == ([r], [], [])


def test_select_on_a_bad_descriptor_is_ebadf(port):
    c = port.fork([], timeout=T)
    with pytest.raises(OSError) as ei:
        port.select([c], [9999], [], [], 0, timeout=T)
    assert ei.value.errno == errno.EBADF
    assert port.getpid([c], timeout=T) == c


# --------------------------------------------------------------------------
# socket


def test_socket_returns_a_socket_descriptor(port):
    c = port.fork([], timeout=T)
    for domain, kind in (("AF_INET", "SOCK_STREAM"), ("AF_UNIX", "SOCK_DGRAM"), ("af_inet6", "sock_dgram")):
        fd = port.socket([c], domain, kind, 0, timeout=T)
        assert isinstance(fd, int) and fd > 2
        assert os.readlink(f"/proc/{c}/fd/{fd}").startswith("socket:[")
    # a type flag OR'ed in through a list
    fd = port.socket([c], "AF_UNIX", ["SOCK_STREAM", "SOCK_CLOEXEC"], timeout=T)
    assert port.fcntl([c], fd, "F_GETFD", 0, timeout=T) == 1
    with pytest.raises(OSError) as ei:
        port.socket([c], "AF_NO_SUCH_FAMILY", "SOCK_STREAM", timeout=T)
    assert ei.value.errno == errno.ENOTSUP


def test_socket_connect_to_a_unix_listener(port, tmp_path):
    path = str(tmp_path / "sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    srv.settimeout(T)
    try:
        c = port.fork([], timeout=T)
        fd = port.socket([c], "AF_UNIX", "SOCK_STREAM", 0, timeout=T)
        af_unix = port.socket_constant([c], "AF_UNIX", timeout=T)
        addr = struct.pack("=H", af_unix) + path.encode() + b"\0"
        assert port.connect([c], fd, addr, timeout=T) is None
        conn, _ = srv.accept()
        with conn:
            assert port.write([c], fd, b"ping", timeout=T) == 4
            assert conn.recv(10) == b"ping"
            conn.sendall(b"pong")
            assert port.read([c], fd, 10, timeout=T) == b"pong"
        # a path nobody listens on
        fd2 = port.socket([c], "AF_UNIX", "SOCK_STREAM", 0, timeout=T)
        bad = struct.pack("=H", af_unix) + str(tmp_path / "none").encode() + b"\0"
        with pytest.raises((FileNotFoundError, ConnectionRefusedError)):
            port.connect([c], fd2, bad, timeout=T)
    finally:
        srv.close()
