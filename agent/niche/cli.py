"""``niche``: the fleet's command line, a paho MQTT 5 client.

Commands are sent as MQTT 5 requests (Response Topic + Correlation Data) and
wait for the agent's one reply (agent/niche/agent/replies.py). The broker,
TLS and auth come from the [mqtt] table of an agent TOML (--config), checked
by the agent's own config parser; --host/--port override it.

Exit status: 0 done, 1 the agent rejected the command, 2 bad usage or
configuration, 3 no answer in time or no broker.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import queue
import re
import ssl
import sys
import threading
import time
import tomllib
import uuid
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .agent.config import ConfigError, MqttConfig, parse

REPLY_ROOT = "niche/_reply"  # under niche/# so replies cross a `niche/# both` bridge
# the main thread waits in slices: a Ctrl-C the kernel hands to paho's thread
# only becomes a KeyboardInterrupt when the main thread next runs Python code
WAIT_SLICE_S = 0.2


def wait_event(ev: threading.Event, timeout: float) -> bool:
    """ev.wait(timeout), interruptible by Ctrl-C within a slice."""
    deadline = time.monotonic() + timeout
    while not ev.wait(min(WAIT_SLICE_S, max(0.0, deadline - time.monotonic()))):
        if time.monotonic() >= deadline:
            return False
    return True


class CliError(Exception):
    def __init__(self, msg: str, status: int = 1) -> None:
        super().__init__(msg)
        self.status = status


@dataclass
class Msg:
    topic: str
    payload: bytes
    retain: bool
    props: Any


def load_mqtt(path: str | None) -> tuple[MqttConfig, str]:
    """The [mqtt] table of an agent TOML, checked by the agent's parser, and the
    board prefix template ({id} stands for a board id)."""
    top: dict[str, Any] = {}
    if path:
        try:
            with open(path, "rb") as f:
                top = tomllib.load(f)
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise CliError(f"{path}: {e}", 2) from None
    agent = dict(top.get("agent", {}) if isinstance(top.get("agent"), dict) else {})
    agent.setdefault("id", "cli")
    try:  # only [agent] and [mqtt]: a config for the CLI needs no lines
        cfg = parse({"agent": agent, "mqtt": top.get("mqtt", {})}, path or "")
    except ConfigError as e:
        raise CliError("\n".join(f"{path}: {err}" for err in e.errors), 2) from None
    aid = cfg.agent_id
    template = cfg.mqtt.prefix.replace(aid, "{id}") if aid in cfg.mqtt.prefix else "niche/{id}"
    return cfg.mqtt, template


class Session:
    """One MQTT 5 connection: subscribe, collect, request/response."""

    def __init__(self, m: MqttConfig, spinner: Spinner) -> None:
        self.q: queue.Queue[Msg] = queue.Queue()
        self.spinner = spinner
        self.client_id = f"niche-cli-{uuid.uuid4().hex[:12]}"
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5)
        if m.username is not None:
            self.c.username_pw_set(m.username, m.password)
        if m.tls_ca or m.tls_cert:
            self.c.tls_set(ca_certs=m.tls_ca, certfile=m.tls_cert, keyfile=m.tls_key,
                           cert_reqs=ssl.CERT_REQUIRED)
        self.ready = threading.Event()
        self.refused: str | None = None
        self.acks: dict[int, threading.Event] = {}
        self.c.on_connect = self._on_connect
        self.c.on_message = lambda c, u, msg: self.q.put(
            Msg(msg.topic, bytes(msg.payload), bool(msg.retain), getattr(msg, "properties", None)))
        self.c.on_subscribe = lambda c, u, mid, rc, p: self.acks.setdefault(mid, threading.Event()).set()
        try:
            self.c.connect(m.host, m.port, keepalive=m.keepalive)
        except OSError as e:
            raise CliError(f"cannot reach the broker {m.host}:{m.port}: {e}", 3) from None
        self.c.loop_start()
        self.spinner.wait(self.ready, 10, f"connecting to {m.host}:{m.port}")
        if self.refused or not self.ready.is_set():
            self.close()
            raise CliError(f"broker {m.host}:{m.port}: {self.refused or 'no CONNACK'}", 3)

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.refused = str(reason)
        self.ready.set()

    def subscribe(self, *topics: str) -> None:
        rc, mid = self.c.subscribe([(t, 1) for t in topics])
        ev = self.acks.setdefault(mid, threading.Event())
        if rc != mqtt.MQTT_ERR_SUCCESS or not wait_event(ev, 10):
            raise CliError(f"could not subscribe to {', '.join(topics)}", 3)

    def next(self, timeout: float) -> Msg:
        """The next message within timeout s (else queue.Empty), Ctrl-C within a slice."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.q.get(timeout=min(WAIT_SLICE_S, max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                if time.monotonic() >= deadline:
                    raise

    def collect(self, settle: float = 0.3, limit: float = 3.0) -> list[Msg]:
        """The messages (the retained ones first) until none came for `settle` s."""
        out: list[Msg] = []
        end = time.monotonic() + limit
        while (left := end - time.monotonic()) > 0:
            try:
                out.append(self.next(min(settle, left)))
            except queue.Empty:
                break
        return out

    def request(self, topic: str, payload: bytes, timeout: float) -> dict[str, Any]:
        """Publish a command as an MQTT 5 request; the agent's reply."""
        reply_topic = f"{REPLY_ROOT}/{self.client_id}"
        self.subscribe(reply_topic)
        corr = uuid.uuid4().bytes
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic, props.CorrelationData = reply_topic, corr
        self.c.publish(topic, payload, qos=1, properties=props)
        deadline = time.monotonic() + timeout
        with self.spinner.running(f"waiting for {topic.rsplit('/', 3)[0]}"):
            while (left := deadline - time.monotonic()) > 0:
                try:
                    m = self.next(left)
                except queue.Empty:
                    break
                if m.topic == reply_topic and getattr(m.props, "CorrelationData", None) == corr:
                    try:
                        return json.loads(m.payload)
                    except ValueError:
                        raise CliError(f"a reply that is not JSON: {m.payload[:200]!r}") from None
        raise CliError(f"no reply to {topic} within {timeout:g} s (is the board online, "
                       "on MQTT 5, and allowed to answer?)", 3)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


class Spinner:
    """A wait indicator on stderr, only when stderr is a terminal."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def wait(self, ev: threading.Event, timeout: float, what: str) -> None:
        with self.running(what):
            wait_event(ev, timeout)

    def running(self, what: str) -> _Spin:
        return _Spin(self.enabled, what)


class _Spin:
    def __init__(self, enabled: bool, what: str) -> None:
        self.enabled, self.what = enabled, what
        self.done = threading.Event()

    def __enter__(self) -> _Spin:
        if self.enabled:
            threading.Thread(target=self._run, daemon=True).start()
        return self

    def _run(self) -> None:
        for ch in itertools.cycle("|/-\\"):
            if self.done.wait(0.1):
                break
            sys.stderr.write(f"\r{ch} {self.what}")
            sys.stderr.flush()
        sys.stderr.write("\r\x1b[K")
        sys.stderr.flush()

    def __exit__(self, *exc: object) -> None:
        self.done.set()


# --- commands ----------------------------------------------------------------


def _prefix(ns: argparse.Namespace, board: str) -> str:
    return ns.template.replace("{id}", board)


def _split(template: str, topic: str) -> tuple[str, list[str]] | None:
    """(board id, levels after the prefix) of a topic, or None."""
    head, _, tail = template.partition("{id}")
    m = re.fullmatch(re.escape(head) + r"([^/]+)" + re.escape(tail) + r"/(.+)", topic)
    return (m.group(1), m.group(2).split("/")) if m else None


def cmd_boards(s: Session, ns: argparse.Namespace) -> dict[str, Any]:
    wild = ns.template.replace("{id}", "+")
    s.subscribe(f"{wild}/status", f"{wild}/gpio/+")
    boards: dict[str, dict[str, Any]] = {}
    for m in s.collect():
        sp = _split(ns.template, m.topic)
        if sp is None:
            continue
        b = boards.setdefault(sp[0], {"status": None, "lines": {}})
        if sp[1] == ["status"]:
            b["status"] = m.payload.decode(errors="replace")
        elif len(sp[1]) == 2 and sp[1][0] == "gpio":
            b["lines"][sp[1][1]] = m.payload.decode(errors="replace")
    online = {k: v["lines"] for k, v in sorted(boards.items()) if v["status"] == "online" or ns.all}
    if not ns.json:
        for k, lines in online.items():
            st = "" if boards[k]["status"] == "online" else f" ({boards[k]['status']})"
            print(f"{k}{st}: " + (", ".join(f"{n}={v}" for n, v in sorted(lines.items())) or "no lines"))
    return {"boards": online}


def cmd_get(s: Session, ns: argparse.Namespace) -> dict[str, Any]:
    topic = f"{_prefix(ns, ns.board)}/gpio/{ns.line}"
    s.subscribe(topic)
    with s.spinner.running(f"reading {topic}"):
        try:
            m = s.next(ns.timeout)
        except queue.Empty:
            raise CliError(f"no state on {topic} within {ns.timeout:g} s (no such board or line?)",
                           3) from None
    out = {"board": ns.board, "line": ns.line, "state": m.payload.decode(errors="replace")}
    if not ns.json:
        print(out["state"])
    return out


def _payload(ns: argparse.Namespace) -> tuple[str, bytes]:
    if ns.cmd == "set":
        return "set", ns.value.encode()
    if ns.cmd == "toggle":
        return "set", b"TOGGLE"
    if ns.cmd == "pulse":
        return "pulse", json.dumps({"ms": ns.ms}).encode()
    body = {"on_ms": ns.on_ms, "off_ms": ns.off_ms, "count": ns.count}
    return "blink", json.dumps(body).encode()


def cmd_command(s: Session, ns: argparse.Namespace) -> dict[str, Any]:
    if ns.cmd == "driver":
        topic = f"{_prefix(ns, ns.board)}/driver/{ns.name}/{ns.action}"
        if ns.action == "stdin":
            payload = ns.data.encode() if ns.data is not None else sys.stdin.buffer.read()
        else:
            payload = b""
    else:
        verb, payload = _payload(ns)
        topic = f"{_prefix(ns, ns.board)}/gpio/{ns.line}/{verb}"
    r = s.request(topic, payload, ns.timeout)
    if not r.get("ok"):
        code = r.get("reason_code")
        raise CliError(f"{ns.board}: {r.get('error', 'rejected')}"
                       + (f" (reason code 0x{code:02x})" if isinstance(code, int) else ""))
    if not ns.json:
        what = r.get("line") or r.get("driver")
        print(f"{ns.board} {what}: {r.get('state')}")
    return r


def cmd_watch(s: Session, ns: argparse.Namespace) -> None:
    board = ns.board or "+"
    pfx = ns.template.replace("{id}", board)
    topics = [f"{pfx}/gpio/{ns.line or '+'}"]
    if not ns.line:
        topics.append(f"{pfx}/status")
    s.subscribe(*topics)
    seen = 0
    end = time.monotonic() + ns.duration if ns.duration else None
    while ns.count is None or seen < ns.count:
        left = None if end is None else end - time.monotonic()
        if left is not None and left <= 0:
            break
        try:
            m = s.next(left if left is not None else 1.0)
        except queue.Empty:
            continue
        sp = _split(ns.template, m.topic)
        if sp is None:
            continue
        value = m.payload.decode(errors="replace")
        ev = {"time": time.time(), "board": sp[0], "retained": m.retain, "value": value}
        if sp[1][:1] == ["gpio"]:
            ev["line"] = sp[1][1]
        if ns.json:
            print(json.dumps(ev), flush=True)
        else:
            stamp = time.strftime("%H:%M:%S", time.localtime(ev["time"]))
            print(f"{stamp} {sp[0]} {ev.get('line', 'status')} {value}"
                  + (" (retained)" if m.retain else ""), flush=True)
        seen += 1


DEFAULTS: dict[str, Any] = {"config": None, "host": None, "port": None, "prefix": None, "json": False,
                            "timeout": 10.0}


def build_parser() -> argparse.ArgumentParser:
    # the common options go before or after the command: SUPPRESS keeps a subparser
    # from resetting one given before it to its default
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("--config", "-c", help="an agent TOML: its [mqtt] table (broker, TLS, auth, prefix)")
    common.add_argument("--host", help="the broker (overrides the config)")
    common.add_argument("--port", type=int, help="the broker's port (overrides the config)")
    common.add_argument("--prefix", help="board prefix, {id} for the board id (default niche/{id})")
    common.add_argument("--json", action="store_true", help="JSON output, for scripts")
    common.add_argument("--timeout", type=float, help="seconds to wait for an answer (default 10)")
    ap = argparse.ArgumentParser(prog="niche", description="niche boards over MQTT", parents=[common])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("boards", parents=[common], help="the online boards and their lines")
    p.add_argument("--all", action="store_true", help="also the boards that are offline")
    p = sub.add_parser("get", parents=[common], help="a line's state")
    p.add_argument("board")
    p.add_argument("line")
    for name, what in (("set", "set an output"), ("toggle", "toggle an output"),
                       ("blink", "blink an output"), ("pulse", "pulse an output")):
        p = sub.add_parser(name, parents=[common], help=what)
        p.add_argument("board")
        p.add_argument("line")
        if name == "set":
            p.add_argument("value", help="ON, OFF, TOGGLE, 1, 0, true, false")
        elif name == "pulse":
            p.add_argument("ms", type=int, help="milliseconds ON")
        elif name == "blink":
            p.add_argument("--on-ms", type=int, default=500)
            p.add_argument("--off-ms", type=int, default=500)
            p.add_argument("--count", type=int, default=None, help="default: until the next set")
    p = sub.add_parser("watch", parents=[common], help="live states and edges")
    p.add_argument("board", nargs="?")
    p.add_argument("line", nargs="?")
    p.add_argument("--count", type=int, help="exit after this many messages")
    p.add_argument("--duration", type=float, help="exit after this many seconds")
    p = sub.add_parser("driver", parents=[common], help="a sandboxed driver: stdin or restart")
    p.add_argument("board")
    p.add_argument("name")
    p.add_argument("action", choices=("stdin", "restart"))
    p.add_argument("data", nargs="?", help="for stdin: the bytes (default: read standard input)")
    return ap


def main(argv: list[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    for k, v in DEFAULTS.items():  # not set_defaults: the parents' actions are shared
        if not hasattr(ns, k):
            setattr(ns, k, v)
    try:
        m, ns.template = load_mqtt(ns.config)
        if ns.prefix:
            ns.template = ns.prefix.rstrip("/") if "{id}" in ns.prefix else ns.prefix.rstrip("/") + "/{id}"
        m.host = ns.host or m.host
        m.port = ns.port or m.port
        s = Session(m, Spinner(os.isatty(sys.stderr.fileno())))
        try:
            if ns.cmd == "watch":
                cmd_watch(s, ns)
                return 0
            fn = {"boards": cmd_boards, "get": cmd_get}.get(ns.cmd, cmd_command)
            out = fn(s, ns)
        finally:
            s.close()
    except CliError as e:
        if ns.json:
            print(json.dumps({"ok": False, "error": str(e)}))
        print(f"niche: {e}", file=sys.stderr)
        return e.status
    except KeyboardInterrupt:
        return 130
    if ns.json:
        print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
