"""Fixtures for the fleet tests (issue 12): many agents through real brokers.

Reuses the agent tests' helpers (tests/agent/conftest.py: Broker, AgentProc,
Collector) and the simulator; adds:

- ``sims``: module-scoped, five simulators, one FUSE mount (one process) each;
- ``bridged``: two mosquittos with the shipped queue limit, the second joined
  to the first by the shipped boards/mosquitto/bridge.conf
  (``topic niche/# both 1``, a mosquitto ``connection`` bridge);
- ``cli(broker, *args)``: runs ``python -m niche.cli`` (the ``niche`` script)
  against a broker and returns the CompletedProcess.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

_AGENT_CONFTEST = Path(__file__).resolve().parents[1] / "agent" / "conftest.py"
if "agenthelpers" not in sys.modules:
    _spec = importlib.util.spec_from_file_location("agenthelpers", _AGENT_CONFTEST)
    assert _spec and _spec.loader
    _mod = importlib.util.module_from_spec(_spec)
    sys.modules["agenthelpers"] = _mod
    _spec.loader.exec_module(_mod)

import agenthelpers as ah  # noqa: E402
from agenthelpers import agent_factory, broker, client_factory  # noqa: E402,F401

sys.modules.setdefault("fleethelpers", sys.modules[__name__])

NSIMS = 5
PYTHON = str(ah.VENV / "python")


@pytest.fixture(scope="module")
def sims(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Any]]:
    reason = ah.fuse_unusable()
    if reason:
        pytest.skip(reason)
    from niche.gpio.sim import Simulator

    made = []
    try:
        for i in range(NSIMS):
            s = Simulator(tmp_path_factory.mktemp(f"fleet-sim{i}") / "gpio", timeout=30)
            made.append(s.start())
        yield [ah.SimView(s.root, s) for s in made]
    finally:
        for s in made:
            with contextlib.suppress(Exception):
                s.stop()


@pytest.fixture
def fresh_sims(sims: list[Any]) -> Iterator[list[Any]]:
    for s in sims:
        s.check_alive()
        s.reset()
    yield sims
    for s in sims:
        s.reset()


MOSQUITTO = ah.ROOT / "boards" / "mosquitto"


def fleet_broker(d: Path) -> ah.Broker:
    """A test mosquitto with the shipped fleet broker's queue limit."""
    b = ah.Broker(d)
    limit = [ln for ln in (MOSQUITTO / "mosquitto.conf").read_text().splitlines()
             if ln.startswith("max_queued_messages ")]
    b.conf.write_text(b.conf.read_text() + "\n".join(limit) + "\n")
    return b


def bridge_to(d: Path, main: ah.Broker) -> ah.Broker:
    """A second mosquitto joined to main by the shipped boards/mosquitto/bridge.conf
    (its address pointed at main; main takes anyone, so no remote login)."""
    b = ah.Broker(d)
    bridge = [f"address {main.host}:{main.port}" if ln.startswith("address ") else ln
              for ln in (MOSQUITTO / "bridge.conf").read_text().splitlines()
              if ln and not ln.startswith(("#", "remote_username", "remote_password"))]
    b.conf.write_text(b.conf.read_text() + "\n".join(bridge) + "\n")
    return b


@pytest.fixture(scope="module")
def bridged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ah.Broker, ah.Broker]]:
    reason = ah.tool_missing("mosquitto")
    if reason:
        pytest.skip(reason)
    a = fleet_broker(tmp_path_factory.mktemp("broker-a")).start()
    b = bridge_to(tmp_path_factory.mktemp("broker-b"), a).start()
    try:
        yield a, b
    finally:
        b.stop()
        a.stop()


def reply_client(b: ah.Broker, on_message: Callable[..., None], name: str) -> tuple[Any, str]:
    """A connected MQTT 5 client subscribed (QoS 1) to its own response topic
    ``niche/_reply/<name>-<random>``, which it returns with the client."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    rt = f"niche/_reply/{name}-{uuid.uuid4().hex[:8]}"
    c = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.max_queued_messages_set(0)
    c.on_socket_open = ah._no_delay
    c.on_message = on_message
    sub = threading.Event()
    c.on_subscribe = lambda *a: sub.set()
    c.on_connect = lambda cl, *a: cl.subscribe(rt, 1)
    c.connect(b.host, b.port)
    c.loop_start()
    assert sub.wait(10), f"no SUBACK for {rt}"
    return c, rt


def run_cli(b: ah.Broker, *args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "niche.cli", "--host", b.host, "--port", str(b.port),
                           *args], capture_output=True, text=True, timeout=timeout)


def cli_json(b: ah.Broker, *args: str) -> tuple[int, Any]:
    r = run_cli(b, "--json", *args)
    out = r.stdout.strip().splitlines()
    return r.returncode, json.loads(out[-1]) if out else None


@pytest.fixture
def cli() -> Callable[..., subprocess.CompletedProcess]:
    return run_cli
