#!/usr/bin/env python3
"""`make bench`, niche-agent rows (issue 6, "Figures"): called by bench/run.py.

    build/venv/bin/python bench/agent_bench.py [--budget S]

prints the rows as JSON (bench/run.py merges them into its table). One
measurement group in a subprocess with a time limit: a Debian mosquitto on
a free loopback port (small config in a tmp dir), niche-gpio-sim mounted in
a tmp dir, and ``niche-agent -c agent.toml`` on the ``sim`` board with 16
output lines (SIM0-SIM15). A paho 2.x client subscribed to the agent's
topics before the agent starts measures:

- time from the agent's process start to the retained ``online``;
- command-to-line latency: ``set`` ON/OFF alternately on one line, until the
  level shows in ``MOUNT/sim/N`` (the file polled in a tight loop), and, in a
  second pass without polling, until the state message comes back;
- sustained commands/s: ``set`` at QoS 1 round-robin over the 16 lines as
  fast as the agent takes them (at most WINDOW unanswered), then every
  command must have produced its state message, and every line its last
  commanded level, with nothing on ``error``;
- VmRSS of the agent, of its port and the sum of the 16 line holders.

See bench/README.md ("Agent rows").
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
AGENT = ROOT / "build" / "venv" / "bin" / "niche-agent"
NLINES = 16
LAT_N = 500  # commands per latency pass (fewer when the time budget runs out)
WINDOW = 400  # sustained run: commands published but not yet answered, at most
RSS_LIMIT_KB = 40 * 1024
ONLINE_LIMIT_MS = 1000
P99_LIMIT_MS = 10.0
RATE_TARGET = 5000  # issue 11 (was 2,000, issue 6)
WORKER_TIMEOUT = 120.0

sys.path.insert(0, str(ROOT / "agent"))


def now() -> float:
    return time.monotonic()


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


def problem() -> str | None:
    if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        return "mosquitto is not installed (apt-get install mosquitto)"
    try:
        import mfusepy  # noqa: F401
        import paho.mqtt.client  # noqa: F401
    except (ImportError, OSError) as e:
        return f"{e} (pip install paho-mqtt mfusepy)"
    if not os.path.exists("/dev/fuse") or not shutil.which("fusermount3"):
        return "no /dev/fuse or fusermount3 (apt-get install fuse3)"
    if os.geteuid() != 0:
        return "the agent rows run the simulator and the port as root"
    if not AGENT.exists():
        return f"{AGENT.relative_to(ROOT)} missing (make bootstrap installs it)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_kb(pid: int, field: str, fname: str = "status") -> int:
    with open(f"/proc/{pid}/{fname}") as f:
        for ln in f:
            if ln.startswith(field + ":"):
                return int(ln.split()[1])
    raise KeyError(field)


def stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name: [state, ppid, ...]; None when gone."""
    try:
        st = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return st[st.rindex(")") + 2 :].split()


def children(pid: int) -> list[int]:
    return [int(d) for d in os.listdir("/proc")
            if d.isdigit() and (f := stat_fields(int(d))) is not None and int(f[1]) == pid]


def descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        for c in children(todo.pop()):
            out.append(c)
            todo.append(c)
    return out


def cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes have used so far."""
    fields = [f for f in map(stat_fields, pids) if f is not None]
    return sum(int(f[11]) + int(f[12]) for f in fields) / os.sysconf("SC_CLK_TCK")


def comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


class Collector:
    """A paho 2.x client subscribed to topics at QoS 1, recording (topic,
    payload, retain, arrival time) of every message."""

    def __init__(self, port: int, topics: list[str]) -> None:
        import paho.mqtt.client as mqtt
        from niche.agent.agent import _no_delay, quick_ack
        from paho.mqtt.enums import CallbackAPIVersion

        self.msgs: list[tuple[str, bytes, bool, float]] = []
        self.per_topic: dict[str, int] = {}  # messages so far, counted as they arrive
        self.cond = threading.Condition()
        subscribed = threading.Event()
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{os.getpid()}")
        self.c.max_inflight_messages_set(WINDOW)
        self.c.on_connect = lambda c, u, f, r, p: c.subscribe([(t, 1) for t in topics])
        self.c.on_subscribe = lambda *a: subscribed.set()
        self.c.on_message = self._on_message
        # The measuring client must not add Nagle stalls of its own (it sends
        # a PUBACK, then the next command): TCP_NODELAY on its socket. And as
        # the agent does, it ACKs at once what the broker sends (TCP_QUICKACK,
        # re-armed per message): a stock broker (Nagle on) otherwise holds the
        # state message behind its PUBACK of the command until the delayed ACK.
        self.c.on_socket_open = _no_delay
        self.c.on_publish = lambda c, *_: quick_ack(c.socket())
        self.quick_ack = quick_ack
        self.c.connect("127.0.0.1", port, keepalive=30)
        self.c.loop_start()
        if not subscribed.wait(10):
            raise RuntimeError("the bench client could not subscribe")

    def _on_message(self, client: Any, userdata: Any, m: Any) -> None:
        t = now()
        self.quick_ack(client.socket())
        with self.cond:
            self.msgs.append((m.topic, bytes(m.payload), bool(m.retain), t))
            self.per_topic[m.topic] = self.per_topic.get(m.topic, 0) + 1
            self.cond.notify_all()

    def mark(self) -> int:
        with self.cond:
            return len(self.msgs)

    def wait(self, pred: Any, since: int, timeout: float) -> tuple | None:
        deadline = now() + timeout
        i = since
        with self.cond:
            while True:
                while i < len(self.msgs):
                    if pred(self.msgs[i]):
                        return self.msgs[i]
                    i += 1
                left = deadline - now()
                if left <= 0:
                    return None
                self.cond.wait(left)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def w_agent(budget: float, nodelay: bool = False) -> dict:
    from niche.gpio.sim import Simulator

    why = problem()
    if why:
        return {"skipped": why}
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="niche-bench-agent-") as tmp:
        d = Path(tmp)
        bport = free_port()
        (d / "mosquitto.conf").write_text(
            f"listener {bport} 127.0.0.1\nallow_anonymous true\npersistence false\nuser root\n"
            "log_dest stderr\nlog_type error\nlog_type warning\n"
            + ("set_tcp_nodelay true\n" if nodelay else ""))
        mosq = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        broker = subprocess.Popen([mosq, "-c", str(d / "mosquitto.conf")], stdout=subprocess.DEVNULL,
                                  stderr=open(d / "mosquitto.log", "wb"), start_new_session=True)  # noqa: SIM115
        agent = None
        sim = Simulator(d / "gpio")
        col = None
        try:
            deadline = now() + 10
            while True:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", bport)) == 0:
                        break
                if broker.poll() is not None or now() > deadline:
                    raise RuntimeError(f"mosquitto did not start: {(d / 'mosquitto.log').read_text()}")
                time.sleep(0.01)
            sim.start()
            aid = f"bench{os.getpid()}"
            prefix = f"niche/{aid}"
            lines = "".join(f'[gpio.l{n}]\npin = "SIM{n}"\n' for n in range(NLINES))
            (d / "agent.toml").write_text(
                f'[agent]\nid = "{aid}"\nboard = "sim"\nsysfs_root = "{sim.root}"\n'
                f'[mqtt]\nhost = "127.0.0.1"\nport = {bport}\n{lines}')
            # not the commands' own topics: only what the agent publishes
            col = Collector(bport, [f"{prefix}/status", f"{prefix}/gpio/+", f"{prefix}/error"])

            # -- time to online: process start -> the retained "online"
            errf = open(d / "agent.stderr", "wb")  # noqa: SIM115
            m0 = col.mark()
            t0 = now()
            agent = subprocess.Popen([str(AGENT), "-c", str(d / "agent.toml")], stdout=subprocess.DEVNULL,
                                     stderr=errf, start_new_session=True)
            errf.close()
            got = col.wait(lambda m: m[0] == f"{prefix}/status" and m[1] == b"online", m0, 20)
            if got is None:
                raise RuntimeError(f"no online within 20 s: {(d / 'agent.stderr').read_text()[-2000:]}")
            out["online_ms"] = (got[3] - t0) * 1e3
            for n in range(NLINES):
                if col.wait(lambda m, n=n: m[0] == f"{prefix}/gpio/l{n}", m0, 10) is None:
                    raise RuntimeError(f"no state of l{n} after online")
            logged = re.search(r"online (\d+) ms after start", (d / "agent.stderr").read_text())
            out["online_logged_ms"] = int(logged.group(1)) if logged else None

            def rss() -> dict:
                port_pid = next((c for c in children(agent.pid) if comm(c) == "niche-port"), None)
                holders = descendants(port_pid) if port_pid else []
                return {
                    "agent": proc_kb(agent.pid, "VmRSS"), "agent_hwm": proc_kb(agent.pid, "VmHWM"),
                    "port": proc_kb(port_pid, "VmRSS") if port_pid else None,
                    "holders": len(holders),
                    "holders_rss": sum(proc_kb(h, "VmRSS") for h in holders),
                    "holders_pss": sum(proc_kb(h, "Pss", "smaps_rollup") for h in holders),
                }

            time.sleep(0.2)
            out["rss_start"] = rss()

            # -- latency: one line, ON/OFF alternately, one command at a time
            pub = col.c
            level_path = str(sim.root / "sim" / "0")
            fd = os.open(level_path, os.O_RDONLY)
            try:
                for mode in ("level", "state"):
                    lat: list[float] = []
                    miss = 0
                    end = now() + max(2.5 * budget, 3.0)
                    for i in range(LAT_N):
                        if now() > end:
                            break
                        on = i % 2 == 0
                        want_file = b"1" if on else b"0"
                        want = b"ON" if on else b"OFF"
                        mk = col.mark()
                        t1 = now()
                        pub.publish(f"{prefix}/gpio/l0/set", want, qos=1)
                        if mode == "level":
                            limit = t1 + 2
                            while os.pread(fd, 8, 0)[:1] != want_file:
                                if now() > limit:
                                    break
                            t2 = now()
                            ok = t2 <= limit
                        st = col.wait(lambda m, w=want: m[0] == f"{prefix}/gpio/l0" and m[1] == w, mk, 2)
                        if mode == "state":
                            ok = st is not None
                            t2 = st[3] if st else now()
                        if ok:
                            lat.append(t2 - t1)
                        else:
                            miss += 1
                    out[f"lat_{mode}"] = {"p50_ms": pct(lat, 0.5) * 1e3, "p99_ms": pct(lat, 0.99) * 1e3,
                                          "max_ms": max(lat) * 1e3, "n": len(lat), "missed": miss}
            finally:
                os.close(fd)

            # -- sustained: QoS 1, round-robin over the lines, at most WINDOW unanswered
            state_topics = {f"{prefix}/gpio/l{n}": n for n in range(NLINES)}
            sent = [0] * NLINES
            mk = col.mark()
            answered = 0

            def seen() -> int:  # O(lines), not O(messages): the publisher calls it often
                with col.cond:
                    return sum(col.per_topic.get(t, 0) for t in state_topics)

            seen0 = seen()

            def count_answers() -> int:
                return seen() - seen0

            who = {"agent": [agent.pid], "port and holders": descendants(agent.pid),
                   "simulator": [sim.proc.pid] + descendants(sim.proc.pid),
                   "broker": [broker.pid], "bench client": [os.getpid()]}
            cpu0 = {k: cpu_s(v) for k, v in who.items()}

            t1 = now()
            i = 0
            pub_until = t1 + max(2 * budget, 2.0)
            while now() < pub_until:
                if i - answered >= WINDOW:
                    answered = count_answers()
                    if i - answered >= WINDOW:
                        with col.cond:
                            col.cond.wait(0.01)
                        continue
                n = i % NLINES
                pub.publish(f"{prefix}/gpio/l{n}/set", b"ON" if sent[n] % 2 == 0 else b"OFF", qos=1)
                sent[n] += 1
                i += 1
            t_pub = now() - t1
            total = i
            deadline = now() + 20
            while count_answers() < total and now() < deadline:
                time.sleep(0.01)
            t_cpu = now() - t1
            cpu = {k: (cpu_s(v) - cpu0[k]) / t_cpu for k, v in who.items()}
            with col.cond:
                msgs = col.msgs[mk:]
            states = [m for m in msgs if m[0] in state_topics]
            errors = [m for m in msgs if m[0] == f"{prefix}/error"]
            t_last = states[-1][3] if states else now()
            per_line = [0] * NLINES
            last: list[bytes | None] = [None] * NLINES
            for m in states:
                per_line[state_topics[m[0]]] += 1
                last[state_topics[m[0]]] = m[1]
            want_last = [(b"ON" if (s - 1) % 2 == 0 else b"OFF") if s else None for s in sent]
            levels = [(sim.root / "sim" / str(n)).read_text().strip() for n in range(NLINES)]
            out["sustained"] = {
                "commands": total, "states": len(states), "publish_s": t_pub,
                "value": total / (t_last - t1) if states else 0.0,
                "per_line_ok": per_line == sent,
                "last_ok": last == want_last,
                "levels_ok": levels == [("1" if w == b"ON" else "0") for w in want_last],
                "errors": len(errors), "error_sample": [m[1].decode(errors="replace") for m in errors[:2]],
                "cpu": cpu,
            }
            out["rss_after"] = rss()

            # -- SIGTERM: offline, exit 0
            mk = col.mark()
            agent.send_signal(signal.SIGTERM)
            try:
                out["exit"] = agent.wait(15)
            except subprocess.TimeoutExpired:
                out["exit"] = "did not exit within 15 s of SIGTERM"
            out["offline"] = col.wait(lambda m: m[0] == f"{prefix}/status" and m[1] == b"offline",
                                      mk, 3) is not None
            out["stderr_tail"] = (d / "agent.stderr").read_text()[-600:] if out["exit"] != 0 else ""
        finally:
            if agent is not None and agent.poll() is None:
                os.killpg(agent.pid, signal.SIGKILL)
                agent.wait()
            if col is not None:
                col.close()
            sim.stop()
            broker.terminate()
            try:
                broker.wait(10)
            except subprocess.TimeoutExpired:
                broker.kill()
                broker.wait()
    return out


# ----------------------------------------------------------------------------
# rows
# ----------------------------------------------------------------------------

NAMES = {
    "A1": ("agent: time from process start to retained `online` (16 lines)", "agent_online", "ms",
           f"< {ONLINE_LIMIT_MS} ms"),
    "A2": ("agent: `set` -> level in MOUNT/sim/N (polled), p50", "agent_lat_level_p50", "ms", "— (report)"),
    "A2b": ("agent: `set` -> level in MOUNT/sim/N (polled), p99", "agent_lat_level_p99", "ms",
            f"< {P99_LIMIT_MS:g} ms"),
    "A3": ("agent: `set` -> retained state message back, p50", "agent_lat_state_p50", "ms", "— (report)"),
    "A3b": ("agent: `set` -> retained state message back, p99", "agent_lat_state_p99", "ms",
            f"< {P99_LIMIT_MS:g} ms"),
    "A4": ("agent: sustained `set` commands, QoS 1, 16 lines, none lost", "agent_rate", "commands/s",
           f">= {RATE_TARGET:,}/s, none lost"),
    "A5": ("agent: VmRSS of the agent process, 16 lines", "agent_rss", "kB", "< 40 MB"),
}


NODELAY_SUFFIX = " [broker: set_tcp_nodelay true]"


def row(k: str, nodelay: bool = False, **kw: Any) -> dict:
    name, key, unit, target = NAMES[k]
    if nodelay:
        name, key = name + NODELAY_SUFFIX, key + "_nodelay"
    d = {"num": k[:2], "name": name, "pin": "unpinned", "key": key, "unit": unit, "value": None,
         "baseline": None, "baseline_name": "", "target": target, "result": "", "notes": []}
    d.update(kw)
    return d


def rows_of(res: dict, nodelay: bool = False) -> list[dict]:
    keys = [k for k in NAMES if not nodelay or k[:2] in ("A2", "A3", "A4")]
    if not res.get("ok") or "skipped" in res.get("result", {}):
        skipped = res.get("result", {}).get("skipped")
        why = f"not run: {skipped}" if skipped else res.get("error", "failed")
        return [row(k, nodelay, result="SKIP" if skipped else "ERROR", notes=[why]) for k in keys]
    d = res["result"]
    rows = []
    if not nodelay:
        r = row("A1", value=d["online_ms"], result="PASS" if d["online_ms"] < ONLINE_LIMIT_MS else "MISS")
        r["notes"].append(
            "Popen of niche-agent to the arrival of `online` at a client subscribed before; includes "
            "the interpreter and imports, the port's start and acquiring 16 lines"
            + (f"; the agent's own log says {d['online_logged_ms']} ms from its Agent() to online"
               if d.get("online_logged_ms") is not None else ""))
        rows.append(r)
    for k, mode in (("A2", "level"), ("A3", "state")):
        x = d[f"lat_{mode}"]
        note = (f"{x['n']} commands, one at a time, ON/OFF alternately; max {x['max_ms']:.1f} ms"
                + (f"; {x['missed']} not seen within 2 s" if x["missed"] else ""))
        if mode == "level":
            note += ("; the level file polled with pread() in a tight loop (each read is a FUSE round "
                     "trip to the simulator, which competes for the CPUs)")
        else:
            note += "; no polling: paho's on_message arrival time"
        if not nodelay:
            note += ("; Debian's mosquitto default set_tcp_nodelay false: Nagle holds the broker's "
                     "small writes until the peer's delayed ACK (about 40 ms); the agent and the "
                     "bench's client set TCP_NODELAY and re-arm TCP_QUICKACK on their sockets")
        rows.append(row(k, nodelay, value=x["p50_ms"], result="—" if not x["missed"] else "MISS",
                        notes=[note]))
        ok = x["p99_ms"] < P99_LIMIT_MS and not x["missed"]
        rows.append(row(k + "b", nodelay, value=x["p99_ms"], result="PASS" if ok else "MISS"))
    s = d["sustained"]
    lost = not (s["per_line_ok"] and s["last_ok"] and s["levels_ok"] and s["states"] == s["commands"])
    ok = s["value"] >= RATE_TARGET and not lost and not s["errors"]
    r = row("A4", nodelay, value=s["value"], result="PASS" if ok else "MISS")
    r["notes"].append(
        f"{s['commands']:,} commands published in {s['publish_s']:.1f} s (at most {WINDOW} unanswered), "
        f"{s['states']:,} state messages back; rate = commands / (last state - first publish); every line "
        f"got one state per command: {s['per_line_ok']}, last state right: {s['last_ok']}, level in "
        f"MOUNT/sim/N right: {s['levels_ok']}; messages on error: {s['errors']}"
        + (f" ({s['error_sample']})" if s["errors"] else ""))
    if s.get("cpu"):
        r["notes"].append("CPU while it ran, of one core: " + ", ".join(
            f"{k} {v:.0%}" for k, v in s["cpu"].items()) + f" (the machine has {os.cpu_count()})")
    rows.append(r)
    if not nodelay:
        a, b = d["rss_start"], d["rss_after"]
        r = row("A5", value=b["agent"], result="PASS" if b["agent"] < RSS_LIMIT_KB else "MISS")
        r["notes"].append(
            f"after the sustained run (after start: {a['agent']:,} kB; peak VmHWM {b['agent_hwm']:,} kB); "
            f"its port {b['port']:,} kB; the {b['holders']} line holders {b['holders_rss']:,} kB VmRSS "
            f"in sum ({b['holders_pss']:,} kB PSS)")
        rows.append(r)
    if d.get("exit") != 0 or not d.get("offline"):
        rows[-1]["notes"].append(
            f"SIGTERM afterwards: exit {d.get('exit')}, offline published: {d.get('offline')}"
            + (f"; stderr: {d['stderr_tail']!r}" if d.get("stderr_tail") else ""))
    return rows


def run_variant(budget: float, nodelay: bool, log: Any = None) -> list[dict]:
    t0 = time.perf_counter()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", "--budget", str(budget)]
    cmd += ["--nodelay"] if nodelay else []
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT, cwd=str(ROOT))
        res = next((json.loads(ln[len("BENCH-RESULT ") :]) for ln in reversed(p.stdout.splitlines())
                    if ln.startswith("BENCH-RESULT ")), None)
        if res is None:
            res = {"ok": False, "error": f"worker exited {p.returncode} without a result"}
        if not res["ok"]:
            res["stderr"] = p.stderr
    except subprocess.TimeoutExpired:
        res = {"ok": False, "error": f"timed out after {WORKER_TIMEOUT:.0f}s"}
    if log:
        status = "ok" if res.get("ok") else "ERROR: " + res.get("error", "")
        if res.get("ok") and "skipped" in res["result"]:
            status = "skipped: " + res["result"]["skipped"]
        name = "agent-nd" if nodelay else "agent"
        log(f"bench: {name:<9} {'':<8} {time.perf_counter() - t0:5.1f} s  {status}")
        if res.get("stderr"):
            log("    " + res["stderr"].strip()[-3000:].replace("\n", "\n    "))
    return rows_of(res, nodelay)


def run(budget: float, log: Any = None) -> list[dict]:
    """Measure and return the rows (dicts with bench/run.py's Row fields):
    with the broker's defaults, then again with set_tcp_nodelay true."""
    rows = run_variant(budget, False, log)
    nd = run_variant(budget, True, log)
    # each nodelay row right after its default-config row
    out: list[dict] = []
    for r in rows:
        out.append(r)
        out += [x for x in nd if x["key"] == r["key"] + "_nodelay"]
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--nodelay", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--budget", type=float, default=float(os.environ.get("NICHE_BENCH_BUDGET", "1.2")))
    args = ap.parse_args()
    if args.worker:
        try:
            res = w_agent(args.budget, args.nodelay)
            print("BENCH-RESULT " + json.dumps({"ok": True, "result": res}), flush=True)
        except BaseException as e:  # noqa: BLE001 - the rows say ERROR with the reason
            print(traceback.format_exc(), file=sys.stderr)
            print("BENCH-RESULT " + json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}),
                  flush=True)
        return 0
    print(json.dumps(run(args.budget, log=lambda s: print(s, file=sys.stderr)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
