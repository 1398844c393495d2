"""examples/chrootex: an interactive shell in a chroot sandbox (issue 4)."""

from __future__ import annotations

import os
import pty
import select
import time

import examplehelpers as h

SCRIPT = h.ROOT / "examples" / "chrootex" / "chrootex.py"
# What / holds in the sandbox: the binds that exist here, plus dev, proc, tmp.
TREE = {p.strip("/") for p in ("/bin", "/lib", "/lib64", "/usr") if os.path.lexists(p)} | {
    "dev", "proc", "tmp"}


def test_session_pid1_uid_hostname_tree_status() -> None:
    before = h.host_mounts()
    r = h.run_example(SCRIPT, "echo pid=$$\nid -u\nid -g\nid -G\nhostname\nls /\nexit 3\n",
                      "--hostname", "testbox")
    assert r.rc == 3, r.err
    lines = r.out.splitlines()
    # The shell is the first process of its new PID namespace.
    assert lines[0] == "pid=1"
    # A random unprivileged UID/GID from alcove's range, no other groups.
    assert lines[1] == lines[2] == lines[3] == str(r.uid)
    assert 0xF0000000 <= r.uid < 0xF0010000
    assert lines[4] == "testbox"
    assert set(lines[5:]) == TREE
    root = h.re.search(r" root (\S+)", r.err).group(1)
    assert not os.path.exists(root), "the temporary root is removed"
    assert root not in h.host_mounts() and h.host_mounts() == before, "no mount leaks to the host"
    h.assert_nothing_left(r)


def test_random_id_differs_between_runs() -> None:
    ids = {h.run_example(SCRIPT, "exit\n").uid for _ in range(3)}
    assert len(ids) > 1


def test_writes_only_in_tmp() -> None:
    r = h.run_example(SCRIPT, "echo x > /x\necho x > /usr/x\necho x > /dev/x\n"
                      "echo ok > /tmp/f && cat /tmp/f\nexit 0\n")
    assert r.rc == 0
    assert r.out.splitlines() == ["ok"]
    assert r.err.count("Read-only file system") == 3, r.err
    assert not os.path.exists("/usr/x")
    h.assert_nothing_left(r)


def test_limits_are_set() -> None:
    r = h.run_example(SCRIPT, "cat /proc/self/limits\n", "--nproc", "7", "--nofile", "33",
                      "--fsize", "4096", "--cpu", "9")
    assert r.rc == 0, r.err  # end of input: the shell exits with the last status
    lim = h.limits_of(r.out)
    assert lim["Max processes"] == "7"
    assert lim["Max open files"] == "33"
    assert lim["Max file size"] == "4096"
    assert lim["Max cpu time"] == "9"
    assert lim["Max core file size"] == "0"
    # RLIMIT_FSIZE: writing past 4096 bytes fails even in /tmp.
    r = h.run_example(SCRIPT, "head -c 10000 /dev/zero > /tmp/big; echo st=$?\n", "--fsize", "4096")
    assert "st=0" not in r.out, r.out
    h.assert_nothing_left(r)


def test_fork_bomb_is_limited_by_nproc() -> None:
    h.assert_fork_bomb_held_to_nproc(SCRIPT, 8)


def test_end_of_input_exits_with_last_status() -> None:
    r = h.run_example(SCRIPT, "false\n")
    assert r.rc == 1
    h.assert_nothing_left(r)


def test_bad_root_fails_cleanly() -> None:
    p = h.subprocess.run([h.PY, str(SCRIPT), "--root", "/nonexistent/dir"], input="exit\n",
                         capture_output=True, text=True, timeout=60)
    assert p.returncode == 255
    assert "setting up the sandbox" in p.stderr


def test_terminal_ctrl_c_and_ctrl_d() -> None:
    """From a terminal: Ctrl-C interrupts the command in the sandbox, not the
    example; Ctrl-D ends the shell (status 0)."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.execv(h.PY, [h.PY, str(SCRIPT), "--hostname", "ttybox"])
        finally:
            os._exit(127)
    out = bytearray()

    def read_until(needle: bytes, timeout: float = 20) -> None:
        end = time.monotonic() + timeout
        while needle not in out and time.monotonic() < end:
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    out.extend(os.read(fd, 4096))
                except OSError:
                    return

    try:
        read_until(b"ttybox$ ")
        os.write(fd, b"sleep 30; echo not-interrupted\n")
        time.sleep(1)
        os.write(fd, b"\x03")
        os.write(fd, b"echo alive-$$\n")
        read_until(b"alive-1\r\n")
        assert b"alive-1" in out, bytes(out)
        os.write(fd, b"\x04")
        end = time.monotonic() + 20
        status = None
        while time.monotonic() < end:
            done, st = os.waitpid(pid, os.WNOHANG)
            if done:
                status = st
                break
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    out.extend(os.read(fd, 4096))
                except OSError:
                    pass
        assert status is not None, bytes(out)
        assert os.waitstatus_to_exitcode(status) == 0
        assert b"\nnot-interrupted" not in out, bytes(out)
    finally:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(fd)
