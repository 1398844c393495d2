"""The agent's TOML configuration, checked key by key.

Every problem is reported with its key path ("gpio.led.direction: ..."),
all of them at once; ``load()`` raises ConfigError holding the list.
"""

from __future__ import annotations

import re
import socket
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..gpio.boards import Board
from ..gpio.errors import UnknownPin

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # becomes an MQTT topic level


class ConfigError(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883
    protocol: str = "3.1.1"  # or "5"
    username: str | None = None
    password: str | None = None
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    keepalive: int = 60
    prefix: str = ""
    client_id: str = ""


@dataclass
class LineConfig:
    name: str
    pin: str
    direction: str = "out"
    initial: bool = False
    active_low: bool = False
    edge: str | None = None
    debounce_ms: float | None = None
    bias: str | None = None
    backend: str | None = None


@dataclass
class DriverConfig:
    name: str
    command: list[str]
    gpio: list[str] = field(default_factory=list)
    restart: str = "on-failure"
    uid: int | None = None
    gid: int | None = None
    memory_max: str | None = None
    pids_max: int | None = None
    allow: list[str] | None = None
    namespaces: list[str] = field(default_factory=lambda: ["ipc", "mount", "net", "pid", "uts"])


@dataclass
class Config:
    agent_id: str
    board: Board
    board_name: str
    sysfs_root: str | None = None
    leds_root: str | None = None
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    exec_prefix: str | list[str] | None = None
    progname: str | None = None
    serial: str | None = None  # a port on a board's serial line (any pyserial URL)
    baudrate: int = 115200
    lines: dict[str, LineConfig] = field(default_factory=dict)
    drivers: dict[str, DriverConfig] = field(default_factory=dict)
    ha_discovery: bool = False
    ha_prefix: str = "homeassistant"
    path: str = ""


class _Checker:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def err(self, key: str, msg: str) -> None:
        self.errors.append(f"{key}: {msg}")

    def table(self, d: Any, key: str, known: dict[str, Any]) -> dict[str, Any]:
        """Check a table's keys and types; returns {key: value} of the good ones."""
        if not isinstance(d, dict):
            self.err(key, f"must be a table, not {type(d).__name__}")
            return {}
        out = {}
        for k, v in d.items():
            path = f"{key}.{k}" if key else k
            if k not in known:
                self.err(path, f"unknown key (known: {', '.join(sorted(known))})")
                continue
            want = known[k]
            if want is not None and not _isa(v, want):
                self.err(path, f"must be {_describe(want)}, not {type(v).__name__} {v!r}")
                continue
            out[k] = v
        return out

    def choice(self, key: str, v: Any, choices: tuple[str, ...]) -> str | None:
        if v is None:
            return None
        if v not in choices:
            self.err(key, f"must be one of {', '.join(repr(c) for c in choices)}, not {v!r}")
            return None
        return v

    def number(self, key: str, v: Any, lo: float, hi: float) -> Any:
        if v is None:
            return None
        if not lo <= v <= hi:
            self.err(key, f"must be between {lo:g} and {hi:g}, not {v!r}")
            return None
        return v


def _isa(v: Any, want: Any) -> bool:
    if want is int:
        return isinstance(v, int) and not isinstance(v, bool)
    if want is float:
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    if want == "strlist":
        return isinstance(v, list) and all(isinstance(x, str) for x in v)
    if isinstance(want, tuple):
        return any(_isa(v, w) for w in want)
    return isinstance(v, want)


def _describe(want: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             dict: "a table", "strlist": "a list of strings"}
    if isinstance(want, tuple):
        return " or ".join(names.get(w, str(w)) for w in want)
    return names.get(want, str(want))


ON_OFF = {"on": True, "off": False, "1": True, "0": False, "true": True, "false": False,
          "high": True, "low": False}


def parse(data: dict[str, Any], path: str = "") -> Config:
    c = _Checker()
    top = c.table(data, "", {"agent": dict, "mqtt": dict, "port": dict, "gpio": dict,
                             "driver": dict, "homeassistant": dict})
    a = c.table(top.get("agent", {}), "agent", {"id": str, "board": str, "sysfs_root": str,
                                                  "leds_root": str})
    agent_id = a.get("id") or socket.gethostname().split(".")[0]
    if not NAME.match(agent_id):
        c.err("agent.id", "must be letters, digits, '_' or '-' (it is part of MQTT topics), "
              f"not {agent_id!r}")
    board_name = a.get("board", "sim")
    board = Board(board_name)
    try:
        board_path = board_name
        if path and ("/" in board_name or board_name.endswith(".toml")):
            board_path = str((Path(path).parent / board_name).resolve())
        board = Board.load(board_path)
    except (UnknownPin, OSError, tomllib.TOMLDecodeError) as e:
        c.err("agent.board", str(e))

    m = c.table(top.get("mqtt", {}), "mqtt", {
        "host": str, "port": int, "protocol": str, "username": str, "password": str,
        "password_file": str, "tls": dict, "keepalive": int, "prefix": str, "client_id": str})
    mq = MqttConfig(host=m.get("host", "127.0.0.1"), port=m.get("port", 1883),
                    keepalive=m.get("keepalive", 60), username=m.get("username"),
                    password=m.get("password"), client_id=m.get("client_id", ""))
    c.number("mqtt.port", m.get("port"), 1, 65535)
    c.number("mqtt.keepalive", m.get("keepalive"), 5, 65535)
    proto = m.get("protocol", "3.1.1")
    mq.protocol = c.choice("mqtt.protocol", proto, ("3.1.1", "5")) or "3.1.1"
    if "password_file" in m:
        if "password" in m:
            c.err("mqtt.password_file", "give password or password_file, not both")
        try:
            mq.password = Path(m["password_file"]).read_text().strip()
        except OSError as e:
            c.err("mqtt.password_file", f"cannot read it: {e}")
    if mq.password is not None and mq.username is None:
        c.err("mqtt.password", "a password needs a username")
    if "tls" in m:
        t = c.table(m["tls"], "mqtt.tls", {"ca": str, "cert": str, "key": str})
        mq.tls_ca, mq.tls_cert, mq.tls_key = t.get("ca"), t.get("cert"), t.get("key")
        if bool(mq.tls_cert) != bool(mq.tls_key):
            c.err("mqtt.tls", "cert and key go together")
        for k in ("ca", "cert", "key"):
            if t.get(k) and not Path(t[k]).is_file():
                c.err(f"mqtt.tls.{k}", f"no such file: {t[k]}")
    mq.prefix = m.get("prefix", f"niche/{agent_id}").rstrip("/")
    if not mq.prefix or any(ch in mq.prefix for ch in "#+"):
        c.err("mqtt.prefix", f"must be a topic without wildcards, not {mq.prefix!r}")
    mq.client_id = mq.client_id or f"niche-{agent_id}"

    p = c.table(top.get("port", {}), "port", {"exec_prefix": (str, "strlist"), "progname": str,
                                              "serial": str, "baudrate": int})
    if "serial" in p and ("exec_prefix" in p or "progname" in p):
        c.err("port.serial", "a port on a serial line is already running: no exec_prefix or progname")

    lines: dict[str, LineConfig] = {}
    used: dict[str, str] = {}
    g = top.get("gpio", {})
    for name, d in (g.items() if isinstance(g, dict) else []):
        key = f"gpio.{name}"
        if not NAME.match(name):
            c.err(key, "a line name is letters, digits, '_' or '-' (it is part of MQTT topics)")
        t = c.table(d, key, {"pin": str, "direction": str, "initial": (str, bool, int),
                             "active_low": bool, "edge": str, "debounce_ms": float, "bias": str,
                             "backend": str})
        if "pin" not in t:
            if isinstance(d, dict) and "pin" not in d:
                c.err(f"{key}.pin", "missing (a board pin, a line name, gpiochipN:LINE or sysfs:N)")
            continue
        lc = LineConfig(name, t["pin"])
        lc.direction = c.choice(f"{key}.direction", t.get("direction", "out"), ("in", "out")) or "out"
        if "initial" in t:
            v = t["initial"]
            s = str(v).lower() if not isinstance(v, bool) else ("on" if v else "off")
            if s not in ON_OFF:
                c.err(f"{key}.initial", f"must be ON or OFF, not {v!r}")
            lc.initial = ON_OFF.get(s, False)
            if lc.direction == "in":
                c.err(f"{key}.initial", "is for outputs")
        lc.active_low = t.get("active_low", False)
        lc.edge = c.choice(f"{key}.edge", t.get("edge"), ("rising", "falling", "both"))
        lc.bias = c.choice(f"{key}.bias", t.get("bias"), ("pull-up", "pull-down", "disable", "as-is"))
        lc.backend = c.choice(f"{key}.backend", t.get("backend"), ("chardev", "sysfs", "led"))
        lc.debounce_ms = c.number(f"{key}.debounce_ms", t.get("debounce_ms"), 0, 1000)
        if lc.direction == "in":
            lc.edge = lc.edge or "both"
            if lc.debounce_ms is None:
                lc.debounce_ms = 10
        else:
            for k in ("edge", "bias", "debounce_ms"):
                if k in t:
                    c.err(f"{key}.{k}", "is for inputs (direction = \"in\")")
        try:
            ref = board.resolve(lc.pin)
            where = ref.sysfs if ref.sysfs is not None else (ref.line_name or ref.spec)
            where_key = f"{ref.chips}:{ref.offset}" if ref.offset is not None else str(where)
            if where_key in used:
                c.err(f"{key}.pin", f"{lc.pin} is already used by {used[where_key]}")
            used[where_key] = key
        except UnknownPin as e:
            c.err(f"{key}.pin", str(e))
        except TypeError as e:
            c.err(f"{key}.pin", str(e))
        lines[name] = lc

    drivers: dict[str, DriverConfig] = {}
    dr = top.get("driver", {})
    for name, d in (dr.items() if isinstance(dr, dict) else []):
        key = f"driver.{name}"
        if not NAME.match(name):
            c.err(key, "a driver name is letters, digits, '_' or '-'")
        t = c.table(d, key, {"command": "strlist", "gpio": "strlist", "restart": str, "uid": int,
                             "gid": int, "memory_max": (str, int), "pids_max": int,
                             "allow": "strlist", "namespaces": "strlist"})
        if not t.get("command"):
            c.err(f"{key}.command", "missing: the program and its arguments, as a list")
            continue
        dc = DriverConfig(name, t["command"])
        dc.gpio = t.get("gpio", [])
        for ln in dc.gpio:
            if ln not in lines:
                c.err(f"{key}.gpio", f"no [gpio.{ln}] to hand to the driver")
        dc.restart = c.choice(f"{key}.restart", t.get("restart", "on-failure"),
                              ("always", "on-failure", "never")) or "on-failure"
        dc.uid, dc.gid = t.get("uid"), t.get("gid")
        for k in ("uid", "gid"):
            c.number(f"{key}.{k}", t.get(k), 1, 2**31 - 2)
        dc.memory_max = str(t["memory_max"]) if "memory_max" in t else None
        dc.pids_max = c.number(f"{key}.pids_max", t.get("pids_max"), 1, 1_000_000)
        dc.allow = t.get("allow")
        ns = t.get("namespaces", dc.namespaces)
        for n in ns:
            c.choice(f"{key}.namespaces", n, ("ipc", "mount", "net", "pid", "uts", "cgroup"))
        dc.namespaces = ns
        drivers[name] = dc

    h = c.table(top.get("homeassistant", {}), "homeassistant", {"discovery": bool, "prefix": str})
    if c.errors:
        raise ConfigError(c.errors)
    return Config(agent_id=agent_id, board=board, board_name=board_name,
                  sysfs_root=a.get("sysfs_root"), leds_root=a.get("leds_root"), mqtt=mq,
                  exec_prefix=p.get("exec_prefix"), progname=p.get("progname"),
                  serial=p.get("serial"), baudrate=p.get("baudrate", 115200), lines=lines,
                  drivers=drivers, ha_discovery=h.get("discovery", False),
                  ha_prefix=h.get("prefix", "homeassistant").rstrip("/"), path=path)


def load(path: str) -> Config:
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except OSError as e:
        raise ConfigError([f"{path}: cannot read it: {e.strerror}"]) from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError([f"{path}: not valid TOML: {e}"]) from e
    except UnicodeDecodeError as e:
        raise ConfigError([f"{path}: not UTF-8 text (TOML is UTF-8): {e.reason} at byte {e.start}"]) from e
    return parse(data, path)
