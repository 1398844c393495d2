"""Raw frames of docs/protocol.md, for checking a port without niche.Port."""

from __future__ import annotations

import os
import select
import struct
import time

HELLO_DOWN, HELLO_UP = 0x02, 0x81


def hello_frame(version: int = 1) -> bytes:
    return b"NC" + bytes([HELLO_DOWN, 0]) + struct.pack(">IH", 2, version)


def read_frame(fd: int, timeout: float) -> tuple[int, bytes]:
    """(type, body) of the next frame read from fd (skipping nothing)."""
    buf = b""
    deadline = time.monotonic() + timeout
    while True:
        if len(buf) >= 8:
            assert buf[:2] == b"NC", f"bad magic in {buf[:16]!r}"
            need = 8 + struct.unpack(">I", buf[4:8])[0]
            if len(buf) >= need:
                depth = buf[3]
                return buf[2], buf[8 + 4 * depth:need]
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no complete frame within {timeout} s (got {buf!r})")
        r, _, _ = select.select([fd], [], [], left)
        if r:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise EOFError(f"end of file after {buf!r}")
            buf += chunk


def parse_hello(body: bytes) -> tuple[int, str]:
    return struct.unpack(">H", body[:2])[0], body[2:].decode("utf-8", "replace")
