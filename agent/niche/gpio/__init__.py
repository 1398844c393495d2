"""niche.gpio: typed GPIO lines over the port (chardev, sysfs and LED backends, boards, the simulator).

Every line is held by its own sandboxed, privilege-dropped process of the
port (see niche.sandbox)::

    import niche
    from niche import gpio

    with niche.Port() as port:
        led = gpio.request(port, "P9_12", board="beaglebone", direction="out")
        led.on()
        button = gpio.request(port, "P9_15", board="beaglebone", direction="in",
                              edge="both", bias="pull-up", debounce_ms=10)
        for edge in button.edges(timeout=5):
            print("pressed" if not edge.rising else "released")
"""

from __future__ import annotations

from ..port import Port, Process
from .boards import Board, LineRef
from .chardev import ChardevLine
from .errors import ChipNotFound, GpioError, LineBusy, LineReleased, UnknownPin, WriteFailed
from .led import LedLine
from .line import Bias, Direction, Edge, EdgeKind, Line
from .sysfs import SysfsLine

BACKENDS = ("chardev", "sysfs", "led")
DEFAULT_TIMEOUT = 10.0


def request(
    port: Port | Process,
    pin: str,
    *,
    board: Board | str | None = None,
    direction: Direction = "out",
    initial: bool = False,
    active_low: bool = False,
    bias: Bias | None = None,
    edge: EdgeKind | None = None,
    debounce_ms: float | None = None,
    backend: str | None = None,
    sysfs_root: str | None = None,
    leds_root: str | None = None,
    consumer: str = "niche",
    timeout: float | None = DEFAULT_TIMEOUT,
    pipeline: int = 0,
) -> Line:
    """Request one line and hand it to a new sandboxed process.

    ``pin`` is a board pin ("P9_12"), a line name ("GPIO17"),
    "gpiochipN:LINE", "sysfs:N" or "led:NAME". The backend defaults to
    the board's (chardev, or sysfs for the simulator; led for LED pins).
    ``port`` may be a Port or a Process of it (the line's parent).
    ``pipeline=N`` lets set() send up to N writes without waiting for their
    replies (see Line.pipeline).
    """
    parent = port.root if isinstance(port, Port) else port
    b = Board.load(board) if isinstance(board, str) else board
    ref = (b or Board("generic")).resolve(pin)  # generic: gpiochipN:L, sysfs:N, led:X, GPIOn
    if direction not in ("in", "out"):
        raise ValueError(f"direction is 'in' or 'out', not {direction!r}")
    if edge is not None and edge not in ("rising", "falling", "both"):
        raise ValueError(f"edge is 'rising', 'falling' or 'both', not {edge!r}")
    if bias is not None and bias not in ("pull-up", "pull-down", "disable", "as-is"):
        raise ValueError(f"bias is 'pull-up', 'pull-down', 'disable' or 'as-is', not {bias!r}")
    if debounce_ms is not None and not 0 <= debounce_ms <= 1_000:
        raise ValueError(f"debounce_ms must be between 0 and 1000, not {debounce_ms!r}")
    if edge and direction != "in":
        raise ValueError("edge detection is for inputs (direction='in')")
    if isinstance(pipeline, bool) or not isinstance(pipeline, int) or pipeline < 0:
        raise ValueError(f"pipeline is a number of writes in flight (0: none), not {pipeline!r}")
    backend = backend or default_backend(ref, b)
    if backend not in BACKENDS:
        raise ValueError(f"backend is one of {', '.join(BACKENDS)}, not {backend!r}")
    line = _request(parent, ref, b, pin, direction=direction, initial=initial, active_low=active_low,
                    bias=bias, edge=edge, debounce_ms=debounce_ms, backend=backend,
                    sysfs_root=sysfs_root, leds_root=leds_root, consumer=consumer, timeout=timeout)
    line.pipeline = pipeline
    return line


def _request(parent: Process, ref: LineRef, b: Board | None, pin: str, *, direction: Direction,
             initial: bool, active_low: bool, bias: Bias | None, edge: EdgeKind | None,
             debounce_ms: float | None, backend: str, sysfs_root: str | None,
             leds_root: str | None, consumer: str, timeout: float | None) -> Line:
    if backend == "chardev":
        return ChardevLine.request(parent, ref, direction=direction, initial=initial,
                                   active_low=active_low, bias=bias, edge=edge,
                                   debounce_ms=debounce_ms, consumer=consumer,
                                   overlay_hint=b.overlay_hint if b else "", timeout=timeout)
    if backend == "sysfs":
        return SysfsLine.request(parent, ref, b, direction=direction, initial=initial,
                                 active_low=active_low, edge=edge, root=sysfs_root, timeout=timeout)
    if direction != "out":
        raise ValueError(f"{pin}: an LED is an output")
    return LedLine.request(parent, ref, initial=initial, active_low=active_low, root=leds_root,
                           timeout=timeout)


def default_backend(ref: LineRef, board: Board | None) -> str:
    """The backend a pin uses when none is asked for."""
    if ref.leds:  # an LED of the board, or led:NAME
        return "led"
    if board is not None and board.name != "generic":
        return board.backend
    return "sysfs" if ref.sysfs is not None else "chardev"


__all__ = [
    "BACKENDS", "Bias", "Board", "ChardevLine", "ChipNotFound", "Direction", "Edge", "EdgeKind",
    "GpioError", "LedLine", "Line", "LineBusy", "LineRef", "LineReleased", "SysfsLine",
    "UnknownPin", "WriteFailed", "default_backend", "request",
]
