"""High-level helpers of ``niche.Port``, in the spirit of prx.

``port.cmd(chain, argv)`` runs a command to completion in a new child of
``chain`` and returns its stdout; ``port.sh(chain, script)`` runs a shell
script the same way; ``port.task(chain, calls)`` forks (or clones) a child
with a call filter applied and returns its :class:`niche.Process` handle.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .filter import Calls
    from .port import Chain, Constant, Event, Process

__all__ = ["CommandFailed", "HighLevel"]  # noqa: F822 - CommandFailed: see __getattr__

# niche.port imports this module for Port's bases, so PortError (defined
# there) is not importable while this module loads: CommandFailed is made
# on first use (PEP 562 module __getattr__) and then kept, one class.


def _port_error() -> type[Exception]:
    from .port import PortError

    return PortError


def _make_command_failed() -> type[Exception]:
    from .port import PortError

    class CommandFailed(PortError):
        """A command run by ``port.cmd``/``port.sh`` did not exit with status 0.

        ``argv`` is the command, ``status`` its exit event
        (``("exit_status", 1)`` or ``("termsig", "sigkill")``), ``stdout`` and
        ``stderr`` what it wrote (bytes).
        """

        def __init__(self, argv: Sequence[str | bytes], status: Event, stdout: bytes, stderr: bytes) -> None:
            self.argv = list(argv)
            self.status = tuple(status)
            self.stdout = stdout
            self.stderr = stderr
            how = (f"exited with status {status[1]}" if status[0] == "exit_status"
                   else f"was killed by {status[1]}")
            msg = f"command {self.argv!r} {how}"
            err = stderr.decode(errors="replace").strip()
            if err:
                tail = err if len(err) <= 2000 else "..." + err[-2000:]
                msg += f": {tail}"
            super().__init__(msg)

        def __reduce__(self) -> Any:
            return (type(self), (self.argv, self.status, self.stdout, self.stderr))

    CommandFailed.__module__ = "niche"
    CommandFailed.__qualname__ = "CommandFailed"
    return CommandFailed


def _command_failed() -> Any:
    cls = globals().get("CommandFailed")
    if cls is None:
        cls = globals()["CommandFailed"] = _make_command_failed()
    return cls


class HighLevel:
    """Mixin of ``niche.Port``: cmd, sh and task. Needs the port's calls
    (fork, clone, execvp, stdin, eof, stdout, stderr, event, kill, filter,
    clearenv, setenv)."""

    def cmd(self, chain: Chain, argv: Sequence[str | bytes], *, timeout: float | None = None,
            env: Mapping[str, str] | None = None, input: bytes | None = None) -> bytes:
        """Run argv (PATH searched) in a new child of chain to completion and
        return its stdout.

        ``env`` replaces the environment (default: the chain's own);
        ``input`` is written to its stdin, which is then closed (it is
        closed at once without input). A non-zero exit or a signal raises
        :class:`niche.CommandFailed` with the exit event, stdout and
        stderr. When ``timeout`` seconds pass, the command is killed
        (SIGKILL) and ``TimeoutError`` raised, with ``stdout``/``stderr``
        attributes holding what it wrote. The command runs in its own
        process group, all of which a timeout kills.
        """
        p: Any = self
        if isinstance(argv, (str, bytes)) or not argv:
            raise TypeError("argv is a non-empty list of str, e.g. ['ls', '-l']")
        argv = list(argv)
        if input is not None and not isinstance(input, (bytes, bytearray, memoryview)):
            raise TypeError(f"input must be bytes, not {type(input).__name__}")
        if env is not None and not isinstance(env, Mapping):
            raise TypeError(f"env must be a mapping of str to str, not {type(env).__name__}")
        deadline = None if timeout is None else time.monotonic() + timeout
        chain = list(chain)

        def left() -> float | None:
            return None if deadline is None else max(deadline - time.monotonic(), 0.0)

        pid = p.fork(chain, timeout=left())
        child = [*chain, pid]
        out, err = bytearray(), bytearray()
        started = False
        try:
            # Its own process group: on a timeout the whole group is killed,
            # grandchildren (a shell's sleep) included.
            p.setpgid(child, 0, 0, timeout=left())
            if env is not None:
                p.clearenv(child, timeout=left())
                for k, v in env.items():
                    p.setenv(child, k, v, 1, timeout=left())
            p.execvp(child, argv[0], argv, timeout=left())
            started = True
            if input:
                try:
                    p.stdin(child, input, timeout=left())
                except BrokenPipeError:
                    pass  # it exited or closed stdin without reading it all
            try:
                p.eof(child, timeout=left())
            except (OSError, _port_error()):
                pass  # already exited
            status = self._wait_exit(child, out, err, deadline)
        except TimeoutError as e:
            self._abandon(chain, pid, child, started, out, err)
            exc = TimeoutError(f"command {argv!r} did not finish within {timeout:g} s: killed")
            exc.stdout, exc.stderr = bytes(out), bytes(err)  # type: ignore[attr-defined]
            raise exc from e
        except BaseException:
            self._abandon(chain, pid, child, started, out, err)
            raise
        if status != ("exit_status", 0):
            raise _command_failed()(argv, status, bytes(out), bytes(err))
        return bytes(out)

    def sh(self, chain: Chain, script: str, **kw: Any) -> bytes:
        """Run a shell script: ``cmd(chain, ["/bin/sh", "-c", script], **kw)``."""
        if not isinstance(script, (str, bytes)):
            raise TypeError(f"script must be a str, not {type(script).__name__}")
        return self.cmd(chain, ["/bin/sh", "-c", script], **kw)

    def task(self, chain: Chain, calls: Calls = None, subprocess_calls: Calls = None,
             clone: Constant | None = None, *, timeout: float | None = None) -> Process:
        """A new child of chain (forked, or cloned with the CLONE_* flags of
        ``clone``, e.g. ``["clone_newpid", "clone_newns"]``) with the call
        filter ``filter(calls, subprocess_calls)`` applied, as its
        :class:`niche.Process` handle. A filtered call raises
        ``niche.Undefined``; ``niche.allow([...])`` denies all others."""
        from .filter import denied
        from .port import Process

        p: Any = self
        chain = list(chain)
        denied(calls)  # bad call names raise before anything is forked
        denied(subprocess_calls)
        pid = p.fork(chain, timeout=timeout) if clone is None else p.clone(chain, clone, timeout=timeout)
        child = [*chain, pid]
        if calls is not None or subprocess_calls is not None:
            try:
                p.filter(child, calls, subprocess_calls, timeout=timeout)
            except BaseException:
                try:
                    p.exit(child, 1, timeout=5)
                except Exception:  # noqa: BLE001 - best effort: do not leave it behind
                    pass
                raise
        return Process(p, child)

    # --- helpers ------------------------------------------------------------

    def _wait_exit(self, child: list[int], out: bytearray, err: bytearray,
                   deadline: float | None) -> Event:
        """Collect output until the exit event (the port forwards all the
        output of a child before its exit event)."""
        p: Any = self
        while True:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                out += p.stdout(child)
                err += p.stderr(child)
                raise TimeoutError("no exit event")
            # Block on events; output meanwhile piles up in the port's
            # buffers and is taken below, so nothing is lost or stalled.
            ev = p.event(child, timeout=1.0 if left is None else min(left, 1.0))
            out += p.stdout(child)
            err += p.stderr(child)
            if ev is not None and ev[0] in ("exit_status", "termsig"):
                return tuple(ev)

    def _abandon(self, chain: list[int], pid: int, child: list[int], started: bool,
                 out: bytearray, err: bytearray) -> None:
        """Kill a child cmd gives up on, and wait (briefly) for its exit."""
        p: Any = self
        try:
            p.kill(chain, -pid, "SIGKILL", timeout=5)  # its process group
        except Exception:  # noqa: BLE001 - no group (setpgid not reached)
            try:
                p.kill(chain, pid, "SIGKILL", timeout=5)
            except Exception:  # noqa: BLE001 - gone already, or the port is
                return
        try:
            self._wait_exit(child, out, err, time.monotonic() + 5)
        except Exception:  # noqa: BLE001
            pass


def __getattr__(name: str) -> Any:
    if name == "CommandFailed":
        return _command_failed()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
