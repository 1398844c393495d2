"""A GPIO line held by its own sandboxed process of the port.

``Line`` is what every backend gives: ``value`` (logical, honouring
active-low), ``on()``, ``off()``, ``toggle()``, ``edges()``, ``release()``.
The process holding the line is ``line.process`` (a ``niche.Process``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ..port import BadPid, PortClosed, Process, ProcessExited
from ..sandbox import Sandbox
from .errors import LineReleased

Direction = Literal["in", "out"]
EdgeKind = Literal["rising", "falling", "both"]
Bias = Literal["pull-up", "pull-down", "disable", "as-is"]


@dataclass(frozen=True)
class Edge:
    """One edge of an input line, as the kernel (or the sysfs value) saw it."""

    rising: bool
    timestamp_ns: int = 0  # kernel monotonic time; 0 where the backend has none
    seqno: int = 0

    @property
    def value(self) -> bool:
        """The line's logical level after the edge."""
        return self.rising


class Line:
    """Base of the backends; see the module docstring."""

    backend = "?"

    def __init__(self, name: str, direction: Direction, sandbox: Sandbox, fd: int,
                 active_low: bool, timeout: float | None) -> None:
        self.name = name
        self.direction = direction
        self.sandbox = sandbox
        self.fd = fd  # the line's descriptor in the holding process
        self.active_low = active_low
        self.timeout = timeout
        self._released = False
        self._dead = False  # the holder is gone (the line is not released yet)
        self._last: bool | None = None

    @property
    def process(self) -> Process:
        return self.sandbox.process

    # --- the backend's part ---------------------------------------------

    def _write(self, value: bool) -> None:
        raise NotImplementedError

    def _read(self) -> bool:
        raise NotImplementedError

    def _parse_edges(self, data: bytes) -> list[Edge]:
        raise NotImplementedError

    def _cleanup(self) -> None:
        """What the port does after the holder is gone (sysfs: unexport)."""

    # --- the API ----------------------------------------------------------

    def _guard(self, fn: Callable[[], Any]) -> Any:
        if self._released:
            raise LineReleased(f"{self.name} was released")
        if self._dead:
            raise LineReleased(f"the process holding {self.name} is gone")
        try:
            return fn()
        except (BadPid, ProcessExited) as e:
            self._dead = True
            raise LineReleased(f"the process holding {self.name} is gone: {e}") from e

    def get(self) -> bool:
        """The line's logical value (active-low inverted)."""
        return self._guard(self._read)

    def set(self, value: bool) -> None:
        if self.direction != "out":
            raise ValueError(f"{self.name} is an input: it cannot be set")
        self._guard(lambda: self._write(bool(value)))
        self._last = bool(value)

    value = property(get, set)

    def on(self) -> None:
        self.set(True)

    def off(self) -> None:
        self.set(False)

    def toggle(self) -> bool:
        new = not (self._last if self._last is not None else self.get())
        self.set(new)
        return new

    def edges(self, timeout: float = 0) -> list[Edge]:
        """Edges that arrived within timeout seconds (all that are queued;
        the wait ends at the first one). [] when none."""
        out: list[Edge] = []
        wait = timeout
        while True:
            ev = self._guard(lambda w=wait: self.process.event(w))
            if ev is None:
                return out
            if ev[0] == "fd" and ev[1] == self.fd:
                out += self._parse_edges(ev[2])
            elif ev[0] in ("exit_status", "termsig"):
                self._dead = True
                if out:
                    return out
                raise LineReleased(f"the process holding {self.name} exited: {ev}")
            wait = 0

    def release(self) -> None:
        """Let the line go: its process exits (closing the line), then the
        backend cleans up (sysfs: unexport). Safe to call twice."""
        if self._released:
            return
        self._released = True
        if not self._dead:
            try:
                self.process.exit(0, timeout=self.timeout)
                self._wait_exit()
            except (BadPid, ProcessExited, PortClosed):
                pass
        try:
            self._cleanup()
        except (OSError, PortClosed):
            pass

    def _wait_exit(self) -> None:
        """Until the holder is gone: the kernel frees the line when it exits,
        so a released line can be requested again at once."""
        deadline = time.monotonic() + (self.timeout or 10.0)
        while (left := deadline - time.monotonic()) > 0:
            ev = self.process.event(left)
            if ev is None or ev[0] in ("exit_status", "termsig"):
                return

    @property
    def released(self) -> bool:
        return self._released or self._dead

    def __enter__(self) -> Line:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self._released else f"pid {self.process.pid}"
        return f"<niche.gpio {self.backend} line {self.name} {self.direction} ({state})>"
