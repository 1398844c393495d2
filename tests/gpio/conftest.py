"""Fixtures for the GPIO tests: the simulator (niche-gpio-sim), mounted for real.

- ``sim_root`` (module scope): mounts a fresh simulator in a tmp dir and
  yields the mountpoint (a Path that stands for /sys/class/gpio, e.g. for
  ``[agent] sysfs_root``); unmounts after the module and checks that nothing
  is left mounted.  Skips when FUSE is not usable here (no /dev/fuse,
  fusermount3 or mfusepy, or not root).
- ``sim`` (function scope): a ``SimWorld`` over ``sim_root``, reset before
  and after the test (every line unexported, input, not active-low, no
  edge, driven low from outside).  Read and drive the outside world with
  ``sim.level(n)``, ``sim.drive(n, 0|1)``, ``sim.edges(n)``,
  ``sim.changes(n)``; reach the sysfs files with ``sim.gpio(n)`` /
  ``sim.read(n, "value")`` / ``sim.write(n, "direction", "out")``.

The test modules may also ``import simhelpers`` for SimWorld and friends
(an alias that does not depend on how pytest names conftest modules).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.modules.setdefault("simhelpers", sys.modules[__name__])

NLINES = 32


def fuse_unusable() -> str | None:
    """Why the simulator cannot be mounted here, or None."""
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as e:
        return f"mfusepy not usable: {e} (pip install mfusepy; apt-get install fuse3)"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    if shutil.which("fusermount3") is None:
        return "no fusermount3 (apt-get install fuse3)"
    if os.geteuid() != 0:
        return "the simulator tests run as root (allow_other, chroot, setuid)"
    return None


def wait_until(cond: Callable[[], object], timeout: float = 10.0, step: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if cond():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(step)


def write_file(path: os.PathLike | str, data: str | bytes) -> None:
    """One write(2) of data to path (what a sysfs store sees), errors as OSError."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, data.encode() if isinstance(data, str) else data)
    finally:
        os.close(fd)


def read_file(path: os.PathLike | str) -> str:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 4096).decode()
    finally:
        os.close(fd)


class SimWorld:
    """The simulator seen from a test: sysfs files and the outside world."""

    def __init__(self, root: os.PathLike | str) -> None:
        self.root = Path(root)

    # the outside world
    def level(self, n: int) -> int:
        """The physical level of line n (sim/N)."""
        return int(read_file(self.root / "sim" / str(n)))

    def drive(self, n: int, level: int) -> None:
        """Drive line n from outside (an input, or a line not exported)."""
        write_file(self.root / "sim" / str(n), f"{level}\n")

    def edges(self, n: int) -> int:
        """How many configured edges line n has fired."""
        return int(read_file(self.root / "sim" / f"{n}.edges"))

    def changes(self, n: int) -> int:
        """How many times the physical level of line n changed."""
        return int(read_file(self.root / "sim" / f"{n}.changes"))

    # the sysfs side
    def gpio(self, n: int) -> Path:
        return self.root / f"gpio{n}"

    def export(self, n: int) -> Path:
        write_file(self.root / "export", str(n))
        return self.gpio(n)

    def unexport(self, n: int) -> None:
        write_file(self.root / "unexport", str(n))

    def read(self, n: int, name: str) -> str:
        return read_file(self.gpio(n) / name).strip()

    def write(self, n: int, name: str, value: str | bytes) -> None:
        write_file(self.gpio(n) / name, value)

    def exported(self) -> list[int]:
        return sorted(int(p.name[4:]) for p in self.root.glob("gpio[0-9]*"))

    def reset(self) -> None:
        """Every line unexported, input, active-high, no edge, driven low."""
        for n in range(NLINES):
            try:
                self.export(n)
            except OSError as e:
                if e.errno != errno.EBUSY:
                    raise
            self.write(n, "edge", "none")
            self.write(n, "active_low", "0")
            self.write(n, "direction", "in")
            self.unexport(n)
            self.drive(n, 0)


_SIMULATORS: dict[Path, object] = {}


def check_alive(root: Path) -> None:
    """Fail (saying how it ended) if the simulator serving root has died."""
    sim = _SIMULATORS.get(Path(root))
    why = sim.died() if sim is not None else None
    if why:
        pytest.fail(why)


def _reset(world: SimWorld) -> None:
    check_alive(world.root)
    try:
        world.reset()
    except OSError as e:
        wait_until(lambda: _SIMULATORS[world.root].died(), 5)
        check_alive(world.root)
        raise AssertionError(f"resetting the simulator: {e!r}") from e


@pytest.fixture(scope="module")
def sim_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A mounted simulator for the module; yields its mountpoint."""
    reason = fuse_unusable()
    if reason:
        pytest.skip(reason)
    from niche.gpio.sim import Simulator, is_mounted

    mp = tmp_path_factory.mktemp("gpio-sim") / "gpio"
    sim = Simulator(mp, timeout=20)
    sim.start()
    _SIMULATORS[sim.root] = sim
    try:
        yield sim.root
    finally:
        _SIMULATORS.pop(sim.root, None)
        with contextlib.suppress(Exception):
            sim.stop()
        assert not is_mounted(mp), f"{mp} still mounted"


@pytest.fixture
def sim(sim_root: Path) -> Iterator[SimWorld]:
    """The module's simulator, reset before and after the test."""
    world = SimWorld(sim_root)
    _reset(world)
    yield world
    _reset(world)
