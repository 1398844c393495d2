"""Acknowledged commands (MQTT 5 request/response) and the `niche` CLI, one board."""

from __future__ import annotations

import json
import threading

import agenthelpers as ah
import fleethelpers as fh
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

LINES = {"led": {"pin": "SIM3"}, "btn": {"pin": "SIM5", "direction": "in"}}


class Requester:
    """A raw MQTT 5 client: publish with Response Topic + Correlation Data, collect replies."""

    def __init__(self, b: ah.Broker) -> None:
        self.replies: list[tuple[bytes | None, dict]] = []
        self.cond = threading.Condition()
        self.c, self.rt = fh.reply_client(b, self._on_message, "test")

    def _on_message(self, c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        with self.cond:
            self.replies.append((getattr(m.properties, "CorrelationData", None), json.loads(m.payload)))
            self.cond.notify_all()

    def send(self, topic: str, payload: bytes, corr: bytes) -> None:
        p = Properties(PacketTypes.PUBLISH)
        p.ResponseTopic, p.CorrelationData = self.rt, corr
        self.c.publish(topic, payload, qos=1, properties=p)

    def wait(self, n: int, timeout: float = 10) -> list[tuple[bytes | None, dict]]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.replies) >= n, timeout), self.replies
            return list(self.replies)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture
def board(fresh_sims, broker, agent_factory, client_factory):
    col = client_factory(broker)
    a = ah.start_online(agent_factory, broker, fresh_sims[0], col, lines=LINES, mqtt={"protocol": "5"})
    return a, col, fresh_sims[0]


def test_one_reply_per_command_ok_or_error_and_rejects_change_nothing(board, broker):
    a, col, sim = board
    r = Requester(broker)
    try:
        m = col.mark()
        r.send(a.topic("gpio", "led", "set"), b"ON", b"c1")
        r.send(a.topic("gpio", "led", "set"), b"bogus", b"c2")
        r.send(a.topic("gpio", "btn", "set"), b"ON", b"c3")
        r.send(a.topic("gpio", "nope", "set"), b"ON", b"c4")
        r.send(a.topic("gpio", "led", "blink"), b'{"on_ms": 0}', b"c5")
        r.send(a.topic("gpio", "led", "pulse"), b"50", b"c6")
        got = dict(r.wait(6))
        col.wait_count(a.topic("error"), 4, since=m)  # v5 keeps the error topic too
        assert len(r.wait(6)) == 6  # exactly one each
        assert got[b"c1"] == {"ok": True, "topic": a.topic("gpio", "led", "set"), "line": "led",
                              "command": "set", "state": "ON"}
        assert sim.level(3) == 1 or got[b"c6"]["ok"]  # set, then the pulse took over
        assert got[b"c2"]["ok"] is False and got[b"c2"]["reason_code"] == 0x99
        assert got[b"c3"]["reason_code"] == 0x83 and "input" in got[b"c3"]["error"]
        assert got[b"c4"]["reason_code"] == 0x90 and "no line" in got[b"c4"]["error"]
        assert got[b"c5"]["reason_code"] == 0x99
        assert got[b"c6"] == {"ok": True, "topic": a.topic("gpio", "led", "pulse"), "line": "led",
                              "command": "pulse", "state": "ON"}
        # the pulse ends OFF; the rejected commands in between changed nothing
        col.wait_topic(a.topic("gpio", "led"), "OFF", since=m)
        assert sim.wait_level(3, 0)
        assert [x.payload for x in col.since(m, a.topic("gpio", "led"))] == [b"ON", b"ON", b"OFF"]
    finally:
        r.close()


def test_mqtt311_agent_still_reports_on_error(fresh_sims, broker, agent_factory, client_factory):
    col = client_factory(broker)
    a = ah.start_online(agent_factory, broker, fresh_sims[1], col, lines=LINES)
    m = col.mark()
    col.publish(a.topic("gpio", "led", "set"), "bogus")
    err = json.loads(col.wait_topic(a.topic("error"), since=m).payload)
    assert err["topic"] == a.topic("gpio", "led", "set") and "set takes" in err["error"]


def test_cli_set_get_toggle_blink_pulse_and_errors(board, broker, cli):
    a, col, sim = board
    r = cli(broker, "set", a.id, "led", "ON")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{a.id} led: ON" and sim.level(3) == 1
    assert cli(broker, "get", a.id, "led").stdout.strip() == "ON"
    code, out = fh.cli_json(broker, "toggle", a.id, "led")
    assert code == 0 and out["state"] == "OFF" and sim.wait_level(3, 0)
    code, out = fh.cli_json(broker, "blink", a.id, "led", "--on-ms", "20", "--off-ms", "20", "--count", "2")
    assert code == 0 and out["command"] == "blink"
    m = col.mark()
    code, out = fh.cli_json(broker, "pulse", a.id, "led", "30")
    assert code == 0 and out["state"] == "ON"
    col.wait_topic(a.topic("gpio", "led"), "OFF", since=m)
    r = cli(broker, "set", a.id, "btn", "ON")
    assert r.returncode == 1 and "btn is an input" in r.stderr and "0x83" in r.stderr
    r = cli(broker, "set", a.id, "led", "maybe")
    assert r.returncode == 1 and "set takes" in r.stderr
    r = cli(broker, "--timeout", "1", "set", "no-such-board", "led", "ON")
    assert r.returncode == 3 and "no reply" in r.stderr
    code, out = fh.cli_json(broker, "boards")
    assert code == 0 and out["boards"][a.id] == {"led": "OFF", "btn": "OFF"}
    r = cli(broker, "watch", a.id, "led", "--count", "1")
    assert r.returncode == 0 and r.stdout.split()[1:] == [a.id, "led", "OFF", "(retained)"]


def test_cli_config_reuses_the_agent_mqtt_table(tmp_path, broker):
    bad = tmp_path / "bad.toml"
    bad.write_text('[mqtt]\nport = 99999\nprotocol = "4"\n')
    r = fh.run_cli(broker, "--config", str(bad), "boards")
    assert r.returncode == 2 and "mqtt.port" in r.stderr and "mqtt.protocol" in r.stderr
    good = tmp_path / "good.toml"
    good.write_text(f'[agent]\nid = "x1"\n[mqtt]\nhost = "{broker.host}"\nport = {broker.port}\n'
                    'prefix = "site/x1"\n')
    r = ah.subprocess.run([fh.PYTHON, "-m", "niche.cli", "--config", str(good), "--json", "boards"],
                          capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"boards": {}}
