"""niche-gpio-sim (contract, "The GPIO simulator"): a real FUSE mount, real processes.

Every file of the sysfs tree and the kernel's errors; the outside world
(sim/N, sim/N.edges, sim/N.changes); edges through poll/select/epoll; a
chrooted, privilege-dropped child writing through its open descriptor;
clean unmount on SIGTERM and SIGINT.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import random
import select
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from simhelpers import NLINES, SimWorld, fuse_unusable, read_file, wait_until, write_file

pytestmark = pytest.mark.timeout(120)

CLONE_NEWNS = 0x00020000
PRI = select.POLLPRI | select.POLLERR


# (A zero-length write never reaches a sysfs store, nor the simulator: write(2) returns 0.)
def errno_of(fn, *args) -> int:
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    return 0


# -- the tree ---------------------------------------------------------------------


def test_tree_modes_and_owners(sim: SimWorld) -> None:
    root = sim.root
    assert sorted(os.listdir(root)) == ["export", "gpiochip0", "sim", "unexport"]
    for name in ("export", "unexport"):
        st = os.stat(root / name)
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o200
        assert (st.st_uid, st.st_gid) == (0, 0)
    assert sorted(os.listdir(root / "gpiochip0")) == ["base", "label", "ngpio"]
    assert [read_file(root / "gpiochip0" / f) for f in ("base", "label", "ngpio")] == ["0\n", "sim\n", "32\n"]
    assert stat.S_IMODE(os.stat(root / "gpiochip0" / "ngpio").st_mode) == 0o444
    names = set(os.listdir(root / "sim"))
    assert names == {f"{n}{s}" for n in range(NLINES) for s in ("", ".edges", ".changes")}
    assert stat.S_IMODE(os.stat(root / "sim" / "3").st_mode) == 0o644
    assert stat.S_IMODE(os.stat(root / "sim" / "3.edges").st_mode) == 0o444
    assert errno_of(os.stat, root / "gpio3") == errno.ENOENT
    assert errno_of(os.stat, root / "sim" / "32") == errno.ENOENT


def test_export_makes_gpioN_with_kernel_modes(sim: SimWorld) -> None:
    d = sim.export(5)
    assert stat.S_ISDIR(os.stat(d).st_mode)
    assert "gpio5" in os.listdir(sim.root)
    assert sorted(os.listdir(d)) == ["active_low", "direction", "edge", "value"]
    for name in os.listdir(d):
        st = os.stat(d / name)
        assert stat.S_IMODE(st.st_mode) == 0o644 and (st.st_uid, st.st_gid) == (0, 0), name
    assert [sim.read(5, f) for f in ("direction", "value", "edge", "active_low")] == ["in", "0", "none", "0"]
    assert read_file(d / "value") == "0\n"  # the kernel's format, newline included
    sim.unexport(5)
    assert errno_of(os.stat, d) == errno.ENOENT
    assert "gpio5" not in os.listdir(sim.root)


def test_export_errors(sim: SimWorld) -> None:
    export = sim.root / "export"
    sim.export(3)
    assert errno_of(write_file, export, "3") == errno.EBUSY
    assert errno_of(write_file, export, "3\n") == errno.EBUSY
    for bad in ("32", "-1", "1000", "abc", "5x", " 5", "5 ", "5\n\n", "\n", "0x", "08"):
        assert errno_of(write_file, export, bad) == errno.EINVAL, bad
    assert errno_of(write_file, export, "99999999999999999999") == errno.ERANGE
    # kstrtol(buf, 0): hex and octal too, and a leading +
    write_file(export, "0x1f")
    write_file(export, "010")
    write_file(export, "+7\n")
    assert sim.exported() == [3, 7, 8, 31]


def test_unexport_errors(sim: SimWorld) -> None:
    unexport = sim.root / "unexport"
    assert errno_of(write_file, unexport, "4") == errno.EINVAL  # not exported
    for bad in ("32", "-1", "x"):
        assert errno_of(write_file, unexport, bad) == errno.EINVAL, bad
    sim.export(4)
    write_file(unexport, "4\n")
    assert errno_of(write_file, unexport, "4") == errno.EINVAL
    assert sim.exported() == []


def test_write_only_and_read_only_files(sim: SimWorld) -> None:
    # root too: kernfs refuses to open a file for what it has no method for
    for name in ("export", "unexport"):
        assert errno_of(os.open, sim.root / name, os.O_RDONLY) == errno.EACCES
        assert errno_of(os.open, sim.root / name, os.O_RDWR) == errno.EACCES
    for path in (
        sim.root / "gpiochip0" / "base",
        sim.root / "sim" / "1.edges",
        sim.root / "sim" / "1.changes",
    ):
        assert errno_of(os.open, path, os.O_WRONLY) == errno.EACCES
    assert errno_of(os.open, sim.root / "newfile", os.O_WRONLY | os.O_CREAT, 0o644) == errno.EACCES
    assert errno_of(os.mkdir, sim.root / "gpio40") != 0


def test_direction(sim: SimWorld) -> None:
    sim.export(6)
    sim.write(6, "direction", "out")
    assert (sim.read(6, "direction"), sim.read(6, "value"), sim.level(6)) == ("out", "0", 0)
    sim.write(6, "direction", "high\n")
    assert (sim.read(6, "direction"), sim.read(6, "value"), sim.level(6)) == ("out", "1", 1)
    sim.write(6, "direction", "low")
    assert (sim.read(6, "direction"), sim.read(6, "value"), sim.level(6)) == ("out", "0", 0)
    sim.write(6, "value", "1")
    sim.write(6, "direction", "out")  # "out" drives low, as the kernel
    assert sim.level(6) == 0
    assert errno_of(sim.drive, 6, 1) == errno.EBUSY  # the board drives it
    sim.write(6, "direction", "in\n")
    assert sim.read(6, "direction") == "in"
    sim.drive(6, 1)  # an input reads the outside
    assert (sim.read(6, "value"), sim.level(6)) == ("1", 1)
    for bad in ("OUT", "in ", " in", "input", "\n", "out\n\n", "1"):
        assert errno_of(sim.write, 6, "direction", bad) == errno.EINVAL, bad
    assert sim.read(6, "direction") == "in"


def test_direction_high_low_are_physical_with_active_low(sim: SimWorld) -> None:
    sim.export(2)
    sim.write(2, "active_low", "1")
    sim.write(2, "direction", "high")  # gpiod_direction_output_raw: the physical level
    assert (sim.level(2), sim.read(2, "value")) == (1, "0")
    sim.write(2, "direction", "low")
    assert (sim.level(2), sim.read(2, "value")) == (0, "1")


def test_value(sim: SimWorld) -> None:
    sim.export(9)
    # an input: EPERM, whatever is written
    for data in ("1", "0", "garbage"):
        assert errno_of(sim.write, 9, "value", data) == errno.EPERM, data
    sim.write(9, "direction", "out")
    for data, want in (("1", 1), ("0\n", 0), ("2", 1), ("0x0", 0), ("-1", 1), ("00", 0), ("10\n", 1)):
        sim.write(9, "value", data)
        assert (sim.read(9, "value"), sim.level(9)) == (str(want), want), data
    for bad in ("on", "\n", "1 ", "0x", "1\n\n"):
        assert errno_of(sim.write, 9, "value", bad) == errno.EINVAL, bad
    assert sim.level(9) == 1


def test_active_low(sim: SimWorld) -> None:
    sim.export(10)
    sim.drive(10, 1)
    assert sim.read(10, "value") == "1"
    sim.write(10, "active_low", "1")
    assert (sim.read(10, "active_low"), sim.read(10, "value")) == ("1", "0")
    sim.drive(10, 0)
    assert sim.read(10, "value") == "1"
    sim.write(10, "direction", "out")  # physical low: logical 1
    assert (sim.level(10), sim.read(10, "value")) == (0, "1")
    sim.write(10, "value", "1")
    assert sim.level(10) == 0
    sim.write(10, "value", "0")
    assert sim.level(10) == 1
    sim.write(10, "active_low", "0")  # the level stays; its meaning flips
    assert (sim.level(10), sim.read(10, "value")) == (1, "1")
    sim.write(10, "active_low", "5")
    assert sim.read(10, "active_low") == "1"
    for bad in ("yes", "\n", "1x"):
        assert errno_of(sim.write, 10, "active_low", bad) == errno.EINVAL, bad
    sim.unexport(10)
    sim.export(10)  # unexport forgets active_low, keeps direction and level
    assert [sim.read(10, f) for f in ("active_low", "direction", "value")] == ["0", "out", "1"]


def test_edge(sim: SimWorld) -> None:
    sim.export(11)
    for edge in ("rising", "falling", "both", "none", "both\n"):
        sim.write(11, "edge", edge)
        assert sim.read(11, "edge") == edge.strip()
    for bad in ("Rising", "up", "\n", "both "):
        assert errno_of(sim.write, 11, "edge", bad) == errno.EINVAL, bad
    # an edge needs an input: the kernel refuses to lock an output as IRQ, and the reverse
    assert errno_of(sim.write, 11, "direction", "out") == errno.EIO
    sim.write(11, "edge", "none")
    sim.write(11, "direction", "out")
    assert errno_of(sim.write, 11, "edge", "rising") == errno.EIO
    sim.write(11, "edge", "none")


def test_outside_world(sim: SimWorld) -> None:
    assert read_file(sim.root / "sim" / "12") == "0\n"
    sim.drive(12, 1)  # a line not exported can be driven: export then reads it
    assert sim.level(12) == 1
    sim.export(12)
    assert sim.read(12, "value") == "1"
    sim.drive(12, 0)
    assert sim.read(12, "value") == "0"
    for bad in ("2", "high", "\n", "01"):
        assert errno_of(sim.drive, 12, bad) == errno.EINVAL, bad
    sim.write(12, "direction", "high")
    assert errno_of(sim.drive, 12, 0) == errno.EBUSY  # the board drives an output
    assert sim.level(12) == 1
    before = sim.changes(12)
    for v in (0, 1, 1, 0, 1):
        sim.write(12, "value", str(v))
    assert sim.changes(12) - before == 4  # level changes (1-0-1-1-0-1), not writes


def test_shell_redirection(sim: SimWorld) -> None:
    # `echo 1 > value` opens with O_CREAT|O_TRUNC: sysfs ignores both (bash: dash says "I/O error" for any)
    r = subprocess.run(
        [
            "sh",
            "-c",
            f"echo 13 > {sim.root}/export && echo high > {sim.root}/gpio13/direction"
            f" && cat {sim.root}/gpio13/value {sim.root}/sim/13",
        ],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert (r.returncode, r.stdout) == (0, "1\n1\n"), r.stderr
    r = subprocess.run(
        ["bash", "-c", f"echo 13 > {sim.root}/export"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert r.returncode != 0 and "busy" in r.stderr.lower()


@pytest.mark.parametrize(
    ("edge", "active_low", "want"),
    [("both", 0, 1000), ("rising", 0, 500), ("falling", 0, 500), ("none", 0, 0), ("rising", 1, 500)],
)
def test_edges_counted(sim: SimWorld, edge: str, active_low: int, want: int) -> None:
    sim.export(14)
    sim.write(14, "active_low", str(active_low))
    sim.write(14, "edge", edge)
    changes0, edges0 = sim.changes(14), sim.edges(14)
    fd = os.open(sim.root / "sim" / "14", os.O_WRONLY)
    try:
        for i in range(1000):
            os.write(fd, b"1" if i % 2 == 0 else b"0")
            os.write(fd, b"1" if i % 2 == 0 else b"0")  # no change: no edge
    finally:
        os.close(fd)
    assert sim.edges(14) - edges0 == want
    assert sim.changes(14) - changes0 == 1000


def test_edge_direction_follows_active_low(sim: SimWorld) -> None:
    sim.export(15)
    sim.write(15, "active_low", "1")
    sim.write(15, "edge", "rising")  # logical rising: physical falling
    e = sim.edges(15)
    sim.drive(15, 1)
    assert sim.edges(15) == e
    sim.drive(15, 0)
    assert sim.edges(15) == e + 1
    sim.unexport(15)
    sim.drive(15, 1)
    sim.drive(15, 0)  # not exported: no edge
    assert sim.edges(15) == e + 1


# -- edges through poll ----------------------------------------------------------


def test_poll_value(sim: SimWorld) -> None:
    sim.export(16)
    sim.write(16, "edge", "both")
    fd = os.open(sim.gpio(16) / "value", os.O_RDONLY)
    wfd = os.open(sim.gpio(16) / "direction", os.O_WRONLY)
    try:
        p = select.poll()
        p.register(fd, PRI)
        assert p.poll(0) == [(fd, PRI)]  # ready right after open, as sysfs
        assert os.pread(fd, 8, 0) == b"0\n"
        assert p.poll(0) == []
        threading.Timer(0.2, sim.drive, (16, 1)).start()
        t = time.monotonic()
        assert p.poll(5000) == [(fd, PRI)]
        assert 0.1 < time.monotonic() - t < 3
        assert p.poll(0) == [(fd, PRI)]  # until read again
        assert os.pread(fd, 8, 0) == b"1\n"
        assert p.poll(50) == []
        # select: exceptional condition
        threading.Timer(0.2, sim.drive, (16, 0)).start()
        r, w, x = select.select([], [], [fd], 5)
        assert x == [fd]
        os.lseek(fd, 0, os.SEEK_SET)
        assert os.read(fd, 8) == b"0\n"
        # epoll
        ep = select.epoll()
        ep.register(fd, select.EPOLLPRI | select.EPOLLERR)
        assert ep.poll(0.05) == []
        threading.Timer(0.2, sim.drive, (16, 1)).start()
        assert ep.poll(5) == [(fd, select.EPOLLPRI | select.EPOLLERR)]
        ep.close()
        # a configured edge that does not match: no wakeup
        os.pread(fd, 8, 0)
        sim.write(16, "edge", "rising")
        sim.drive(16, 0)
        assert p.poll(100) == []
        sim.drive(16, 1)
        assert p.poll(2000) == [(fd, PRI)]
        # unexport wakes the poller; the descriptor is dead (ENODEV), as sysfs
        os.pread(fd, 8, 0)
        threading.Timer(0.2, sim.unexport, (16,)).start()
        assert p.poll(5000) == [(fd, PRI)]
        assert errno_of(os.pread, fd, 8, 0) == errno.ENODEV
        sim.export(16)  # a new export does not revive it
        assert errno_of(os.pread, fd, 8, 0) == errno.ENODEV
        assert errno_of(os.write, wfd, b"out") == errno.ENODEV
    finally:
        os.close(fd)
        os.close(wfd)


def test_poll_many_edges_none_lost(sim: SimWorld) -> None:
    """A poller that reads after each wakeup sees every edge the lockstep driver makes."""
    sim.export(17)
    sim.write(17, "edge", "both")
    fd = os.open(sim.gpio(17) / "value", os.O_RDONLY)
    try:
        p = select.poll()
        p.register(fd, PRI)
        os.pread(fd, 8, 0)
        for i in range(200):
            sim.drive(17, (i + 1) % 2)
            assert p.poll(5000) == [(fd, PRI)], i
            assert os.pread(fd, 8, 0) == f"{(i + 1) % 2}\n".encode()
        assert sim.edges(17) == 200
    finally:
        os.close(fd)


# -- a privilege-dropped, chrooted child ------------------------------------------


def _unshare(flags: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(flags) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


class _Lines:
    """Lines from a pipe, with a timeout for each."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pending = b""

    def next(self, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        while b"\n" not in self.pending:
            r, _, _ = select.select([self.fd], [], [], max(deadline - time.monotonic(), 0))
            if not r:
                raise TimeoutError(f"child silent for {timeout}s (got {self.pending!r})")
            chunk = os.read(self.fd, 4096)
            if not chunk:
                raise EOFError(f"child closed its pipe (got {self.pending!r})")
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return line


def test_dropped_child_keeps_writing_through_its_descriptor(sim: SimWorld) -> None:
    n = 5
    gpio = sim.export(n)
    sim.write(n, "direction", "out")
    uid = random.randint(100_000, 60_000_000)
    writes = 1000
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()
    changes0 = sim.changes(n)
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            os.close(to_child_w)
            os.close(from_child_r)
            out = os.fdopen(from_child_w, "w", buffering=1)
            _unshare(CLONE_NEWNS)
            os.chroot(gpio)
            os.chdir("/")
            vfd = os.open("/value", os.O_WRONLY)
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            report = {
                "uid": os.getuid(),
                "listing": sorted(os.listdir("/")),
                "open_direction_w": errno_of(os.open, "/direction", os.O_WRONLY),
                "open_value_w": errno_of(os.open, "/value", os.O_WRONLY),
                "open_edge_rw": errno_of(os.open, "/edge", os.O_RDWR),
                "open_value_r": errno_of(lambda: os.close(os.open("/value", os.O_RDONLY))),
            }
            out.write(json.dumps(report) + "\n")
            for i in range(writes):
                os.write(vfd, b"1" if i % 2 == 0 else b"0")
                out.write(f"{i}\n")
                if os.read(to_child_r, 1) != b"k":
                    break
            out.write("done\n")
            code = 0
        except BaseException as e:  # noqa: BLE001 - report anything to the parent
            try:
                os.write(from_child_w, f"error {e!r}\n".encode())
            except OSError:
                pass
        finally:
            os._exit(code)
    os.close(to_child_r)
    os.close(from_child_w)
    try:
        lines = _Lines(from_child_r)
        report = json.loads(lines.next())
        assert report == {
            "uid": uid,
            "listing": ["active_low", "direction", "edge", "value"],
            "open_direction_w": errno.EACCES,
            "open_value_w": errno.EACCES,
            "open_edge_rw": errno.EACCES,
            "open_value_r": 0,
        }
        for i in range(writes):
            line = lines.next()
            assert line == str(i).encode(), line
            want = 1 if i % 2 == 0 else 0
            assert sim.level(n) == want, i  # the outside sees every write
            assert sim.read(n, "value") == str(want)
            os.write(to_child_w, b"k")
        assert lines.next() == b"done"
    finally:
        os.close(to_child_w)
        os.close(from_child_r)
        deadline = time.monotonic() + 10
        while True:
            wpid, status = os.waitpid(pid, os.WNOHANG)
            if wpid:
                break
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                pytest.fail("child did not exit")
            time.sleep(0.01)
    assert os.waitstatus_to_exitcode(status) == 0
    assert sim.changes(n) - changes0 == writes


def test_concurrent_writers(sim: SimWorld) -> None:
    """Threads driving distinct lines and reading others: consistent counts."""
    lines = list(range(20, 28))
    for n in lines:
        sim.export(n)
        sim.write(n, "edge", "rising")
    base = {n: sim.edges(n) for n in lines}
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            fd = os.open(sim.root / "sim" / str(n), os.O_WRONLY)
            vfd = os.open(sim.gpio(n) / "value", os.O_RDONLY)
            try:
                for _ in range(250):
                    os.write(fd, b"1")
                    assert os.pread(vfd, 8, 0) == b"1\n"
                    os.write(fd, b"0")
                    assert os.pread(vfd, 8, 0) == b"0\n"
            finally:
                os.close(fd)
                os.close(vfd)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(n,)) for n in lines]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert {n: sim.edges(n) - base[n] for n in lines} == {n: 250 for n in lines}


# -- the process --------------------------------------------------------------------


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
            return f.read().split(") ", 1)[1].startswith("Z")
    except FileNotFoundError:
        return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_unmounts_cleanly(tmp_path: Path, sig: int) -> None:
    reason = fuse_unusable()
    if reason:
        pytest.skip(reason)
    from niche.gpio.sim import Simulator, is_mounted

    s = Simulator(tmp_path / "mnt", timeout=20).start()
    assert s.banner.startswith(f"niche-gpio-sim: mounted {s.root}")
    assert is_mounted(s.root)
    write_file(s.root / "export", "1")
    fd = os.open(s.root / "gpio1" / "value", os.O_RDONLY)  # an open descriptor does not block it
    pid = s.proc.pid
    s.proc.send_signal(sig)
    try:
        rc = s.proc.wait(timeout=20)
    finally:
        os.close(fd)
        err = s.stop()
    assert rc == 0, err
    assert wait_until(lambda: _gone(pid), 10)
    with open("/proc/mounts", encoding="utf-8") as f:
        assert str(s.root) not in f.read()
    assert os.listdir(s.root) == []  # the plain directory again
    assert f"niche-gpio-sim: unmounted {s.root}" in s.output


def test_fusermount_u_ends_it(tmp_path: Path) -> None:
    reason = fuse_unusable()
    if reason:
        pytest.skip(reason)
    from niche.gpio.sim import Simulator, is_mounted

    s = Simulator(tmp_path / "mnt", timeout=20).start()
    subprocess.run(["fusermount3", "-u", str(s.root)], check=True, timeout=10)
    assert s.proc.wait(timeout=20) == 0, s.stop()
    assert not is_mounted(s.root)
    s.stop()


def test_cli() -> None:
    """python -m niche.gpio.sim, and the console script when this venv has it installed."""
    cmds = [[sys.executable, "-m", "niche.gpio.sim", "--help"]]
    script = Path(sys.executable).parent / "niche-gpio-sim"
    if script.exists():
        cmds.append([str(script), "--help"])
    for cmd in cmds:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
        assert r.returncode == 0 and "MOUNTPOINT" in r.stdout.upper(), (cmd, r.stderr)
