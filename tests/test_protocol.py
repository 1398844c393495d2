"""The sans-IO codec, without any process: round trips, fuzz, bad values."""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from niche import protocol as p

terms = st.recursive(
    st.none() | st.integers(p.INT64_MIN, p.INT64_MAX) | st.binary(max_size=64),
    lambda kids: st.lists(kids, max_size=5),
    max_leaves=20,
)


def enc(v):
    if v is None:
        return b"n"
    if isinstance(v, int):
        return p.term_int(v)
    if isinstance(v, bytes):
        return p.term_bytes(v)
    return p.term_list([enc(x) for x in v])


def up(ftype, chain, body):
    return p.frame(ftype, tuple(chain), body)


@given(terms)
def test_term_round_trip(v):
    b = enc(v)
    assert p.decode_term(b) == (v, len(b))


@given(st.lists(st.integers(1, 2**31 - 1), max_size=20), st.integers(0, 2**32 - 1), terms,
       st.integers(1, 50))
def test_reply_split_anywhere(chain, rid, value, cut):
    data = up(p.REPLY, chain, struct.pack(">IB", rid, p.ST_OK) + enc(value)) * 2
    d = p.Decoder()
    got = []
    for i in range(0, len(data), cut):
        got += d.feed(data[i : i + cut])
    assert got == [p.Reply(tuple(chain), rid, p.ST_OK, value)] * 2
    assert d.skipped == 0


def test_output_event_gone_hello_protoerr():
    d = p.Decoder()
    msgs = d.feed(
        up(p.STDOUT, [5, 6], b"out")
        + up(p.STDERR, [5], b"err")
        + up(p.EVENT, [7], enc([b"termsig", b"sigkill"]))
        + up(p.GONE, [7], enc([b"exit_status", 3]))
        + up(p.EVENT, [], enc([b"signal", b"sigusr1", b"\0" * 128]))
        + up(p.UP_HELLO, [], b"\x00\x010.1.0")
        + up(p.PROTOERR, [], b"bad frame")
    )
    assert msgs == [
        p.Output((5, 6), p.STDOUT, b"out"),
        p.Output((5,), p.STDERR, b"err"),
        p.Event((7,), ("termsig", "sigkill"), False),
        p.Event((7,), ("exit_status", 3), True),
        p.Event((), ("signal", "sigusr1", b"\0" * 128), False),
        p.Hello(1, "0.1.0"),
        p.ProtocolError((), "bad frame"),
    ]


@given(st.lists(st.tuples(st.sampled_from([(1,), (2,), (1, 3)]), st.sampled_from([p.STDOUT, p.STDERR]),
                          st.binary(min_size=1, max_size=40)), max_size=30), st.integers(1, 200))
def test_output_runs_are_joined_in_order_and_lose_nothing(frames, cut):
    """Consecutive output frames of one process and stream in one read come
    out as one Output; what each process wrote on each stream is unchanged."""
    data = b"".join(up(s, list(c), b) + up(p.EVENT, [9], enc([b"exit_status", 0])) * (i % 7 == 6)
                    for i, (c, s, b) in enumerate(frames))
    d = p.Decoder()
    got = []
    for i in range(0, len(data), cut):
        got += d.feed(data[i : i + cut])
    outs = [m for m in got if isinstance(m, p.Output)]
    for key in {(c, s) for c, s, _ in frames}:
        assert b"".join(m.data for m in outs if (m.chain, m.stream) == key) == \
            b"".join(b for c, s, b in frames if (c, s) == key)
    assert len([m for m in got if isinstance(m, p.Event)]) == len(frames) // 7


def test_output_frames_of_one_read_become_one_output():
    d = p.Decoder()
    msgs = d.feed(up(p.STDOUT, [5], b"a") + up(p.STDOUT, [5], b"b") + up(p.STDERR, [5], b"c")
                  + up(p.STDOUT, [5], b"d") + up(p.STDOUT, [6], b"e"))
    assert msgs == [p.Output((5,), p.STDOUT, b"ab"), p.Output((5,), p.STDERR, b"c"),
                    p.Output((5,), p.STDOUT, b"d"), p.Output((6,), p.STDOUT, b"e")]


def test_garbage_before_a_frame_is_skipped_and_counted():
    d = p.Decoder()
    good = up(p.STDOUT, [1], b"x")
    junk = b"U-Boot 2024\r\nN\x00NCX\x00\x00\x00\x00\x00"
    assert d.feed(junk + good) == [p.Output((1,), p.STDOUT, b"x")]
    assert d.skipped == len(junk)


@settings(max_examples=300)
@given(st.binary(max_size=300))
def test_decoder_never_crashes_on_junk(junk):
    d = p.Decoder()
    try:
        d.feed(junk)
    except p.CodecError:
        pass  # a frame-shaped body that does not decode is reported, not a crash


@given(st.binary(max_size=300).filter(lambda b: b"N" not in b))
def test_junk_without_magic_is_skipped(junk):
    d = p.Decoder()
    frame = up(p.STDOUT, [1], b"ok")
    assert d.feed(junk + frame) == [p.Output((1,), p.STDOUT, b"ok")]
    assert d.skipped == len(junk)


def test_malformed_reply_body_raises_codec_error():
    with pytest.raises(p.CodecError):
        p.Decoder().feed(up(p.REPLY, [], struct.pack(">IB", 1, 0) + b"i\x00"))


def test_encode_call_layout():
    f = p.encode_call(7, (10, 20), 4, [p.term_int(1)])
    assert f[:4] == b"NC\x01\x02"
    assert struct.unpack(">I", f[4:8])[0] == len(f) - 8
    assert struct.unpack(">ii", f[8:16]) == (10, 20)
    assert struct.unpack(">IH", f[16:22]) == (7, 4)
    assert f[22:] == p.term_int(1)


@pytest.mark.parametrize(
    "fn,value,exc",
    [
        (p.arg_int, "1", TypeError),
        (p.arg_int, 2**63, ValueError),
        (p.arg_str, 1, TypeError),
        (p.arg_str, "a\0b", ValueError),
        (p.arg_bytes, "text", TypeError),
        (p.arg_strv, "ab", TypeError),
        (p.arg_strv, ["ok", 3], TypeError),
    ],
)
def test_bad_arguments_fail_before_sending(fn, value, exc):
    with pytest.raises(exc):
        fn(value, "x")


def test_constants():
    assert p.arg_const("CLONE_NEWNS", "f", "clone") == p.term_name(b"CLONE_NEWNS")
    assert p.arg_const(["clone_newpid", 8], "f", "clone") == p.term_list(
        [p.term_name(b"clone_newpid"), p.term_int(8)])
    for bad, exc in [(True, TypeError), (1.5, TypeError), ("no spaces", ValueError), ("", ValueError)]:
        with pytest.raises(exc):
            p.arg_const(bad, "f", "clone")


@pytest.mark.parametrize("chain,exc", [("12", TypeError), ([1, "2"], TypeError), ([0], ValueError),
                                       ([2**31], ValueError), ([1] * 256, ValueError), ([True], TypeError)])
def test_bad_chains(chain, exc):
    with pytest.raises(exc):
        p.check_chain(chain)


def test_oversized_call_is_refused():
    with pytest.raises(ValueError, match="frame limit"):
        p.encode_call(1, (), 10, [p.term_bytes(b"x" * p.MAX_FRAME)])
