"""Acknowledged commands (MQTT 5 request/response).

A command that carries a Response Topic gets exactly one reply there, with
the request's Correlation Data: ``{"ok": true, ...}`` once the command took
effect on the line (or the driver), or ``{"ok": false, "reason_code": N,
"error": ...}`` when it was rejected. Reason codes are MQTT 5's (see
docs/mqtt.md). Rejections are still published on ``<prefix>/error`` too,
so MQTT 3.1.1 clients (which cannot carry a response topic) see them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

UNSPECIFIED = 0x80  # the command was valid but applying it failed
IMPLEMENTATION_SPECIFIC = 0x83  # valid, but not for this line (e.g. setting an input)
NOT_AUTHORIZED = 0x87  # the line belongs to a sandboxed driver
TOPIC_INVALID = 0x90  # no such line, driver or command
PAYLOAD_INVALID = 0x99  # the payload is not a command


@dataclass
class Reply:
    """Where a command's reply goes; ``done`` once it has been sent."""

    topic: str  # the command's topic
    response_topic: str
    correlation: bytes | None
    done: bool = field(default=False)


def from_message(msg: mqtt.MQTTMessage) -> Reply | None:
    """The reply a message asks for, or None (MQTT 3.1.1, or no Response Topic)."""
    props = getattr(msg, "properties", None)
    rt = getattr(props, "ResponseTopic", None) if props is not None else None
    if not rt:
        return None
    return Reply(msg.topic, rt, getattr(props, "CorrelationData", None))


def send(client: mqtt.Client, reply: Reply, body: dict[str, Any]) -> None:
    if reply.done:
        return  # exactly one reply per command
    reply.done = True
    props = Properties(PacketTypes.PUBLISH)
    if reply.correlation is not None:
        props.CorrelationData = reply.correlation
    props.ContentType = "application/json"
    client.publish(reply.response_topic, json.dumps(body), qos=1, properties=props)


def reject(client: mqtt.Client, reply: Reply, code: int, error: str) -> None:
    send(client, reply, {"ok": False, "reason_code": code, "error": error, "topic": reply.topic})


def accept(client: mqtt.Client, reply: Reply, body: dict[str, Any]) -> None:
    send(client, reply, {"ok": True, "topic": reply.topic, **body})


def result(agent: Any, topic: str) -> dict[str, Any]:
    """What a command that took effect reports: the line's or the driver's state now."""
    kind, name, verb = (topic[len(agent.prefix) + 1 :].split("/") + ["", "", ""])[:3]
    if kind == "driver":
        return {"driver": name, "command": verb, "state": agent.drivers[name].state}
    return {"line": name, "command": verb, "state": "ON" if agent.state[name] else "OFF"}
