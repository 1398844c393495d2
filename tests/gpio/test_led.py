"""The LED backend (niche.gpio.led) against a fake /sys/class/leds tree.

The tree is plain files in tmp_path, so nothing reacts the way the kernel's
LED class does: these tests check what niche *wrote* (brightness, trigger,
delay_on, delay_off) and what it reads back from brightness. ``take(path)``
returns what was written since the last look and empties the file; the
holder writes brightness through one descriptor kept open, whose offset
grows, so the holes it leaves (NULs) are dropped.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import niche
import pytest
from niche import gpio
from niche.gpio import ChipNotFound, LedLine, LineReleased
from niche.sandbox import UID_MIN

pytestmark = pytest.mark.timeout(60)

T = 10  # seconds, for every port call
USR0 = "beaglebone:green:usr0"


def take(path: Path) -> str:
    data = path.read_bytes()
    path.write_bytes(b"")
    return data.replace(b"\0", b"").decode()


def make_led(root: Path, name: str, max_brightness: int = 255) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "brightness").write_text("")  # empty: take() then sees exactly what was written
    (d / "max_brightness").write_text(f"{max_brightness}\n")
    (d / "trigger").write_text("")
    return d


@pytest.fixture
def port() -> Iterator[niche.Port]:
    with niche.Port() as p:
        yield p
        reap(p)


def reap(port: niche.Port, wait: float = 3.0) -> None:
    """Kill whatever holder a failed test left (a released one is gone within ``wait``)."""
    deadline = time.monotonic() + wait
    while (left := port.cpid([], timeout=T)) and time.monotonic() < deadline:
        time.sleep(0.02)
    for c in left:
        with contextlib.suppress(ProcessLookupError):
            port.kill([], c.pid, "SIGKILL", timeout=T)


@pytest.fixture
def leds(tmp_path: Path) -> Path:
    root = tmp_path / "leds"
    root.mkdir()
    for n in range(4):
        make_led(root, f"beaglebone:green:usr{n}")
    make_led(root, "mmc0::", max_brightness=1)
    return root


def request(port: niche.Port, leds: Path, pin: str = "USR0", **kw) -> LedLine:
    line = gpio.request(port, pin, board=kw.pop("board", "beaglebone"), leds_root=str(leds), timeout=T, **kw)
    assert isinstance(line, LedLine)
    return line


def test_request_writes_trigger_none_and_initial(port: niche.Port, leds: Path) -> None:
    d = leds / USR0
    line = request(port, leds)
    try:
        assert line.backend == "led" and line.led == USR0
        assert take(d / "trigger") == "none"  # the kernel's default trigger is taken away
        assert take(d / "brightness") == "0"
        assert line.blinking is False
    finally:
        line.release()


def test_initial_on_is_max_brightness(port: niche.Port, leds: Path) -> None:
    line = request(port, leds, initial=True)
    try:
        assert take(leds / USR0 / "brightness") == "255"
    finally:
        line.release()


def test_on_off_toggle(port: niche.Port, leds: Path) -> None:
    b = leds / USR0 / "brightness"
    with request(port, leds) as line:
        take(b)
        line.on()
        assert take(b) == "255"
        line.off()
        assert take(b) == "0"
        line.value = True
        assert take(b) == "255"
        assert line.toggle() is False
        assert take(b) == "0"
        assert line.toggle() is True
        assert take(b) == "255"
    assert line.released


def test_max_brightness_is_used(port: niche.Port, leds: Path) -> None:
    b = leds / "mmc0::" / "brightness"
    with request(port, leds, "led:mmc0::") as line:
        take(b)
        line.on()
        assert take(b) == "1"
        line.off()
        assert take(b) == "0"


def test_active_low(port: niche.Port, leds: Path) -> None:
    b = leds / USR0 / "brightness"
    with request(port, leds, active_low=True) as line:
        assert take(b) == "255"  # logical off = physically full
        line.on()
        assert take(b) == "0"
        b.write_text("255\n")
        assert line.get() is False
        b.write_text("0\n")
        assert line.get() is True


def test_get_reads_brightness(port: niche.Port, leds: Path) -> None:
    b = leds / USR0 / "brightness"
    with request(port, leds) as line:
        for text, want in (("0\n", False), ("255\n", True), ("1\n", True), ("0\n", False)):
            b.write_text(text)  # the kernel's view changed (e.g. another trigger)
            assert line.get() is want, text


def test_blink_hands_over_to_timer_trigger(port: niche.Port, leds: Path) -> None:
    d = leds / USR0
    with request(port, leds) as line:
        take(d / "trigger")
        take(d / "brightness")
        # the kernel makes delay_on/delay_off when "timer" is written; plain files cannot
        (d / "delay_on").write_text("")
        (d / "delay_off").write_text("")
        line.blink(500, 250)
        assert take(d / "trigger") == "timer"
        assert take(d / "delay_on") == "500"
        assert take(d / "delay_off") == "250"
        assert take(d / "brightness") == ""  # the kernel blinks, niche does not
        assert line.blinking
        line.blink(100, 900)  # a new period while blinking
        assert (take(d / "trigger"), take(d / "delay_on"), take(d / "delay_off")) == ("timer", "100", "900")
        line.set(True)  # set() stops the blink
        assert take(d / "trigger") == "none"
        assert take(d / "brightness") == "255"
        assert not line.blinking
        line.off()
        assert take(d / "trigger") == ""  # not blinking: the trigger is left alone
        assert take(d / "brightness") == "0"


def test_blink_stops_on_off_and_on_release(port: niche.Port, leds: Path) -> None:
    d = leds / USR0
    (d / "delay_on").write_text("")
    (d / "delay_off").write_text("")
    line = request(port, leds)
    line.blink(50, 50)
    take(d / "trigger")
    line.off()
    assert take(d / "trigger") == "none" and take(d / "brightness").endswith("0")
    line.blink(50, 50)
    take(d / "trigger")
    line.release()
    assert take(d / "trigger") == "none"  # a released LED does not keep blinking
    with pytest.raises(LineReleased):
        line.on()


def test_holder_keeps_only_brightness(port: niche.Port, leds: Path) -> None:
    with request(port, leds) as line:
        pid = line.process.pid
        assert line.process.chain == (pid,) and line.process.getpid(timeout=T) == 1
        st = dict(ln.split(":", 1) for ln in Path(f"/proc/{pid}/status").read_text().splitlines())
        uid = st["Uid"].split()
        assert len(set(uid)) == 1 and int(uid[0]) >= UID_MIN
        assert st["NoNewPrivs"].strip() == "1" and int(st["CapEff"], 16) == 0
        targets = {}
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                targets[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
            except FileNotFoundError:
                pass
        files = {fd: t for fd, t in targets.items() if t.startswith("/")}
        assert files == {line.fd: str(leds / USR0 / "brightness")}, targets
        # its root: an empty read-only tmpfs of its own mount namespace, not the host's /
        assert os.stat(f"/proc/{pid}/root/") != os.stat("/")
        assert os.listdir(f"/proc/{pid}/root/") == []
        with pytest.raises(OSError):
            line.process.open("/etc/passwd", ["O_RDONLY"], timeout=T)
        mounts = Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
        root = [m.split() for m in mounts if m.split()[4] == "/"]
        assert root and "tmpfs" in root[-1] and "ro" in root[-1][5].split(","), root
        assert "niche-empty" not in Path("/proc/self/mountinfo").read_text()  # nothing reached the host


def test_led_by_name_prefers_first_present(port: niche.Port, tmp_path: Path) -> None:
    root = tmp_path / "leds"
    make_led(root, "led0")  # an older Pi kernel: ACT is called led0
    with request(port, root, "ACT", board="rpi") as line:
        assert line.led == "led0"
        assert take(root / "led0" / "trigger") == "none"
    make_led(root, "ACT")
    with request(port, root, "ACT", board="rpi") as line:
        assert line.led == "ACT"


def test_missing_led_says_what_is_there(port: niche.Port, leds: Path) -> None:
    with pytest.raises(ChipNotFound) as ei:
        request(port, leds, "PWR", board="rpi")
    msg = str(ei.value)
    assert "PWR" in msg and USR0 in msg and "CONFIG_LEDS_CLASS" in msg
    assert port.cpid([], timeout=T) == []  # no holder was made


def test_led_is_an_output(port: niche.Port, leds: Path) -> None:
    with pytest.raises(ValueError):
        request(port, leds, direction="in")
    assert take(leds / USR0 / "trigger") == ""  # nothing was touched
    assert port.cpid([], timeout=T) == []
