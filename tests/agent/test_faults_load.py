"""niche-agent faults under load (issue 10): ~1,000 QoS 1 commands/s over six
lines while the broker, the port or a line holder is SIGKILLed at random moments.

"Acknowledged" here: the publisher got its PUBACK from the broker (paho's
on_publish). The chain that makes such a command reach the line:
- the broker keeps it in the agent's persistent session (the agent connects
  with clean_session=False / MQTT 5 clean_start=False plus an expiry), also
  while the agent reconnects, and on disk (this broker: persistence, saved
  after every change, no per-client queue limit), so a broker killed and
  restarted on the same port still delivers it;
- the agent PUBACKs it only once it is on its command queue (paho
  manual_ack), and the worker applies every queued command, restarting the
  port or re-acquiring a line first when they died.

Each line gets alternating commands (ON, OFF, ON, ...), so a lost or doubled
command shows: without a broker fault (no MQTT redelivery) the agent's state
messages of a line, repeats collapsed, are exactly that alternation. After
every round, once an end marker command shows (so every earlier command has
been worked off), each line's level (MOUNT/sim/N) and retained state equal the
last acknowledged command. The agent stays up and reports each fault on `error`.

Recovery is seen where it happens: a new line holder or a new port in the
agent's process tree. The fault's report on `error` is checked after the end
marker's state: the agent publishes in order on one connection, so under load
a report can wait behind many states (a broker that saves its database after
every message manages ~250 messages/s on a loaded 2-core machine), but it
cannot be overtaken by the marker's. The publisher keeps at most WINDOW
commands unacknowledged, so the load is RATE or what the broker sustains,
whichever is less, and no backlog grows without bound.
Figures (commands/s, recovery times) are printed; run with -s to see them.
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from agenthelpers import Broker, Collector, start_online, wait_until  # type: ignore[import-not-found]

pytestmark = pytest.mark.timeout(240)

RATE = 1000  # commands/s, over all lines
# unacknowledged commands at most (paho's default in-flight window, the agent's
# too): a broker shares itself per message in flight, so a publisher far ahead
# of the agent would starve the agent's state messages
WINDOW = 20
PINS = {f"l{i}": 16 + i for i in range(6)}
# the end marker: set ON once after the load. The worker applies commands in
# order and paho publishes states in order, so once its level and state show,
# every earlier command has been applied and its state sent (without it, a
# check could pass mid-backlog, when the lines only happen to match)
MARK, MARK_PIN = "mark", 22
LOAD_LINES: dict[str, dict[str, Any]] = {n: {"pin": f"SIM{p}"} for n, p in {**PINS, MARK: MARK_PIN}.items()}
FAULTS = 3  # per test
SEED = int(os.environ.get("NICHE_FAULT_SEED", time.time_ns() % 10**6))


@pytest.fixture(scope="module")
def pbroker(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A mosquitto that survives SIGKILL with its sessions and queued messages."""
    d: Path = tmp_path_factory.mktemp("pbroker")
    b = Broker(d)
    b.conf.write_text(b.conf.read_text().replace("persistence false\n", (
        f"persistence true\npersistence_location {d}/\n"
        "autosave_on_changes true\nautosave_interval 1\n"  # saved after every change
        "max_queued_messages 0\n")))  # no per-client limit: a reconnecting agent misses nothing
    b.start()
    yield b
    b.stop()


class Publisher:
    """Paced QoS 1 `set` commands; each line alternates ON/OFF from its initial OFF."""

    def __init__(self, broker: Broker, prefix: str, rng: random.Random) -> None:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        self.prefix, self.rng = prefix, rng
        self.sent: dict[str, list[bool]] = {n: [] for n in PINS}
        self.acked: set[int] = set()
        self.mids: list[tuple[int, str, int]] = []  # mid, line, index into sent[line]
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"load-{os.getpid()}-{rng.random()}",
                             clean_session=False)
        self.c.max_inflight_messages_set(WINDOW)
        self.c.reconnect_delay_set(0.05, 0.5)
        self.c.on_publish = self._on_publish
        self.c.connect(broker.host, broker.port, keepalive=10)
        self.c.loop_start()
        self.t0 = self.t1 = 0.0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self.acked.add(mid)  # no lock: paho holds its own here, and publish() takes it

    def _run(self) -> None:
        self.t0 = pace0 = time.monotonic()
        k = 0
        while not self.stop.is_set():
            due = pace0 + k / RATE
            now = time.monotonic()
            if due > now:  # pacing, not settling
                time.sleep(due - now)
            while len(self.mids) - len(self.acked) >= WINDOW and not self.stop.is_set():
                time.sleep(0.001)  # back-pressure: the broker is behind
                pace0 += 0.001  # the pace goes on from here, no burst to catch up
            name = self.rng.choice(list(PINS))
            value = len(self.sent[name]) % 2 == 0
            info = self.c.publish(f"{self.prefix}/gpio/{name}/set", "ON" if value else "OFF", qos=1)
            with self.lock:
                self.sent[name].append(value)
                self.mids.append((info.mid, name, len(self.sent[name]) - 1))
            k += 1
        self.t1 = time.monotonic()

    def start(self) -> None:
        self.thread.start()

    def finish(self, timeout: float = 60) -> None:
        self.stop.set()
        self.thread.join(10)
        ok = wait_until(lambda: len(self.acked) >= len(self.mids), timeout, 0.05)
        assert ok, f"{len(self.mids) - len(self.acked)} of {len(self.mids)} commands never acknowledged"
        info = self.c.publish(f"{self.prefix}/gpio/{MARK}/set", "ON", qos=1)
        assert wait_until(lambda: info.mid in self.acked, timeout, 0.05), "the end marker: no PUBACK"

    def expected(self) -> dict[str, bool]:
        """The last acknowledged command per line (every command is, after finish)."""
        acked = set(self.acked)
        with self.lock:
            last = {n: False for n in PINS}
            for mid, name, i in self.mids:
                if mid in acked:
                    last[name] = self.sent[name][i]
            return last

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def retained_states(client_factory: Any, broker: Broker, prefix: str,
                    timeout: float = 10) -> dict[str, bytes]:
    c: Collector = client_factory(broker, topics=(f"{prefix}/gpio/+",))
    want = {f"{prefix}/gpio/{n}" for n in PINS}
    wait_until(lambda: want <= {m.topic for m in c.since(0) if m.retain}, timeout)
    got = {m.topic.rsplit("/", 1)[1]: m.payload for m in c.since(0) if m.retain and m.topic in want}
    c.close()
    return got


def collapsed(payloads: list[bytes]) -> list[bytes]:
    """Repeats dropped: a line's states as a sequence of changes."""
    return [p for i, p in enumerate(payloads) if i == 0 or payloads[i - 1] != p]


def replaced(agent: Any, done: Any, what: str, timeout: float = 30) -> None:
    """Wait until the agent has replaced what was killed (seen in its process tree)."""
    def look() -> bool:
        try:
            return bool(done())
        except AssertionError:  # port_pid/holder_pid: not there (yet)
            return False
    assert wait_until(look, timeout, 0.01), (f"killed {what}: not replaced within {timeout:g} s; "
                                             f"tree now {agent.tree()}; agent log:\n{agent.log()[-3000:]}")


def run_round(kind: str, pbroker: Broker, sim: Any, agent_factory: Any, client_factory: Any) -> None:
    rng = random.Random(f"{SEED}-{kind}")
    print(f"\n[{kind}] seed {SEED} (NICHE_FAULT_SEED= to repeat)")
    agent_id = f"load{os.getpid()}{kind}"
    prefix = f"niche/{agent_id}"
    client: Collector = client_factory(pbroker, topics=(f"{prefix}/gpio/+", f"{prefix}/error",
                                                        f"{prefix}/status"))
    agent = start_online(agent_factory, pbroker, sim, client, lines=LOAD_LINES, agent_id=agent_id)
    pid = agent.pid
    start = client.mark()
    pub = Publisher(pbroker, prefix, rng)
    pub.start()
    recoveries: list[float] = []
    reports: list[tuple[int, str, str]] = []  # (mark, topic, word in the error) per fault
    try:
        for _ in range(FAULTS):
            t_wait = time.monotonic() + rng.uniform(0.3, 1.5)  # a random moment of the stream
            wait_until(lambda t=t_wait: time.monotonic() >= t, 5, 0.005)
            m = client.mark()
            t = time.monotonic()
            if kind == "broker":
                pbroker.kill()
                pbroker.start()
                client.wait_topic(agent.topic("status"), "online", since=m, timeout=60)
                # the first state after the outage: the agent applies commands again
                client.wait_for(lambda x: x.topic.startswith(f"{prefix}/gpio/"), since=client.mark(),
                                timeout=30)
                assert agent.wait_log("lost the broker", 1, timeout=5)
            elif kind == "port":
                victim = agent.port_pid()
                os.kill(victim, signal.SIGKILL)
                replaced(agent, lambda v=victim: agent.port_pid(timeout=0.2) != v, f"the port {victim}")
                reports.append((m, agent.topic("status"), "port"))
            else:
                name = rng.choice(list(PINS))
                victim = agent.holder_pid(PINS[name])
                os.kill(victim, signal.SIGKILL)
                replaced(agent, lambda n=PINS[name], v=victim: agent.holder_pid(n, timeout=0.2) != v,
                         f"the holder of {name}: {victim}")
                reports.append((m, agent.topic("gpio", name), ""))
            recoveries.append(time.monotonic() - t)
            assert agent.running() and agent.pid == pid, agent.log()[-3000:]
        # stop at a random moment after the last fault, maybe while it still recovers
        t_wait = time.monotonic() + rng.uniform(0, 0.5)
        wait_until(lambda: time.monotonic() >= t_wait, 5, 0.005)
        pub.finish()
        want = pub.expected()
        n_sent = len(pub.mids)
        rate = n_sent / (pub.t1 - pub.t0)
        t_end = time.monotonic()
        marked = wait_until(lambda: sim.level(MARK_PIN) == 1 and any(
            m.payload == b"ON" for m in client.since(start, agent.topic("gpio", MARK))), 60, 0.02)
        assert marked, ("the end marker was never applied", agent.log()[-3000:])
        settle = time.monotonic() - t_end
        for mk, topic, word in reports:  # published before the marker's state: here by now
            errors = [e for x in client.since(mk, agent.topic("error")) if (e := json.loads(x.payload))]
            assert any(e["topic"] == topic and word in e["error"] for e in errors), \
                (f"no report on {topic} after its fault", errors[:5])
        levels = {n: sim.level(p) for n, p in PINS.items()}
        assert levels == {n: int(v) for n, v in want.items()}, (levels, want)
        last = {n: (client.since(start, agent.topic("gpio", n)) or [None])[-1] for n in PINS}
        assert all(m is not None and m.payload == (b"ON" if want[n] else b"OFF") for n, m in last.items()), \
            {n: m and m.payload for n, m in last.items()}
        assert retained_states(client_factory, pbroker, prefix) == \
            {n: b"ON" if v else b"OFF" for n, v in want.items()}
        rejected = [e for m in client.since(start, agent.topic("error"))
                    if (e := json.loads(m.payload))["topic"].endswith("/set")]
        assert not rejected, rejected[:5]
        if kind != "broker":  # one MQTT connection throughout: exactly one state per command
            for n in PINS:
                got = collapsed([b"OFF"] + [m.payload for m in client.since(start, agent.topic("gpio", n))])
                exp = collapsed([b"OFF"] + [b"ON" if v else b"OFF" for v in pub.sent[n]])
                assert got == exp, (n, len(got), len(exp))
        assert agent.running() and agent.pid == pid
        print(f"[{kind}] {n_sent} commands acked, {n_sent} applied, 0 lost, {rate:.0f} commands/s "
              f"sustained over {pub.t1 - pub.t0:.1f} s with {FAULTS} faults; recovery "
              + ", ".join(f"{r * 1000:.0f} ms" for r in recoveries)
              + f"; all lines right {settle * 1000:.0f} ms after the last command")
    finally:
        pub.stop.set()
        pub.close()


# (the broker round was xfail "stale retained state": the check ran while the
# agent still worked off the commands the broker queued during its outage,
# when the lines only happened to match; the end marker waits for the last.
# The holder round was xfail "a killed holder can go unnoticed under CPU load":
# the agent had recovered, its report waited behind thousands of state messages
# (a publisher with 200 in flight starved the agent's 20 at a broker saving
# after every message); the publisher's window and the checks above fix that.)
@pytest.mark.parametrize("kind", ["broker", "port", "holder"])
def test_faults_under_load(kind, pbroker, sim, agent_factory, client_factory) -> None:
    run_round(kind, pbroker, sim, agent_factory, client_factory)
