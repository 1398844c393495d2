"""The legacy sysfs backend (/sys/class/gpio), for old kernels and the
simulator, as alcove's gpioled does it: the port exports the line (EBUSY:
already exported, fine) and configures it; a sandboxed child chrooted into
the line's own gpioN/ directory keeps only its ``value`` descriptor; the
line is unexported when it is released."""

from __future__ import annotations

import errno
import time

from .. import protocol as _p
from ..port import Process
from ..sandbox import sandbox
from .boards import Board, LineRef
from .errors import ChipNotFound, LineBusy
from .line import Direction, Edge, EdgeKind, Line

SYSFS_ROOT = "/sys/class/gpio"


def write_file(proc: Process, path: str, data: bytes, *, timeout: float | None) -> None:
    fd = proc.open(path, ["O_WRONLY", "O_CLOEXEC"], timeout=timeout)
    try:
        proc.write(fd, data, timeout=timeout)
    finally:
        proc.close(fd, timeout=timeout)


def chip_base(proc: Process, root: str, labels: list[str], *, timeout: float | None) -> int:
    """The sysfs base number of the first gpiochip whose label is in labels."""
    from ..sandbox import read_file

    for name in proc.readdir(root, timeout=timeout):
        if name.startswith("gpiochip"):
            label = read_file(proc, f"{root}/{name}/label", timeout=timeout).decode().strip()
            if label in labels:
                return int(read_file(proc, f"{root}/{name}/base", timeout=timeout))
    raise ChipNotFound(f"no sysfs gpiochip labelled {' or '.join(labels)} under {root}: "
                       "the kernel needs CONFIG_GPIO_SYSFS=y (legacy sysfs GPIO)")


class SysfsLine(Line):
    backend = "sysfs"

    @staticmethod
    def open_fd(parent: Process, ref: LineRef, board: Board | None, *, direction: Direction,
                initial: bool, active_low: bool, edge: EdgeKind | None, root: str | None,
                timeout: float | None) -> tuple[int, int, str]:
        """Export and configure the line from ``parent``: the descriptor of
        its ``value`` there, its number and its gpioN directory."""
        root = root or SYSFS_ROOT
        number = ref.sysfs
        if number is None and ref.sysfs_offset is not None and board is not None:
            number = chip_base(parent, root, board.sysfs_chips, timeout=timeout) + ref.sysfs_offset
        if number is None:
            raise ValueError(f"{ref.spec}: the sysfs backend needs a legacy number (sysfs:N or a "
                             "board pin that has one)")
        try:
            write_file(parent, f"{root}/export", str(number).encode(), timeout=timeout)
        except FileNotFoundError as e:
            raise ChipNotFound(f"no {root}/export: the kernel needs CONFIG_GPIO_SYSFS=y, or point "
                               "sysfs_root at a simulator") from e
        except OSError as e:
            if e.errno == errno.EINVAL:
                raise ValueError(f"{ref.spec}: GPIO {number} does not exist on this kernel") from e
            if e.errno != errno.EBUSY:  # EBUSY: already exported, which is fine
                raise
        d = f"{root}/gpio{number}"
        deadline = time.monotonic() + 2.0
        while True:  # udev may still be setting the new directory up
            try:
                valuefd = parent.open(f"{d}/value", ["O_RDWR" if direction == "out" else "O_RDONLY",
                                                     "O_CLOEXEC"], timeout=timeout)
                break
            except OSError as e:
                if e.errno not in (errno.ENOENT, errno.EACCES) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        try:
            write_file(parent, f"{d}/active_low", b"1" if active_low else b"0", timeout=timeout)
            if direction == "out":
                # "high"/"low" set the direction and the (physical) level at once: no glitch
                physical = initial != active_low
                write_file(parent, f"{d}/direction", b"high" if physical else b"low", timeout=timeout)
            else:
                write_file(parent, f"{d}/direction", b"in", timeout=timeout)
                try:
                    write_file(parent, f"{d}/edge", (edge or "none").encode(), timeout=timeout)
                except OSError as e:
                    if edge:
                        raise LineBusy(f"{ref.spec}: cannot detect edges on GPIO {number}: {e}") from e
        except BaseException:
            parent.close(valuefd, timeout=timeout)
            raise
        return valuefd, number, d

    @classmethod
    def request(cls, parent: Process, ref: LineRef, board: Board | None, *, direction: Direction,
                initial: bool, active_low: bool, edge: EdgeKind | None, root: str | None,
                timeout: float | None) -> SysfsLine:
        valuefd, number, d = cls.open_fd(parent, ref, board, direction=direction, initial=initial,
                                         active_low=active_low, edge=edge, root=root, timeout=timeout)
        try:
            sb = sandbox(parent, keep_fds=[valuefd], chroot=d, timeout=timeout)
        finally:
            parent.close(valuefd, timeout=timeout)
        line = cls(ref.spec, direction, sb, valuefd, active_low, timeout)
        line.root, line.number, line.parent = root or SYSFS_ROOT, number, parent
        if direction == "in" and edge:
            # Read first: sysfs signals "changed since the last read", and
            # a descriptor never read counts as changed.
            line._read()
            sb.process.watch(valuefd, timeout=timeout)
        if direction == "out":
            line._last = initial
        return line

    def _write_call(self, value: bool) -> tuple[str, tuple[bytes, ...]]:
        return "write", (_p.arg_int(self.fd, "fd"), _p.arg_bytes(b"1" if value else b"0", "buf"))

    def _read(self) -> bool:
        self.process.lseek(self.fd, 0, "SEEK_SET", timeout=self.timeout)
        return self.process.read(self.fd, 8, timeout=self.timeout)[:1] == b"1"

    def _parse_edges(self, data: bytes) -> list[Edge]:
        # sysfs says only "the value changed": the edge is the new level
        return [Edge(data[:1] == b"1")] if data else []

    def _cleanup(self) -> None:
        write_file(self.parent, f"{self.root}/unexport", str(self.number).encode(), timeout=self.timeout)
