"""MQTT payloads to commands, sans-IO: bytes in, a command or a clear error out."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

MAX_MS = 24 * 3600 * 1000  # a day: longer is surely a mistake
MAX_COUNT = 1_000_000


class CommandError(ValueError):
    """The payload is not a command; the message says what would be."""


@dataclass(frozen=True)
class Set:
    value: bool | None  # None: toggle


@dataclass(frozen=True)
class Blink:
    on_ms: int = 500
    off_ms: int = 500
    count: int | None = None  # None: until the next set


@dataclass(frozen=True)
class Pulse:
    ms: int


Command = Set | Blink | Pulse

_SET = {"on": True, "1": True, "true": True, "off": False, "0": False, "false": False, "toggle": None}


def _text(payload: bytes) -> str:
    try:
        return payload.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise CommandError("the payload is not UTF-8 text") from None


def _ms(v: object, key: str, lo: int = 1) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise CommandError(f"{key} must be an integer number of milliseconds, not {v!r}")
    if not lo <= v <= MAX_MS:
        raise CommandError(f"{key} must be between {lo} and {MAX_MS} ms, not {v}")
    return v


def parse_set(payload: bytes) -> Set:
    t = _text(payload).lower()
    if t not in _SET:
        raise CommandError("set takes ON, OFF, TOGGLE, 1, 0, true or false")
    return Set(_SET[t])


def _json(payload: bytes) -> object:
    t = _text(payload)
    if len(t) > 1024:
        raise CommandError("the payload is too long for a command")
    try:
        return json.loads(t) if t else {}
    except (json.JSONDecodeError, RecursionError):
        raise CommandError("the payload is not JSON") from None


def parse_blink(payload: bytes) -> Blink:
    d = _json(payload)
    if not isinstance(d, dict):
        raise CommandError('blink takes a JSON object like {"on_ms": 500, "off_ms": 500, "count": null}')
    unknown = set(d) - {"on_ms", "off_ms", "count"}
    if unknown:
        raise CommandError(f"blink has no key {', '.join(sorted(unknown))} (on_ms, off_ms, count)")
    count = d.get("count")
    if count is not None:
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_COUNT:
            raise CommandError(f"count must be null or an integer from 1 to {MAX_COUNT}, not {count!r}")
    return Blink(_ms(d.get("on_ms", 500), "on_ms"), _ms(d.get("off_ms", 500), "off_ms"), count)


def parse_pulse(payload: bytes) -> Pulse:
    t = _text(payload)
    if re.fullmatch(r"-?[0-9]{1,12}", t):  # ASCII only: str.isdigit() takes "²" and "١"
        return Pulse(_ms(int(t), "ms"))
    d = _json(payload)
    if not isinstance(d, dict) or set(d) != {"ms"}:
        raise CommandError('pulse takes {"ms": 100} or a bare integer')
    return Pulse(_ms(d["ms"], "ms"))


PARSERS = {"set": parse_set, "blink": parse_blink, "pulse": parse_pulse}


def parse(verb: str, payload: bytes) -> Command:
    try:
        return PARSERS[verb](payload)
    except KeyError:
        raise CommandError(f"no command {verb!r} (set, blink, pulse)") from None


def payload_text(payload: bytes) -> str:
    """A payload as it goes back on the error topic: text, undecodable bytes escaped."""
    return payload[:256].decode("utf-8", "backslashreplace")
