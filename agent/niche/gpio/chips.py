"""GPIO chips and lines as the port's kernel sees them (the GPIO v2 uAPI
through the port, so it works for a port on another machine too)."""

from __future__ import annotations

import errno
import re
from dataclasses import dataclass

from .. import uapi
from ..port import Process
from .boards import LineRef
from .errors import ChipNotFound

CDEV_HINT = ("the kernel needs CONFIG_GPIO_CDEV=y and a driver for the GPIO controller "
             "(on a board: the right device tree or overlay)")


@dataclass(frozen=True)
class ChipInfo:
    path: str  # /dev/gpiochipN
    name: str  # gpiochipN
    label: str
    lines: int


@dataclass(frozen=True)
class LineInfo:
    chip: str
    offset: int
    name: str
    consumer: str
    flags: int


def _ioctl_struct(proc: Process, path: str, request: str, ctype: str, data: bytes,
                  timeout: float | None) -> bytes:
    fd = proc.open(path, ["O_RDONLY", "O_CLOEXEC"], timeout=timeout)
    try:
        _, out = proc.ioctl(fd, request, data, timeout=timeout)
        return out
    finally:
        proc.close(fd, timeout=timeout)


def list_chips(proc: Process, *, timeout: float | None = None) -> list[ChipInfo]:
    """Every /dev/gpiochipN the process can see, with its label and size."""
    try:
        names = proc.readdir("/dev", timeout=timeout)
    except OSError as e:
        raise ChipNotFound(f"cannot list /dev: {e}") from e
    chips = []
    for n in sorted((n for n in names if re.fullmatch(r"gpiochip\d+", n)), key=lambda n: int(n[8:])):
        out = _ioctl_struct(proc, f"/dev/{n}", "GPIO_GET_CHIPINFO_IOCTL", "struct gpiochip_info",
                            bytes(uapi.sizeof("struct gpiochip_info")), timeout)
        info = uapi.unpack("struct gpiochip_info", out)
        chips.append(ChipInfo(f"/dev/{n}", uapi.ffi.string(info.name).decode(),
                              uapi.ffi.string(info.label).decode(), info.lines))
    return chips


def line_info(proc: Process, chip_path: str, offset: int, *, timeout: float | None = None) -> LineInfo:
    out = _ioctl_struct(proc, chip_path, "GPIO_V2_GET_LINEINFO_IOCTL", "struct gpio_v2_line_info",
                        uapi.pack("struct gpio_v2_line_info", offset=offset), timeout)
    i = uapi.unpack("struct gpio_v2_line_info", out)
    return LineInfo(chip_path, offset, uapi.ffi.string(i.name).decode(),
                    uapi.ffi.string(i.consumer).decode(), i.flags)


def find_chip(proc: Process, candidates: tuple[str, ...], *, hint: str = "",
              timeout: float | None = None) -> ChipInfo:
    """The first chip whose name (gpiochipN) or label is among candidates."""
    chips = list_chips(proc, timeout=timeout)
    if not chips:
        raise ChipNotFound(f"no GPIO character devices (/dev/gpiochip*): {CDEV_HINT}")
    for want in candidates:
        for c in chips:
            if want in (c.name, c.label, c.path):
                return c
    have = ", ".join(f"{c.name} ({c.label})" for c in chips)
    raise ChipNotFound(f"no GPIO chip {' or '.join(candidates)} (this kernel has {have}); "
                       f"{hint or CDEV_HINT}")


def find_line(proc: Process, name: str, *, timeout: float | None = None) -> tuple[ChipInfo, int]:
    """The chip and offset of the line named ``name`` (e.g. GPIO17)."""
    chips = list_chips(proc, timeout=timeout)
    for c in chips:
        for off in range(c.lines):
            if line_info(proc, c.path, off, timeout=timeout).name == name:
                return c, off
    if not chips:
        raise ChipNotFound(f"no GPIO character devices (/dev/gpiochip*): {CDEV_HINT}")
    raise ChipNotFound(f"no GPIO line named {name} on {', '.join(c.name for c in chips)}: "
                       "is this the right board, and is the GPIO controller's driver loaded?")


def locate(proc: Process, ref: LineRef, *, hint: str = "",
           timeout: float | None = None) -> tuple[ChipInfo, int]:
    """The chip and offset of a pin for the character device: by line name,
    or by the board's chip names/labels and offset."""
    if ref.line_name and ref.offset is None:
        chip, offset = find_line(proc, ref.line_name, timeout=timeout)
    elif ref.offset is not None and ref.chips:
        chip, offset = find_chip(proc, ref.chips, hint=hint, timeout=timeout), ref.offset
    else:
        raise ValueError(f"{ref.spec}: the chardev backend needs a chip and line "
                         "(gpiochipN:LINE or a board pin), not a sysfs number")
    if offset >= chip.lines:
        raise ValueError(f"{ref.spec}: {chip.name} ({chip.label}) has lines 0-{chip.lines - 1}")
    return chip, offset


def is_busy(e: OSError) -> bool:
    return e.errno == errno.EBUSY
