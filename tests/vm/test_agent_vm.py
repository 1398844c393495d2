"""niche-agent driving a board's port over its serial line ([port] serial):
MQTT commands reach the guest kernel's gpio-sim line through the chardev backend."""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import niche
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

pytestmark = pytest.mark.vm
AGENT = Path(sys.executable).parent / "niche-agent"
T = 15


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sim_value(serial: str, simdir: str, k: int) -> int:
    with niche.Port(serial=serial, start_timeout=T) as p:
        fd = p.open([], f"{simdir}/sim_gpio{k}/value", ["O_RDONLY"], timeout=T)
        try:
            return int(p.read([], fd, 8, timeout=T))
        finally:
            p.close([], fd, timeout=T)


def test_agent_sets_a_gpio_sim_line_through_the_serial_port(vm_guest, tmp_path):
    g = vm_guest.guest
    m = re.search(r"NICHE-SIM dev=(\S+) chip=(\S+)", g.console_text())
    if m is None:
        pytest.skip(f"{g.arch}: no gpio-sim in this guest")
    if not shutil.which("mosquitto"):
        pytest.skip("mosquitto is not installed (make test installs it)")
    simdir = f"/sys/devices/platform/{m.group(1)}/{m.group(2)}"
    bport = free_port()
    (tmp_path / "m.conf").write_text(f"listener {bport} 127.0.0.1\nallow_anonymous true\n"
                                     "set_tcp_nodelay true\n")
    broker = subprocess.Popen(["mosquitto", "-c", str(tmp_path / "m.conf")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (tmp_path / "agent.toml").write_text(f'''
[agent]
id = "vm"
board = "sim"
[mqtt]
port = {bport}
[port]
serial = "{vm_guest}"
[gpio.led]
pin = "niche-sim:2"
backend = "chardev"
''')
    seen: list[tuple[str, bytes]] = []
    c = mqtt.Client(CallbackAPIVersion.VERSION2)
    c.on_message = lambda cl, u, msg: seen.append((msg.topic, msg.payload))
    agent = None
    try:
        time.sleep(0.2)
        c.connect("127.0.0.1", bport)
        c.subscribe("niche/vm/#")
        c.loop_start()
        agent = subprocess.Popen([str(AGENT), "-c", str(tmp_path / "agent.toml")],
                                 stderr=subprocess.PIPE, text=True)

        def wait(topic: str, payload: bytes) -> None:
            deadline = time.monotonic() + 30
            while (topic, payload) not in seen:
                assert agent.poll() is None, agent.stderr.read()
                assert time.monotonic() < deadline, seen
                time.sleep(0.05)

        wait("niche/vm/status", b"online")
        wait("niche/vm/gpio/led", b"OFF")
        seen.clear()
        c.publish("niche/vm/gpio/led/set", "ON", qos=1)
        wait("niche/vm/gpio/led", b"ON")
        agent.send_signal(signal.SIGTERM)  # outputs back to initial, lines released
        assert agent.wait(30) == 0
        wait("niche/vm/status", b"offline")
    finally:
        if agent is not None and agent.poll() is None:
            agent.kill()
            agent.wait()
        c.loop_stop()
        broker.terminate()
        broker.wait()
    # the guest's kernel line is free again and back at its initial level
    assert sim_value(vm_guest, simdir, 2) == 0
