"""The port running as an unprivileged user (nobody, 65534) (issue 3)."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile

import niche
import pytest
from porthelpers import (
    PORT_BIN,
    close_and_check,
    descendants,
    identity,
    proc_uid,
    read_all_until_exit,
    read_stdout,
    still_there,
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
    """A directory anyone can enter (the checkout may sit under a 0700 home)."""
    d = tempfile.mkdtemp(prefix="niche-unpriv-", dir="/tmp")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def uport(world_dir):
    prog = os.path.join(world_dir, "niche-port")
    shutil.copyfile(PORT_BIN, prog)
    os.chmod(prog, 0o755)
    p = niche.Port(progname=prog, exec_prefix=DROP)
    try:
        yield p
    finally:
        close_and_check(p)


def test_port_runs_as_nobody(uport):
    port_pid = uport.getpid([], timeout=T)
    assert proc_uid(port_pid) == [NOBODY] * 4
    c = uport.fork([], timeout=T)
    assert uport.getpid([c], timeout=T) == c
    assert uport.getppid([c], timeout=T) == port_pid
    assert proc_uid(c) == [NOBODY] * 4
    g = uport.fork([c], timeout=T)
    assert uport.getpid([c, g], timeout=T) == g


def test_exec_cat_as_nobody(uport):
    c = uport.fork([], timeout=T)
    uport.execvp([c], "cat", ["cat"], timeout=T)
    assert proc_uid(c) == [NOBODY] * 4
    uport.stdin([c], b"unprivileged\n", timeout=T)
    assert read_stdout(uport, [c], 13) == b"unprivileged\n"
    uport.eof([c], timeout=T)
    assert wait_exit(uport, [c]) == ("exit_status", 0)


def test_exec_id_reports_nobody(uport):
    c = uport.fork([], timeout=T)
    uport.execvp([c], "id", ["id", "-u"], timeout=T)
    out, ev = read_all_until_exit(uport, [c])
    assert (out, ev) == (b"65534\n", ("exit_status", 0))


def test_clone_newpid_is_permission_error(uport):
    with pytest.raises(PermissionError) as ei:
        uport.clone([], ["clone_newpid"], timeout=T)
    assert ei.value.errno == errno.EPERM
    assert uport.cpid([], timeout=T) == []
    # the port goes on
    c = uport.fork([], timeout=T)
    assert uport.getpid([c], timeout=T) == c


def test_kill_init_is_permission_error(uport):
    c = uport.fork([], timeout=T)
    with pytest.raises(PermissionError) as ei:
        uport.kill([c], 1, 0, timeout=T)
    assert ei.value.errno == errno.EPERM


def test_chdir_into_private_dir_is_permission_error(uport, world_dir):
    private = os.path.join(world_dir, "private")
    os.mkdir(private, 0o700)
    c = uport.fork([], timeout=T)
    with pytest.raises(PermissionError) as ei:
        uport.chdir([c], private, timeout=T)
    assert ei.value.errno == errno.EACCES
    uport.chdir([c], world_dir, timeout=T)
    assert uport.getcwd([c], timeout=T) == os.path.realpath(world_dir)


def test_close_leaves_no_process_unprivileged(world_dir):
    prog = os.path.join(world_dir, "niche-port")
    shutil.copyfile(PORT_BIN, prog)
    os.chmod(prog, 0o755)
    port = niche.Port(progname=prog, exec_prefix=" ".join(DROP))  # the string form
    port_pid = port.getpid([], timeout=T)
    a = port.fork([], timeout=T)
    b = port.fork([a], timeout=T)
    port.execvp([a, b], "sleep", ["sleep", "1000"], timeout=T)
    s = port.fork([], timeout=T)
    port.execvp([s], "cat", ["cat"], timeout=T)
    tree = [identity(p) for p in [port_pid, *descendants(port_pid)]]
    assert len(tree) == 4  # the port, a, b (now sleep), s (now cat)
    close_and_check(port)
    assert not any(still_there(i) for i in tree)


def _userns_allowed() -> bool:
    probe = subprocess.run([*DROP, "unshare", "-U", "true"], capture_output=True)
    return probe.returncode == 0


def test_clone_newuser_newpid_works_unprivileged(uport):
    if shutil.which("unshare") is None or not _userns_allowed():
        pytest.skip("the kernel does not allow unprivileged user namespaces")
    c = uport.clone([], ["clone_newuser", "clone_newpid"], timeout=T)
    assert uport.getpid([c], timeout=T) == 1
    g = uport.fork([c], timeout=T)
    assert uport.getpid([c, g], timeout=T) == g
    assert uport.getppid([c, g], timeout=T) == 1
    uport.execvp([c, g], "/bin/sh", ["sh", "-c", "echo $$"], timeout=T)
    out, ev = read_all_until_exit(uport, [c, g])
    assert (out, ev) == (f"{g}\n".encode(), ("exit_status", 0))
