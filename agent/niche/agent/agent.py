"""niche-agent: the board's GPIO lines over MQTT.

Threads: paho's network thread puts commands on a queue; the worker
thread applies them and runs the blink/pulse timers; the input thread
waits on the port for the line holders' events (edges through ``watch``,
and their deaths). Port calls are thread-safe. Faults (the broker, the
port, a line's process) are recovered from here, and reported on
``<prefix>/error``.
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .. import gpio
from ..port import Port, PortClosed, PortError
from . import commands as cmds
from . import ha, replies
from .config import Config, LineConfig
from .drivers import Driver
from .drivers import handle_command as handle_driver_command
from .ha import discovery

log = logging.getLogger("niche.agent")

PORT_RETRY_S = (0.1, 0.5, 1, 2, 5)  # back-off while the port cannot be restarted
# a persistent session: the broker keeps the subscriptions and queues the QoS 1
# commands sent while the agent is away (MQTT 5 needs an expiry; 3.1.1 keeps it)
SESSION_EXPIRY_S = 3600


def _no_delay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """State messages go out at once: without TCP_NODELAY a state published
    right after a PUBACK waits ~40 ms for the broker's delayed ACK (Nagle)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass  # not a TCP socket (e.g. websockets or TLS wrappers without it)
    quick_ack(sock)


def quick_ack(sock: Any) -> None:
    """ACK what the broker sent at once. A broker without TCP_NODELAY
    (Debian's stock mosquitto: set_tcp_nodelay false) holds its next small
    write, e.g. the next command, until its last one is ACKed, and Linux
    delays that ACK ~40 ms. TCP_QUICKACK is not sticky (the kernel goes back
    to delayed ACKs when traffic looks interactive), so it is re-armed after
    every message the broker sends: on_message and on_publish (a PUBACK)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
    except (OSError, AttributeError):
        pass  # not TCP, or not Linux


class Agent:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.prefix = cfg.mqtt.prefix
        self.port: Port | None = None
        # lines handed to a driver are the driver's: no holder, no topics here
        self.driver_lines = {ln: d.name for d in cfg.drivers.values() for ln in d.gpio}
        self.lines: dict[str, gpio.Line | None] = {n: None for n in cfg.lines if n not in self.driver_lines}
        # what each line is (outputs: last commanded; inputs: last published)
        self.state: dict[str, bool] = {n: lc.initial for n, lc in cfg.lines.items()}
        self.q: queue.Queue[tuple[Any, ...]] = queue.Queue()
        self.timers: list[tuple[float, int, str, int, Callable[[], None]]] = []
        self.gen: dict[str, int] = dict.fromkeys(cfg.lines, 0)  # cancels a line's running timers
        self._seq = itertools.count()
        self.stop = threading.Event()
        self.lock = threading.RLock()  # the port and the lines, while they are (re)made
        self.connected = threading.Event()
        self.reply: replies.Reply | None = None  # the command being handled asks for one
        self._pub_lock = threading.Lock()
        self.online_at: float | None = None
        self.started_at = time.monotonic()
        self.mqtt = self._make_client()
        self.drivers = {n: Driver(self, dc) for n, dc in cfg.drivers.items()}

    # --- MQTT -----------------------------------------------------------

    def _make_client(self) -> mqtt.Client:
        m = self.cfg.mqtt
        proto = mqtt.MQTTv5 if m.protocol == "5" else mqtt.MQTTv311
        # manual_ack: a command is PUBACKed only once it is on the queue (_on_message)
        c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=m.client_id, protocol=proto,
                        clean_session=None if m.protocol == "5" else False, manual_ack=True)
        if m.username is not None:
            c.username_pw_set(m.username, m.password)
        if m.tls_ca or m.tls_cert:
            c.tls_set(ca_certs=m.tls_ca, certfile=m.tls_cert, keyfile=m.tls_key,
                      cert_reqs=ssl.CERT_REQUIRED)
        c.will_set(f"{self.prefix}/status", "offline", qos=1, retain=True)
        c.reconnect_delay_set(min_delay=1, max_delay=30)
        c.on_socket_open = _no_delay
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = lambda client, *_: quick_ack(client.socket())
        return c

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            log.error("broker %s:%d refused the connection: %s", self.cfg.mqtt.host,
                      self.cfg.mqtt.port, reason)
            return
        log.info("connected to %s:%d", self.cfg.mqtt.host, self.cfg.mqtt.port)
        client.subscribe([(f"{self.prefix}/gpio/+/{verb}", 1) for verb in cmds.PARSERS]
                         + [(f"{self.prefix}/driver/+/{verb}", 1) for verb in ("stdin", "restart")])
        client.publish(f"{self.prefix}/status", "online", qos=1, retain=True)
        for name in self.lines:  # re-publish every retained state
            self._publish_state(name)
        for d in self.drivers.values():
            client.publish(f"{d.topic}/state", d.state, qos=1, retain=True)
        if self.cfg.ha_discovery:
            for topic, payload in discovery(self.cfg):
                client.publish(topic, payload, qos=1, retain=True)
            client.subscribe([(t, 1) for t in ha.subscriptions(self.cfg)])  # to remove stale ones
        if self.online_at is None:
            self.online_at = time.monotonic()
            log.info("online %.0f ms after start", (self.online_at - self.started_at) * 1000)
        self.connected.set()

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        self.connected.clear()
        if not self.stop.is_set():
            log.warning("lost the broker (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        quick_ack(client.socket())
        if self.cfg.ha_discovery and ha.is_config_topic(self.cfg, msg.topic):
            if ha.stale(self.cfg, msg.topic, bytes(msg.payload)):  # a line that left the config
                client.publish(msg.topic, b"", qos=1, retain=True)
            client.ack(msg.mid, msg.qos)
            return
        self.q.put(("cmd", msg.topic, bytes(msg.payload), replies.from_message(msg)))
        client.ack(msg.mid, msg.qos)  # acknowledged = accepted: the worker applies or reports it

    def _publish_state(self, name: str) -> None:
        # read and publish under one lock: a republish from _on_connect (paho's
        # thread) can never overtake a newer state from the worker
        with self._pub_lock:
            self.mqtt.publish(f"{self.prefix}/gpio/{name}", "ON" if self.state[name] else "OFF",
                              qos=1, retain=True)

    def report(self, topic: str, payload: bytes | str, error: str,
               code: int = replies.UNSPECIFIED) -> None:
        """A rejected command (also answered on its response topic), or a fault the agent recovered from."""
        if self.reply is not None and topic == self.reply.topic:
            replies.reject(self.mqtt, self.reply, code, error)
        if isinstance(payload, bytes):
            payload = cmds.payload_text(payload)
        log.warning("%s: %s", topic, error)
        self.mqtt.publish(f"{self.prefix}/error",
                          json.dumps({"topic": topic, "payload": payload, "error": error}), qos=1)

    # --- the port and the lines ---------------------------------------------

    def _request(self, lc: LineConfig, initial: bool) -> gpio.Line:
        assert self.port is not None
        return gpio.request(self.port, lc.pin, board=self.cfg.board, direction=lc.direction,  # type: ignore[arg-type]
                            initial=initial, active_low=lc.active_low, bias=lc.bias,  # type: ignore[arg-type]
                            edge=lc.edge if lc.direction == "in" else None,  # type: ignore[arg-type]
                            debounce_ms=lc.debounce_ms if lc.direction == "in" else None,
                            backend=lc.backend, sysfs_root=self.cfg.sysfs_root,
                            leds_root=self.cfg.leds_root)

    def _acquire(self, name: str) -> None:
        lc = self.cfg.lines[name]
        line = self._request(lc, self.state[name])
        self.lines[name] = line
        if lc.direction == "in":
            self.state[name] = line.get()

    def start_port(self) -> None:
        """(Re)start the port and (re)acquire every line in its last state."""
        with self.lock:
            if self.port is not None:
                try:
                    self.port.close(timeout=2)
                except PortError:
                    pass
            if self.cfg.serial:
                self.port = Port(serial=self.cfg.serial, baudrate=self.cfg.baudrate)
            else:
                self.port = Port(progname=self.cfg.progname, exec_prefix=self.cfg.exec_prefix)
            for name in self.lines:
                self._acquire(name)
            log.info("port %d holds %d lines", self.port.pid, len(self.lines))

    def recover_port(self, why: str) -> None:
        with self.lock:
            if self.stop.is_set():
                return
            for delay in itertools.chain(PORT_RETRY_S, itertools.repeat(PORT_RETRY_S[-1])):
                try:
                    self.start_port()
                    break
                except (PortError, OSError, gpio.GpioError) as e:
                    log.error("cannot restart the port: %s; again in %g s", e, delay)
                    if self.stop.wait(delay):
                        return
            self.report(f"{self.prefix}/status", "", f"{why}: started a new port, re-acquired "
                        f"{len(self.lines)} lines and restored their states")
            for name in self.lines:
                self._publish_state(name)

    def recover_line(self, name: str, why: str) -> None:
        with self.lock:
            old = self.lines.get(name)
            if old is not None:
                old.release()
            try:
                self._acquire(name)
            except PortClosed:
                self.recover_port(f"the port died while re-acquiring {name}")
                return
            self.report(f"{self.prefix}/gpio/{name}", "", f"{why}: re-acquired the line and restored "
                        f"it to {'ON' if self.state[name] else 'OFF'}")
            self._publish_state(name)

    def _on_line(self, name: str, fn: Callable[[gpio.Line], Any]) -> Any:
        """Run fn on a line; on a dead holder or port, recover and retry once."""
        for attempt in (0, 1):
            line = self.lines.get(name)
            try:
                if line is None:
                    raise gpio.LineReleased(f"{name} is not held")
                return fn(line)
            except gpio.LineReleased as e:
                if attempt:
                    raise
                self.recover_line(name, f"the process holding {name} is gone ({e})")
            except PortClosed as e:
                if attempt:
                    raise
                self.recover_port(f"the port died ({e})")
        return None

    # --- commands and timers ----------------------------------------------

    def _cancel(self, name: str) -> None:
        self.gen[name] += 1  # timers of older generations do nothing

    def _at(self, when: float, name: str, fn: Callable[[], None]) -> None:
        heapq.heappush(self.timers, (when, next(self._seq), name, self.gen[name], fn))

    def _set(self, name: str, value: bool) -> None:
        self._on_line(name, lambda line: line.set(value))
        self.state[name] = value
        self._publish_state(name)  # after every change of an output

    def handle(self, topic: str, payload: bytes) -> None:
        parts = topic[len(self.prefix) + 1 :].split("/") if topic.startswith(self.prefix + "/") else []
        if parts[:1] == ["driver"]:
            handle_driver_command(self, self.drivers, topic, payload)
            return
        if len(parts) != 3 or parts[0] != "gpio":
            self.report(topic, payload, "not a command topic", replies.TOPIC_INVALID)
            return
        _, name, verb = parts
        lc = self.cfg.lines.get(name)
        if name in self.driver_lines:
            self.report(topic, payload, f"{name} belongs to driver {self.driver_lines[name]}",
                        replies.NOT_AUTHORIZED)
            return
        if lc is None:
            self.report(topic, payload, f"no line {name!r} (lines: {', '.join(self.lines)})",
                        replies.TOPIC_INVALID)
            return
        try:
            c = cmds.parse(verb, payload)
        except (cmds.CommandError, ValueError) as e:  # no payload may stop the agent
            self.report(topic, payload, str(e), replies.PAYLOAD_INVALID)
            return
        if lc.direction != "out":
            self.report(topic, payload, f"{name} is an input: it cannot be set",
                        replies.IMPLEMENTATION_SPECIFIC)
            return
        try:
            self.apply(name, c)
        except (gpio.GpioError, PortError, OSError) as e:
            self.report(topic, payload, f"could not apply it: {e}")

    def apply(self, name: str, c: cmds.Command) -> None:
        self._cancel(name)
        line = self.lines.get(name)
        kernel_blink = isinstance(line, gpio.LedLine) and line.blinking  # type: ignore[attr-defined]
        if kernel_blink and not isinstance(c, cmds.Blink):
            self._on_line(name, lambda ln: ln.stop_blink())  # type: ignore[attr-defined]
        if isinstance(c, cmds.Set):
            self._set(name, (not self.state[name]) if c.value is None else c.value)
        elif isinstance(c, cmds.Pulse):
            self._set(name, True)
            self._at(time.monotonic() + c.ms / 1000, name, lambda: self._set(name, False))
        elif isinstance(c, cmds.Blink):
            self._blink(name, c)

    def _blink(self, name: str, c: cmds.Blink) -> None:
        line = self.lines.get(name)
        if isinstance(line, gpio.LedLine):  # the kernel's timer trigger blinks it
            self._on_line(name, lambda ln: ln.blink(c.on_ms, c.off_ms))  # type: ignore[attr-defined]
            self.state[name] = True
            self._publish_state(name)
            if c.count is not None:
                end = time.monotonic() + c.count * (c.on_ms + c.off_ms) / 1000
                self._at(end, name, lambda: self._set(name, False))
            return
        t0 = time.monotonic()
        period = (c.on_ms + c.off_ms) / 1000

        def step(k: int) -> None:  # edge k: even = on, odd = off; times from t0, no drift
            on = k % 2 == 0
            self._set(name, on)
            if c.count is not None and k + 1 >= 2 * c.count:
                return
            nxt = t0 + (k + 1) // 2 * period + (c.on_ms / 1000 if on else 0)
            self._at(nxt, name, lambda: step(k + 1))

        step(0)

    def _run_due(self) -> None:
        now = time.monotonic()
        while self.timers and self.timers[0][0] <= now:
            _, _, name, gen, fn = heapq.heappop(self.timers)
            if gen == self.gen[name]:
                try:
                    fn()
                except (gpio.GpioError, PortError, OSError) as e:
                    self.report(f"{self.prefix}/gpio/{name}", "", f"timer failed: {e}")

    def worker(self) -> None:
        while not self.stop.is_set():
            wait = max(0.0, self.timers[0][0] - time.monotonic()) if self.timers else 0.5
            try:
                item = self.q.get(timeout=wait)
            except queue.Empty:
                item = None
            self._run_due()
            if item is not None and item[0] == "cmd":
                with self.lock:
                    self.reply = item[3]
                    self.handle(item[1], item[2])
                    if self.reply is not None and not self.reply.done:  # it took effect
                        replies.accept(self.mqtt, self.reply, replies.result(self, item[1]))
                    self.reply = None
            elif item is not None and item[0] == "call":
                with self.lock:
                    item[1]()

    # --- inputs and deaths ----------------------------------------------

    def inputs(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                port = self.port
                holders = {ln.process.chain: (n, ln) for n, ln in self.lines.items() if ln is not None}
            if port is None:
                time.sleep(0.1)
                continue
            try:
                got = port.next_event(list(holders), timeout=0.5)
            except PortClosed as e:
                if not self.stop.is_set():
                    # unless the worker already replaced this port (a second restart would
                    # kill the healthy new one)
                    self.q.put(("call", lambda e=e, p=port: self.port is p and self.recover_port(
                        f"the port died ({e})")))
                    time.sleep(0.2)
                continue
            if got is None:
                continue
            chain, ev = got
            held = holders.get(tuple(chain))
            if held is None:
                continue
            name, line = held  # the line whose process this is (the snapshot's, not today's)
            if ev[0] in ("exit_status", "termsig"):
                if not self.stop.is_set():
                    # unless the worker already re-acquired it (its holder is another process)
                    self.q.put(("call", lambda n=name, ev=ev, old=line: self.lines.get(n) is old
                                and self.recover_line(n, f"the process holding {n} exited {ev}")))
                continue
            if ev[0] == "fd" and ev[1] == line.fd and self.lines.get(name) is line:
                for edge in line._parse_edges(ev[2]):  # the worker owns state and timers
                    self.q.put(("call", lambda n=name, e=edge: self._edge(n, e)))

    def _edge(self, name: str, edge: gpio.Edge) -> None:
        lc = self.cfg.lines[name]
        line = self.lines.get(name)
        if isinstance(line, gpio.SysfsLine) and lc.debounce_ms:
            # sysfs has no debounce: publish the level once it has settled
            self._cancel(name)
            self._at(time.monotonic() + lc.debounce_ms / 1000, name, lambda: self._settled(name))
            return
        if self.state[name] != edge.value:
            self.state[name] = edge.value
            self._publish_state(name)

    def _settled(self, name: str) -> None:
        value = self._on_line(name, lambda line: line.get())
        if value is not None and value != self.state[name]:
            self.state[name] = value
            self._publish_state(name)

    # --- lifecycle -------------------------------------------------------

    def run(self) -> int:
        self.start_port()
        m = self.cfg.mqtt
        if m.protocol == "5":
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = SESSION_EXPIRY_S
            self.mqtt.connect_async(m.host, m.port, keepalive=m.keepalive, clean_start=False,
                                    properties=props)
        else:  # clean_session=False is set on the client
            self.mqtt.connect_async(m.host, m.port, keepalive=m.keepalive)
        self.mqtt.loop_start()
        threads = [threading.Thread(target=self.inputs, name="inputs", daemon=True)]
        for t in threads:
            t.start()
        for d in self.drivers.values():
            d.run_in_thread()
        try:
            self.worker()
        finally:
            self.shutdown()
            for t in threads:
                t.join(timeout=2)
        return 0

    def shutdown(self) -> None:
        """Outputs to their initial state, lines released, offline published."""
        self.stop.set()
        for d in self.drivers.values():
            d.stop()
        with self.lock:
            self.timers.clear()
            for name, lc in self.cfg.lines.items():
                line = self.lines.get(name)
                if line is None:
                    continue
                try:
                    if lc.direction == "out":
                        if isinstance(line, gpio.LedLine) and line.blinking:
                            line.stop_blink()
                        line.set(lc.initial)
                        self.state[name] = lc.initial
                        self._publish_state(name)
                    line.release()
                except (gpio.GpioError, PortError, OSError) as e:
                    log.warning("releasing %s: %s", name, e)
            info = self.mqtt.publish(f"{self.prefix}/status", "offline", qos=1, retain=True)
            if self.connected.is_set():
                try:
                    info.wait_for_publish(timeout=3)
                except (RuntimeError, ValueError):
                    pass
            self.mqtt.disconnect()
            self.mqtt.loop_stop()
            if self.port is not None:
                self.port.close(timeout=5)
        log.info("stopped")
