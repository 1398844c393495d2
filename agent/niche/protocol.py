"""The wire protocol of docs/protocol.md, sans-IO: bytes in, messages out.

Nothing here touches a process or a descriptor, so the codec is tested and
fuzzed on its own (tests/test_protocol.py).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

MAGIC = b"NC"
PROTO_VERSION = 1
HEADER = struct.Struct(">2sBBI")
HDR = HEADER.size
MAX_FRAME = 256 * 1024 + 1024  # frames sent down; see port/niche.h
STDIN_CHUNK = 192 * 1024
CSTRUCT_MAX = 1 << 20  # bytes a cstruct may allocate in the port (port/cstruct.c)

# frame types
CALL, HELLO = 0x01, 0x02
UP_HELLO, REPLY, STDOUT, STDERR, EVENT, GONE, PROTOERR = range(0x81, 0x88)
UP_TYPES = frozenset(range(0x81, 0x88))

# reply status
ST_OK, ST_ERRNO, ST_BADPID, ST_UNDEF, ST_BADARG, ST_EXITED = range(6)

INT64 = struct.Struct(">q")
U32 = struct.Struct(">I")
_CALLHDR = struct.Struct(">IH")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class CodecError(ValueError):
    """The port sent something that is not a frame of this protocol."""


# --- terms ---------------------------------------------------------------


def term_int(v: int) -> bytes:
    return b"i" + INT64.pack(v)


def term_bytes(v: bytes) -> bytes:
    return b"b" + U32.pack(len(v)) + v


def term_list(items: Sequence[bytes]) -> bytes:
    return b"l" + U32.pack(len(items)) + b"".join(items)


def term_name(v: bytes) -> bytes:
    return b"c" + U32.pack(len(v)) + v


def decode_term(buf: bytes | bytearray, off: int = 0, end: int | None = None) -> tuple[Any, int]:
    """One term at ``off`` (ending by ``end``): its value (int, bytes, list
    or None) and the next offset."""
    if end is None:
        end = len(buf)
    if off >= end:
        raise CodecError("truncated term")
    tag = buf[off]
    off += 1
    if tag == 0x69:  # i
        if off + 8 > end:
            raise CodecError("truncated integer")
        return INT64.unpack_from(buf, off)[0], off + 8
    if tag in (0x62, 0x63):  # b, c
        if off + 4 > end:
            raise CodecError("truncated length")
        n = U32.unpack_from(buf, off)[0]
        off += 4
        if off + n > end:
            raise CodecError("truncated bytes")
        return bytes(buf[off : off + n]), off + n
    if tag == 0x6C:  # l
        if off + 4 > end:
            raise CodecError("truncated list")
        n = U32.unpack_from(buf, off)[0]
        off += 4
        if n > end - off:
            raise CodecError("list longer than its frame")
        items = []
        for _ in range(n):
            v, off = decode_term(buf, off, end)
            items.append(v)
        return items, off
    if tag == 0x6E:  # n
        return None, off
    raise CodecError(f"unknown term tag {tag:#x}")


# --- arguments: Python values to terms, checked before anything is sent ---


def _name(v: Any) -> str:
    return type(v).__name__


INT32_MIN, UINT32_MAX = -(2**31), 2**32 - 1


def arg_int64(v: Any, name: str) -> bytes:
    if not isinstance(v, int):
        raise TypeError(f"{name} must be an int, not {_name(v)}")
    if not INT64_MIN <= v <= INT64_MAX:
        raise ValueError(f"{name} is out of the 64-bit range: {v}")
    return term_int(v)


def arg_int(v: Any, name: str) -> bytes:
    """A C int or a 32-bit unsigned (uid_t, gid_t): anything wider would be
    truncated into another value (fd 2**32+1 into fd 1), so it is refused."""
    if not isinstance(v, int):
        raise TypeError(f"{name} must be an int, not {_name(v)}")
    if not INT32_MIN <= v <= UINT32_MAX:
        raise ValueError(f"{name} is out of the 32-bit range: {v}")
    return term_int(v)


def _fsbytes(v: Any, name: str) -> bytes:
    if isinstance(v, str):
        return os.fsencode(v)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v)
    raise TypeError(f"{name} must be str or bytes, not {_name(v)}")


def arg_str(v: Any, name: str) -> bytes:
    b = _fsbytes(v, name)
    if b"\0" in b:
        raise ValueError(f"{name} contains a NUL byte")
    return term_bytes(b)


def arg_bytes(v: Any, name: str) -> bytes:
    if isinstance(v, str):
        raise TypeError(f"{name} must be bytes, not str (encode it)")
    return term_bytes(_fsbytes(v, name))


def arg_strv(v: Any, name: str) -> bytes:
    if isinstance(v, (str, bytes)) or not isinstance(v, Sequence):
        raise TypeError(f"{name} must be a list of str or bytes, not {_name(v)}")
    return term_list([arg_str(x, f"{name}[{i}]") for i, x in enumerate(v)])


def _const1(v: Any, name: str) -> bytes:
    if isinstance(v, bool):
        raise TypeError(f"{name}: a constant is a name or an int, not bool")
    if isinstance(v, int):
        return arg_int64(v, name)
    if isinstance(v, (str, bytes)):
        b = v.encode() if isinstance(v, str) else v
        if not b or len(b) > 63 or not b.replace(b"_", b"").isalnum():
            raise ValueError(f"{name}: not a constant name: {v!r}")
        return term_name(b)
    raise TypeError(f"{name}: a constant is a name, an int or a list of them, not {_name(v)}")


def arg_const(v: Any, name: str, family: str) -> bytes:
    """A constant of ``family``: a name (resolved by the port), an int, or a list (OR'ed)."""
    if isinstance(v, (list, tuple)):
        return term_list([_const1(x, name) for x in v])
    return _const1(v, name)


def arg_ints(v: Any, name: str) -> bytes:
    if isinstance(v, (str, bytes)) or not isinstance(v, Sequence):
        raise TypeError(f"{name} must be a list of ints, not {_name(v)}")
    return term_list([arg_int64(x, f"{name}[{i}]") for i, x in enumerate(v)])


def arg_pair(v: Any, name: str) -> bytes:
    if isinstance(v, (str, bytes)) or not isinstance(v, Sequence) or len(v) != 2:
        raise TypeError(f"{name} must be a pair of ints (cur, max)")
    return arg_ints(v, name)


def arg_timeval(v: Any, name: str) -> bytes:
    """None (wait for ever), seconds as a number, or (sec, usec)."""
    if v is None:
        return b"n"
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        if v < 0:
            raise ValueError(f"{name} must not be negative")
        sec = int(v)
        return arg_ints((sec, int(round((v - sec) * 1_000_000))), name)
    return arg_pair(v, name)


def _cstruct_item(v: Any, name: str) -> bytes:
    if isinstance(v, (bytes, bytearray, memoryview)):
        return term_bytes(bytes(v))
    if isinstance(v, tuple) and len(v) == 2 and v[0] == "ptr":
        size_or_data = v[1]
        if isinstance(size_or_data, int) and not isinstance(size_or_data, bool):
            if not 0 <= size_or_data <= CSTRUCT_MAX:
                raise ValueError(f"{name}: a ptr size is 0 to {CSTRUCT_MAX} bytes, not {size_or_data}")
            return term_list([term_int(size_or_data)])
        if isinstance(size_or_data, (bytes, bytearray)):
            return term_list([term_bytes(bytes(size_or_data))])
    raise TypeError(f"{name}: a cstruct item is bytes, ('ptr', size) or ('ptr', bytes), not {v!r}")


def arg_cstruct(v: Any, name: str) -> bytes:
    """An int, bytes (a buffer passed and returned), None (NULL), or a list
    of bytes and ("ptr", ...) items laid out as a C struct."""
    if v is None:
        return b"n"
    if isinstance(v, int) and not isinstance(v, bool):
        return arg_int64(v, name)
    if isinstance(v, (bytes, bytearray, memoryview)):
        return term_bytes(bytes(v))
    if isinstance(v, list):
        return term_list([_cstruct_item(x, f"{name}[{i}]") for i, x in enumerate(v)])
    raise TypeError(f"{name} must be an int, bytes or a cstruct list, not {_name(v)}")


# --- frames ----------------------------------------------------------------


def check_chain(chain: Any) -> tuple[int, ...]:
    # the common case first, cheaply (every call checks its chain); anything
    # else goes through the checks that say what is wrong
    t = chain if type(chain) is tuple else tuple(chain) if type(chain) is list else None
    if t is not None and len(t) <= 255:
        for p in t:
            if type(p) is not int or not 0 < p < 0x80000000:
                break
        else:
            return t
    return _check_chain_slow(chain)


def _check_chain_slow(chain: Any) -> tuple[int, ...]:
    if isinstance(chain, (str, bytes)) or not isinstance(chain, Sequence):
        raise TypeError(f"the fork chain must be a list of PIDs, not {_name(chain)}")
    t = tuple(chain)
    if len(t) > 255:
        raise ValueError("the fork chain is longer than 255 processes")
    for p in t:
        if not isinstance(p, int) or isinstance(p, bool):
            raise TypeError(f"a PID in the fork chain must be an int, not {_name(p)}")
        if not 0 < p < 2**31:
            raise ValueError(f"not a PID: {p}")
    return t


def frame(ftype: int, chain: tuple[int, ...], body: bytes) -> bytes:
    n = len(chain)
    return HEADER.pack(MAGIC, ftype, n, 4 * n + len(body)) + struct.pack(f">{n}i", *chain) + body


# the head of a CALL at each depth (header to call number, one pack), made when first used
_CALL_HEADS: dict[int, struct.Struct] = {}


def _call_head(n: int) -> struct.Struct:
    s = _CALL_HEADS.get(n)
    if s is None:
        s = _CALL_HEADS[n] = struct.Struct(f">2sBBI{n}iIH")
    return s


def encode_call(req_id: int, chain: tuple[int, ...], call: int, args: Sequence[bytes]) -> bytes:
    n = len(chain)
    s = _CALL_HEADS.get(n) or _call_head(n)
    if not args:  # getpid and the like: one pack
        return s.pack(MAGIC, CALL, n, 4 * n + 6, *chain, req_id, call)
    body = b"".join(args)
    length = 4 * n + 6 + len(body)
    if HDR + length > MAX_FRAME:
        raise ValueError(f"call of {HDR + length} bytes is over the frame limit of {MAX_FRAME}")
    return s.pack(MAGIC, CALL, n, length, *chain, req_id, call) + body


def encode_call_blob(req_id: int, chain: tuple[int, ...], call: int, blob_len: int) -> bytes:
    """The head of a CALL whose only argument is a bytes term of blob_len
    bytes: send it followed by the blob itself (no copy of large data)."""
    n = len(chain)
    total = HDR + 4 * n + 6 + 5 + blob_len
    if total > MAX_FRAME:
        raise ValueError(f"call of {total} bytes is over the frame limit of {MAX_FRAME}")
    return (HEADER.pack(MAGIC, CALL, n, total - HDR) + struct.pack(f">{n}i", *chain)
            + _CALLHDR.pack(req_id, call) + b"b" + U32.pack(blob_len))


def encode_hello(nonce: int | None = None, reattach: bool = False) -> bytes:
    """HELLO; with a nonce, a session HELLO (docs/protocol.md, "Sessions")."""
    body = struct.pack(">H", PROTO_VERSION)
    if nonce is not None:
        body += struct.pack(">IB", nonce, 1 if reattach else 0)
    return frame(HELLO, (), body)


# --- messages from the port ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello:
    version: int
    port_version: str
    nonce: int | None = None  # echoed from a session HELLO
    children: tuple[int, ...] = ()  # the port's children when it answered


@dataclass(frozen=True, slots=True)
class Reply:
    chain: tuple[int, ...]
    id: int
    status: int
    value: Any


@dataclass(frozen=True, slots=True)
class Output:
    chain: tuple[int, ...]
    stream: int  # STDOUT or STDERR
    data: bytes


@dataclass(frozen=True, slots=True)
class Event:
    chain: tuple[int, ...]
    event: tuple[Any, ...]
    gone: bool  # a GONE frame: the process is gone for good


@dataclass(frozen=True, slots=True)
class ProtocolError:
    chain: tuple[int, ...]
    message: str


Message = Hello | Reply | Output | Event | ProtocolError


def event_tuple(v: Any) -> tuple[Any, ...]:
    """A decoded EVENT/GONE list to the tuple users see: names are str."""
    if not isinstance(v, list) or not v or not isinstance(v[0], bytes):
        raise CodecError(f"malformed event {v!r}")
    name = v[0].decode()
    rest = list(v[1:])
    if name in ("termsig", "signal") and rest and isinstance(rest[0], bytes):
        rest[0] = rest[0].decode()
    return (name, *rest)


_REPLY_INT = struct.Struct(">IBcq")  # a REPLY's body when its value is an int
# a whole depth-0 REPLY frame with an int (the port's own answers): its
# header as 8 bytes to compare, then the body, in one unpack
_REPLY_INT0 = struct.Struct(">8sIBcq")
_REPLY_INT0_HEAD = HEADER.pack(MAGIC, REPLY, 0, 14)


def reply_int(data: bytes) -> tuple[int, int, int] | None:
    """(id, status, value) when data is exactly one REPLY frame whose value
    is an int, else None: the common answer, decoded without a Decoder."""
    n = len(data)
    if n == _REPLY_INT0.size:
        head, rid, status, tag, value = _REPLY_INT0.unpack(data)
        if head == _REPLY_INT0_HEAD and tag == b"i":
            return (rid, status, value)
        return None
    if n < HDR + 14:
        return None
    magic, ftype, depth, length = HEADER.unpack_from(data)
    if magic != MAGIC or ftype != REPLY or length != 4 * depth + 14 or n != HDR + length:
        return None
    rid, status, tag, value = _REPLY_INT.unpack_from(data, HDR + 4 * depth)
    return (rid, status, value) if tag == b"i" else None


@dataclass(slots=True)
class _OutputRun:  # Decoder.feed: output frames not joined yet
    chain: tuple[int, ...]
    stream: int
    parts: list[memoryview]


class Decoder:
    """Feed it bytes from the port; it returns whole messages.

    Garbage before a frame (a serial line's boot noise) is skipped up to the
    next magic and counted in ``skipped``.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self.skipped = 0

    def feed(self, data: bytes) -> list[Message]:
        # Parse straight from data when nothing is left over from the last
        # feed: bulk output is then copied once (into its Output), not three times.
        if not isinstance(data, (bytes, bytearray)):
            data = bytes(data)
        buf: bytes | bytearray = data if not self._buf else self._buf + data
        out: list[Message] = []
        off = 0
        n = len(buf)
        while n - off >= HDR:
            magic, ftype, depth, length = HEADER.unpack_from(buf, off)
            if magic != MAGIC or ftype not in UP_TYPES or depth * 4 > length:
                nxt = buf.find(b"NC", off + 1)
                nxt = nxt if nxt >= 0 else max(n - 1, off + 1)
                self.skipped += nxt - off
                off = nxt
                continue
            end = off + HDR + length
            if end > n:
                break
            body = off + HDR + 4 * depth
            chain = struct.unpack_from(f">{depth}i", buf, off + HDR) if depth else ()
            if ftype in (STDOUT, STDERR):
                # a run of output frames of one process and stream becomes one
                # Output, joined once (bulk output comes as 64 KiB frames)
                last = out[-1] if out else None
                if isinstance(last, _OutputRun) and last.chain == chain and last.stream == ftype:
                    last.parts.append(memoryview(buf)[body:end])
                else:
                    out.append(_OutputRun(chain, ftype, [memoryview(buf)[body:end]]))
            else:
                out.append(self._message(ftype, chain, buf, body, end))
            off = end
        self._buf = bytearray(memoryview(buf)[off:]) if off < n else bytearray()
        return [Output(m.chain, m.stream, b"".join(m.parts)) if isinstance(m, _OutputRun) else m
                for m in out]

    @staticmethod
    def _message(ftype: int, chain: tuple[int, ...], buf: bytes | bytearray, b: int, end: int) -> Message:
        if ftype == REPLY:
            if end - b < 6:
                raise CodecError("short reply")
            req_id, status = struct.unpack_from(">IB", buf, b)
            value, off = decode_term(buf, b + 5, end)
            if off != end:
                raise CodecError("trailing bytes after a reply")
            return Reply(chain, req_id, status, value)
        if ftype in (EVENT, GONE):
            value, _ = decode_term(buf, b, end)
            return Event(chain, event_tuple(value), ftype == GONE)
        if ftype == UP_HELLO:
            if end - b < 2:
                raise CodecError("short hello")
            return _hello(bytes(buf[b:end]))
        return ProtocolError(chain, bytes(buf[b:end]).decode(errors="replace"))


def _hello(body: bytes) -> Hello:
    version = struct.unpack_from(">H", body)[0]
    text, sep, rest = body[2:].partition(b"\0")
    if not sep:
        return Hello(version, text.decode(errors="replace"))
    if len(rest) < 4:
        raise CodecError("short session hello")
    kids, off = decode_term(rest, 4)
    if off != len(rest) or not isinstance(kids, list) or not all(isinstance(k, int) for k in kids):
        raise CodecError("malformed session hello")
    return Hello(version, text.decode(errors="replace"), U32.unpack_from(rest)[0], tuple(kids))


_HELLO_HEAD = MAGIC + bytes([UP_HELLO, 0])
MAX_HELLO = 1 << 20


def find_hello(buf: bytes | bytearray, nonce: int) -> tuple[Hello | None, int]:
    """Look for the port's answer to the session HELLO with this nonce in
    what a line delivered, skipping the previous session's frames and any
    garbage (even a fake header whose length never arrives). Returns the
    hello and the offset after it, or None and the offset to keep from."""
    keep = max(len(buf) - HDR, 0)
    i = buf.find(_HELLO_HEAD)
    while i >= 0:
        if len(buf) - i < HDR:
            return None, min(keep, i)
        length = U32.unpack_from(buf, i + 4)[0]
        end = i + HDR + length
        if length <= MAX_HELLO:
            if end > len(buf):
                keep = min(keep, i)
            else:
                try:
                    h = _hello(bytes(buf[i + HDR : end]))
                except (CodecError, struct.error):
                    h = None
                # an answer with no nonce: a port older than sessions
                if h is not None and h.nonce in (nonce, None):
                    return h, end
        i = buf.find(_HELLO_HEAD, i + 1)
    return None, keep
