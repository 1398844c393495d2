"""A fleet: five agents (each on its own simulator) on one mosquitto, and two
mosquittos joined by a bridge with agents on both sides, driven by the CLI."""

from __future__ import annotations

import json
import signal
import threading
import time
import uuid

import agenthelpers as ah
import fleethelpers as fh
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

LINES = {"led": {"pin": "SIM3"}}


def start_fleet(agent_factory, brokers, sims, col_for) -> list[ah.AgentProc]:
    """One agent per simulator; agent i on brokers[i % len(brokers)]; all online."""
    agents, marks = [], []
    for i, sim in enumerate(sims):
        b = brokers[i % len(brokers)]
        marks.append(col_for[b].mark())
        agents.append(agent_factory(b, sim, agent_id=f"fleet{i}-{uuid.uuid4().hex[:4]}", lines=LINES,
                                    mqtt={"protocol": "5"}))
    for i, a in enumerate(agents):
        col = col_for[brokers[i % len(brokers)]]
        try:
            col.wait_topic(a.topic("status"), "online", since=marks[i], timeout=30)
            col.wait_topic(a.topic("gpio", "led"), since=marks[i], timeout=30)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{a.log()[-2000:]}") from None
    return agents


def commands_reach_only_their_board(agents, sims, brokers) -> None:
    """Every board in turn, from every broker: only that board's line moves."""
    for i, a in enumerate(agents):
        for value in ("ON", "OFF"):
            via = brokers[i % len(brokers) - 1]  # the other side of the bridge, when there is one
            r = fh.run_cli(via, "set", a.id, "led", value)
            assert r.returncode == 0, r.stderr + a.log()[-1000:]
            assert r.stdout.strip() == f"{a.id} led: {value}"
            want = [1 if (j == i and value == "ON") else 0 for j in range(len(sims))]
            assert [s.level(3) for s in sims] == want


def test_five_boards_on_one_broker(fresh_sims, broker, agent_factory, client_factory):
    col = client_factory(broker)
    agents = start_fleet(agent_factory, [broker], fresh_sims, {broker: col})
    changes = [s.changes(3) for s in fresh_sims]
    commands_reach_only_their_board(agents, fresh_sims, [broker])
    assert [s.changes(3) - c for s, c in zip(fresh_sims, changes, strict=True)] == [2] * len(agents)
    code, out = fh.cli_json(broker, "boards")
    assert code == 0 and {a.id: {"led": "OFF"} for a in agents}.items() <= out["boards"].items()

    # killed: the broker publishes the will; the retained state stays what it was
    victim = agents[2]
    assert fh.run_cli(broker, "set", victim.id, "led", "ON").returncode == 0
    m = col.mark()
    victim.signal(signal.SIGKILL)
    victim.wait()
    col.wait_topic(victim.topic("status"), "offline", since=m, timeout=15)
    late = ah.Collector(broker, topics=(f"{victim.prefix}/#",))  # what a newcomer sees, retained
    try:
        ah.wait_until(lambda: len(late.since()) >= 2, 5)
        assert {(x.topic, x.payload, x.retain) for x in late.since()} == {
            (victim.topic("status"), b"offline", True), (victim.topic("gpio", "led"), b"ON", True)}
    finally:
        late.close()
    code, out = fh.cli_json(broker, "boards")
    assert victim.id not in out["boards"] and all(a.id in out["boards"] for a in agents if a is not victim)
    r = fh.run_cli(broker, "--timeout", "2", "set", victim.id, "led", "OFF")
    assert r.returncode == 3 and "no reply" in r.stderr
    assert fh.run_cli(broker, "get", victim.id, "led").stdout.strip() == "ON"  # its last retained state


def test_bridged_brokers_cli_from_either_side(fresh_sims, bridged, agent_factory, client_factory):
    a_side, b_side = bridged
    cols = {a_side: client_factory(a_side), b_side: client_factory(b_side)}
    agents = start_fleet(agent_factory, [a_side, b_side], fresh_sims, cols)
    commands_reach_only_their_board(agents, fresh_sims, [a_side, b_side])
    for side in bridged:  # both sides see every board
        code, out = fh.cli_json(side, "boards")
        assert code == 0 and {a.id for a in agents} <= set(out["boards"])
    r = fh.run_cli(b_side, "watch", agents[0].id, "led", "--count", "1")
    assert r.returncode == 0 and r.stdout.split()[1:] == [agents[0].id, "led", "OFF", "(retained)"]


class Load:
    """Acknowledged commands at a fixed rate, round-robin over boards; reply latencies."""

    def __init__(self, b: ah.Broker) -> None:
        self.sent: dict[bytes, float] = {}
        self.got: dict[bytes, tuple[float, dict]] = {}
        self.lock = threading.Lock()
        self.c, self.rt = fh.reply_client(b, self._on_message, "load")

    def _on_message(self, c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
        corr = m.properties.CorrelationData
        with self.lock:
            self.got[corr] = (time.monotonic(), json.loads(m.payload))

    def run(self, agents: list[ah.AgentProc], per_board: int, rate: float) -> None:
        n = per_board * len(agents)
        t0 = time.monotonic()
        for k in range(n):
            due = t0 + k / (rate * len(agents))
            if (d := due - time.monotonic()) > 0:
                time.sleep(d)
            a = agents[k % len(agents)]
            corr = k.to_bytes(4, "big")
            p = Properties(PacketTypes.PUBLISH)
            p.ResponseTopic, p.CorrelationData = self.rt, corr
            with self.lock:
                self.sent[corr] = time.monotonic()
            self.c.publish(a.topic("gpio", "led", "set"), b"ON" if (k // len(agents)) % 2 else b"OFF",
                           qos=1, properties=p)
        self.send_s = time.monotonic() - t0

    def figures(self) -> dict[str, float]:
        with self.lock:
            lat = sorted(self.got[c][0] - t for c, t in self.sent.items() if c in self.got)
        return {"sent": len(self.sent), "replied": len(lat), "lost": len(self.sent) - len(lat),
                "rate": len(self.sent) / self.send_s,
                "p50_ms": lat[len(lat) // 2] * 1000, "p99_ms": lat[int(len(lat) * 0.99) - 1] * 1000,
                "max_ms": lat[-1] * 1000}

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


PER_BOARD, RATE = 500, 500.0  # 1 s at 500 commands/s per board


@pytest.mark.parametrize("across", [False, True], ids=["direct", "bridge"])
def test_five_boards_at_500_commands_per_second_lose_nothing(across, fresh_sims, bridged, agent_factory,
                                                            client_factory, record_property):
    a_side, b_side = bridged
    col = client_factory(a_side)
    agents = start_fleet(agent_factory, [a_side], fresh_sims, {a_side: col})
    load = Load(b_side if across else a_side)
    try:
        load.run(agents, PER_BOARD, RATE)
        ah.wait_until(lambda: len(load.got) >= len(load.sent), 120, 0.1)
        f = load.figures()
        print(f"\nfleet {'across the bridge' if across else 'direct'}: {len(agents)} boards, "
              f"{f['sent']} commands at {f['rate']:.0f}/s, lost {f['lost']}, "
              f"p50 {f['p50_ms']:.1f} ms, p99 {f['p99_ms']:.1f} ms, max {f['max_ms']:.1f} ms")
        for k, v in f.items():
            record_property(k, v)
        # a loss is most often a broker queue overflowing: say so
        dropped = [ln for b in bridged for ln in b.log.read_text(errors="replace").splitlines()
                   if "dropped" in ln]
        assert f["lost"] == 0, dropped[:5]
        assert all(r["ok"] for _, r in load.got.values())
        # the last command of every board is what its line shows
        last = "ON" if (PER_BOARD - 1) % 2 else "OFF"
        for a, s in zip(agents, fresh_sims, strict=True):
            assert s.wait_level(3, 1 if last == "ON" else 0), a.id
    finally:
        load.close()
