"""``niche.Port``: the alcove API in Python, over a niche-port process.

Threads share one connection. There is no background thread: whichever
caller is waiting for something (a reply, output, an event) reads the
port's stdout and hands out what it reads to the others (leader/followers),
so a call made from a single thread costs one write and one read.
"""

from __future__ import annotations

import errno
import fcntl
import itertools
import os
import select
import shlex
import signal
import subprocess
import termios
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import protocol as _p
from . import results as _r
from ._calls import CALLS, PortCalls, ProcessCalls
from .highlevel import HighLevel
from .results import ChildProc, Rlimit

Chain = Sequence[int]
Constant = int | str | bytes | Sequence[int | str | bytes]
CStruct = int | bytes | None | list[bytes | tuple[str, int | bytes]]
Event = tuple[Any, ...]

__all__ = [
    "BadPid", "CStruct", "Chain", "ChildProc", "Constant", "Event", "Port", "PortClosed", "PortError",
    "Process", "ProcessExited", "ProtocolError", "Rlimit", "Undefined",
]

START_TIMEOUT = 10.0
SESSION_END = 11.0  # the port's two grace periods (port/niche.h NICHE_GRACE_MS)
STDIN_WINDOW = 2  # pieces of STDIN_CHUNK in flight per stdin() call (4 was slower on one core)
PIPE_SIZE = 1 << 20  # the port's stdin/stdout pipes
READ_SMALL, READ_BULK = 1 << 16, 1 << 18  # bytes per read of the port's output (_read_some)


class PortError(Exception):
    """Something went wrong with the port rather than with a system call."""


class BadPid(PortError):
    """A PID of the chain is not a child of its parent, or has exec'd or exited."""


class Undefined(PortError):
    """The call is filtered in that process, or not supported on this platform."""


class PortClosed(PortError):
    """The port process is gone; every pending and later call raises this."""


class ProcessExited(PortError):
    """The process died while a call to it was in flight."""

    def __init__(self, message: str, event: Event | None = None) -> None:
        super().__init__(message)
        self.event = event


class ProtocolError(PortError):
    """The port could not make sense of what it was sent (a bug, or a bad frame)."""


_CALL_NAMES = {v: k for k, v in CALLS.items()}


def find_port(progname: str | os.PathLike[str] | None = None) -> str:
    """The niche-port binary: ``progname``, $NICHE_PORT, the installed
    package data, then build/native/niche-port of a source checkout."""
    if progname:
        return os.fspath(progname)
    if os.environ.get("NICHE_PORT"):
        return os.environ["NICHE_PORT"]
    here = Path(__file__).resolve().parent
    for cand in (here / "bin" / "niche-port", here.parents[1] / "build" / "native" / "niche-port"):
        if os.access(cand, os.X_OK):
            return str(cand)
    raise PortError("no niche-port binary found: run `make`, pass progname= or set NICHE_PORT")


class _Waiter:
    __slots__ = ("chain", "done", "status", "value", "exc")

    def __init__(self, chain: tuple[int, ...]) -> None:
        self.chain = chain
        self.done = False
        self.status = 0
        self.value: Any = None
        self.exc: BaseException | None = None


class Port(PortCalls, HighLevel):
    """A running niche-port. Every call takes the fork chain first.

    ``Port(progname=None, exec_prefix=None, env=None, **options)`` starts the
    port as a child process (``exec_prefix`` e.g. ``"sudo -n"``);
    ``Port(serial="/dev/ttyUSB0", baudrate=115200)`` talks to a port whose
    stdio is a serial line (any pyserial URL). ``options`` are port options
    set on the port process at start (``maxchild=8``, ``maxforkdepth=4``).

    A port on a serial line outlives the connection. By default a new
    ``Port(serial=...)`` starts a fresh session: the port ends the tree of the
    previous one as end of file would and restarts itself before it answers.
    ``reattach=True`` keeps the tree: ``children`` lists the port's children
    that are there (docs/protocol.md, "Sessions").
    """

    def __init__(
        self,
        progname: str | os.PathLike[str] | None = None,
        exec_prefix: str | Sequence[str] | None = None,
        env: dict[str, str] | None = None,
        *,
        serial: str | None = None,
        baudrate: int = 115200,
        start_timeout: float = START_TIMEOUT,
        reattach: bool = False,
        **options: int,
    ) -> None:
        self._ids = itertools.count(1)
        self.children: tuple[int, ...] = ()  # the port's children at a reattach
        # a session's nonce, and what the line delivered before its HELLO
        self._nonce: int | None = None
        self._prehello = bytearray()
        self._wlock = threading.Lock()
        self._rlock = threading.Lock()
        self._cv = threading.Condition(threading.Lock())
        self._pending: dict[int, _Waiter] = {}
        # output that arrived and was not taken yet, per process: the chunks
        # as they came (joined when taken: one copy)
        self._out: dict[tuple[int, ...], list[bytes]] = {}
        self._err: dict[tuple[int, ...], list[bytes]] = {}
        self._events: dict[tuple[int, ...], deque[Event]] = {}
        self._decoder = _p.Decoder()
        self._rsize = READ_SMALL
        self._hello: _p.Hello | None = None
        self._closed: PortClosed | None = None
        self._sleepers = 0  # threads waiting on _cv for the reader
        self.protocol_errors: list[str] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self._serial: Any = None
        self.pid = 0
        if serial is not None:
            self._open_serial(serial, baudrate)
            self._nonce = int.from_bytes(os.urandom(4), "big")
            # ids unlike the previous session's, whose late replies may follow
            self._ids = itertools.count(1 + (self._nonce & 0x3FFFFFFF))
            if not reattach:
                start_timeout += SESSION_END  # the port may first end the old tree
        elif reattach:
            raise ValueError("reattach=True is for a port on a serial line")
        else:
            self._spawn(progname, exec_prefix, env)
        try:
            self._handshake(start_timeout, reattach)
            self.pid = self.getpid([], timeout=start_timeout)
            for name, value in options.items():
                if not self.setopt([], name, value, timeout=start_timeout):
                    raise ValueError(f"unknown port option or bad value: {name}={value!r}")
        except BaseException:
            self.close(timeout=1)
            raise
        self.root = Process(self, ())

    # --- transport ----------------------------------------------------

    def _spawn(self, progname: Any, exec_prefix: Any, env: dict[str, str] | None) -> None:
        prefix = shlex.split(exec_prefix) if isinstance(exec_prefix, str) else list(exec_prefix or [])
        argv = [*prefix, find_port(progname)]
        try:
            # Own session: a Ctrl-C meant for Python does not kill the tree
            # before close() can shut it down in order.
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
                start_new_session=True, bufsize=0,
            )
        except OSError as e:
            raise PortError(f"cannot start {argv[0]}: {e}") from e
        assert self._proc.stdin and self._proc.stdout
        self._wfd = self._proc.stdin.fileno()
        self._rfd = self._proc.stdout.fileno()
        os.set_blocking(self._wfd, False)
        for fd in (self._wfd, self._rfd):  # fewer wake-ups for bulk stdio
            try:
                fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
            except OSError:
                pass  # above /proc/sys/fs/pipe-max-size for this user: keep the default

    def _open_serial(self, url: str, baudrate: int) -> None:
        import serial  # pyserial: only needed for this transport

        try:
            self._serial = serial.serial_for_url(url, baudrate=baudrate, timeout=None)
        except (serial.SerialException, ValueError) as e:
            raise PortError(f"cannot open serial line {url}: {e}") from e
        self._rfd = self._wfd = self._serial.fileno()
        if os.isatty(self._rfd):
            # pyserial leaves VMIN=0: a read with nothing there returns 0
            # bytes, which would look like end of file. VMIN=1 with O_NONBLOCK
            # makes it EAGAIN instead.
            attrs = termios.tcgetattr(self._rfd)
            attrs[6][termios.VMIN], attrs[6][termios.VTIME] = 1, 0
            termios.tcsetattr(self._rfd, termios.TCSANOW, attrs)
        os.set_blocking(self._wfd, False)
        self._serial.reset_input_buffer()

    def _handshake(self, timeout: float, reattach: bool = False) -> None:
        self._send(_p.encode_hello(self._nonce, reattach))
        deadline = time.monotonic() + timeout
        if not self._wait_for(lambda: self._hello is not None, deadline):
            where = f"serial line {self._serial.name}" if self._serial else "niche-port"
            raise PortError(f"no niche port answered on {where} within {timeout:g} s")
        assert self._hello is not None
        if self._hello.version != _p.PROTO_VERSION:
            raise PortError(
                f"the port speaks protocol version {self._hello.version} "
                f"(niche-port {self._hello.port_version}); this niche speaks "
                f"{_p.PROTO_VERSION}: install matching versions"
            )
        self.children = self._hello.children

    def _send(self, data: bytes, blob: memoryview | None = None) -> None:
        """Write a whole frame (data, then blob if given, unjoined). Never
        blocks for good while the port is itself blocked writing to us: a
        blocked writer reads in between."""
        with self._wlock:
            if self._closed:
                raise self._closed
            try:
                n = os.write(self._wfd, data) if blob is None else os.writev(self._wfd, [data, blob])
            except BlockingIOError:
                n = 0
            except OSError as e:  # EPIPE: the port is gone
                self._set_closed(f"cannot write to the port: {e}")
                raise self._closed from e  # type: ignore[misc]
            if n < len(data):
                self._send_slow(memoryview(data)[n:])
                n = len(data)
            if blob is not None and n - len(data) < len(blob):
                self._send_slow(blob[n - len(data) :])

    def _send_slow(self, view: memoryview) -> None:  # under _wlock
        while view:
            if self._closed:
                raise self._closed
            try:
                view = view[os.write(self._wfd, view) :]
                continue
            except BlockingIOError:
                pass
            except OSError as e:
                self._set_closed(f"cannot write to the port: {e}")
                raise self._closed from e  # type: ignore[misc]
            if self._rlock.acquire(blocking=False):
                try:
                    if select.select([self._rfd], [self._wfd], [], 1.0)[0]:
                        self._read_some(None)
                finally:
                    self._release_reader()
            else:
                select.select([], [self._wfd], [], 0.05)

    # --- reading: leader/followers --------------------------------------

    def _release_reader(self) -> None:
        self._rlock.release()
        if self._sleepers:  # read after the release: see _wait_for
            with self._cv:
                self._cv.notify_all()

    def _read_some(self, deadline: float | None) -> None:
        """Read once (the caller holds _rlock) and dispatch what arrived."""
        if deadline is not None:
            left = deadline - time.monotonic()
            if not select.select([self._rfd], [], [], max(left, 0))[0]:
                return
        try:
            data = os.read(self._rfd, self._rsize)
        except BlockingIOError:
            return
        except OSError as e:
            data = b""
            why = f"reading from the port failed: {e}"
        else:
            why = "the port exited"
        # A small read unless the last one filled its buffer (bulk output):
        # os.read() allocates its whole size, and above glibc's mmap threshold
        # (128 KiB) that is an mmap and munmap per call, 10 us on a 22-byte reply.
        self._rsize = READ_BULK if len(data) == self._rsize else READ_SMALL
        if not data:
            self._set_closed(why)
            return
        if self._nonce is not None and self._hello is None:
            # before our HELLO's answer: the previous session's frames and
            # line garbage are skipped, whatever they look like
            self._prehello += data
            hello, off = _p.find_hello(self._prehello, self._nonce)
            data = bytes(self._prehello[off:])
            del self._prehello[:off]
            if hello is None:
                return
            self._decoder.skipped += off
            self._prehello.clear()
            with self._cv:
                self._hello = hello
                self._cv.notify_all()
        got = None if self._decoder._buf else _p.reply_int(data)
        if got is not None:  # one reply with an int: no Decoder, no Reply
            # Without _cv: the pop is atomic (see _set_closed) and done is
            # stored before _sleepers is read, the reverse of a follower's
            # order in _wait_for, so a follower either sees done or is notified.
            w = self._pending.pop(got[0], None)
            if w is not None:
                w.status, w.value, w.done = got[1], got[2], True
            if self._sleepers:
                with self._cv:
                    self._cv.notify_all()
            return
        try:
            msgs = self._decoder.feed(data)
        except _p.CodecError as e:
            self._set_closed(f"the port sent a malformed frame: {e}")
            return
        with self._cv:
            for m in msgs:
                self._dispatch(m)
            if self._sleepers:
                self._cv.notify_all()

    def _wait_for(self, cond: Callable[[], bool], deadline: float | None) -> bool:
        """Wait until cond() holds, reading the port whenever no other thread
        is (leader/followers). False when the deadline passed.

        cond() only ever turns true (under _cv), so reading it unlocked is a
        safe fast path. A follower counts itself in _sleepers before it checks
        _rlock; the leader releases _rlock before it reads _sleepers: one of
        the two always sees the other, so no wake-up is lost."""
        while True:
            if cond():
                return True
            if self._closed:
                raise self._closed
            if self._rlock.acquire(blocking=False):
                try:
                    if cond():
                        return True
                    self._read_some(deadline)
                finally:
                    self._release_reader()
            else:
                with self._cv:
                    self._sleepers += 1
                    try:
                        if not cond() and self._rlock.locked() and not self._closed:
                            left = None if deadline is None else deadline - time.monotonic()
                            if left is None or left > 0:
                                self._cv.wait(left)
                    finally:
                        self._sleepers -= 1
            if deadline is not None and time.monotonic() >= deadline:
                return cond()

    def _dispatch(self, m: _p.Message) -> None:  # under _cv
        if isinstance(m, _p.Reply):
            w = self._pending.pop(m.id, None)
            if w is not None:
                w.status, w.value, w.done = m.status, m.value, True
        elif isinstance(m, _p.Output):
            bufs = self._out if m.stream == _p.STDOUT else self._err
            if m.data:
                bufs.setdefault(m.chain, []).append(m.data)
        elif isinstance(m, _p.Event):
            # GONE needs nothing here: the port answers every call that was
            # in flight to the process with ST_EXITED before it sends GONE.
            if not m.gone:
                self._events.setdefault(m.chain, deque()).append(m.event)
        elif isinstance(m, _p.Hello):
            self._hello = m
        else:
            self.protocol_errors.append(m.message)

    def _set_closed(self, why: str) -> None:
        with self._cv:
            if self._closed is None:
                self._closed = PortClosed(why)
            # _start stores without the lock, then checks _closed: pop one by
            # one so a store racing with this loop is either failed here or
            # sees _closed itself.
            while self._pending:
                try:
                    _, w = self._pending.popitem()
                except KeyError:
                    break
                w.exc, w.done = self._closed, True
            self._cv.notify_all()

    # --- calls ----------------------------------------------------------

    def _start(self, chain: tuple[int, ...], call: int, args: Sequence[bytes],
               blob: memoryview | None = None) -> tuple[int, _Waiter]:
        """Register and send a call; with blob, the call's one argument is
        those bytes, sent without copying them."""
        w = _Waiter(chain)
        rid = next(self._ids) & 0xFFFFFFFF  # count() is atomic in CPython
        self._pending[rid] = w  # a single dict store: atomic; see _set_closed
        if self._closed:
            self._pending.pop(rid, None)
            raise self._closed
        if blob is None:
            self._send(_p.encode_call(rid, chain, call, args))
        else:
            self._send(_p.encode_call_blob(rid, chain, call, len(blob)), blob)
        return rid, w

    def _finish(self, rid: int, w: _Waiter, call: int, decode: Callable[[Any], Any],
                deadline: float | None) -> Any:
        if not w.done and deadline is None and self._rlock.acquire(blocking=False):
            try:  # nobody else reads: read until the reply is in
                while not w.done and not self._closed:
                    self._read_some(None)
            finally:
                self._release_reader()
        if not w.done and not self._wait_for(lambda: w.done, deadline):
            with self._cv:
                self._pending.pop(rid, None)
            raise TimeoutError(f"{_CALL_NAMES.get(call, call)}: no reply from {list(w.chain)}")
        if w.status == _p.ST_OK and w.exc is None:
            return decode(w.value)
        if w.exc is not None:
            raise w.exc
        raise self._error(call, w)

    def _call(self, chain: Chain, call: int, args: Sequence[bytes],
              decode: Callable[[Any], Any], timeout: float | None) -> Any:
        deadline = None if timeout is None else _deadline(timeout)
        rid, w = self._start(_p.check_chain(chain), call, args)
        return self._finish(rid, w, call, decode, deadline)

    @staticmethod
    def _error(call: int, w: _Waiter) -> BaseException:
        name = _CALL_NAMES.get(call, str(call))
        msg = w.value.decode(errors="replace") if isinstance(w.value, bytes) else str(w.value)
        if w.status == _p.ST_ERRNO:
            num = getattr(errno, msg.upper(), None)
            if num is None:
                return OSError(f"{name}: {msg} (an errno unknown on this host)")
            e = OSError(num, os.strerror(num))
            e.add_note(f"niche: {name} in process {list(w.chain)}")
            return e
        if w.status == _p.ST_BADPID:
            return BadPid(f"{name}: {list(w.chain)}: {msg}")
        if w.status == _p.ST_EXITED:
            ev = _p.event_tuple(w.value) if isinstance(w.value, list) else None
            return ProcessExited(f"{name}: process {list(w.chain)} exited with the call in flight: {ev}", ev)
        if w.status == _p.ST_UNDEF:
            return Undefined(f"{name}: {msg}")
        return ProtocolError(f"{name}: {msg}")

    # --- standard I/O and events ----------------------------------------

    def stdin(self, chain: Chain, data: bytes | bytearray | memoryview, *,
              timeout: float | None = None) -> None:
        """Write all of data to the exec'd process's stdin, in order. Blocks
        (back-pressure) while the process does not read; on timeout raises
        TimeoutError whose ``written`` is the number of bytes delivered."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"stdin data must be bytes, not {type(data).__name__}")
        view = memoryview(data).cast("B")
        chain_t = _p.check_chain(chain)
        deadline = _deadline(timeout)
        inflight: deque[tuple[int, _Waiter, int]] = deque()
        written = off = 0

        def settle() -> None:
            nonlocal written
            rid, w, n = inflight.popleft()
            try:
                self._finish(rid, w, CALLS["stdin"], _r.ok, deadline)
            except TimeoutError as e:
                e.written = written  # type: ignore[attr-defined]
                raise
            written += n

        try:
            while True:
                piece = view[off : off + _p.STDIN_CHUNK]
                if len(inflight) >= STDIN_WINDOW:
                    settle()
                rid, w = self._start(chain_t, CALLS["stdin"], (), piece)
                inflight.append((rid, w, len(piece)))
                off += len(piece)
                if off >= len(view):
                    break
            while inflight:
                settle()
        finally:
            with self._cv:  # on an error, stop waiting for the rest
                for rid, _, _ in inflight:
                    self._pending.pop(rid, None)

    def _take(self, bufs: dict[tuple[int, ...], list[bytes]], chain: Chain, timeout: float) -> bytes:
        key = _p.check_chain(chain)
        deadline = time.monotonic() + max(timeout, 0)
        self._wait_for(lambda: bool(bufs.get(key)), deadline)
        with self._cv:
            got = bufs.pop(key, None)
        if not got:
            return b""
        return got[0] if len(got) == 1 else b"".join(got)

    def stdout(self, chain: Chain, timeout: float = 0) -> bytes:
        """Output of the exec'd process that arrived within timeout seconds,
        joined; b"" when none did."""
        return self._take(self._out, chain, timeout)

    def stderr(self, chain: Chain, timeout: float = 0) -> bytes:
        """Standard error of the process that arrived within timeout seconds."""
        return self._take(self._err, chain, timeout)

    def event(self, chain: Chain, timeout: float = 0) -> Event | None:
        """The next event of the process: ("exit_status", n), ("termsig",
        name), ("signal", name, info) or ("fd", fd, data); None on timeout."""
        got = self.next_event([chain], timeout)
        return got[1] if got else None

    def next_event(self, chains: Sequence[Chain], timeout: float | None = 0) -> tuple[Chain, Event] | None:
        """The next event of any of these processes, as (chain, event), or
        None after timeout seconds (None: wait for ever). For a program that
        watches many processes at once (the agent's input lines)."""
        keys = [_p.check_chain(c) for c in chains]
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0)
        self._wait_for(lambda: any(self._events.get(k) for k in keys), deadline)
        with self._cv:
            for k in keys:
                q = self._events.get(k)
                if q:
                    ev = q.popleft()
                    if not q:
                        del self._events[k]
                    return k, ev
        return None

    # --- lifecycle ------------------------------------------------------

    def close(self, chain: Chain | None = None, fd: int | None = None, *,  # type: ignore[override]
              timeout: float | None = None) -> None:
        """``port.close()`` closes the port: its stdin is closed, so every
        process of the tree signals its exec'd children (signaloneof) and
        exits; waits (timeout, default 10 s) for the port to exit.

        ``port.close(chain, fd)`` is close(2) of fd in that process."""
        if chain is not None:
            if fd is None:
                raise TypeError("close(chain, fd): fd is missing")
            return super().close(chain, fd, timeout=timeout)
        self._shutdown(10.0 if timeout is None else timeout)

    def _shutdown(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._wlock:
            if self._serial is not None:
                self._serial.close()  # a port on a serial line runs on: we hang up
            elif self._proc and self._proc.stdin and not self._proc.stdin.closed:
                self._proc.stdin.close()  # end of file: the tree shuts down
            self._wfd = -1
        proc = self._proc
        if proc is not None:
            try:
                self._wait_for(lambda: False, deadline)  # forward output until EOF
            except PortClosed:
                pass
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                if proc.poll() is None:
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            if proc.stdout:
                proc.stdout.close()
        self._set_closed("the port was closed")

    @property
    def closed(self) -> bool:
        return self._closed is not None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc else None

    def __enter__(self) -> Port:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "running"
        return f"<niche.Port pid={self.pid} {state}>"


def _deadline(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool):
        raise TypeError(f"timeout must be a number of seconds or None, not {type(timeout).__name__}")
    return time.monotonic() + timeout


class Process(ProcessCalls):
    """A handle on one process of the tree: the port and a fork chain."""

    __slots__ = ("port", "chain")

    def __init__(self, port: Port, chain: Chain) -> None:
        self.port = port
        self.chain = tuple(chain)

    @property
    def pid(self) -> int:
        return self.chain[-1] if self.chain else self.port.pid

    def fork(self, *, timeout: float | None = None) -> Process:  # type: ignore[override]
        """fork(2) a child running the event loop; returns its handle."""
        return Process(self.port, (*self.chain, self.port.fork(self.chain, timeout=timeout)))

    def clone(self, flags: Constant, *, timeout: float | None = None) -> Process:  # type: ignore[override]
        """clone(2) a child into new namespaces (CLONE_* flags); returns its handle."""
        return Process(self.port, (*self.chain, self.port.clone(self.chain, flags, timeout=timeout)))

    def cmd(self, argv: Sequence[str | bytes], **kw: Any) -> bytes:
        """Run argv in a new child of this process to completion; its stdout
        (raises niche.CommandFailed on failure). See Port.cmd."""
        return self.port.cmd(self.chain, argv, **kw)

    def sh(self, script: str, **kw: Any) -> bytes:
        """Run a shell script in a new child of this process. See Port.sh."""
        return self.port.sh(self.chain, script, **kw)

    def task(self, calls: Any = None, subprocess_calls: Any = None, clone: Constant | None = None, *,
             timeout: float | None = None) -> Process:
        """A new filtered child of this process. See Port.task."""
        return self.port.task(self.chain, calls, subprocess_calls, clone, timeout=timeout)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Process) and other.port is self.port and other.chain == self.chain

    def __hash__(self) -> int:
        return hash((id(self.port), self.chain))

    def __repr__(self) -> str:
        return f"<niche.Process chain={list(self.chain)}>"
