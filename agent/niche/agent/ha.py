"""Home Assistant MQTT discovery: one retained config per line, one device per agent.

Keys are those HA's MQTT switch and binary_sensor integrations document.
``unique_id`` is ``niche_<id>_<line>``, so it survives restarts. A line that
left the configuration is removed from HA: the agent subscribes to the
discovery topics and answers a retained config of its own device that it no
longer publishes with an empty retained payload (HA's way to delete it).
"""

from __future__ import annotations

import json

from .. import __version__
from .config import Config


def discovery(cfg: Config) -> list[tuple[str, str]]:
    """(topic, JSON payload) of every line's discovery config."""
    prefix = cfg.mqtt.prefix
    device = {
        "identifiers": [f"niche_{cfg.agent_id}"],
        "name": cfg.agent_id,
        "manufacturer": "niche",
        "model": cfg.board.model or cfg.board_name,
        "sw_version": __version__,
    }
    out = []
    driver_lines = {ln for d in cfg.drivers.values() for ln in d.gpio}
    for name, lc in cfg.lines.items():
        if name in driver_lines:
            continue  # a driver's line is not the agent's to show
        component = "switch" if lc.direction == "out" else "binary_sensor"
        conf = {
            "name": name,
            "unique_id": f"niche_{cfg.agent_id}_{name}",
            "object_id": f"{cfg.agent_id}_{name}",
            "state_topic": f"{prefix}/gpio/{name}",
            "payload_on": "ON",
            "payload_off": "OFF",
            "availability_topic": f"{prefix}/status",
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": device,
            "qos": 1,
        }
        if component == "switch":
            conf["command_topic"] = f"{prefix}/gpio/{name}/set"
            conf["state_on"], conf["state_off"] = "ON", "OFF"
        out.append((f"{cfg.ha_prefix}/{component}/{cfg.agent_id}_{name}/config",
                    json.dumps(conf, sort_keys=True)))
    return out


COMPONENTS = ("switch", "binary_sensor")


def subscriptions(cfg: Config) -> list[str]:
    return [f"{cfg.ha_prefix}/{c}/+/config" for c in COMPONENTS]


def is_config_topic(cfg: Config, topic: str) -> bool:
    parts = topic.split("/")
    return (topic.startswith(cfg.ha_prefix + "/") and len(parts) == cfg.ha_prefix.count("/") + 4
            and parts[-1] == "config" and parts[-3] in COMPONENTS)


def stale(cfg: Config, topic: str, payload: bytes) -> bool:
    """A retained config of this agent's device that it no longer publishes."""
    if not payload or topic in {t for t, _ in discovery(cfg)}:
        return False
    try:
        ids = json.loads(payload).get("device", {}).get("identifiers", [])
    except (ValueError, AttributeError):
        return False  # not ours to judge
    return f"niche_{cfg.agent_id}" in ids
