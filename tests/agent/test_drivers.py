"""Sandboxed drivers: a program the agent runs through the port, with a GPIO
line's descriptor, its stdout published, its stdin fed from MQTT, restarted."""

from __future__ import annotations

import signal
import time

import pytest
from conftest import to_toml

LINES = {"led": {"pin": "SIM3"}, "dled": {"pin": "SIM9"}}
SCRIPT = ("echo ready; id -u; echo $NICHE_GPIO_DLED; printf 1 >&$NICHE_GPIO_DLED; "
          "ls /proc/self/fd | tr '\\n' ' '; echo; exec cat")


def start(agent_factory, broker, sim, client, driver: dict):
    a = agent_factory(broker, sim, start=False, lines=LINES)
    a.cfg["driver"] = {"echo": driver}
    a.path.write_text(to_toml(a.cfg))
    m = client.mark()
    a.start()
    client.wait_topic(a.topic("status"), "online", since=m, timeout=15)
    return a, m


@pytest.fixture
def client(broker, client_factory):
    return client_factory(broker)


def out_lines(client, a, since, n, timeout=15.0):
    return [m.payload.decode() for m in client.wait_count(a.topic("driver", "echo", "stdout"), n,
                                                          since=since, timeout=timeout)]


def test_driver_runs_sandboxed_with_its_line(broker, sim, agent_factory, client):
    a, m = start(agent_factory, broker, sim, client,
                 {"command": ["/bin/sh", "-c", SCRIPT], "gpio": ["dled"], "pids_max": 20})
    client.wait_topic(a.topic("driver", "echo", "state"), "running", since=m, timeout=15)
    ready, uid, linefd, fds = out_lines(client, a, m, 4)[:4]
    assert ready == "ready"
    assert int(uid) >= 0x10000000  # its own random high UID, not root
    assert sim.level(9) == 1  # it drove the line through the descriptor it was given
    # stdio, the line, and the directory ls itself is reading: nothing else
    have = set(fds.split())
    assert {"0", "1", "2", linefd} <= have and len(have) == 5, (linefd, fds)
    # the line is the driver's: the agent does not take commands for it
    m2 = client.mark()
    client.publish(a.topic("gpio", "dled", "set"), "OFF")
    err = client.wait_topic(a.topic("error"), since=m2)
    assert b"belongs to driver echo" in err.payload
    assert sim.level(9) == 1
    # stdin from MQTT reaches it in order
    for i in range(5):
        client.publish(a.topic("driver", "echo", "stdin"), f"line {i}\n")
    assert out_lines(client, a, m2, 5)[-5:] == [f"line {i}" for i in range(5)]
    # restart on request
    m3 = client.mark()
    client.publish(a.topic("driver", "echo", "restart"), "now")
    client.wait_topic(a.topic("driver", "echo", "state"), "restarting", since=m3, timeout=15)
    client.wait_topic(a.topic("driver", "echo", "state"), "running", since=m3, timeout=15)
    assert out_lines(client, a, m3, 1)[0] == "ready"
    m4 = client.mark()
    a.signal(signal.SIGTERM)
    assert a.wait(30) == 0
    client.wait_topic(a.topic("driver", "echo", "state"), "stopped", since=m4, timeout=5)


def test_failing_driver_is_restarted_with_back_off(broker, sim, agent_factory, client):
    a, m = start(agent_factory, broker, sim, client,
                 {"command": ["/bin/sh", "-c", "echo up; exit 3"], "restart": "on-failure"})
    t0 = time.monotonic()
    client.wait_count(a.topic("driver", "echo", "stdout"), 3, since=m, timeout=20)
    assert time.monotonic() - t0 >= 0.5 + 1  # back-off: 0.5 s, then 1 s
    states = [x.payload for x in client.since(m, a.topic("driver", "echo", "state"))]
    assert b"restarting" in states and b"running" in states


def test_never_restart_reports_failed(broker, sim, agent_factory, client):
    a, m = start(agent_factory, broker, sim, client,
                 {"command": ["/bin/sh", "-c", "exit 4"], "restart": "never"})
    client.wait_topic(a.topic("driver", "echo", "state"), "failed", since=m, timeout=15)
    assert a.proc is not None and a.proc.poll() is None  # the agent stays up
