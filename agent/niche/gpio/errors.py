"""GPIO errors: each says what is wrong and what to do about it."""

from __future__ import annotations


class GpioError(Exception):
    """Something about a GPIO line or pin is not right."""


class UnknownPin(GpioError, KeyError):
    """The pin is not on this board (the message lists the valid names)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class LineBusy(GpioError):
    """The line is held by someone else (the message names the consumer)."""

    def __init__(self, message: str, consumer: str | None = None) -> None:
        super().__init__(message)
        self.consumer = consumer


class ChipNotFound(GpioError):
    """No GPIO chip for the pin (the message says which kernel option or overlay is needed)."""


class LineReleased(GpioError):
    """The line was released, or the process holding it is gone."""


class WriteFailed(GpioError):
    """A pipelined write failed. Raised by the next call on the line (which
    then does nothing itself); ``seq`` is the write's number on the line
    (1 = its first set()), ``value`` the level it asked for."""

    def __init__(self, message: str, value: bool, seq: int) -> None:
        super().__init__(message)
        self.value = value
        self.seq = seq
