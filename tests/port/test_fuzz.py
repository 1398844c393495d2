"""Malformed input never kills the port (issue 3).

These tests speak the wire protocol of docs/protocol.md by hand to a
port started with subprocess, so that they can send what niche.Port never
would: random bytes, truncated frames, bad headers, garbage bodies,
unknown calls and wrongly typed arguments. After each batch the stream is
flushed with NICHE_MAX_FRAME bytes of zeros and a valid getpid CALL must
still get the right REPLY.

Fuzzed frames only ever name harmless calls: a frame that could parse as
a call with side effects (fork, exit, kill, exec, ...) is never sent.
"""

from __future__ import annotations

import os
import queue
import random
import struct
import subprocess
import tempfile
import threading
import time

import pytest
from porthelpers import PORT_BIN, proc_stat

MAGIC = b"NC"
T_CALL, T_HELLO = 0x01, 0x02
U_HELLO, U_REPLY, U_STDOUT, U_STDERR, U_EVENT, U_GONE, U_PROTOERR = range(0x81, 0x88)
PROTOCOL_VERSION = 1
NICHE_MAX_FRAME = 256 * 1024 + 1024

S_OK, S_ERRNO, S_BADPID, S_UNDEF, S_BADARG = range(5)

# call numbers (port/calls.spec)
VERSION, FORK, GETPID, GETPPID, EXIT = 1, 2, 4, 5, 8
CPID, GETCPID, GETOPT, GETENV, ENVIRON, GETCWD = 12, 13, 15, 17, 21, 23
CLONE_CONSTANT, SIGNAL_CONSTANT, ERRNO_CONSTANT, ERRNO_ID, SIGNAL_ID = 25, 26, 27, 28, 29
CLONE = 3

SAFE_CALLS = [
    VERSION, GETPID, GETPPID, CPID, GETCPID, GETOPT, GETENV, ENVIRON, GETCWD,
    CLONE_CONSTANT, SIGNAL_CONSTANT, ERRNO_CONSTANT, ERRNO_ID, SIGNAL_ID,
]  # fmt: skip
# Numbers no port call will use: 0, the client-side calls, and the top range.
UNKNOWN_CALLS = [0, 200, 201, 202, *range(0xF000, 0x10000)]


def _allowed_call(n: int) -> bool:
    return n in SAFE_CALLS or n == 0 or n in (200, 201, 202) or n >= 0xF000


# --------------------------------------------------------------------------
# codec


def t_int(v: int) -> bytes:
    return b"i" + struct.pack(">q", v)


def t_bytes(v: bytes) -> bytes:
    return b"b" + struct.pack(">I", len(v)) + v


def t_const(v: bytes) -> bytes:
    return b"c" + struct.pack(">I", len(v)) + v


def t_list(items: list[bytes]) -> bytes:
    return b"l" + struct.pack(">I", len(items)) + b"".join(items)


T_NONE = b"n"


def frame(ftype: int, chain: list[int], body: bytes) -> bytes:
    return (
        MAGIC
        + bytes([ftype, len(chain)])
        + struct.pack(">I", 4 * len(chain) + len(body))
        + b"".join(struct.pack(">i", p) for p in chain)
        + body
    )


def call_frame(rid: int, call: int, args: bytes = b"", chain: list[int] | None = None) -> bytes:
    return frame(T_CALL, chain or [], struct.pack(">IH", rid, call) + args)


def decode_term(buf: bytes, off: int = 0):
    tag = buf[off : off + 1]
    off += 1
    if tag == b"i":
        return struct.unpack_from(">q", buf, off)[0], off + 8
    if tag in (b"b", b"c"):
        (n,) = struct.unpack_from(">I", buf, off)
        off += 4
        return bytes(buf[off : off + n]), off + n
    if tag == b"l":
        (n,) = struct.unpack_from(">I", buf, off)
        off += 4
        out = []
        for _ in range(n):
            v, off = decode_term(buf, off)
            out.append(v)
        return out, off
    if tag == b"n":
        return None, off
    raise ValueError(f"bad term tag {tag!r} at {off - 1}")


def dangerous(stream: bytes) -> bool:
    """True when some "NC" CALL header in stream names a call with effects.

    Every position is checked, since after a bad frame the port resyncs on
    the next magic wherever it is. stream is followed by the zeros of the
    flush, which complete any call number cut short.
    """
    blob = stream + bytes(8 + 4 * 255 + 6)
    i = blob.find(MAGIC + bytes([T_CALL]))
    while i != -1:
        at = i + 8 + 4 * blob[i + 3] + 4
        (n,) = struct.unpack_from(">H", blob, at)
        if not _allowed_call(n):
            return True
        i = blob.find(MAGIC + bytes([T_CALL]), i + 1)
    return False


class RawPort:
    """The port binary, driven frame by frame."""

    def __init__(self):
        self.errlog = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [str(PORT_BIN)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.errlog
        )
        self.frames: queue.Queue = queue.Queue()
        self.protoerrs = 0
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        self.next_id = 1

    def _read(self):
        f = self.proc.stdout
        try:
            while True:
                hdr = f.read(8)
                if len(hdr) < 8:
                    break
                if hdr[:2] != MAGIC:
                    self.frames.put(("bad-upstream", hdr + f.read1(4096)))
                    break
                ftype, depth = hdr[2], hdr[3]
                (length,) = struct.unpack(">I", hdr[4:])
                rest = f.read(length)
                if len(rest) < length:
                    break
                chain = list(struct.unpack(f">{depth}i", rest[: 4 * depth]))
                body = rest[4 * depth :]
                if ftype == U_PROTOERR:
                    self.protoerrs += 1
                self.frames.put((ftype, chain, body))
        finally:
            self.frames.put(None)

    def send(self, data: bytes):
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def get(self, timeout: float):
        try:
            fr = self.frames.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no frame from the port within {timeout}s") from None
        assert fr is not None, f"port closed its stdout; stderr: {self.stderr()!r}"
        assert fr[0] != "bad-upstream", f"port sent a frame with bad magic: {fr[1][:64]!r}"
        return fr

    def stderr(self) -> bytes:
        self.errlog.seek(0)
        return self.errlog.read()[-2000:]

    def hello(self):
        self.send(frame(T_HELLO, [], struct.pack(">H", PROTOCOL_VERSION)))
        ftype, chain, body = self.get(10)
        assert ftype == U_HELLO and chain == []
        assert struct.unpack(">H", body[:2])[0] == PROTOCOL_VERSION
        body[2:].decode("utf-8")

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def wait_reply(self, rid: int, timeout: float = 10.0, skip_protoerr: bool = True):
        """(chain, status, term) of the REPLY with id rid; other frames skipped."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no reply to id {rid} within {timeout}s"
            ftype, chain, body = self.get(left)
            if ftype == U_PROTOERR and not skip_protoerr:
                raise AssertionError(f"PROTOERR before reply {rid}: {body!r}")
            if ftype != U_REPLY or len(body) < 5:
                continue
            (got_id,) = struct.unpack(">I", body[:4])
            if got_id != rid:
                continue
            term, end = decode_term(body, 5)
            assert end == len(body), "reply with trailing bytes"
            return chain, body[4], term

    def wait_protoerr(self, timeout: float = 10.0):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            assert left > 0, f"no PROTOERR within {timeout}s"
            ftype, chain, body = self.get(left)
            if ftype == U_PROTOERR:
                body.decode("utf-8")  # a message
                return chain, body
            assert ftype != U_REPLY, f"a REPLY where a PROTOERR was due: {body!r}"

    def call(self, call: int, args: bytes = b"", chain=None, timeout: float = 10.0):
        rid = self.new_id()
        self.send(call_frame(rid, call, args, chain))
        return self.wait_reply(rid, timeout)

    def flush(self):
        self.send(bytes(NICHE_MAX_FRAME))

    def alive(self) -> bool:
        st = proc_stat(self.proc.pid)
        return self.proc.poll() is None and st is not None and st[0] != "Z"

    def close(self):
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("the port did not exit on end of input") from None
        self.reader.join(5)
        self.errlog.close()


@pytest.fixture
def raw():
    r = RawPort()
    try:
        r.hello()
        yield r
    finally:
        r.close()


def assert_serving(raw: RawPort, child: int | None = None):
    _, status, term = raw.call(GETPID)
    assert (status, term) == (S_OK, raw.proc.pid)
    if child is not None:
        chain, status, term = raw.call(GETPID, chain=[child])
        assert (chain, status, term) == ([child], S_OK, child)
    assert raw.alive()


# --------------------------------------------------------------------------
# each bad case alone


def test_valid_getpid_reply(raw):
    chain, status, term = raw.call(GETPID)
    assert (chain, status, term) == ([], S_OK, raw.proc.pid)
    _, status, term = raw.call(VERSION)
    assert status == S_OK and isinstance(term, bytes) and term


BAD_HEADERS = {
    "bad magic": b"XY\x01\x00" + struct.pack(">I", 6) + struct.pack(">IH", 5, GETPID),
    "unknown type": MAGIC + b"\x7f\x00" + struct.pack(">I", 0),
    "up type sent down": MAGIC + bytes([U_REPLY, 0]) + struct.pack(">I", 0),
    "huge length": MAGIC + b"\x01\x00" + struct.pack(">I", 0xFFFFFFFF),
    "length over the limit": MAGIC + b"\x01\x00" + struct.pack(">I", 1 << 20),
}


@pytest.mark.parametrize("data", BAD_HEADERS.values(), ids=BAD_HEADERS.keys())
def test_bad_header_gets_protoerr_and_port_resyncs(raw, data):
    raw.send(data)
    chain, msg = raw.wait_protoerr()
    assert chain == []
    # the port skips ahead to the next magic: a valid call right after works
    assert_serving(raw)


BAD_BODIES_NO_ID = {
    "empty call body": frame(T_CALL, [], b""),
    "call body shorter than an id": frame(T_CALL, [], b"\x00\x00\x01"),
    "chain longer than the frame": MAGIC + b"\x01\x03" + struct.pack(">I", 4) + b"\x00\x00\x00\x01",
}


@pytest.mark.parametrize("data", BAD_BODIES_NO_ID.values(), ids=BAD_BODIES_NO_ID.keys())
def test_bad_body_without_id_gets_protoerr(raw, data):
    raw.send(data)
    raw.wait_protoerr()
    assert_serving(raw)


def _bad_arg_cases():
    return {
        "extra argument": (GETPID, t_int(1)),
        "missing argument": (GETENV, b""),
        "int for str": (GETENV, t_int(5)),
        "list for str": (GETENV, t_list([t_bytes(b"HOME")])),
        "none for str": (GETENV, T_NONE),
        "str for int": (ERRNO_ID, t_bytes(b"2")),
        "two args for one": (GETENV, t_bytes(b"HOME") + t_bytes(b"PATH")),
        "unknown tag": (GETENV, b"z" + struct.pack(">I", 4) + b"HOME"),
        "bytes longer than body": (GETENV, b"b" + struct.pack(">I", 1000) + b"HOME"),
        "bytes length huge": (GETENV, b"b" + struct.pack(">I", 0xFFFFFFFF) + b"HOME"),
        "truncated int": (ERRNO_ID, b"i\x00\x00\x02"),
        "list count huge": (GETENV, b"l" + struct.pack(">I", 0x7FFFFFFF)),
        "call number cut": (None, b"\x00"),
    }


BAD_ARGS = _bad_arg_cases()


@pytest.mark.parametrize("case", BAD_ARGS.values(), ids=BAD_ARGS.keys())
def test_bad_arguments_get_bad_argument_reply(raw, case):
    call, args = case
    rid = raw.new_id()
    if call is None:  # an id, then half a call number
        raw.send(frame(T_CALL, [], struct.pack(">I", rid) + args))
    else:
        raw.send(call_frame(rid, call, args))
    chain, status, term = raw.wait_reply(rid)
    assert chain == []
    assert status == S_BADARG
    assert isinstance(term, bytes)
    term.decode("utf-8")  # a message
    assert_serving(raw)


@pytest.mark.parametrize("call", [0, 200, 202, 0xFFFF, 0xF123])
def test_unknown_call_number_gets_error_reply(raw, call):
    _, status, term = raw.call(call)
    assert status in (S_UNDEF, S_BADARG)
    assert_serving(raw)


def test_bad_arguments_routed_to_a_child(raw):
    _, status, child = raw.call(FORK)
    assert status == S_OK
    chain, status, _ = raw.call(GETENV, t_int(3), chain=[child])
    assert (chain, status) == ([child], S_BADARG)
    chain, status, _ = raw.call(0xFFFE, chain=[child])
    assert chain == [child] and status in (S_UNDEF, S_BADARG)
    assert_serving(raw, child)


def test_unknown_pid_gets_bad_pid_reply(raw):
    chain, status, _ = raw.call(GETPID, chain=[0x7FFFFFF0])
    assert status == S_BADPID
    _, status, child = raw.call(FORK)
    chain, status, _ = raw.call(GETPID, chain=[child, 0x7FFFFFF0])
    assert status == S_BADPID
    assert_serving(raw, child)


def test_unknown_constant_name_gets_enotsup(raw):
    _, status, term = raw.call(CLONE, t_const(b"CLONE_NOPE"))
    assert (status, term) == (S_ERRNO, b"enotsup")
    _, status, term = raw.call(CLONE, t_list([t_const(b"clone_nope")]))
    assert (status, term) == (S_ERRNO, b"enotsup")
    _, status, term = raw.call(CPID)
    assert (status, term) == (S_OK, [])
    assert_serving(raw)


def test_truncated_frame_then_flush_resyncs(raw):
    whole = call_frame(raw.new_id(), GETENV, t_bytes(b"HOME"))
    raw.send(whole[:11])
    raw.flush()
    assert_serving(raw)


def test_frame_split_across_writes_is_reassembled(raw):
    rid = raw.new_id()
    data = call_frame(rid, GETPID)
    for b in data:
        raw.send(bytes([b]))
        time.sleep(0.001)
    _, status, term = raw.wait_reply(rid, skip_protoerr=False)
    assert (status, term) == (S_OK, raw.proc.pid)


def test_large_valid_frame_is_accepted(raw):
    # a frame bigger than a pipe buffer, at the limit of what may be sent down
    name = b"N" * (NICHE_MAX_FRAME - 100)
    _, status, term = raw.call(GETENV, t_bytes(name))
    assert (status, term) == (S_OK, None)
    assert_serving(raw)


def test_end_of_input_after_garbage_exits_cleanly(raw):
    raw.send(os.urandom(1000).replace(MAGIC, b"xx"))
    raw.proc.stdin.close()
    assert raw.proc.wait(15) == 0


# --------------------------------------------------------------------------
# fuzz


def _random_term(rng: random.Random, depth: int = 0) -> bytes:
    k = rng.randrange(6 if depth < 3 else 4)
    if k == 0:
        return t_int(rng.choice([0, -1, 1, 2**63 - 1, -(2**63), rng.getrandbits(64) - 2**63]))
    if k == 1:
        return t_bytes(rng.randbytes(rng.randrange(0, 40)))
    if k == 2:
        return t_const(rng.choice([b"sigkill", b"CLONE_NEWNS", b"", b"x" * 300, rng.randbytes(8)]))
    if k == 3:
        return T_NONE
    if k == 4:
        return t_list([_random_term(rng, depth + 1) for _ in range(rng.randrange(0, 5))])
    # a term with a lying length or tag
    return rng.choice([b"b", b"l", b"c", b"i", b"?"]) + rng.randbytes(rng.randrange(0, 12))


def _random_chain(rng: random.Random, child: int) -> list[int]:
    return rng.choice([[], [], [child], [rng.getrandbits(31)], [child, rng.getrandbits(31)]])


def _case(rng: random.Random, child: int) -> bytes:
    kind = rng.randrange(12)
    if kind == 0:  # random bytes
        return rng.randbytes(rng.randrange(1, 3000))
    if kind == 1:  # a truncated valid frame
        f = call_frame(rng.getrandbits(32), rng.choice(SAFE_CALLS), _random_term(rng))
        return f[: rng.randrange(1, len(f))]
    if kind == 2:  # wrong magic
        f = call_frame(rng.getrandbits(32), GETPID)
        return rng.randbytes(2) + f[2:]
    if kind == 3:  # wrong type
        t = rng.choice([t for t in range(256) if t not in (T_CALL, T_HELLO)])
        return (
            MAGIC
            + bytes([t, 0])
            + struct.pack(">I", rng.randrange(0, 64))
            + rng.randbytes(rng.randrange(0, 64))
        )
    if kind == 4:  # huge length
        return (
            MAGIC
            + bytes([T_CALL, rng.randrange(256)])
            + struct.pack(">I", rng.randrange(NICHE_MAX_FRAME, 2**32))
        )
    if kind == 5:  # a valid header, garbage body
        chain = _random_chain(rng, child)
        return frame(T_CALL, chain, rng.randbytes(rng.randrange(0, 200)))
    if kind == 6:  # unknown call number, random arguments
        args = b"".join(_random_term(rng) for _ in range(rng.randrange(0, 4)))
        return call_frame(rng.getrandbits(32), rng.choice(UNKNOWN_CALLS), args, _random_chain(rng, child))
    if kind == 7:  # a safe call with wrong argument terms
        args = b"".join(_random_term(rng) for _ in range(rng.randrange(0, 4)))
        return call_frame(rng.getrandbits(32), rng.choice(SAFE_CALLS), args, _random_chain(rng, child))
    if kind == 8:  # a depth that does not fit the length
        depth = rng.randrange(1, 256)
        return (
            MAGIC
            + bytes([T_CALL, depth])
            + struct.pack(">I", rng.randrange(0, 4 * depth))
            + rng.randbytes(rng.randrange(0, 4 * depth))
        )
    if kind == 9:  # bit flips in a valid safe call
        f = bytearray(call_frame(rng.getrandbits(32), rng.choice(SAFE_CALLS), _random_term(rng)))
        for _ in range(rng.randrange(1, 4)):
            i = rng.randrange(len(f))
            f[i] ^= 1 << rng.randrange(8)
        return bytes(f)
    if kind == 11:  # a HELLO again, with any version or body
        body = rng.choice([struct.pack(">H", rng.getrandbits(16)), rng.randbytes(rng.randrange(9))])
        if len(body) == 7 and body[:2] == struct.pack(">H", PROTOCOL_VERSION) and body[6] == 0:
            body = body[:6] + b"\x02"  # not the one exact HELLO that ends the tree (a new session)
        return frame(T_HELLO, rng.choice([[], [child]]), body)
    # valid frames glued to garbage
    good = call_frame(rng.getrandbits(32), rng.choice(SAFE_CALLS))
    return rng.randbytes(rng.randrange(0, 20)) + good + rng.randbytes(rng.randrange(0, 20))


def _batch(rng: random.Random, child: int) -> list[bytes]:
    while True:
        cases = [_case(rng, child) for _ in range(rng.randrange(1, 6))]
        # the flush follows the batch: check the whole stream that will be seen
        if not dangerous(b"".join(cases)):
            return cases


FUZZ_SECONDS = float(os.environ.get("NICHE_FUZZ_SECONDS", "5"))


def test_fuzz_malformed_frames_leave_the_port_serving(raw):
    seed = int(os.environ.get("NICHE_FUZZ_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    _, status, child = raw.call(FORK)
    assert status == S_OK
    deadline = time.monotonic() + FUZZ_SECONDS
    batches = 0
    recent: list[bytes] = []
    while time.monotonic() < deadline:
        cases = _batch(rng, child)
        recent = cases
        try:
            for c in cases:
                raw.send(c)
            raw.flush()
            assert_serving(raw, child)
        except (AssertionError, BrokenPipeError) as e:
            shown = [c[:64].hex() for c in recent]
            raise AssertionError(
                f"seed {seed}, batch {batches}: {e}\ncases (hex, first 64 bytes): {shown}\n"
                f"port stderr: {raw.stderr()!r}"
            ) from e
        batches += 1
    assert batches > 10
    assert raw.protoerrs > 0  # the garbage was seen as such
    # the child was never hit by anything harmful
    _, status, term = raw.call(CPID)
    assert status == S_OK and len(term) == 1
