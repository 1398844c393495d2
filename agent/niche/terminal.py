"""Wire an exec'd process of the port to this program's stdio, like a terminal.

``attach`` is the loop of an interactive front end (examples/chrootex,
examples/nsex): what the user types goes to the process's stdin, its stdout
and stderr come back, Ctrl-C is forwarded to it, and when it exits its
status is returned, so the caller can ``sys.exit(attach(proc))``::

    from niche import terminal

    proc = port.root.clone(["CLONE_NEWPID"], timeout=5)
    proc.setsid(timeout=5)  # its own process group, for Ctrl-C
    proc.execve("/bin/sh", ["/bin/sh", "-i"], ["PATH=/usr/bin:/bin"], timeout=5)
    sys.exit(terminal.attach(proc))

The process's stdio are pipes, not a terminal: the user's terminal (if any)
does line editing and echo.
"""

from __future__ import annotations

import io
import os
import queue
import select
import signal
import sys
import threading
from collections.abc import Callable
from typing import BinaryIO

from .port import PortError, Process
from .sandbox import Identity, drop_privileges

Stream = BinaryIO | int  # a binary file object with a descriptor, or a descriptor
CHUNK = 65536  # largest read from stdin


def _reader(stream: Stream) -> Callable[[float], bytes | None]:
    """``read(wait)``: what is there (at most CHUNK bytes, b"" at end of
    input), or None when nothing came within ``wait`` seconds. Read from the
    descriptor itself, so no Python buffer holds typed input back."""
    try:
        fd = stream if isinstance(stream, int) else stream.fileno()
    except (AttributeError, io.UnsupportedOperation):
        read1 = getattr(stream, "read1", None) or stream.read  # type: ignore[union-attr]
        return lambda wait: read1(CHUNK)  # no descriptor to wait on: blocks

    def read_fd(wait: float) -> bytes | None:
        if not select.select([fd], [], [], wait)[0]:
            return None
        return os.read(fd, CHUNK)

    return read_fd


def _writer(stream: Stream) -> Callable[[bytes], None]:
    """Write all of the data, unbuffered; a reader gone away (EPIPE) is not an
    error: the output is dropped, quietly, and the process keeps running."""
    try:
        if not isinstance(stream, int):
            stream.flush()  # what the caller wrote before goes out first
        fd = stream if isinstance(stream, int) else stream.fileno()
    except (AttributeError, io.UnsupportedOperation):
        f: BinaryIO = stream  # type: ignore[assignment]

        def write_file(data: bytes) -> None:
            try:
                f.write(data)
                f.flush()
            except BrokenPipeError:
                pass

        return write_file

    def write_fd(data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                n = os.write(fd, view)
            except BrokenPipeError:
                return
            view = view[n:]

    return write_fd


def attach(
    process: Process,
    *,
    stdin: Stream | None = None,
    stdout: Stream | None = None,
    stderr: Stream | None = None,
    forward_sigint: bool = True,
    prog: str = "niche",
    timeout: float = 10.0,
) -> int:
    """Connect the exec'd ``process`` to stdin/stdout/stderr until it exits;
    return its exit status, ``128 + N`` when signal N killed it.

    ``stdin``, ``stdout``, ``stderr``: binary file objects or descriptors;
    None (the default) is descriptor 0, 1 or 2 of this program. Input is
    read as it comes (not line by line) and sent with ``port.stdin``,
    blocking while the process does not read (back-pressure); at end of
    input the process gets ``port.eof``. Its output is written unbuffered.

    ``forward_sigint``: while attached, SIGINT (Ctrl-C) does not interrupt
    this program but is sent, by the process's parent, to the process group
    ``-pid`` (what a terminal does): the process should have called
    ``setsid`` first. Needs the main thread (``signal.signal``).

    If the port fails while waiting for the exit (it died, say), the error
    is printed on sys.stderr as ``"<prog>: <error>"`` and 255 returned.
    ``timeout`` bounds the port calls other than stdin (eof, kill and
    signal_constant).

    Input is read only while the process runs: what the user types after
    its exit stays unread, for the caller. (A stream without a descriptor,
    e.g. io.BytesIO, is read by a daemon thread that may outlive the call.)
    """
    port, chain = process.port, process.chain
    read_in = _reader(0 if stdin is None else stdin)
    outputs = [(port.stdout, _writer(1 if stdout is None else stdout)),
               (port.stderr, _writer(2 if stderr is None else stderr))]
    done = threading.Event()
    status: list[int] = []

    def pump_in() -> None:
        while not done.is_set():
            try:
                data = read_in(0.2)
            except OSError:
                data = b""
            if data is None:
                continue  # nothing typed yet: check whether the process is gone
            try:
                if not data:
                    port.eof(chain, timeout=timeout)
                    return
                # No timeout: blocking while the process does not read is
                # the back-pressure we want (its exit ends the call).
                port.stdin(chain, data, timeout=None)
            except (PortError, OSError):
                return  # the process is gone

    def pump_out(read: Callable[..., bytes], write: Callable[[bytes], None]) -> None:
        while True:
            finished = done.is_set()  # read once more after the exit: the rest
            data = read(chain, timeout=0.5)
            if data:
                write(data)
            elif finished:
                return

    def watch_events() -> None:
        try:
            while True:
                ev = port.event(chain, timeout=1.0)
                if ev is None:
                    continue
                if ev[0] == "exit_status":
                    status.append(ev[1])
                    return
                if ev[0] == "termsig":
                    status.append(128 + (port.signal_constant([], ev[1], timeout=timeout) or 0))
                    return
        except PortError as e:
            print(f"{prog}: {e}", file=sys.stderr)
            status.append(255)
        finally:
            done.set()

    signals: queue.SimpleQueue[int] = queue.SimpleQueue()
    if forward_sigint:
        old = signal.signal(signal.SIGINT, lambda signum, frame: signals.put(signum))
    threads = [threading.Thread(target=pump_out, args=out) for out in outputs]
    threads.append(threading.Thread(target=watch_events))
    feeder = threading.Thread(target=pump_in, daemon=True)
    feeder.start()
    for t in threads:
        t.start()
    try:
        while not done.is_set():
            try:
                signum = signals.get(timeout=0.2)
            except queue.Empty:
                continue
            # Ctrl-C: what the terminal would do, to the process group. A
            # shell that is PID 1 of its namespace gets it only because an
            # interactive shell handles SIGINT.
            try:
                port.kill(chain[:-1], -process.pid, signal.Signals(signum).name, timeout=timeout)
            except (PortError, OSError):
                pass
    finally:
        if forward_sigint:
            # None: the old handler was not set from Python; the default then
            signal.signal(signal.SIGINT, signal.SIG_DFL if old is None else old)
        for t in threads:
            t.join()
        feeder.join(1.0)  # gone within 0.2 s, unless stuck in a read or the port
    return status[0] if status else 255


def exec_shell(sb: Process, shell: list[str], hostname: str, identity: Identity, *,
               timeout: float | None = None) -> None:
    """The last steps of an interactive sandbox: its own session (Ctrl-C,
    forwarded by attach, reaches its process group), privileges dropped,
    a minimal environment, then the shell."""
    sb.setsid(timeout=timeout)
    # No supplementary groups, then GID, then UID, then no_new_privs:
    # setuid binaries (su, sudo, mount, ...) must not give the privileges back.
    drop_privileges(sb, identity, timeout=timeout)
    env = [
        "PATH=/usr/local/bin:/usr/bin:/bin",
        "HOME=/tmp",
        f"HOSTNAME={hostname}",
        f"PS1={hostname}$ ",
        f"TERM={os.environ.get('TERM', 'dumb')}",
    ]
    sb.execve(shell[0], shell, env, timeout=timeout)


__all__ = ["attach", "exec_shell"]
