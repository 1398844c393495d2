"""Board tables: pin names to GPIO chips and lines (boards/<name>/board.toml).

A pin spec is one of: a board pin name ("P9_12", "PIN11", "SIM3", "USR0"),
a kernel line name ("GPIO17"), "gpiochipN:LINE" (or "LABEL:LINE"),
"sysfs:N" (a legacy sysfs number), or "led:NAME" (/sys/class/leds/NAME).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UnknownPin

BOARDS_DIR = Path(__file__).resolve().parent.parent / "boards"


@dataclass(frozen=True)
class LineRef:
    """Where a pin is, as far as the board table knows without a kernel."""

    spec: str
    chips: tuple[str, ...] = ()  # chip names or labels to look for, in order
    offset: int | None = None  # line offset on that chip
    line_name: str | None = None  # kernel line name, found by scanning chips
    sysfs: int | None = None  # legacy sysfs number (absolute)
    sysfs_offset: int | None = None  # or an offset from a chip's sysfs base
    leds: tuple[str, ...] = ()  # /sys/class/leds names, for the led backend


@dataclass
class Board:
    name: str
    model: str = ""
    backend: str = "chardev"
    pins: dict[str, dict[str, Any]] = field(default_factory=dict)
    leds: dict[str, dict[str, Any]] = field(default_factory=dict)
    banks: dict[int, list[str]] = field(default_factory=dict)
    sysfs_chips: list[str] = field(default_factory=list)
    overlay_hint: str = ""

    @classmethod
    def load(cls, name_or_path: str | os.PathLike[str]) -> Board:
        """A board by name (beaglebone, rpi, sim) or from a board.toml path."""
        p = Path(name_or_path)
        if not p.suffix and os.sep not in str(name_or_path):
            p = BOARDS_DIR / str(name_or_path) / "board.toml"
            if not p.exists():
                known = sorted(d.name for d in BOARDS_DIR.iterdir() if (d / "board.toml").exists())
                raise UnknownPin(f"no board named {name_or_path!r}; known boards: {', '.join(known)}, "
                                 "or give the path of a board.toml")
        with open(p, "rb") as f:
            t = tomllib.load(f)
        return cls(
            name=t.get("name", p.parent.name), model=t.get("model", ""),
            backend=t.get("backend", "chardev"), pins=t.get("pins", {}), leds=t.get("leds", {}),
            banks={int(k): list(v) for k, v in t.get("banks", {}).items()},
            sysfs_chips=list(t.get("sysfs_chips", [])), overlay_hint=t.get("overlay_hint", ""),
        )

    def names(self) -> list[str]:
        def key(n: str) -> tuple[str, int]:
            m = re.match(r"(.*?)(\d+)$", n)
            return (m.group(1), int(m.group(2))) if m else (n, -1)
        return sorted([*self.pins, *self.leds], key=key)

    def resolve(self, spec: str) -> LineRef:
        if not isinstance(spec, str) or not spec:
            raise TypeError(f"a pin is a non-empty string, not {spec!r}")
        if m := re.fullmatch(r"sysfs:(\d+)", spec):
            return LineRef(spec, sysfs=int(m.group(1)))
        if m := re.fullmatch(r"led:(.+)", spec):
            return LineRef(spec, leds=(m.group(1),))
        if m := re.fullmatch(r"([^:\s]+):(\d+)", spec):
            return LineRef(spec, chips=(m.group(1),), offset=int(m.group(2)))
        key = next((k for k in (spec, spec.upper()) if k in self.pins or k in self.leds), None)
        if key in self.leds:
            d = self.leds[key]
            leds = d["led"] if isinstance(d["led"], list) else [d["led"]]
            return LineRef(spec, leds=tuple(leds), **self._where(d))
        if key in self.pins:
            return LineRef(spec, **self._where(self.pins[key]))
        if re.fullmatch(r"GPIO\d+", spec.upper()) and self.name != "sim":
            return LineRef(spec, line_name=spec.upper())  # a kernel line name, found by scanning
        raise UnknownPin(f"no pin {spec!r} on the {self.name} board; valid pins: "
                         f"{', '.join(self.names())} (or a line name like GPIO17, "
                         "gpiochipN:LINE, sysfs:N, led:NAME)")

    def _where(self, d: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if "bank" in d:
            out["chips"] = tuple(self.banks.get(int(d["bank"]), []))
            out["offset"] = int(d["line"])
        if "name" in d:
            out["line_name"] = d["name"]
        if "sysfs" in d:
            out["sysfs"] = int(d["sysfs"])
        elif "bcm" in d:
            out["sysfs_offset"] = int(d["bcm"])
        return out
