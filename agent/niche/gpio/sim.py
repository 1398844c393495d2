"""niche-gpio-sim: a FUSE directory that behaves like the kernel's /sys/class/gpio.

For machines without GPIO hardware (contract, "The GPIO simulator")::

    niche-gpio-sim MOUNTPOINT          # or: python -m niche.gpio.sim MOUNTPOINT

mounts, for the 32 lines of the ``sim`` board (legacy numbers 0-31, pin
names SIM0-SIM31)::

    MOUNTPOINT/export, unexport        0200  write a line number
    MOUNTPOINT/gpioN/direction         0644  in | out (also high | low: out at that physical level)
    MOUNTPOINT/gpioN/value             0644  0 | 1, logical (inverted when active_low)
    MOUNTPOINT/gpioN/edge              0644  none | rising | falling | both
    MOUNTPOINT/gpioN/active_low        0644  0 | 1
    MOUNTPOINT/gpiochip0/{base,label,ngpio}  0444  0, sim, 32

with the kernel's errors: EBUSY exporting an exported line, EINVAL for a bad
number, an unknown word or a non-number (ERANGE for a number too large for a
long, as kstrtol), EINVAL unexporting a line that is not exported, EPERM
writing ``value`` of an input, EIO setting an edge on an output or driving
out a line that has an edge configured (the kernel's "tried to flag a GPIO
set as output for IRQ"), EACCES opening ``export``/``unexport`` for
reading or a read-only file for writing, ENODEV through a descriptor of a
line that has since been unexported.  Everything is root's with the
kernel's modes and the mount uses ``default_permissions``, so a process
that dropped its privileges cannot open new files for writing (EACCES) but
keeps using the descriptors it opened before.

Beside the sysfs tree, ``MOUNTPOINT/sim/`` is the outside world:

    sim/N          0644  the physical level of line N, ``0\\n`` or ``1\\n``;
                         writing 0 or 1 drives the line from outside (an
                         input, or a line not exported; EBUSY on an output),
                         which fires its configured edge
    sim/N.edges    0444  how many configured edges line N has fired
    sim/N.changes  0444  how many times the physical level of N changed, for
                         any reason (outside drive or the board's output):
                         what counts the toggles of an output from outside

Edges are signalled as on the kernel's sysfs: poll(2)/select(2)/epoll on an
open ``gpioN/value`` reports POLLPRI|POLLERR (select: "exceptional") when an
edge fired since that descriptor last read ``value``; a descriptor is also
ready right after open, until its first read (the kernel does the same).
So: open, read, then poll; after it wakes, lseek(0) and read again.  This
uses FUSE poll notifications (libfuse's ``fuse_notify_poll``).

Physical level = logical value XOR active_low; "high"/"low" written to
``direction`` set the physical level, as the kernel's
``gpiod_direction_output_raw``.  Unexport forgets edge and active_low and
keeps direction and level (they live in the "hardware").

It prints one line on stdout once mounted, serves in the foreground, and
unmounts cleanly on SIGTERM, SIGINT and SIGHUP.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import errno
import itertools
import os
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import typing
from dataclasses import dataclass, field
from pathlib import Path

NLINES = 32
BOARD = "sim"

EDGES = ("none", "rising", "falling", "both")
FILE_MODE = 0o644
WRITE_ONLY_MODE = 0o200
READ_ONLY_MODE = 0o444
DIR_MODE = 0o755
SYSFS_SIZE = 4096  # what sysfs reports for every attribute

_DEFAULT_POLLMASK = select.POLLIN | select.POLLOUT | select.POLLRDNORM | select.POLLWRNORM
_EDGE_POLLMASK = select.POLLPRI | select.POLLERR

_LINE_FILES = ("active_low", "direction", "edge", "value")
_CHIP_FILES = {"base": "0\n", "label": f"{BOARD}\n", "ngpio": f"{NLINES}\n"}
_CHIP_DIR = "gpiochip0"

_GPIO_RE = re.compile(r"gpio(0|[1-9][0-9]?)")
_SIM_RE = re.compile(r"(0|[1-9][0-9]?)(\.edges|\.changes)?")
_KSTRTOL_RE = re.compile(r"([+-]?)(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9][0-9]*)")
_LONG_MAX = 2**63 - 1


def _err(code: int) -> OSError:
    # mfusepy turns any OSError with a positive errno into -errno.
    return OSError(code, os.strerror(code))


def kstrtol(data: bytes) -> int:
    """Parse like the kernel's kstrtol(buf, 0, &v): base 0, one trailing newline.

    EINVAL if it is not a number, ERANGE if it does not fit a long.
    """
    text = data[:-1] if data.endswith(b"\n") else data
    m = _KSTRTOL_RE.fullmatch(text.decode("latin-1"))
    if m is None:
        raise _err(errno.EINVAL)
    sign, digits = m.groups()
    if digits[:2] in ("0x", "0X"):
        n = int(digits[2:], 16)
    elif len(digits) > 1 and digits[0] == "0":
        n = int(digits[1:], 8)
    else:
        n = int(digits, 10)
    if sign == "-":
        if n > _LONG_MAX + 1:
            raise _err(errno.ERANGE)
        return -n
    if n > _LONG_MAX:
        raise _err(errno.ERANGE)
    return n


def sysfs_streq(data: bytes, word: str) -> bool:
    """The kernel's sysfs_streq: equal, ignoring one trailing newline."""
    text = data[:-1] if data.endswith(b"\n") else data
    return text == word.encode()


@dataclass
class Line:
    """One line of the simulated board: its "hardware" and its sysfs export."""

    number: int
    exported: bool = False
    generation: int = 0  # bumped at every export: older descriptors go stale
    is_out: bool = False
    out_level: int = 0  # the physical level driven when an output
    ext_level: int = 0  # the physical level driven from outside (sim/N)
    active_low: int = 0
    edge: str = "none"
    edges: int = 0  # configured edges fired (sim/N.edges, and poll)
    changes: int = 0  # physical level changes (sim/N.changes)

    @property
    def physical(self) -> int:
        return self.out_level if self.is_out else self.ext_level

    @property
    def logical(self) -> int:
        return self.physical ^ self.active_low


@dataclass
class _Handle:
    kind: str  # "export", "unexport", "line", "chip", "sim", "sim.edges", "sim.changes", "dir"
    name: str  # the file's name: "value", "base", ...
    line: int = -1
    generation: int = 0
    seen: int = -1  # Line.edges when this descriptor last read value; -1: never
    pollhandles: list[int] = field(default_factory=list)


class _Notifier:
    """fuse_notify_poll / fuse_pollhandle_destroy from the libfuse mfusepy loaded."""

    def __init__(self) -> None:
        import mfusepy

        lib = mfusepy._libfuse
        self._notify = lib.fuse_notify_poll
        self._notify.argtypes = [ctypes.c_void_p]
        self._notify.restype = ctypes.c_int
        self._destroy = lib.fuse_pollhandle_destroy
        self._destroy.argtypes = [ctypes.c_void_p]
        self._destroy.restype = None

    def notify(self, ph: int) -> None:
        self._notify(ph)
        self._destroy(ph)

    def destroy(self, ph: int) -> None:
        self._destroy(ph)


class GpioSim:
    """The FUSE operations (mfusepy.Operations duck type).

    Only FUSE operations may be public names here: mfusepy registers any
    attribute named like a FUSE operation (a ``lock`` attribute would become
    the ``lock`` op).  Everything else is private, behind ``_mutex``.
    """

    use_ns = True  # mfusepy: nanosecond times (no deprecation warning)

    def __init__(self, mountpoint: str = "", announce: bool = True) -> None:
        self._mutex = threading.RLock()
        self._lines = [Line(n) for n in range(NLINES)]
        self._handles: dict[int, _Handle] = {}
        self._next_fh = itertools.count(1)
        self._now = time.time_ns()
        self._mountpoint = mountpoint
        self._announce = announce
        self._notifier: _Notifier | None = None
        with contextlib.suppress(Exception):
            self._notifier = _Notifier()

    # -- the tree -------------------------------------------------------

    def _lookup(self, path: str) -> tuple[str, str, int]:
        """(kind, name, line) of path, or ENOENT.  Caller holds _mutex."""
        parts = [p for p in path.split("/") if p]
        if not parts:
            return ("dir", "/", -1)
        head = parts[0]
        if len(parts) == 1:
            if head in ("export", "unexport"):
                return (head, head, -1)
            if head in (_CHIP_DIR, BOARD):
                return ("dir", head, -1)
        m = _GPIO_RE.fullmatch(head)
        if m and int(m.group(1)) < NLINES and self._lines[int(m.group(1))].exported:
            n = int(m.group(1))
            if len(parts) == 1:
                return ("dir", head, n)
            if len(parts) == 2 and parts[1] in _LINE_FILES:
                return ("line", parts[1], n)
        if head == _CHIP_DIR and len(parts) == 2 and parts[1] in _CHIP_FILES:
            return ("chip", parts[1], -1)
        if head == BOARD and len(parts) == 2:
            m = _SIM_RE.fullmatch(parts[1])
            if m and int(m.group(1)) < NLINES:
                return ("sim" + (m.group(2) or ""), parts[1], int(m.group(1)))
        raise _err(errno.ENOENT)

    @staticmethod
    def _mode(kind: str) -> int:
        if kind == "dir":
            return stat.S_IFDIR | DIR_MODE
        if kind in ("export", "unexport"):
            return stat.S_IFREG | WRITE_ONLY_MODE
        if kind in ("chip", "sim.edges", "sim.changes"):
            return stat.S_IFREG | READ_ONLY_MODE
        return stat.S_IFREG | FILE_MODE

    def getattr(self, path: str, fh: int | None = None) -> dict:
        with self._mutex:
            kind, _, _ = self._lookup(path)
        mode = self._mode(kind)
        return {
            "st_mode": mode,
            "st_nlink": 2 if stat.S_ISDIR(mode) else 1,
            "st_uid": 0,
            "st_gid": 0,
            "st_size": 0 if stat.S_ISDIR(mode) else SYSFS_SIZE,
            "st_atime": self._now,
            "st_mtime": self._now,
            "st_ctime": self._now,
        }

    def readdir(self, path: str, fh: int) -> list[str]:
        with self._mutex:
            kind, name, n = self._lookup(path)
            if kind != "dir":
                raise _err(errno.ENOTDIR)
            if name == "/":
                names = ["export", "unexport", _CHIP_DIR, BOARD]
                names += [f"gpio{line.number}" for line in self._lines if line.exported]
            elif name == _CHIP_DIR:
                names = list(_CHIP_FILES)
            elif name == BOARD:
                names = [f"{i}{s}" for i in range(NLINES) for s in ("", ".edges", ".changes")]
            else:
                names = list(_LINE_FILES)
        return [".", "..", *names]

    # -- descriptors ----------------------------------------------------

    def open(self, path: str, flags: int) -> int:
        with self._mutex:
            kind, name, n = self._lookup(path)
            acc = flags & os.O_ACCMODE
            reads = acc in (os.O_RDONLY, os.O_RDWR)
            writes = acc in (os.O_WRONLY, os.O_RDWR)
            # As kernfs: no show method, no reading; no store, no writing (even for root).
            if kind in ("export", "unexport") and reads:
                raise _err(errno.EACCES)
            if kind in ("chip", "sim.edges", "sim.changes") and writes:
                raise _err(errno.EACCES)
            if kind == "dir":
                raise _err(errno.EISDIR)
            gen = self._lines[n].generation if kind == "line" else 0
            fh = next(self._next_fh)
            self._handles[fh] = _Handle(kind, name, n, gen)
            return fh

    def create(self, path: str, mode: int, fi=None) -> int:
        raise _err(errno.EACCES)  # sysfs directories have no create

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        return 0  # O_TRUNC (shell's `echo 1 > value`) is ignored, as on sysfs

    def release(self, path: str, fh: int) -> int:
        with self._mutex:
            h = self._handles.pop(fh, None)
            phs = h.pollhandles if h else []
        if self._notifier:
            for ph in phs:
                self._notifier.destroy(ph)
        return 0

    def _handle(self, fh: int) -> _Handle:
        h = self._handles.get(fh)
        if h is None:
            raise _err(errno.EBADF)
        if h.kind == "line":
            line = self._lines[h.line]
            if not line.exported or line.generation != h.generation:
                raise _err(errno.ENODEV)
        return h

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        with self._mutex:
            h = self._handle(fh)
            line = self._lines[h.line] if h.line >= 0 else None
            if h.kind == "chip":
                text = _CHIP_FILES[h.name]
            elif h.kind == "sim":
                text = f"{line.physical}\n"
            elif h.kind == "sim.edges":
                text = f"{line.edges}\n"
            elif h.kind == "sim.changes":
                text = f"{line.changes}\n"
            elif h.kind == "line":
                if h.name == "value":
                    text = f"{line.logical}\n"
                    h.seen = line.edges
                elif h.name == "direction":
                    text = "out\n" if line.is_out else "in\n"
                elif h.name == "edge":
                    text = f"{line.edge}\n"
                else:
                    text = f"{line.active_low}\n"
            else:
                raise _err(errno.EIO)
        return text.encode()[offset : offset + size]

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        notify: list[int] = []
        with self._mutex:
            h = self._handle(fh)
            if h.kind == "export":
                self._export(kstrtol(data))
            elif h.kind == "unexport":
                notify = self._unexport(kstrtol(data))
            elif h.kind == "sim":
                notify = self._drive(h.line, data)
            elif h.kind == "line":
                notify = self._store(self._lines[h.line], h.name, data)
            else:
                raise _err(errno.EIO)
        self._notify(notify)
        return len(data)

    # -- the kernel's stores ----------------------------------------------

    def _export(self, n: int) -> None:
        if not 0 <= n < NLINES:
            raise _err(errno.EINVAL)
        line = self._lines[n]
        if line.exported:
            raise _err(errno.EBUSY)
        line.exported = True
        line.generation += 1

    def _unexport(self, n: int) -> list[int]:
        if not 0 <= n < NLINES or not self._lines[n].exported:
            raise _err(errno.EINVAL)
        line = self._lines[n]
        line.exported = False
        line.edge = "none"
        line.active_low = 0
        # Wake pollers of the vanished value files: they poll POLLERR|POLLPRI.
        return self._take_pollhandles(n)

    def _store(self, line: Line, name: str, data: bytes) -> list[int]:
        if name == "value":
            if not line.is_out:
                raise _err(errno.EPERM)
            if len(data) <= 2 and data[:1].isdigit() and (len(data) == 1 or data[1:2] == b"\n"):
                v = data[0] - ord("0")
            else:
                v = kstrtol(data)
            self._set_physical(line, (1 if v else 0) ^ line.active_low, out=True)
        elif name == "direction":
            if sysfs_streq(data, "high"):
                self._direction_out(line, 1)
            elif sysfs_streq(data, "out") or sysfs_streq(data, "low"):
                self._direction_out(line, 0)
            elif sysfs_streq(data, "in"):
                if line.is_out:
                    before = line.physical
                    line.is_out = False
                    if line.physical != before:
                        line.changes += 1
            else:
                raise _err(errno.EINVAL)
        elif name == "edge":
            for edge in EDGES:
                if sysfs_streq(data, edge):
                    break
            else:
                raise _err(errno.EINVAL)
            if edge != "none" and line.is_out:
                raise _err(errno.EIO)
            line.edge = edge
        else:  # active_low
            line.active_low = 1 if kstrtol(data) else 0
        return []

    def _direction_out(self, line: Line, level: int) -> None:
        if line.edge != "none":
            raise _err(errno.EIO)
        before = line.physical
        line.is_out = True
        line.out_level = level
        if line.physical != before:
            line.changes += 1

    def _set_physical(self, line: Line, level: int, out: bool) -> list[int]:
        """Drive line to physical level (the board's output, or the outside)."""
        before_phys, before_log = line.physical, line.logical
        if out:
            line.out_level = level
        else:
            line.ext_level = level
        if line.physical == before_phys:
            return []
        line.changes += 1
        if not line.exported or line.is_out or line.edge == "none":
            return []
        rising = line.logical > before_log
        if line.edge == "both" or (line.edge == "rising") == rising:
            line.edges += 1
            return self._take_pollhandles(line.number)
        return []

    def _drive(self, n: int, data: bytes) -> list[int]:
        text = data.strip()
        if text not in (b"0", b"1"):
            raise _err(errno.EINVAL)
        line = self._lines[n]
        if line.exported and line.is_out:
            raise _err(errno.EBUSY)  # the board drives it
        return self._set_physical(line, int(text), out=False)

    # -- poll -----------------------------------------------------------------

    def _take_pollhandles(self, n: int) -> list[int]:
        phs: list[int] = []
        for h in self._handles.values():
            if h.kind == "line" and h.line == n and h.pollhandles:
                phs += h.pollhandles
                h.pollhandles = []
        return phs

    def _notify(self, phs: list[int]) -> None:
        if self._notifier:
            for ph in phs:
                self._notifier.notify(ph)

    def poll(self, path: str, fh: int, ph, reventsp) -> int:
        stale: list[int] = []
        with self._mutex:
            h = self._handles.get(fh)
            if h is None:
                raise _err(errno.EBADF)
            revents = _DEFAULT_POLLMASK
            if h.kind == "line" and h.name == "value":
                line = self._lines[h.line]
                if not line.exported or line.generation != h.generation or h.seen != line.edges:
                    revents |= _EDGE_POLLMASK
                elif ph and self._notifier:
                    stale, h.pollhandles = h.pollhandles, [ph]
                    ph = None
        if self._notifier:
            for old in stale:
                self._notifier.destroy(old)
            if ph:
                self._notifier.destroy(ph)
        reventsp[0] = revents
        return 0

    # -- life -----------------------------------------------------------------

    def init_with_config(self, conn, config) -> None:
        if config is not None:
            # sysfs-like: every lookup and stat goes to us (gpioN comes and goes).
            config.entry_timeout = 0.0
            config.negative_timeout = 0.0
            config.attr_timeout = 0.0
            config.direct_io = 1
        if self._announce:
            print(f"niche-gpio-sim: mounted {self._mountpoint} ({NLINES} lines of board {BOARD})", flush=True)


# -- running it -----------------------------------------------------------------


def is_mounted(mountpoint: str | os.PathLike) -> bool:
    """Whether mountpoint is in /proc/self/mounts (works on a dead FUSE mount too)."""
    target = os.path.abspath(mountpoint)
    with open("/proc/self/mounts", encoding="utf-8") as f:
        for entry in f:
            fields = entry.split()
            if len(fields) > 1 and fields[1].replace("\\040", " ") == target:
                return True
    return False


def unmount(mountpoint: str | os.PathLike, lazy: bool = False) -> bool:
    """fusermount3 -u (then umount(8)); whether it is unmounted now."""
    if not is_mounted(mountpoint):
        return True
    for cmd in ("fusermount3", "fusermount", "umount"):
        exe = shutil.which(cmd)
        if exe is None:
            continue
        args = [exe, "-u", "-z"] if cmd != "umount" and lazy else [exe, "-u"] if cmd != "umount" else [exe]
        if cmd == "umount" and lazy:
            args.append("-l")
        subprocess.run([*args, os.fspath(mountpoint)], capture_output=True, timeout=10, check=False)
        if not is_mounted(mountpoint):
            return True
    return not is_mounted(mountpoint)


def serve(mountpoint: str, debug: bool = False) -> int:
    """Mount and serve until unmounted or signalled; 0 when cleanly unmounted."""
    try:
        import mfusepy
    except ImportError:
        print("niche-gpio-sim: needs mfusepy (pip install mfusepy, or niche[sim])", file=sys.stderr)
        return 2
    mp = Path(mountpoint).absolute()
    try:
        os.stat(mp)
    except OSError as e:
        if e.errno == errno.ENOTCONN:  # a dead FUSE mount left behind
            unmount(mp, lazy=True)
        elif e.errno == errno.ENOENT:
            mp.mkdir(parents=True, exist_ok=True)
        else:
            raise
    if is_mounted(mp):
        print(f"niche-gpio-sim: {mp} is already a mount point", file=sys.stderr)
        return 1
    ops = GpioSim(str(mp))
    rc = 0
    try:
        mfusepy.FUSE(
            ops,
            str(mp),
            foreground=True,
            debug=debug,
            allow_other=True,
            default_permissions=True,
            direct_io=True,
            fsname="niche-gpio-sim",
            subtype="niche-gpio-sim",
            max_idle_threads=8,  # libfuse 3.14 warns about its own default (-1) otherwise
        )
    except RuntimeError as e:
        # libfuse's own SIGTERM/SIGINT/SIGHUP handlers end its loop and unmount;
        # mfusepy then reports the loop's non-zero return as RuntimeError.
        if is_mounted(mp):
            print(f"niche-gpio-sim: {e!r}", file=sys.stderr)
            rc = 1
    if not unmount(mp):
        print(f"niche-gpio-sim: could not unmount {mp}", file=sys.stderr)
        return 1
    print(f"niche-gpio-sim: unmounted {mp}", flush=True)
    return rc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="niche-gpio-sim",
        description="Mount a FUSE directory that behaves like /sys/class/gpio for the "
        f"{NLINES} lines of the '{BOARD}' board; MOUNTPOINT/sim/N is line N's outside world.",
    )
    ap.add_argument("mountpoint")
    ap.add_argument(
        "-f", "--foreground", action="store_true", default=True, help="serve in the foreground (default)"
    )
    ap.add_argument("-d", "--debug", action="store_true", help="libfuse debug output")
    args = ap.parse_args(argv)
    return serve(args.mountpoint, debug=args.debug)


# -- for tests and demos ---------------------------------------------------------


# Runs this file on its own (stdlib and mfusepy only), so that a simulator
# starts whatever state the rest of the niche package is in.
_RUN_THIS_FILE = """
import importlib.util, sys
spec = importlib.util.spec_from_file_location("niche_gpio_sim", sys.argv[1])
sim = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = sim
spec.loader.exec_module(sim)
sys.exit(sim.main(sys.argv[2:]))
"""


class Simulator:
    """A niche-gpio-sim process: start(), then .root; stop() (SIGTERM) unmounts.

    Also a context manager.  Runs this file with this interpreter (what
    ``python -m niche.gpio.sim`` runs, without importing the rest of niche)
    and waits (up to timeout) for the mount to be served.
    """

    def __init__(self, mountpoint: str | os.PathLike, timeout: float = 20.0) -> None:
        self.root = Path(mountpoint).absolute()
        self.timeout = timeout
        self.proc: subprocess.Popen | None = None
        self.banner = ""
        self.output = ""  # its stdout after the banner, once stopped
        self._stderr: typing.IO[bytes] | None = None

    def start(self) -> Simulator:
        self.root.mkdir(parents=True, exist_ok=True)
        self._stderr = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _RUN_THIS_FILE, __file__, str(self.root)],
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            start_new_session=True,
        )
        ready = select.poll()
        ready.register(self.proc.stdout, select.POLLIN)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if ready.poll(100):
                self.banner = self.proc.stdout.readline()
                if self.banner.startswith("niche-gpio-sim: mounted"):
                    break
            if self.proc.poll() is not None:
                break
        if not self.banner.startswith("niche-gpio-sim: mounted") or not is_mounted(self.root):
            err = self.stop()
            raise RuntimeError(f"niche-gpio-sim did not mount {self.root}: {self.banner!r} {err}")
        # The banner comes from FUSE_INIT; this waits for its reply.
        os.stat(self.root / "export")
        return self

    def stop(self, sig: int = signal.SIGTERM) -> str:
        """Signal the simulator, wait, make sure nothing is left mounted; its stderr."""
        err = ""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
            try:
                out, _ = self.proc.communicate(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                out, _ = self.proc.communicate(timeout=self.timeout)
            self.output += out or ""
            err = self.stderr()
        unmount(self.root, lazy=True)
        return err or ""

    def stderr(self) -> str:
        """What the simulator wrote on stderr so far."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")

    def died(self) -> str | None:
        """None while it serves; else how it ended (exit status and stderr)."""
        if self.proc is None or self.proc.poll() is None:
            return None
        return f"niche-gpio-sim exited with {self.proc.returncode}: {self.stderr()!r}"

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
