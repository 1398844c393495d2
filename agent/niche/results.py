"""Result terms to Python values, one decoder per result type of the call spec."""

from __future__ import annotations

import builtins
import os
from typing import Any, NamedTuple


class ChildProc(NamedTuple):
    """A child of a process, as ``cpid`` reports it."""

    pid: int
    flowcontrol: int
    signaloneof: int
    fdctl: int
    stdin: int
    stdout: int
    stderr: int


class Rlimit(NamedTuple):
    cur: int
    max: int


def ok(v: Any) -> None:
    return None


def int(v: Any) -> builtins.int:  # noqa: A001 - named after the spec's result type
    return v


def bool(v: Any) -> builtins.bool:  # noqa: A001
    return builtins.bool(v)


def str(v: Any) -> builtins.str:  # noqa: A001
    return os.fsdecode(v)


def optstr(v: Any) -> builtins.str | None:
    return None if v is None else os.fsdecode(v)


def optint(v: Any) -> builtins.int | None:
    return v


def strv(v: Any) -> list[builtins.str]:
    return [os.fsdecode(x) for x in v]


def bytes(v: Any) -> builtins.bytes:  # noqa: A001
    return v


def ints(v: Any) -> list[builtins.int]:
    return list(v)


def _cs(v: Any) -> Any:
    """A cstruct as returned: ("ptr", contents) items become tuples."""
    if isinstance(v, list):
        return [("ptr", x[1]) if isinstance(x, list) and x[:1] == [b"ptr"] else x for x in v]
    return v


def tuple(v: Any) -> builtins.tuple[Any, ...]:  # noqa: A001
    return builtins.tuple(_cs(x) for x in v)


def cpids(v: Any) -> list[ChildProc]:
    return [ChildProc(*x) for x in v]


def rlimit(v: Any) -> Rlimit:
    return Rlimit(*v)
