"""A GPIO line held by its own sandboxed process of the port.

``Line`` is what every backend gives: ``value`` (logical, honouring
active-low), ``on()``, ``off()``, ``toggle()``, ``edges()``, ``release()``.
The process holding the line is ``line.process`` (a ``niche.Process``).

Pipelined writes (``line.pipeline = N``, or ``gpio.request(pipeline=N)``):
set()/on()/off()/toggle() send the write and return without its reply, up
to N writes in flight (the N+1th waits for the oldest: back-pressure). The
port runs them in order. A write that failed is raised by the next call on
the line as ``WriteFailed`` (naming the write; that call does nothing
itself), or by ``sync()``, which waits for every write in flight; ``get()``
and ``release()`` sync first. Over a serial line this turns one round trip
per toggle into a stream of frames.
"""

from __future__ import annotations

import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from .. import results as _r
from .._calls import CALLS
from ..port import BadPid, PortClosed, Process, ProcessExited
from ..sandbox import Sandbox
from .errors import LineReleased, WriteFailed

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
    pipeline = 0  # writes in flight at most; 0: set() waits for each reply

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
        self._calls: dict[bool, tuple[int, tuple[bytes, ...]]] = {}  # _write_call's, encoded once
        self._seq = 0  # writes sent so far (a WriteFailed names its number)
        # pipelined writes in flight, oldest first: (rid, waiter, call, value, seq, deadline)
        self._inflight: deque[tuple[int, Any, int, bool, int, float | None]] = deque()

    @property
    def process(self) -> Process:
        return self.sandbox.process

    # --- the backend's part ---------------------------------------------

    def _write(self, value: bool) -> None:
        """A synchronous write, for backends without _write_call."""
        raise NotImplementedError

    def _read(self) -> bool:
        raise NotImplementedError

    def _write_call(self, value: bool) -> tuple[str, tuple[bytes, ...]] | None:
        """The port call that writes value, as (call name, encoded arguments),
        the same for every write of that level; None: use _write."""
        return None

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
        """The line's logical value (active-low inverted), after every write in flight."""
        return self._guard(lambda: (self._reap(0), self._read())[1])

    def set(self, value: bool) -> None:
        if self.direction != "out":
            raise ValueError(f"{self.name} is an input: it cannot be set")
        v = bool(value)
        self._guard(lambda: self._submit(v))
        self._last = v

    def sync(self) -> None:
        """Wait for every pipelined write in flight; raise the first that failed
        (``WriteFailed``; the writes after it stay queued for the next call)."""
        self._guard(lambda: self._reap(0))

    @property
    def in_flight(self) -> int:
        """Pipelined writes sent whose reply has not been checked yet."""
        return len(self._inflight)

    def _submit(self, value: bool) -> None:
        """Send the write; without pipelining, wait for its reply too."""
        depth = self.pipeline
        self._reap(depth - 1 if depth else 0)
        spec = self._calls.get(value)
        if spec is None:
            named = self._write_call(value)
            if named is None:
                self._write(value)
                return
            spec = self._calls[value] = (CALLS[named[0]], named[1])
        call = spec[0]
        rid, w = self.process.port._start(self.process.chain, call, spec[1])
        self._seq += 1
        t = self.timeout
        self._inflight.append((rid, w, call, value, self._seq,
                               None if t is None else time.monotonic() + t))
        if not depth:
            self._reap(0)

    def _reap(self, keep: int) -> None:
        """Check the replies of the writes in flight: the oldest until at most
        keep are left, then any that already arrived."""
        q = self._inflight
        port = self.process.port
        while q and (len(q) > keep or q[0][1].done):
            rid, w, call, value, seq, deadline = q.popleft()
            try:
                port._finish(rid, w, call, _r.int, deadline)
            except (BadPid, ProcessExited, PortClosed, TimeoutError) as e:
                e.add_note(f"niche.gpio: pipelined write #{seq} (set({value})) of {self.name}")
                raise
            except OSError:
                self._last = None  # the level is what the last write that worked set
                if not self.pipeline and seq == self._seq:
                    raise  # a synchronous set(): its own error, as it always was
                e = sys.exc_info()[1]
                raise WriteFailed(f"{self.name}: pipelined write #{seq} (set({value})) failed: {e}",
                                  value, seq) from e

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
        failed: WriteFailed | None = None
        while self._inflight and not self._dead:  # they land before the holder exits
            try:
                self._reap(0)
            except WriteFailed as e:
                failed = failed or e
            except (BadPid, ProcessExited, PortClosed, TimeoutError):
                self._inflight.clear()
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
        if failed is not None:
            raise failed

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
