"""The LED class backend (/sys/class/leds/<name>): BeagleBone USR0-3, the
Pi's ACT and PWR. A sandboxed child keeps only the ``brightness``
descriptor; blinking is handed to the kernel's ``timer`` trigger (the
port writes ``trigger``, ``delay_on``, ``delay_off``), so a blink costs no
CPU and survives the agent being busy."""

from __future__ import annotations

from ..port import Process
from ..sandbox import read_file, sandbox
from .boards import LineRef
from .errors import ChipNotFound
from .line import Edge, Line
from .sysfs import write_file

LEDS_ROOT = "/sys/class/leds"


class LedLine(Line):
    backend = "led"

    @classmethod
    def request(cls, parent: Process, ref: LineRef, *, initial: bool, active_low: bool,
                root: str | None, timeout: float | None) -> LedLine:
        root = root or LEDS_ROOT
        have = set(parent.readdir(root, timeout=timeout)) if ref.leds else set()
        name = next((n for n in ref.leds if n in have), None)
        if name is None:
            raise ChipNotFound(f"{ref.spec}: no LED {' or '.join(ref.leds) or '?'} under {root} "
                               f"(there are: {', '.join(sorted(have)) or 'none'}); the kernel needs "
                               "CONFIG_LEDS_CLASS and the board's LED driver (leds-gpio)")
        d = f"{root}/{name}"
        maximum = int(read_file(parent, f"{d}/max_brightness", timeout=timeout) or b"1")
        write_file(parent, f"{d}/trigger", b"none", timeout=timeout)
        fd = parent.open(f"{d}/brightness", ["O_RDWR", "O_CLOEXEC"], timeout=timeout)
        try:
            sb = sandbox(parent, keep_fds=[fd], timeout=timeout)
        finally:
            parent.close(fd, timeout=timeout)
        line = cls(ref.spec, "out", sb, fd, active_low, timeout)
        line.dir, line.max, line.parent, line.led = d, maximum, parent, name
        line.blinking = False
        line.set(initial)
        return line

    def _write(self, value: bool) -> None:
        if self.blinking:
            self.stop_blink()
        on = value != self.active_low
        self.process.write(self.fd, str(self.max if on else 0).encode(), timeout=self.timeout)

    def _read(self) -> bool:
        self.process.lseek(self.fd, 0, "SEEK_SET", timeout=self.timeout)
        raw = self.process.read(self.fd, 16, timeout=self.timeout).strip() or b"0"
        return (int(raw) > 0) != self.active_low

    def _parse_edges(self, data: bytes) -> list[Edge]:
        return []

    def blink(self, on_ms: int, off_ms: int) -> None:
        """Blink in the kernel (timer trigger) until the next set()."""
        write_file(self.parent, f"{self.dir}/trigger", b"timer", timeout=self.timeout)
        write_file(self.parent, f"{self.dir}/delay_on", str(int(on_ms)).encode(), timeout=self.timeout)
        write_file(self.parent, f"{self.dir}/delay_off", str(int(off_ms)).encode(), timeout=self.timeout)
        self.blinking = True

    def stop_blink(self) -> None:
        write_file(self.parent, f"{self.dir}/trigger", b"none", timeout=self.timeout)
        self.blinking = False

    def _cleanup(self) -> None:
        if self.blinking:
            self.stop_blink()
