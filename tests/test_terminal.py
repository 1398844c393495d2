"""niche.terminal.attach: an exec'd process of a real port wired to pipes.

The process is a child of the port's root (fork, setsid, execve); this
test's ends of the pipes play the user and the terminal.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import niche
import pytest
from niche import terminal

ROOT = Path(__file__).resolve().parents[1]
PORT_BIN = Path(os.environ.get("NICHE_PORT") or ROOT / "build" / "native" / "niche-port")
T = 10.0

pytestmark = pytest.mark.skipif(not PORT_BIN.exists(), reason="build/native/niche-port is not built")


@pytest.fixture
def port() -> Iterator[niche.Port]:
    with niche.Port() as p:
        yield p


def spawn(port: niche.Port, argv: list[str]) -> niche.Process:
    proc = port.root.fork(timeout=T)
    proc.setsid(timeout=T)  # its own process group, for Ctrl-C
    proc.execve(shutil.which(argv[0]) or argv[0], argv, ["PATH=/usr/bin:/bin"], timeout=T)
    return proc


class Pipe:
    """A pipe; ``drain()`` collects what is written to it, in a thread (the
    pipe's buffer is small), ``feed(data)`` writes data and closes it."""

    def __init__(self) -> None:
        self.r, self.w = os.pipe()
        self.data = bytearray()
        self.thread: threading.Thread | None = None

    def drain(self, on_data=None) -> Pipe:
        def run() -> None:
            while chunk := os.read(self.r, 65536):
                self.data.extend(chunk)
                if on_data:
                    on_data(bytes(self.data))
            os.close(self.r)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        return self

    def feed(self, data: bytes) -> Pipe:
        def run() -> None:
            view = memoryview(data)
            while view:
                view = view[os.write(self.w, view):]
            os.close(self.w)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        return self

    def result(self) -> bytes:
        """What was drained, once the attached side closed its end."""
        os.close(self.w)
        assert self.thread
        self.thread.join(10)
        return bytes(self.data)


def test_cat_copies_stdin_to_stdout_and_ends_at_eof(port: niche.Port) -> None:
    data = os.urandom(300_000)  # several stdin chunks, more than a pipe holds
    stdin, stdout, stderr = Pipe().feed(data), Pipe().drain(), Pipe().drain()
    proc = spawn(port, ["cat"])
    rc = terminal.attach(proc, stdin=stdin.r, stdout=stdout.w, stderr=stderr.w, forward_sigint=False)
    os.close(stdin.r)
    assert rc == 0
    assert stdout.result() == data
    assert stderr.result() == b""


def test_file_objects_and_exit_status(port: niche.Port) -> None:
    stdin, stdout, stderr = Pipe(), Pipe().drain(), Pipe().drain()
    os.close(stdin.w)  # no input at all: eof at once
    proc = spawn(port, ["sh", "-c", "echo out; echo err >&2; exit 3"])
    with open(stdin.r, "rb") as i, open(stdout.w, "wb", closefd=False) as o, \
            open(stderr.w, "wb", closefd=False) as e:
        rc = terminal.attach(proc, stdin=i, stdout=o, stderr=e, forward_sigint=False)
    assert rc == 3
    assert stdout.result() == b"out\n"
    assert stderr.result() == b"err\n"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_process_is_128_plus_signal(port: niche.Port, sig: signal.Signals) -> None:
    stdin, stdout, stderr = Pipe(), Pipe().drain(), Pipe().drain()
    os.close(stdin.w)
    proc = spawn(port, ["sh", "-c", f"echo before; kill -{sig.name[3:]} $$; echo after"])
    rc = terminal.attach(proc, stdin=stdin.r, stdout=stdout.w, stderr=stderr.w, forward_sigint=False)
    os.close(stdin.r)
    assert rc == 128 + sig
    assert stdout.result() == b"before\n"
    stderr.result()


def test_sigint_goes_to_the_process_group_not_here(port: niche.Port) -> None:
    """Ctrl-C while attached reaches the process (its group), not this
    program; the old SIGINT handler is back afterwards."""
    before = signal.getsignal(signal.SIGINT)
    sent = threading.Event()

    def on_out(data: bytes) -> None:
        if b"ready" in data and not sent.is_set():
            sent.set()
            os.kill(os.getpid(), signal.SIGINT)

    stdin, stdout, stderr = Pipe(), Pipe().drain(on_out), Pipe().drain()
    os.close(stdin.w)
    proc = spawn(port, ["sh", "-c", "trap 'echo got-int; exit 7' INT; echo ready; "
                                    "while :; do sleep 0.1; done"])
    rc = terminal.attach(proc, stdin=stdin.r, stdout=stdout.w, stderr=stderr.w)
    os.close(stdin.r)
    assert sent.is_set()
    assert rc == 7
    assert stdout.result() == b"ready\ngot-int\n"
    stderr.result()
    assert signal.getsignal(signal.SIGINT) is before


def test_returns_at_exit_without_end_of_input_and_reads_no_further(port: niche.Port) -> None:
    """The process exits with stdin still open: attach returns, and what comes
    on stdin afterwards is left for the caller."""
    stdin, stdout, stderr = Pipe(), Pipe().drain(), Pipe().drain()
    proc = spawn(port, ["sh", "-c", "read line; echo got-$line"])
    os.write(stdin.w, b"one\n")
    rc = terminal.attach(proc, stdin=stdin.r, stdout=stdout.w, stderr=stderr.w, forward_sigint=False)
    assert rc == 0
    assert stdout.result() == b"got-one\n"
    stderr.result()
    os.write(stdin.w, b"later\n")
    os.close(stdin.w)
    assert os.read(stdin.r, 100) == b"later\n"
    os.close(stdin.r)
