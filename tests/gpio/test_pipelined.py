"""Pipelined line writes (gpio.request(pipeline=N)) against the simulator with a
real port: set() returns before its reply, the port runs the writes in order,
every write lands (the simulator counts each change), a failed write is
raised once, by a later call, as WriteFailed naming it, and sync()/get()/
release() wait for what is in flight."""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Iterator

import niche
import pytest
from niche import gpio
from niche.gpio import LineReleased, WriteFailed
from simhelpers import SimWorld

pytestmark = pytest.mark.timeout(90)

T = 10


@pytest.fixture
def port(sim: SimWorld) -> Iterator[niche.Port]:
    with niche.Port() as p:
        yield p


@pytest.fixture
def req(port: niche.Port, sim: SimWorld) -> Iterator:
    made: list[gpio.Line] = []

    def request(n: int, **kw) -> gpio.Line:
        line = gpio.request(port, f"SIM{n}", board="sim", sysfs_root=str(sim.root), timeout=T, **kw)
        made.append(line)
        return line

    yield request
    for line in made:
        try:
            line.release()
        except WriteFailed:
            pass


def set_retrying(line: gpio.Line, value: bool, failed: list[WriteFailed]) -> None:
    """set(value); a WriteFailed is an earlier write's, and that set() did
    nothing: record it and call again."""
    while True:
        try:
            line.set(value)
            return
        except WriteFailed as e:
            failed.append(e)


def sync_all(line: gpio.Line, failed: list[WriteFailed]) -> None:
    while True:
        try:
            line.sync()
            return
        except WriteFailed as e:
            failed.append(e)


def test_every_write_lands_in_order(req, sim: SimWorld) -> None:
    line = req(3, direction="out", pipeline=8)
    seen = 0
    for i in range(1, 301):
        line.set(i & 1)
        seen = max(seen, line.in_flight)
    assert seen <= 8  # back-pressure: never more than the depth in flight
    line.sync()
    assert line.in_flight == 0
    assert sim.changes(3) == 300 and sim.level(3) == 0  # none lost, the last one last


def test_get_and_toggle_wait_for_the_writes_in_flight(req, sim: SimWorld) -> None:
    line = req(4, direction="out", pipeline=32)
    for _ in range(21):
        line.toggle()
    assert line.get() is True and line.in_flight == 0
    assert sim.level(4) == 1 and sim.changes(4) == 21


def test_release_lands_the_writes_in_flight(req, sim: SimWorld) -> None:
    line = req(5, direction="out", pipeline=64)
    for i in range(1, 51):
        line.set(i & 1)
    line.release()
    assert sim.changes(5) == 50


def test_a_failed_write_is_raised_once_naming_it(req, sim: SimWorld) -> None:
    line = req(6, direction="out", pipeline=16)
    line.on()
    line.sync()
    sim.write(6, "direction", "in")  # from outside: value writes now fail with EPERM
    failed: list[WriteFailed] = []
    for v in (False, True, False):
        set_retrying(line, v, failed)
    sync_all(line, failed)
    # writes 2, 3 and 4 were sent after the change: each failed, each raised once, in order
    assert [(e.seq, e.value) for e in failed] == [(2, False), (3, True), (4, False)]
    assert all(isinstance(e.__cause__, OSError) and e.__cause__.errno == errno.EPERM for e in failed)
    assert "write #2 (set(False))" in str(failed[0])
    sim.write(6, "direction", "out")
    line.off()
    line.on()
    line.sync()  # the line works again; nothing left over
    assert sim.level(6) == 1 and line.in_flight == 0


def test_writes_after_a_failed_one_still_run(req, sim: SimWorld) -> None:
    line = req(7, direction="out", pipeline=16)
    line.sync()
    sim.write(7, "direction", "in")
    failed: list[WriteFailed] = []
    set_retrying(line, True, failed)  # write 1 fails
    sim.write(7, "direction", "low")  # an output again, driven low, before write 2 is sent
    set_retrying(line, True, failed)
    sync_all(line, failed)
    assert [e.seq for e in failed] == [1]
    assert sim.level(7) == 1  # write 2 ran after write 1 failed


def test_without_pipeline_set_raises_its_own_error(req, sim: SimWorld) -> None:
    line = req(8, direction="out")
    sim.write(8, "direction", "in")
    with pytest.raises(PermissionError):
        line.on()


def test_holder_gone_is_line_released(req, sim: SimWorld) -> None:
    line = req(9, direction="out", pipeline=4)
    line.on()
    line.sync()
    os.kill(line.process.pid, signal.SIGKILL)
    with pytest.raises(LineReleased):
        for _ in range(8):  # the first set()s may be sent before the port sees the exit
            line.on()
        line.sync()


@pytest.mark.parametrize("bad", [-1, True, 1.5, "8"])
def test_pipeline_must_be_a_count(port, sim: SimWorld, bad) -> None:
    with pytest.raises(ValueError, match="pipeline"):
        gpio.request(port, "SIM10", board="sim", sysfs_root=str(sim.root), timeout=T, pipeline=bad)
