"""Call filters: ``port.filter(chain, calls, subprocess_calls)``.

A filter is a set of call names denied in a process; ``allow([...])``
denies every call but those. Filters are only ever added to.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._calls import CALLS
from .protocol import term_bytes

_NBYTES = (max(CALLS.values()) + 8) // 8


class allow:  # noqa: N801 - reads as niche.allow([...]) like alcove's allow
    """Deny every call except these (names or call numbers)."""

    __slots__ = ("calls",)

    def __init__(self, calls: Iterable[str | int]) -> None:
        self.calls = frozenset(_number(c) for c in calls)

    def __repr__(self) -> str:
        return f"niche.allow({sorted(self.calls)})"


Calls = Iterable[str | int] | allow | None


def _number(c: str | int) -> int:
    if isinstance(c, bool) or not isinstance(c, (str, int)):
        raise TypeError(f"a call is a name or a number, not {type(c).__name__}")
    if isinstance(c, str):
        try:
            return CALLS[c.lower()]
        except KeyError:
            raise ValueError(f"no such call: {c!r}") from None
    if c not in CALLS.values():
        raise ValueError(f"no such call number: {c}")
    return c


# stdin and eof carry data to an exec'd child, as alcove's stdin does: the
# port never filters them, so naming them is a mistake worth saying.
UNFILTERED = frozenset({CALLS["stdin"], CALLS["eof"]})


def denied(calls: Calls) -> frozenset[int]:
    """The call numbers a filter denies."""
    if calls is None:
        return frozenset()
    if isinstance(calls, allow):
        return frozenset(CALLS.values()) - calls.calls - UNFILTERED
    if isinstance(calls, (str, bytes)):
        raise TypeError("calls must be a list of call names, or niche.allow([...])")
    out = frozenset(_number(c) for c in calls)
    if out & UNFILTERED:
        raise ValueError("stdin and eof are data to an exec'd child and cannot be filtered")
    return out


def arg_calls(v: Any, name: str) -> bytes:
    bits = bytearray(_NBYTES)
    for n in denied(v):
        bits[n // 8] |= 1 << (n % 8)
    return term_bytes(bytes(bits))
