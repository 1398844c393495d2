"""The GPIO character device backend (uAPI v2), the default.

The port's process opens /dev/gpiochipN and requests the line with
GPIO_V2_GET_LINE_IOCTL; a sandboxed child inherits only the line's
descriptor; the requester closes its copy. Values are set and read with
LINE_SET_VALUES / LINE_GET_VALUES in the child, edges arrive as
``gpio_v2_line_event`` records through the child's ``watch``.
"""

from __future__ import annotations

from typing import Any

from .. import protocol as _p
from .. import uapi
from ..port import Process
from ..sandbox import sandbox
from . import chips
from .boards import LineRef
from .errors import LineBusy
from .line import Bias, Direction, Edge, EdgeKind, Line

EVENT_SIZE = uapi.sizeof("struct gpio_v2_line_event")
_VALUES = {v: uapi.pack("struct gpio_v2_line_values", bits=int(v), mask=1) for v in (False, True)}
EVENT_BUFFER = 256  # kernel default is 16 per line: a burst of edges would overflow it
_BIAS = {"pull-up": "GPIO_V2_LINE_FLAG_BIAS_PULL_UP", "pull-down": "GPIO_V2_LINE_FLAG_BIAS_PULL_DOWN",
         "disable": "GPIO_V2_LINE_FLAG_BIAS_DISABLED", "as-is": None, None: None}
_EDGE = {"rising": ["GPIO_V2_LINE_FLAG_EDGE_RISING"], "falling": ["GPIO_V2_LINE_FLAG_EDGE_FALLING"],
         "both": ["GPIO_V2_LINE_FLAG_EDGE_RISING", "GPIO_V2_LINE_FLAG_EDGE_FALLING"], None: []}


def _c(proc: Process, name: str, timeout: float | None) -> int:
    v = proc.ioctl_constant(name, timeout=timeout)
    if v is None:
        raise OSError(f"the port does not know {name}: its kernel headers predate GPIO uAPI v2")
    return v


def line_request(proc: Process, offset: int, *, direction: Direction, initial: bool,
                 active_low: bool, bias: Bias | None, edge: EdgeKind | None,
                 debounce_ms: float | None, consumer: str, timeout: float | None) -> bytes:
    """The bytes of a gpio_v2_line_request for one line (flag values from the port)."""
    names = ["GPIO_V2_LINE_FLAG_OUTPUT" if direction == "out" else "GPIO_V2_LINE_FLAG_INPUT"]
    if active_low:
        names.append("GPIO_V2_LINE_FLAG_ACTIVE_LOW")
    if _BIAS.get(bias) and direction == "in":
        names.append(_BIAS[bias])  # type: ignore[arg-type]
    if direction == "in":
        names += _EDGE[edge]
    flags = 0
    for n in names:
        flags |= _c(proc, n, timeout)
    attrs: list[dict[str, Any]] = []
    if direction == "out":
        attrs.append({"attr": {"id": _c(proc, "GPIO_V2_LINE_ATTR_ID_OUTPUT_VALUES", timeout),
                               "values": int(initial)}, "mask": 1})
    if direction == "in" and debounce_ms:
        attrs.append({"attr": {"id": _c(proc, "GPIO_V2_LINE_ATTR_ID_DEBOUNCE", timeout),
                               "debounce_period_us": int(debounce_ms * 1000)}, "mask": 1})
    return uapi.pack("struct gpio_v2_line_request", offsets=[offset], consumer=consumer,
                     config={"flags": flags, "num_attrs": len(attrs), "attrs": attrs}, num_lines=1,
                     event_buffer_size=EVENT_BUFFER if direction == "in" else 0)


class ChardevLine(Line):
    backend = "chardev"

    @staticmethod
    def open_fd(parent: Process, ref: LineRef, *, direction: Direction, initial: bool,
                active_low: bool, bias: Bias | None, edge: EdgeKind | None,
                debounce_ms: float | None, consumer: str, overlay_hint: str,
                timeout: float | None) -> tuple[int, chips.ChipInfo, int]:
        """Request the line in ``parent``: its descriptor there, the chip, the offset."""
        chip, offset = chips.locate(parent, ref, hint=overlay_hint, timeout=timeout)
        req = line_request(parent, offset, direction=direction, initial=initial, active_low=active_low,
                           bias=bias, edge=edge, debounce_ms=debounce_ms, consumer=consumer,
                           timeout=timeout)
        chipfd = parent.open(chip.path, ["O_RDWR", "O_CLOEXEC"], timeout=timeout)
        try:
            _, out = parent.ioctl(chipfd, "GPIO_V2_GET_LINE_IOCTL", req, timeout=timeout)
        except OSError as e:
            if not chips.is_busy(e):
                raise
            info = chips.line_info(parent, chip.path, offset, timeout=timeout)
            who = info.consumer or "an unnamed consumer (e.g. the kernel or a sysfs export)"
            raise LineBusy(f"{ref.spec} ({chip.name} line {offset}) is busy: held by {who}; "
                           "release it there (stop that program, unexport it, or remove the "
                           "overlay that claims it) or pick another pin", info.consumer) from e
        finally:
            parent.close(chipfd, timeout=timeout)
        return uapi.unpack("struct gpio_v2_line_request", out).fd, chip, offset

    @classmethod
    def request(cls, parent: Process, ref: LineRef, *, direction: Direction, initial: bool,
                active_low: bool, bias: Bias | None, edge: EdgeKind | None,
                debounce_ms: float | None, consumer: str, overlay_hint: str,
                timeout: float | None) -> ChardevLine:
        linefd, chip, offset = cls.open_fd(
            parent, ref, direction=direction, initial=initial, active_low=active_low, bias=bias,
            edge=edge, debounce_ms=debounce_ms, consumer=consumer, overlay_hint=overlay_hint,
            timeout=timeout)
        try:
            sb = sandbox(parent, keep_fds=[linefd], timeout=timeout)
        finally:
            parent.close(linefd, timeout=timeout)  # only the sandbox holds the line now
        line = cls(ref.spec, direction, sb, linefd, active_low, timeout)
        line.chip, line.offset = chip, offset
        line._rising_id = _c(parent, "GPIO_V2_LINE_EVENT_RISING_EDGE", timeout)
        if direction == "in" and edge:
            sb.process.watch(linefd, timeout=timeout)
        if direction == "out":
            line._last = initial
        return line

    def _write_call(self, value: bool) -> tuple[str, tuple[bytes, ...]]:
        return "ioctl", (_p.arg_int(self.fd, "fd"),
                         _p.arg_const("GPIO_V2_LINE_SET_VALUES_IOCTL", "request", "ioctl"),
                         _p.arg_cstruct(_VALUES[value], "argp"))

    def _read(self) -> bool:
        _, out = self.process.ioctl(self.fd, "GPIO_V2_LINE_GET_VALUES_IOCTL",
                                    uapi.pack("struct gpio_v2_line_values", mask=1), timeout=self.timeout)
        return bool(uapi.unpack("struct gpio_v2_line_values", out).bits & 1)

    def _parse_edges(self, data: bytes) -> list[Edge]:
        out = []
        for i in range(0, len(data) - EVENT_SIZE + 1, EVENT_SIZE):
            e = uapi.unpack("struct gpio_v2_line_event", data[i : i + EVENT_SIZE])
            out.append(Edge(e.id == self._rising_id, e.timestamp_ns, e.line_seqno))
        return out
