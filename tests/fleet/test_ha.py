"""Home Assistant discovery across boards: documented keys, one device per board,
availability from status, unique_ids stable across restarts, removal of lines."""

from __future__ import annotations

import json

import agenthelpers as ah

# the configuration variables HA's MQTT integration documents
# (home-assistant.io/integrations/switch.mqtt, .../binary_sensor.mqtt)
COMMON = {"availability", "availability_mode", "availability_template", "availability_topic", "device",
          "enabled_by_default", "encoding", "entity_category", "entity_picture", "icon",
          "json_attributes_template", "json_attributes_topic", "name", "object_id", "payload_available",
          "payload_not_available", "payload_off", "payload_on", "platform", "qos", "unique_id",
          "value_template", "device_class", "default_entity_id"}
DOCUMENTED = {
    "switch": COMMON | {"command_template", "command_topic", "optimistic", "retain", "state_off", "state_on",
                        "state_topic"},
    "binary_sensor": COMMON | {"expire_after", "force_update", "off_delay", "state_topic"},
}
REQUIRED = {"switch": {"command_topic"}, "binary_sensor": {"state_topic"}}
DEVICE_KEYS = {"configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model",
               "model_id", "name", "serial_number", "suggested_area", "sw_version", "via_device"}

LINES = {"led": {"pin": "SIM3"}, "lamp": {"pin": "SIM4"}, "btn": {"pin": "SIM5", "direction": "in"}}
HA = {"discovery": True, "prefix": "hafleet"}


def configs(broker, client_factory, agent_id: str, want: int) -> dict[str, dict]:
    """The retained discovery configs of one board, once `want` of them are there."""
    c = client_factory(broker, topics=("hafleet/#",))

    def mine() -> list:
        return [m for m in c.since() if m.retain and m.payload and f"/{agent_id}_" in m.topic]

    got = ah.wait_until(lambda: len(mine()) >= want, 10) and mine()
    assert got, [m.topic for m in c.since()]
    c.close()
    return {m.topic: json.loads(m.payload) for m in got}


def test_discovery_per_board_documented_keys_stable_ids_and_removal(fresh_sims, broker, agent_factory,
                                                                    client_factory):
    col = client_factory(broker)
    boards = [ah.start_online(agent_factory, broker, s, col, lines=LINES, ha=HA, agent_id=f"ha{i}")
              for i, s in enumerate(fresh_sims[:2])]
    first = {}
    for a in boards:
        conf = configs(broker, client_factory, a.id, len(LINES))
        assert set(conf) == {f"hafleet/{'binary_sensor' if n == 'btn' else 'switch'}/{a.id}_{n}/config"
                             for n in LINES}
        for topic, c in conf.items():
            comp = topic.split("/")[1]
            assert set(c) <= DOCUMENTED[comp], set(c) - DOCUMENTED[comp]
            assert REQUIRED[comp] <= set(c) and set(c["device"]) <= DEVICE_KEYS
            assert c["device"]["identifiers"] == [f"niche_{a.id}"]  # one device per board
            assert c["availability_topic"] == a.topic("status")
            assert (c["payload_available"], c["payload_not_available"]) == ("online", "offline")
            assert c["state_topic"].startswith(a.prefix + "/gpio/")
        first[a.id] = {t: c["unique_id"] for t, c in conf.items()}
    assert len({u for d in first.values() for u in d.values()}) == 2 * len(LINES)

    # restart board 0 without "lamp": same unique_ids, lamp's config removed, board 1 untouched
    a = boards[0]
    a.cleanup()
    col.wait_topic(a.topic("status"), "offline")
    m = col.mark()
    a2 = agent_factory(broker, fresh_sims[0], lines={k: v for k, v in LINES.items() if k != "lamp"}, ha=HA,
                       agent_id=a.id)
    col.wait_topic(a2.topic("status"), "online", since=m, timeout=20)
    gone = f"hafleet/switch/{a.id}_lamp/config"
    col.wait_topic(gone, b"", since=m)
    conf = configs(broker, client_factory, a.id, 2)
    assert gone not in conf and {t: c["unique_id"] for t, c in conf.items()} == {
        t: u for t, u in first[a.id].items() if t != gone}
    assert configs(broker, client_factory, boards[1].id, len(LINES)).keys() == first[boards[1].id].keys()
