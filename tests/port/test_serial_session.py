"""Sessions on a serial line (issue 10): the port outlives the connection.

A pty pair stands in for the line: the port's stdin/stdout are the master,
niche.Port(serial=...) opens the slave, and the test keeps its own slave
descriptor open so closing a session never reaches the port as a hang-up,
as on a real UART. Costs about 3 s.
"""

from __future__ import annotations

import os
import struct
import subprocess
from collections.abc import Iterator

import niche
import porthelpers as h
import pytest
from niche import protocol as _p


@pytest.fixture
def line() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    master, slave = os.openpty()
    port = subprocess.Popen([str(h.PORT_BIN)], stdin=master, stdout=master, start_new_session=True)
    os.close(master)
    try:
        yield os.ttyname(slave), port
    finally:
        port.kill()
        port.wait(10)
        os.close(slave)


def _alive(pid: int) -> bool:
    st = h.proc_stat(pid)
    return st is not None and st[0] != "Z"


def _session1(path: str) -> tuple[int, int, int]:
    """Session 1: a loop child, an exec'd sleep; closed as a serial Port is
    closed (no end of file reaches the port). Returns the three PIDs."""
    p = niche.Port(serial=path)
    port = p.getpid([])
    assert p.setopt([], "maxforkdepth", 5)
    loop = p.fork([])
    sleeper = p.fork([loop])
    p.execvp([loop, sleeper], "sleep", ["sleep", "1000"])
    p.close()
    assert _alive(loop) and _alive(sleeper)
    return port, loop, sleeper


def test_new_session_finds_a_clean_port(line):
    path, proc = line
    port, loop, sleeper = _session1(path)
    with niche.Port(serial=path) as p:
        assert p.children == ()
        assert not _alive(loop) and not _alive(sleeper)
        assert p.getpid([]) == port == proc.pid  # the same process, re-exec'd
        assert h.descendants(port) == []
        child = p.fork([])
        assert p.getpid([child]) == child
        assert p.getopt([], "maxforkdepth") == 16  # options are the defaults again


def test_reattach_keeps_the_tree_and_says_so(line):
    path, _ = line
    port, loop, sleeper = _session1(path)
    with niche.Port(serial=path, reattach=True) as p:
        assert p.children == (loop,)
        assert p.getpid([loop]) == loop
        assert p.getopt([], "maxforkdepth") == 5  # the same port, as it was
        assert _alive(sleeper)
        p.kill([loop], sleeper, "sigterm")
        assert h.wait_until(lambda: not _alive(sleeper), 10)
    with niche.Port(serial=path) as p:  # and a fresh session after that
        assert p.children == ()
        assert h.wait_until(lambda: not _alive(loop), 1)


def test_garbage_between_sessions(line):
    path, _ = line
    _, loop, _ = _session1(path)
    fd = os.open(path, os.O_WRONLY | os.O_NOCTTY)
    try:  # noise, a bogus frame and a header whose body never comes
        os.write(fd, os.urandom(300) + b"NC\x02\x00\x00\x00\x00\x01" + b"NC\x01\x00\x00\x00\x01\x00")
    finally:
        os.close(fd)
    with niche.Port(serial=path) as p:
        assert not _alive(loop)
        assert p.getpid([]) > 0


def test_only_an_exact_session_hello_ends_the_tree(line):
    """A fresh-session HELLO of another protocol version, with a trailing
    byte or an unknown mode ends nothing: the next reattach finds the tree."""
    path, _ = line
    _, loop, sleeper = _session1(path)
    bogus = [struct.pack(">HIB", _p.PROTO_VERSION + 1, 7, 0), struct.pack(">HIBB", _p.PROTO_VERSION, 7, 0, 0),
             struct.pack(">HIB", _p.PROTO_VERSION, 7, 2)]
    fd = os.open(path, os.O_WRONLY | os.O_NOCTTY)
    try:
        for body in bogus:
            os.write(fd, _p.frame(_p.HELLO, (), body))
    finally:
        os.close(fd)
    with niche.Port(serial=path, reattach=True) as p:
        assert p.children == (loop,)
        assert _alive(loop) and _alive(sleeper)


def _up_hello(nonce: int | None, kids: tuple[int, ...] = ()) -> bytes:
    body = struct.pack(">H", _p.PROTO_VERSION) + b"0.1.0"
    if nonce is not None:
        body += b"\0" + struct.pack(">I", nonce) + _p.term_list([_p.term_int(k) for k in kids])
    return _p.frame(_p.UP_HELLO, (), body)


def test_find_hello_skips_the_previous_session():
    stale = _p.frame(_p.GONE, (7,), _p.term_list([_p.term_bytes(b"termsig"), _p.term_bytes(b"sigterm")]))
    fake_len = b"NC\x81\x00\x00\x0f\xff\xff"  # claims ~1 MB that never comes
    line = os.urandom(64) + stale + _up_hello(1) + fake_len + b"xx" + _up_hello(2, (42,)) + stale
    hello, end = _p.find_hello(line, 2)
    assert hello is not None and hello.nonce == 2 and hello.children == (42,)
    assert line[end:] == stale
    # cut anywhere before its end, the hello is not found and the cut is kept
    cut = len(line) - len(stale) - 3
    hello, keep = _p.find_hello(line[:cut], 2)
    assert hello is None and keep <= line.index(_up_hello(2, (42,)))
    assert _p.find_hello(_up_hello(None), 9)[0] == _p.Hello(_p.PROTO_VERSION, "0.1.0")
