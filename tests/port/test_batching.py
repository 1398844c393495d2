"""Pipelined calls sent in one write (issue 11): the port gathers the small
frames it sends up while it works through one read and writes them together.
These tests drive the real port with raw frames (the sans-IO codec, no
niche.Port) so that a whole batch is in the port's pipe before it reads, and
check what a pipelining client relies on: every reply comes exactly once, in
order, also around a fork or an execve in the middle of the batch."""

from __future__ import annotations

import os
import select
import subprocess
import time

import pytest
from niche import protocol as p
from niche._calls import CALLS
from porthelpers import PORT_BIN


class RawPort:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([str(PORT_BIN)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.dec = p.Decoder()
        self.msgs: list[p.Message] = []
        self.write(p.encode_hello())
        assert isinstance(self.next(lambda m: isinstance(m, p.Hello)), p.Hello)
        self.ids = iter(range(1, 1 << 30))

    def write(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def call(self, chain: tuple[int, ...], name: str, *args: bytes) -> tuple[int, bytes]:
        rid = next(self.ids)
        return rid, p.encode_call(rid, chain, CALLS[name], args)

    def drain(self, quiet: float = 0.2) -> None:
        """Read what the port sends until it has been quiet for `quiet` s."""
        fd = self.proc.stdout.fileno()
        while select.select([fd], [], [], quiet)[0]:
            data = os.read(fd, 1 << 16)
            if not data:
                return
            self.msgs += self.dec.feed(data)

    def next(self, want, timeout: float = 10.0) -> p.Message:
        deadline = time.monotonic() + timeout
        while True:
            for i, m in enumerate(self.msgs):
                if want(m):
                    return self.msgs.pop(i)
            left = deadline - time.monotonic()
            fd = self.proc.stdout.fileno()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError(f"nothing matched; have {self.msgs[:5]}")
            data = os.read(fd, 1 << 16)
            if not data:
                raise EOFError("the port exited")
            self.msgs += self.dec.feed(data)

    def replies(self, n: int) -> list[p.Reply]:
        return [self.next(lambda m: isinstance(m, p.Reply)) for _ in range(n)]  # type: ignore[misc]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(15)
        self.proc.stdout.close()


@pytest.fixture
def raw():
    r = RawPort()
    yield r
    r.close()


def test_a_batch_of_500_calls_gets_500_replies_in_order(raw):
    calls = [raw.call((), "getpid") for _ in range(500)]
    raw.write(b"".join(f for _, f in calls))
    got = raw.replies(500)
    assert [r.id for r in got] == [rid for rid, _ in calls]
    assert {(r.status, r.value) for r in got} == {(p.ST_OK, raw.proc.pid)}
    raw.drain()
    assert not raw.msgs  # nothing twice


def test_replies_before_a_fork_in_the_batch_come_once(raw):
    """The forked child starts with a copy of the port's memory: what the
    port had gathered for its own link must not leave again from the child."""
    before = [raw.call((), "getpid") for _ in range(20)]
    fork = raw.call((), "fork")
    after = [raw.call((), "getpid") for _ in range(20)]
    raw.write(b"".join(f for _, f in [*before, fork, *after]))
    got = raw.replies(41)
    assert [r.id for r in got] == [rid for rid, _ in [*before, fork, *after]]
    child = got[20].value
    assert got[20].status == p.ST_OK and child > 0
    rid, f = raw.call((child,), "getpid")
    raw.write(f)
    (r,) = raw.replies(1)
    assert (r.id, r.chain, r.value) == (rid, (child,), child)
    raw.drain()
    assert not [m for m in raw.msgs if isinstance(m, p.Reply)]  # no reply twice


def test_replies_before_an_execve_in_the_batch_are_not_lost(raw):
    """execve replaces the loop: the replies it had gathered go up first."""
    _, f = raw.call((), "fork")
    raw.write(f)
    (r,) = raw.replies(1)
    child = r.value
    calls = [raw.call((child,), "getpid") for _ in range(10)]
    ex = raw.call((child,), "execve", p.term_bytes(b"/bin/true"),
                  p.term_list([p.term_bytes(b"true")]), p.term_list([]))
    raw.write(b"".join(f for _, f in [*calls, ex]))
    got = raw.replies(11)
    assert [r.id for r in got] == [rid for rid, _ in [*calls, ex]]
    assert all(r.value == child for r in got[:10])
    assert got[10].status == p.ST_OK
    ev = raw.next(lambda m: isinstance(m, p.Event) and not m.gone)
    assert ev.event == ("exit_status", 0)


def _fork(raw, chain=()) -> int:
    _, f = raw.call(chain, "fork")
    raw.write(f)
    (r,) = raw.replies(1)
    assert r.status == p.ST_OK
    return r.value


def test_a_batch_down_a_chain_gets_every_reply_in_order(raw):
    """Frames through a chain, mixed with the port's own, in one write."""
    a = _fork(raw)
    b = _fork(raw, (a,))
    calls = [raw.call(c, "getpid") for _ in range(100) for c in ((a,), (a, b), ())]
    raw.write(b"".join(f for _, f in calls))
    got = raw.replies(300)
    for chain, pid in (((a,), a), ((a, b), b), ((), raw.proc.pid)):  # in order per process
        want = [rid for (rid, _), c in zip(calls, [(a,), (a, b), ()] * 100, strict=True) if c == chain]
        assert [r.id for r in got if r.chain == chain] == want
        assert {r.value for r in got if r.chain == chain} == {pid}


def test_calls_to_a_child_before_an_exit_in_the_batch_are_answered(raw):
    """The port's exit comes after the calls it read before it: they reach
    the child before its end of file."""
    a = _fork(raw)
    calls = [raw.call((a,), "getpid") for _ in range(20)]
    ex = raw.call((), "exit", p.term_int(0))
    raw.write(b"".join(f for _, f in [*calls, ex]))
    got = {r.id: r for r in raw.replies(21)}
    assert [(got[rid].status, got[rid].value) for rid, _ in calls] == [(p.ST_OK, a)] * 20
    assert raw.proc.wait(15) == 0
