"""Home Assistant MQTT discovery: one retained config per line, one device per agent."""

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
        }
        if component == "switch":
            conf["command_topic"] = f"{prefix}/gpio/{name}/set"
            conf["state_on"], conf["state_off"] = "ON", "OFF"
        out.append((f"{cfg.ha_prefix}/{component}/{cfg.agent_id}_{name}/config",
                    json.dumps(conf, sort_keys=True)))
    return out
