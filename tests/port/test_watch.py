"""watch/unwatch: a process's loop reads a descriptor and sends ("fd", fd, data)."""

import os

import niche
import pytest

T = 10


@pytest.fixture
def port():
    with niche.Port() as p:
        yield p


def test_watch_delivers_data_then_eof(port, tmp_path):
    fifo = tmp_path / "f"
    child = port.root.fork(timeout=T)
    child.mkfifo(str(fifo), 0o600, timeout=T)
    fd = child.open(str(fifo), ["O_RDONLY", "O_NONBLOCK"], timeout=T)
    child.watch(fd, timeout=T)
    w = os.open(fifo, os.O_WRONLY)
    try:
        os.write(w, b"edge 1")
        assert child.event(timeout=T) == ("fd", fd, b"edge 1")
        os.write(w, b"edge 2")
        assert child.event(timeout=T) == ("fd", fd, b"edge 2")
    finally:
        os.close(w)
    assert child.event(timeout=T) == ("fd", fd, b"")
    with pytest.raises(FileNotFoundError):  # the watch ended with end of file
        child.unwatch(fd, timeout=T)
    assert child.getpid(timeout=T) == child.pid  # the loop still serves


def test_unwatch_stops_events_and_the_loop_keeps_serving(port):
    child = port.root.fork(timeout=T)
    r, w = os.pipe()
    try:
        # the child cannot see our pipe: give it one of its own through /proc
        fd = child.open(f"/proc/{os.getpid()}/fd/{r}", ["O_RDONLY", "O_NONBLOCK"], timeout=T)
        child.watch(fd, timeout=T)
        child.watch(fd, timeout=T)  # watching twice is watching once
        os.write(w, b"x")
        assert child.event(timeout=T) == ("fd", fd, b"x")
        child.unwatch(fd, timeout=T)
        os.write(w, b"y")
        assert child.event(timeout=0.3) is None
        assert child.read(fd, 10, timeout=T) == b"y"
    finally:
        os.close(r)
        os.close(w)


def test_watch_refuses_what_it_cannot_watch(port, tmp_path):
    f = tmp_path / "plain"
    f.write_bytes(b"data")
    fd = port.open([], str(f), ["O_RDONLY"], timeout=T)
    with pytest.raises(PermissionError):  # epoll refuses regular files
        port.watch([], fd, timeout=T)
    with pytest.raises(OSError):
        port.watch([], 9999, timeout=T)
    with pytest.raises(OSError):
        port.watch([], 0, timeout=T)  # the loop's own input
    assert port.getpid([], timeout=T) == port.pid


def test_closing_a_watched_descriptor_ends_the_watch(port):
    child = port.root.fork(timeout=T)
    r, w = os.pipe()
    try:
        fd = child.open(f"/proc/{os.getpid()}/fd/{r}", ["O_RDONLY", "O_NONBLOCK"], timeout=T)
        child.watch(fd, timeout=T)
        child.close(fd, timeout=T)
        with pytest.raises(FileNotFoundError):
            child.unwatch(fd, timeout=T)
    finally:
        os.close(r)
        os.close(w)
