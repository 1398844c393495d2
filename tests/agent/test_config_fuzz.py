"""The config loader fuzzed (hypothesis): whatever a file holds, `load`
returns a Config or raises ConfigError with messages that name a key or the
file. Never another exception: niche-agent would print a traceback instead
of saying what to fix."""

from __future__ import annotations

import tomllib
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from niche.agent import config

GOOD = """\
[agent]
id = "fz"
board = "sim"
[mqtt]
host = "127.0.0.1"
port = 1883
[gpio.led]
pin = "SIM3"
direction = "out"
[gpio.btn]
pin = "SIM5"
direction = "in"
edge = "both"
debounce_ms = 10
[driver.d]
command = ["/bin/cat"]
[homeassistant]
discovery = true
"""
KEYS = ["agent", "mqtt", "port", "gpio", "driver", "homeassistant", "id", "board", "host", "port",
        "pin", "direction", "edge", "debounce_ms", "bias", "initial", "command", "serial", "tls",
        "username", "password", "keepalive", "qos", "discovery", "prefix", "led", "btn", "x"]
# what TOML can hold, with the config's own key names likely
toml_values = st.recursive(
    st.none().map(lambda _: "") | st.booleans() | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=True) | st.text(max_size=20) | st.sampled_from(["SIM3", "out", "in", "both",
                                                                         "sim", "ON", "pull-up"]),
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5),
                                                              kids, max_size=5),
    max_leaves=25)
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def outcome(fn) -> config.Config | config.ConfigError:
    try:
        return fn()
    except config.ConfigError as e:
        assert e.errors and all(isinstance(m, str) and m for m in e.errors)
        return e


@FUZZ
@given(data=st.dictionaries(st.sampled_from(KEYS), toml_values, max_size=6))
def test_parse_any_structure(data: dict) -> None:
    outcome(lambda: config.parse(data))


@FUZZ
@given(section=st.sampled_from(["agent", "mqtt", "gpio.led", "gpio.btn", "driver.d", "homeassistant"]),
       key=st.sampled_from(KEYS), value=toml_values)
def test_one_bad_key_in_a_good_config(section: str, key: str, value: object) -> None:
    data = tomllib.loads(GOOD)
    node = data
    for part in section.split("."):
        node = node[part]
    node[key] = value
    outcome(lambda: config.parse(data))


@FUZZ
@given(cut=st.integers(0, len(GOOD)), junk=st.binary(max_size=12))
def test_load_damaged_file(tmp_path_factory, cut: int, junk: bytes) -> None:
    p = Path(tmp_path_factory.mktemp("cfg")) / "agent.toml"
    p.write_bytes(GOOD.encode()[:cut] + junk + GOOD.encode()[cut:])
    r = outcome(lambda: config.load(str(p)))
    if isinstance(r, config.ConfigError) and not junk:
        raise AssertionError(f"the good config was refused: {r.errors}")


def test_the_good_config_is_good(tmp_path: Path) -> None:
    p = tmp_path / "agent.toml"
    p.write_text(GOOD)
    c = config.load(str(p))
    assert set(c.lines) == {"led", "btn"} and set(c.drivers) == {"d"}
