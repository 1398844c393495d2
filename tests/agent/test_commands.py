"""The agent's command payloads, sans-IO (niche.agent.commands): bytes in,
a command or a CommandError out; never anything else."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from niche.agent import commands as c
from niche.agent.commands import MAX_COUNT, MAX_MS, Blink, CommandError, Pulse, Set

# --- set ---------------------------------------------------------------------

SET_FORMS = [
    (b"ON", True), (b"on", True), (b"On", True), (b"oN", True),
    (b"OFF", False), (b"off", False), (b"Off", False),
    (b"1", True), (b"0", False),
    (b"true", True), (b"TRUE", True), (b"True", True),
    (b"false", False), (b"FALSE", False), (b"False", False),
    (b"TOGGLE", None), (b"toggle", None), (b"Toggle", None),
    (b" ON", True), (b"ON ", True), (b"\tOFF\n", False), (b"\r\n toggle \r\n", None), (b"1\n", True),
]


@pytest.mark.parametrize("payload,value", SET_FORMS)
def test_set_accepts(payload: bytes, value: bool | None) -> None:
    assert c.parse_set(payload) == Set(value)
    assert c.parse("set", payload) == Set(value)


SET_REJECTS = [
    b"", b" ", b"onn", b"o n", b"yes", b"no", b"high", b"low", b"2", b"-1", b"01", b"1.0",
    b'"ON"', b"[1]", b"{}", b"null", b"ON OFF", b"\x00", b"ON\x00", b"\xff\xfe", b"\xc3\x28",
    b"tru", b"t", b"f", b"toggled", b"\x80ON", "ОN".encode(),  # Cyrillic O
]


@pytest.mark.parametrize("payload", SET_REJECTS)
def test_set_rejects(payload: bytes) -> None:
    with pytest.raises(CommandError):
        c.parse_set(payload)


# --- blink -------------------------------------------------------------------

BLINK_FORMS = [
    (b"{}", Blink(500, 500, None)),
    (b"", Blink(500, 500, None)),  # an empty payload: every default
    (b"  ", Blink(500, 500, None)),
    (b'{"on_ms": 100}', Blink(100, 500, None)),
    (b'{"off_ms": 200}', Blink(500, 200, None)),
    (b'{"count": 3}', Blink(500, 500, 3)),
    (b'{"count": null}', Blink(500, 500, None)),
    (b'{"on_ms": 100, "off_ms": 100, "count": 3}', Blink(100, 100, 3)),
    (b'{"count": 1, "off_ms": 1, "on_ms": 1}', Blink(1, 1, 1)),
    (b' \n{"on_ms": 50,\n "off_ms": 70}\t', Blink(50, 70, None)),
    (json.dumps({"on_ms": MAX_MS, "off_ms": MAX_MS, "count": MAX_COUNT}).encode(),
     Blink(MAX_MS, MAX_MS, MAX_COUNT)),
]


@pytest.mark.parametrize("payload,cmd", BLINK_FORMS)
def test_blink_accepts(payload: bytes, cmd: Blink) -> None:
    assert c.parse_blink(payload) == cmd
    assert c.parse("blink", payload) == cmd


BLINK_REJECTS = [
    b"garbage", b"{", b'{"on_ms": }', b"[]", b"[100, 100]", b"100", b'"x"', b"null", b"true",
    b'{"on_ms": -1}', b'{"off_ms": -100}', b'{"on_ms": 0}', b'{"off_ms": 0}',
    b'{"count": 0}', b'{"count": -3}', b'{"count": 1.5}', b'{"count": "3"}', b'{"count": true}',
    b'{"on_ms": 100.0}', b'{"on_ms": 1e3}', b'{"on_ms": "100"}', b'{"on_ms": null}',
    b'{"on_ms": true}', b'{"on_ms": [100]}', b'{"on_ms": {}}',
    json.dumps({"on_ms": MAX_MS + 1}).encode(), json.dumps({"count": MAX_COUNT + 1}).encode(),
    b'{"on_ms": 99999999999999999999999999999999}', b'{"on_ms": NaN}', b'{"on_ms": Infinity}',
    b'{"on_ms": -Infinity}', b'{"ms": 100}', b'{"on": 100}', b'{"ON_MS": 100}',
    b'{"on_ms": 100, "colour": "red"}', b"\xff\xfe{}", b"{}\x00", b"\x00\x01\x02",
    b"[" * 5000 + b"]" * 5000, b'{"on_ms": 1' + b"0" * 2000 + b"}",
    b'{"on_ms": 100} {"on_ms": 100}',
]


@pytest.mark.parametrize("payload", BLINK_REJECTS, ids=lambda p: repr(p[:40]))
def test_blink_rejects(payload: bytes) -> None:
    with pytest.raises(CommandError):
        c.parse_blink(payload)


# --- pulse -------------------------------------------------------------------

PULSE_FORMS = [
    (b'{"ms": 100}', 100), (b'{"ms":1}', 1), (b"100", 100), (b" 250 \n", 250), (b"1", 1),
    (str(MAX_MS).encode(), MAX_MS), (json.dumps({"ms": MAX_MS}).encode(), MAX_MS), (b"007", 7),
]


@pytest.mark.parametrize("payload,ms", PULSE_FORMS)
def test_pulse_accepts(payload: bytes, ms: int) -> None:
    assert c.parse_pulse(payload) == Pulse(ms)
    assert c.parse("pulse", payload) == Pulse(ms)


PULSE_REJECTS = [
    b"", b" ", b"{}", b"-1", b"-100", b"0", b'{"ms": 0}', b'{"ms": -5}', b"1.5", b'{"ms": 1.5}',
    b'{"ms": 100.0}', b"1e3", b'{"ms": "100"}', b'{"ms": null}', b'{"ms": true}', b"true",
    b"null", b"[100]", b'{"ms": 100, "x": 1}', b'{"on_ms": 100}', b'{"MS": 100}',
    str(MAX_MS + 1).encode(), b"9" * 400, b"9" * 4300, json.dumps({"ms": MAX_MS + 1}).encode(),
    b"0x10", b"+5", b"5ms", b"\xff", b"1\x00", b"garbage", b"1_000", b"-" + b"9" * 4000,
]


@pytest.mark.parametrize("payload", PULSE_REJECTS, ids=lambda p: repr(p[:40]))
def test_pulse_rejects(payload: bytes) -> None:
    with pytest.raises(CommandError):
        c.parse_pulse(payload)


# str.isdigit() is true for more than ASCII digits, and int() of a digit
# string is limited to 4300 digits: these reach int() and raise a plain
# ValueError, which the agent does not catch (see test_agent_mqtt).
CRASHERS = [b"9" * 4301, b"-" + b"9" * 4301, "²".encode(), "¹²³".encode(), "①".encode()]


@pytest.mark.parametrize("payload", CRASHERS, ids=lambda p: repr(p[:12]))
def test_pulse_rejects_odd_digits_with_command_error(payload: bytes) -> None:
    with pytest.raises(CommandError):
        c.parse_pulse(payload)


def test_pulse_bare_integer_is_ascii() -> None:
    with pytest.raises(CommandError):
        c.parse_pulse("١٠٠".encode())


def test_unknown_verb() -> None:
    for verb in ("toggle", "SET", "", "blink/", "get"):
        with pytest.raises(CommandError):
            c.parse(verb, b"ON")


def test_errors_say_what_would_be_right() -> None:
    with pytest.raises(CommandError, match="ON, OFF, TOGGLE"):
        c.parse_set(b"maybe")
    with pytest.raises(CommandError, match="on_ms"):
        c.parse_blink(b'{"x": 1}')
    with pytest.raises(CommandError, match="ms"):
        c.parse_pulse(b"-5")


def test_payload_text() -> None:
    assert c.payload_text(b"ON") == "ON"
    assert c.payload_text(b"\xff\x00a") == "\\xff\x00a"
    assert len(c.payload_text(b"x" * 10_000)) == 256
    json.dumps(c.payload_text(bytes(range(256))))  # it goes into the error JSON


# --- fuzz: nothing but CommandError, and whatever parses is in range ---------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20),
    lambda kids: st.lists(kids, max_size=4)
    | st.dictionaries(st.sampled_from(["on_ms", "off_ms", "count", "ms", "x", ""]) | st.text(max_size=8),
                      kids, max_size=4),
    max_leaves=12,
)


def _json_bytes(v: object) -> bytes:
    return json.dumps(v, allow_nan=True).encode()


payloads = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=60).map(str.encode),
    json_values.map(_json_bytes),
    st.integers(min_value=-(2**80), max_value=2**80).map(lambda i: str(i).encode()),
    st.sampled_from([b"ON", b"off", b"Toggle", b"1", b"0", b"true", b"{}", b"100"]).flatmap(
        lambda p: st.tuples(st.binary(max_size=3), st.binary(max_size=3)).map(lambda ab: ab[0] + p + ab[1])),
)


def _check(cmd: object) -> None:
    if isinstance(cmd, Set):
        assert cmd.value in (True, False, None)
    elif isinstance(cmd, Blink):
        assert all(type(x) is int and 1 <= x <= MAX_MS for x in (cmd.on_ms, cmd.off_ms))
        assert cmd.count is None or (type(cmd.count) is int and 1 <= cmd.count <= MAX_COUNT)
    elif isinstance(cmd, Pulse):
        assert type(cmd.ms) is int and 1 <= cmd.ms <= MAX_MS
    else:
        raise AssertionError(f"not a command: {cmd!r}")


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(verb=st.sampled_from(["set", "blink", "pulse"]), payload=payloads)
def test_fuzz_only_command_error(verb: str, payload: bytes) -> None:
    try:
        cmd = c.parse(verb, payload)
    except CommandError as e:
        assert str(e)
        return
    _check(cmd)


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(d=st.dictionaries(st.sampled_from(["on_ms", "off_ms", "count"]), json_values, max_size=3))
def test_fuzz_blink_objects(d: dict) -> None:
    try:
        cmd = c.parse_blink(_json_bytes(d))
    except CommandError:
        return
    _check(cmd)
    assert cmd.on_ms == d.get("on_ms", 500) and cmd.off_ms == d.get("off_ms", 500)
    assert cmd.count == d.get("count")
