"""niche-agent's configuration: every kind of error reported with its key
path, exit status 2 (`niche-agent --check -c X`, a real subprocess), and
good configurations accepted."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from agenthelpers import AGENT, ROOT  # type: ignore[import-not-found]

pytestmark = pytest.mark.skipif(not AGENT.exists(), reason=f"{AGENT} is not installed")

GOOD = """\
[agent]
id = "cfgtest"
board = "sim"
sysfs_root = "/tmp/nowhere"

[mqtt]
host = "127.0.0.1"
port = 1883

[gpio.led]
pin = "SIM3"
direction = "out"
initial = "OFF"

[gpio.btn]
pin = "SIM5"
direction = "in"
edge = "both"
debounce_ms = 10
bias = "pull-up"
"""


def check(tmp_path: Path, text: str, *extra: str) -> subprocess.CompletedProcess:
    p = tmp_path / "agent.toml"
    p.write_text(text)
    return subprocess.run([str(AGENT), "--check", "-c", str(p), *extra], capture_output=True,
                          text=True, timeout=60)


def errors_of(r: subprocess.CompletedProcess) -> list[str]:
    """The error lines, without the file name in front."""
    return [line.split(": ", 1)[1] for line in r.stderr.splitlines() if ": " in line]


def expect(tmp_path: Path, text: str, key: str, words: str = "") -> list[str]:
    r = check(tmp_path, text)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    errs = errors_of(r)
    hits = [e for e in errs if e.startswith(key + ": ") and words.lower() in e.lower()]
    assert hits, f"no error for {key!r} ({words!r}) in:\n{r.stderr}"
    assert r.stderr.rstrip().endswith("error(s)")
    return errs


def test_good_config_checks(tmp_path: Path) -> None:
    r = check(tmp_path, GOOD)
    assert r.returncode == 0, r.stderr
    assert "OK" in r.stdout and "cfgtest" in r.stdout and "2 lines" in r.stdout
    assert "niche/cfgtest" in r.stdout


def test_minimal_config_checks(tmp_path: Path) -> None:
    r = check(tmp_path, '[agent]\nboard = "sim"\n')
    assert r.returncode == 0, r.stderr
    r = check(tmp_path, "")  # every default (the host name as id)
    assert r.returncode == 0, r.stderr


def test_full_config_checks(tmp_path: Path) -> None:
    for name in ("ca.pem", "cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    (tmp_path / "pw").write_text("secret\n")
    text = f"""\
[agent]
id = "full-1"
board = "sim"
sysfs_root = "/tmp/x"
leds_root = "/tmp/y"
[mqtt]
host = "broker.example"
port = 8883
protocol = "5"
username = "u"
password_file = "{tmp_path}/pw"
tls = {{ ca = "{tmp_path}/ca.pem", cert = "{tmp_path}/cert.pem", key = "{tmp_path}/key.pem" }}
keepalive = 30
prefix = "home/gpio"
client_id = "cid"
[port]
exec_prefix = ["sudo", "-n"]
progname = "/usr/lib/niche/niche-port"
[gpio.a]
pin = "SIM0"
initial = true
active_low = true
backend = "sysfs"
[gpio.b]
pin = "sysfs:1"
initial = 1
[gpio.c]
pin = "sim2"
direction = "in"
edge = "falling"
debounce_ms = 2.5
bias = "as-is"
[homeassistant]
discovery = true
prefix = "ha"
"""
    r = check(tmp_path, text)
    assert r.returncode == 0, r.stderr
    assert "home/gpio" in r.stdout
    r = check(tmp_path, text.replace('exec_prefix = ["sudo", "-n"]', 'exec_prefix = "sudo -n"'))
    assert r.returncode == 0, r.stderr


def test_the_example_configs_of_the_boards_check() -> None:
    for p in sorted(ROOT.glob("boards/*/*.toml")):
        if p.name == "board.toml":
            continue
        r = subprocess.run([str(AGENT), "--check", "-c", str(p)], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, (p, r.stderr)


# --- unknown keys at every level ------------------------------------------------

UNKNOWN = [
    ("frob = 1\n", "frob"),
    ('[agent]\nboard = "sim"\nfrob = 1\n', "agent.frob"),
    ("[mqtt]\nhots = \"x\"\n", "mqtt.hots"),
    ('[mqtt]\ntls = { ca = "/etc/hostname", crt = "x" }\n', "mqtt.tls.crt"),
    ("[port]\nexecprefix = \"sudo\"\n", "port.execprefix"),
    ('[gpio.led]\npin = "SIM3"\ninital = "ON"\n', "gpio.led.inital"),
    ('[homeassistant]\ndiscover = true\n', "homeassistant.discover"),
    ('[driver.d]\ncommand = ["/bin/true"]\nrestrat = "always"\n', "driver.d.restrat"),
    ("[gpios.led]\npin = \"SIM3\"\n", "gpios"),
]


@pytest.mark.parametrize("text,key", UNKNOWN, ids=[k for _, k in UNKNOWN])
def test_unknown_key(tmp_path: Path, text: str, key: str) -> None:
    expect(tmp_path, text, key, "unknown key")


# --- wrong types ------------------------------------------------------------------

WRONG_TYPE = [
    ("mqtt = 5\n", "mqtt", "table"),
    ('agent = "x"\n', "agent", "table"),
    ("[agent]\nid = 5\n", "agent.id", "string"),
    ("[agent]\nboard = true\n", "agent.board", "string"),
    ('[mqtt]\nport = "1883"\n', "mqtt.port", "integer"),
    ("[mqtt]\nport = 1883.0\n", "mqtt.port", "integer"),
    ("[mqtt]\nport = true\n", "mqtt.port", "integer"),
    ("[mqtt]\nkeepalive = 1.5\n", "mqtt.keepalive", "integer"),
    ("[mqtt]\nhost = [\"a\"]\n", "mqtt.host", "string"),
    ('[mqtt]\ntls = "yes"\n', "mqtt.tls", "table"),
    ("[port]\nexec_prefix = 5\n", "port.exec_prefix", "string"),
    ("[port]\nexec_prefix = [\"sudo\", 1]\n", "port.exec_prefix", "list of strings"),
    ("[gpio]\nled = 3\n", "gpio.led", "table"),
    ('[gpio.led]\npin = 3\n', "gpio.led.pin", "string"),
    ('[gpio.led]\npin = "SIM3"\nactive_low = "yes"\n', "gpio.led.active_low", "true or false"),
    ('[gpio.led]\npin = "SIM3"\ninitial = 1.5\n', "gpio.led.initial", ""),
    ('[gpio.btn]\npin = "SIM3"\ndirection = "in"\ndebounce_ms = "10"\n', "gpio.btn.debounce_ms",
     "number"),
    ('[homeassistant]\ndiscovery = "yes"\n', "homeassistant.discovery", "true or false"),
    ('[driver.d]\ncommand = "/bin/true"\n', "driver.d.command", "list of strings"),
]


@pytest.mark.parametrize("text,key,words", WRONG_TYPE, ids=[f"{k}-{i}" for i, (_, k, _) in
                                                            enumerate(WRONG_TYPE)])
def test_wrong_type(tmp_path: Path, text: str, key: str, words: str) -> None:
    expect(tmp_path, text, key, words)


# --- values -----------------------------------------------------------------------

BAD_VALUES = [
    ('[gpio.led]\npin = "SIM3"\ndirection = "sideways"\n', "gpio.led.direction", "one of"),
    ('[gpio.led]\npin = "SIM3"\ndirection = "OUT"\n', "gpio.led.direction", "one of"),
    ('[gpio.b]\npin = "SIM3"\ndirection = "in"\nedge = "up"\n', "gpio.b.edge", "one of"),
    ('[gpio.b]\npin = "SIM3"\ndirection = "in"\nbias = "strong"\n', "gpio.b.bias", "one of"),
    ('[gpio.led]\npin = "SIM3"\nbackend = "magic"\n', "gpio.led.backend", "one of"),
    ('[gpio.led]\npin = "SIM3"\ninitial = "maybe"\n', "gpio.led.initial", "ON or OFF"),
    ('[gpio.led]\npin = "SIM3"\ninitial = 2\n', "gpio.led.initial", "ON or OFF"),
    ('[mqtt]\nprotocol = "4"\n', "mqtt.protocol", "one of"),
    ("[mqtt]\nprotocol = 5\n", "mqtt.protocol", "string"),
    ("[mqtt]\nport = 0\n", "mqtt.port", "between"),
    ("[mqtt]\nport = 70000\n", "mqtt.port", "between"),
    ("[mqtt]\nkeepalive = 1\n", "mqtt.keepalive", "between"),
    ('[mqtt]\nprefix = "a/#"\n', "mqtt.prefix", "wildcards"),
    ('[mqtt]\nprefix = "a/+/b"\n', "mqtt.prefix", "wildcards"),
    ('[agent]\nid = "a/b"\n', "agent.id", "MQTT"),
    ('[agent]\nid = "a b"\n', "agent.id", ""),
    ('[agent]\nid = "x+"\n', "agent.id", ""),
    ('[gpio."a/b"]\npin = "SIM3"\n', "gpio.a/b", "line name"),
    ('[gpio."#"]\npin = "SIM3"\n', "gpio.#", "line name"),
    ('[gpio.b]\npin = "SIM3"\ndirection = "in"\ndebounce_ms = 5000\n', "gpio.b.debounce_ms",
     "between"),
    ('[gpio.b]\npin = "SIM3"\ndirection = "in"\ndebounce_ms = -1\n', "gpio.b.debounce_ms",
     "between"),
    ('[gpio.led]\npin = "SIM3"\nedge = "both"\n', "gpio.led.edge", "inputs"),
    ('[gpio.led]\npin = "SIM3"\ndebounce_ms = 5\n', "gpio.led.debounce_ms", "inputs"),
    ('[gpio.led]\npin = "SIM3"\nbias = "pull-up"\n', "gpio.led.bias", "inputs"),
    ('[gpio.b]\npin = "SIM3"\ndirection = "in"\ninitial = "ON"\n', "gpio.b.initial", "outputs"),
    ('[agent]\nboard = "nosuchboard"\n', "agent.board", "no board"),
    ('[driver.d]\ncommand = ["/bin/true"]\nrestart = "sometimes"\n', "driver.d.restart", "one of"),
    ('[driver.d]\ncommand = ["/bin/true"]\ngpio = ["nope"]\n', "driver.d.gpio", "nope"),
    ("[driver.d]\nrestart = \"always\"\n", "driver.d.command", "missing"),
    ('[driver.d]\ncommand = ["/bin/true"]\nnamespaces = ["time"]\n', "driver.d.namespaces", "one of"),
    ('[driver.d]\ncommand = ["/bin/true"]\nuid = 0\n', "driver.d.uid", "between"),
]


@pytest.mark.parametrize("text,key,words", BAD_VALUES, ids=[f"{k}-{i}" for i, (_, k, _) in
                                                            enumerate(BAD_VALUES)])
def test_bad_value(tmp_path: Path, text: str, key: str, words: str) -> None:
    expect(tmp_path, text, key, words)


# --- pins -------------------------------------------------------------------------


def test_missing_pin(tmp_path: Path) -> None:
    expect(tmp_path, '[gpio.led]\ndirection = "out"\n', "gpio.led.pin", "missing")
    expect(tmp_path, "[gpio.led]\n", "gpio.led.pin", "missing")


@pytest.mark.parametrize("pin", ["P9_12", "SIM32", "GPIO17", "nope", ""])
def test_pin_not_on_board(tmp_path: Path, pin: str) -> None:
    expect(tmp_path, f'[agent]\nboard = "sim"\n[gpio.led]\npin = "{pin}"\n', "gpio.led.pin", "")


def test_pin_not_on_board_names_the_valid_ones(tmp_path: Path) -> None:
    errs = expect(tmp_path, '[agent]\nboard = "sim"\n[gpio.led]\npin = "P9_12"\n', "gpio.led.pin",
                  "P9_12")
    assert any("SIM0" in e for e in errs), errs


@pytest.mark.parametrize("a,b", [("SIM3", "SIM3"), ("SIM3", "sim3"), ("SIM3", "sysfs:3")])
def test_duplicate_pin(tmp_path: Path, a: str, b: str) -> None:
    errs = expect(tmp_path, f'[gpio.led]\npin = "{a}"\n[gpio.led2]\npin = "{b}"\n',
                  "gpio.led2.pin", "already used by gpio.led")
    assert len(errs) == 2, errs  # the one error and the count


def test_same_pin_on_a_beaglebone_by_two_names(tmp_path: Path) -> None:
    r = check(tmp_path, '[agent]\nboard = "beaglebone"\n[gpio.a]\npin = "P9_12"\n'
              '[gpio.b]\npin = "P9_12"\n')
    assert r.returncode == 2 and "gpio.b.pin" in r.stderr, r.stderr


# --- MQTT credentials and TLS -------------------------------------------------------


def test_password_without_username(tmp_path: Path) -> None:
    expect(tmp_path, '[mqtt]\npassword = "x"\n', "mqtt.password", "username")


def test_password_file_without_username(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("x\n")
    expect(tmp_path, f'[mqtt]\npassword_file = "{tmp_path}/pw"\n', "mqtt.password", "username")


def test_password_and_password_file(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("x\n")
    expect(tmp_path, f'[mqtt]\nusername = "u"\npassword = "x"\npassword_file = "{tmp_path}/pw"\n',
           "mqtt.password_file", "not both")


def test_missing_password_file(tmp_path: Path) -> None:
    expect(tmp_path, f'[mqtt]\nusername = "u"\npassword_file = "{tmp_path}/nope"\n',
           "mqtt.password_file", "cannot read")


def test_tls_cert_without_key(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("x")
    expect(tmp_path, f'[mqtt]\ntls = {{ cert = "{tmp_path}/c.pem" }}\n', "mqtt.tls", "together")
    expect(tmp_path, f'[mqtt]\ntls = {{ key = "{tmp_path}/c.pem" }}\n', "mqtt.tls", "together")


@pytest.mark.parametrize("which", ["ca", "cert", "key"])
def test_tls_missing_file(tmp_path: Path, which: str) -> None:
    for name in ("ca", "cert", "key"):
        (tmp_path / f"{name}.pem").write_text("x")
    files = {n: f"{tmp_path}/{n}.pem" for n in ("ca", "cert", "key")}
    files[which] = f"{tmp_path}/missing-{which}.pem"
    tls = ", ".join(f'{k} = "{v}"' for k, v in files.items())
    expect(tmp_path, f"[mqtt]\ntls = {{ {tls} }}\n", f"mqtt.tls.{which}", "no such file")


def test_missing_board_file(tmp_path: Path) -> None:
    expect(tmp_path, f'[agent]\nboard = "{tmp_path}/nope/board.toml"\n', "agent.board", "")


def test_board_file_relative_to_the_config(tmp_path: Path) -> None:
    (tmp_path / "myboard.toml").write_text('name = "mine"\nbackend = "sysfs"\n[pins]\nX1 = { sysfs = 7 }\n')
    r = check(tmp_path, '[agent]\nboard = "myboard.toml"\n[gpio.led]\npin = "X1"\n')
    assert r.returncode == 0, r.stderr
    expect(tmp_path, '[agent]\nboard = "myboard.toml"\n[gpio.led]\npin = "SIM3"\n', "gpio.led.pin")


# --- every error at once, the file itself ---------------------------------------------


def test_every_error_at_once(tmp_path: Path) -> None:
    r = check(tmp_path, 'frob = 1\n[mqtt]\nport = "x"\n[gpio.a]\npin = "P9_12"\n'
              '[gpio.b]\ndirection = "up"\n')
    assert r.returncode == 2
    keys = {e.split(": ")[0] for e in errors_of(r)}
    assert {"frob", "mqtt.port", "gpio.a.pin", "gpio.b.pin"} <= keys, r.stderr
    assert "4 error(s)" in r.stderr or "5 error(s)" in r.stderr, r.stderr


@pytest.mark.parametrize("text", [
    "[agent\n", "id = \n", "[agent]\nid = \"x\"\nid = \"y\"\n", "[mqtt]\nport = 1883\n[mqtt]\n",
    "a = 'unterminated\n", "= 5\n", "[gpio.led]\npin = SIM3\n", "\x00", "[agent]\nboard = \"sim\" extra\n",
])
def test_toml_syntax_error(tmp_path: Path, text: str) -> None:
    r = check(tmp_path, text)
    assert r.returncode == 2, r.stderr
    assert "not valid TOML" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "agent.toml"
    p.write_bytes(b'[agent]\nid = "\xff"\n')
    r = subprocess.run([str(AGENT), "--check", "-c", str(p)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr


def test_missing_config_file(tmp_path: Path) -> None:
    r = subprocess.run([str(AGENT), "--check", "-c", str(tmp_path / "nope.toml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "cannot read" in r.stderr, r.stderr


def test_a_directory_as_config(tmp_path: Path) -> None:
    r = subprocess.run([str(AGENT), "--check", "-c", str(tmp_path)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr


def test_bad_config_without_check_exits_2_too(tmp_path: Path) -> None:
    p = tmp_path / "agent.toml"
    p.write_text('[gpio.led]\npin = "P9_12"\n')
    r = subprocess.run([str(AGENT), "-c", str(p)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "gpio.led.pin" in r.stderr


def test_no_config_argument_is_a_usage_error() -> None:
    r = subprocess.run([str(AGENT), "--check"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--config" in r.stderr


def test_python_dash_m(tmp_path: Path) -> None:
    p = tmp_path / "agent.toml"
    p.write_text(GOOD)
    r = subprocess.run([str(AGENT.parent / "python"), "-m", "niche.agent", "--check", "-c", str(p)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
