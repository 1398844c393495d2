#!/usr/bin/env python3
"""`make bench`: speed and memory of the port and niche.Port (issue 3).

One run measures every row twice, unpinned and pinned to one core (the
measurement runs in a subprocess under `taskset -c 0`, so the port and
all its children inherit the affinity), prints a markdown table and
writes it to bench/results/latest.md and a timestamped copy. See
bench/README.md for how to read it.

    build/venv/bin/python bench/run.py [--budget SECONDS] [--only NAME,...]

Each measurement runs for a fixed time budget (NICHE_BENCH_BUDGET, default
1.2 s). The exit status is 0 when every row was measured (MISS rows
included) and 1 when a row could not be measured (ERROR).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BUILD = Path(os.environ.get("BUILD", ROOT / "build"))
if not BUILD.is_absolute():
    BUILD = ROOT / BUILD
PORT_BIN = BUILD / "native" / "niche-port"
PINGPONG_BIN = BUILD / "bench" / "pingpong"
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT / "agent"))

DEFAULT_BUDGET = float(os.environ.get("NICHE_BENCH_BUDGET", "1.2"))
WORKER_TIMEOUT = 90.0  # seconds for one worker subprocess (one measurement group)
CHILDREN = 1000  # row 6
MEM_CHILDREN = 100  # row 7
STREAM_SIZE = 256 * 1024 * 1024  # rows 4 and 5: one `cat` run / stdin volume unit
STDIN_CHUNK = 4 * 1024 * 1024  # port.stdin() / pipe write size in row 5
PIPE_READ = 256 * 1024  # os.read() size for the raw-pipe baseline of row 4

# alcove reference ("this kind of machine", issue 3): (unpinned, pinned)
ALCOVE = {
    "getpid_d0": (16_200, 59_400),
    "getpid_d1": (12_900, 28_200),
    "getpid_d4": (5_100, 10_400),
    "getpid_d16": (1_600, 2_800),
    "forkexit": (1_964, 1_964),
    "stdout": (672, 672),  # alcove did 440-672 MB/s; the target is 2x the upper end
    "children": (2_500, 2_500),
    "rss": (1800, 1800),  # kB
    "pss_child": (296, 296),  # kB
    "size": (173_000, 173_000),  # bytes (173 KB)
}
SIZE_LIMIT = 150_000  # bytes: "binary under 150 KB"
INDEPENDENT = 0.80  # 1000 children: at least this fraction of the 0-children rate


# ----------------------------------------------------------------------------
# Helpers shared by the workers
# ----------------------------------------------------------------------------


def now() -> float:
    return time.perf_counter()


def rate(fn: Callable[[], Any], budget: float, batch: int = 32, warmup: float = 0.1) -> dict:
    """Call fn() in batches for `budget` seconds; return calls/s and count."""
    end = now() + warmup
    while now() < end:
        fn()
    n = 0
    t0 = now()
    while True:
        for _ in range(batch):
            fn()
        n += batch
        el = now() - t0
        if el >= budget:
            return {"value": n / el, "n": n, "seconds": el}


def port_pid(port: Any) -> int:
    pid = getattr(port, "pid", None)
    if isinstance(pid, int) and pid > 0:
        return pid
    proc = getattr(port, "_proc", None) or getattr(port, "proc", None)
    if proc is not None and isinstance(getattr(proc, "pid", None), int):
        return proc.pid
    return int(port.getpid([]))


def open_port(**options: Any) -> Any:
    import niche

    if not PORT_BIN.exists():
        raise RuntimeError(f"{PORT_BIN} is missing: run make")
    try:
        return niche.Port(**options)
    except TypeError:
        return niche.Port()


def close_port(port: Any) -> None:
    try:
        port.close()
    except Exception:  # noqa: BLE001 - a bench must still report
        pass


def proc_kb(pid: int, field_name: str, fname: str = "status") -> int:
    with open(f"/proc/{pid}/{fname}") as f:
        for line in f:
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    raise KeyError(f"{field_name} not in /proc/{pid}/{fname}")


def affinity_note(port: Any | None = None) -> dict:
    d = {"affinity": sorted(os.sched_getaffinity(0))}
    if port is not None:
        try:
            d["port_affinity"] = sorted(os.sched_getaffinity(port_pid(port)))
        except Exception as e:  # noqa: BLE001
            d["port_affinity"] = repr(e)
    return d


def wait_exit_event(port: Any, chain: list[int], timeout: float = 10.0) -> tuple:
    """Wait for the ("exit_status", n) / ("termsig", s) event of chain."""
    deadline = now() + timeout
    while True:
        left = deadline - now()
        if left <= 0:
            raise TimeoutError(f"no exit event for {chain} within {timeout}s")
        ev = port.event(chain, timeout=left)
        if ev is None:
            continue
        if ev[0] in ("exit_status", "termsig"):
            return tuple(ev)


# ----------------------------------------------------------------------------
# Workers: each runs in its own subprocess (pinned or not) and returns a dict
# ----------------------------------------------------------------------------


def w_pingpong(budget: float, **_: Any) -> dict:
    """Row 1: raw Python-to-C pipe ping-pong with a getpid-sized frame."""
    # A depth-0 getpid CALL is 14 bytes (header 8, id 4, call 2); its REPLY is
    # 22 bytes (header 8, id 4, status 1, int term 9). Ping-pong 22 bytes both ways.
    frame = b"NC\x01\x00" + struct.pack(">IIH", 14, 1, 4) + bytes(8)
    assert len(frame) == 22
    p = subprocess.Popen([str(PINGPONG_BIN)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    w, r = p.stdin.fileno(), p.stdout.fileno()
    n = len(frame)

    def once() -> None:
        os.write(w, frame)
        got = os.read(r, 65536)
        while len(got) < n:
            more = os.read(r, 65536)
            if not more:
                raise RuntimeError("pingpong exited")
            got += more

    try:
        res = rate(once, budget, batch=256)
    finally:
        p.stdin.close()
        p.wait(5)
        p.stdout.close()
    res.update(affinity_note())
    return {"pingpong": res}


def w_getpid(budget: float, **_: Any) -> dict:
    """Row 2: getpid calls/s at depth 0, 1, 4, 16 (one chain built with fork)."""
    out: dict = {}
    port = open_port()
    try:
        out["port_version"] = str(port.version([]))
        chain: list[int] = []
        for depth in (0, 1, 4, 16):
            while len(chain) < depth:
                chain = chain + [port.fork(chain)]
            c = list(chain)
            want = c[-1] if c else port_pid(port)
            got = port.getpid(c)
            if got != want:
                raise AssertionError(f"getpid({c}) = {got}, want {want}")
            res = rate(lambda c=c: port.getpid(c), budget, batch=64 if depth < 16 else 16)
            out[f"getpid_d{depth}"] = res
        out["getpid_d0"].update(affinity_note(port))
    finally:
        close_port(port)
    return out


def w_forkexit(budget: float, **_: Any) -> dict:
    """Row 3: fork a child, port.exit([child], 0), wait for its exit event."""
    port = open_port()
    bad: list = []
    try:

        def once() -> None:
            c = port.fork([])
            port.exit([c], 0)
            ev = wait_exit_event(port, [c])
            if tuple(ev) != ("exit_status", 0) and len(bad) < 3:
                bad.append(repr(ev))

        res = rate(once, budget, batch=8, warmup=0.05)
        res.update(affinity_note(port))
        if bad:
            res["note"] = "unexpected events: " + ", ".join(bad)
        # Every cycle must leave no child behind in the port.
        try:
            left = port.cpid([])
            res["children_left"] = len(left)
        except Exception as e:  # noqa: BLE001
            res["children_left"] = repr(e)
    finally:
        close_port(port)
    return {"forkexit": res}


def _stream_rate(run_once: Callable[[float], int], budget: float) -> dict:
    """Repeat run_once(deadline) (returns bytes moved) until budget passes."""
    total = 0
    runs = 0
    t0 = now()
    while True:
        total += run_once(t0 + max(4 * budget, 5.0))
        runs += 1
        el = now() - t0
        if el >= budget or el >= 4 * budget:
            return {"value": total / el / 1e6, "bytes": total, "runs": runs, "seconds": el}


def w_stdout(budget: float, data_file: str = "", **_: Any) -> dict:
    """Row 4: `cat` of a large file read with port.stdout vs a raw pipe."""
    size = os.path.getsize(data_file)

    def raw_once(deadline: float) -> int:
        p = subprocess.Popen(["cat", data_file], stdout=subprocess.PIPE, bufsize=0)
        fd = p.stdout.fileno()
        got = 0
        while True:
            b = os.read(fd, PIPE_READ)
            if not b:
                break
            got += len(b)
        p.stdout.close()
        p.wait()
        if got != size:
            raise AssertionError(f"raw cat gave {got} bytes, want {size}")
        return got

    raw = _stream_rate(raw_once, budget)

    port = open_port()
    short: list = []
    try:

        def port_once(deadline: float) -> int:
            c = port.fork([])
            port.execvp([c], "cat", ["cat", data_file])
            got = 0
            while got < size:
                if now() > deadline:
                    short.append(f"timed out after {got} of {size} bytes")
                    port.kill([], c, "SIGKILL")
                    break
                b = port.stdout([c], timeout=1)
                got += len(b)
            if got > size:
                raise AssertionError(f"port cat gave {got} bytes, want {size}")
            wait_exit_event(port, [c])
            return got

        res = _stream_rate(port_once, budget)
        res.update(affinity_note(port))
        if short:
            res["note"] = short[0]
    finally:
        close_port(port)
    return {"stdout": res, "stdout_raw": raw}


def w_stdin(budget: float, **_: Any) -> dict:
    """Row 5: port.stdin of large data into `wc -c` vs a raw pipe into `wc -c`."""
    chunk = (os.urandom(64 * 1024) * (STDIN_CHUNK // (64 * 1024)))[:STDIN_CHUNK]

    def raw_once(deadline: float) -> int:
        p = subprocess.Popen(["wc", "-c"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        fd = p.stdin.fileno()
        sent = 0
        t0 = now()
        while sent < STREAM_SIZE and (now() - t0 < budget or sent == 0):
            mv = memoryview(chunk)
            while mv:
                k = os.write(fd, mv)
                mv = mv[k:]
            sent += len(chunk)
        p.stdin.close()
        count = int(p.stdout.read().split()[0])
        p.wait()
        if count != sent:
            raise AssertionError(f"raw wc -c counted {count}, sent {sent}")
        return sent

    raw = _stream_rate(raw_once, budget)

    port = open_port()
    try:

        def port_once(deadline: float) -> int:
            c = port.fork([])
            port.execvp([c], "wc", ["wc", "-c"])
            sent = 0
            t0 = now()
            while sent < STREAM_SIZE and (now() - t0 < budget or sent == 0):
                port.stdin([c], chunk)
                sent += len(chunk)
            port.eof([c])
            out = b""
            while not out.endswith(b"\n"):
                if now() > deadline + 10:
                    raise TimeoutError(f"wc -c printed {out!r} after {sent} bytes")
                out += port.stdout([c], timeout=1)
            count = int(out.split()[0])
            if count != sent:
                raise AssertionError(f"port wc -c counted {count}, sent {sent}: bytes lost")
            wait_exit_event(port, [c])
            return sent

        res = _stream_rate(port_once, budget)
        res.update(affinity_note(port))
    finally:
        close_port(port)
    return {"stdin": res, "stdin_raw": raw}


def _raise_nofile(pid: int, want: int) -> tuple[int, int]:
    soft, hard = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft, hard
    for lim in ((want, max(hard, want)), (min(want, hard), hard)):
        try:
            resource.prlimit(pid, resource.RLIMIT_NOFILE, lim)
            return lim
        except (OSError, ValueError):
            continue
    return soft, hard


def w_children(budget: float, **_: Any) -> dict:
    """Row 6: getpid calls/s with 1000 children alive vs with none."""
    port = open_port()
    out: dict = {}
    try:
        pid = port_pid(port)
        out["nofile"] = list(_raise_nofile(pid, 8 * CHILDREN + 1024))
        try:
            port.setopt([], "maxchild", CHILDREN + 100)
        except Exception as e:  # noqa: BLE001
            out["setopt_error"] = repr(e)
        b = budget / 2
        out["children0_d0"] = rate(lambda: port.getpid([]), b, batch=64)
        first = port.fork([])
        out["children0_d1"] = rate(lambda: port.getpid([first]), b, batch=64)
        t0 = now()
        kids = [first]
        for _ in range(CHILDREN - 1):
            kids.append(port.fork([]))
        fork_s = now() - t0
        last = kids[-1]
        mid = kids[len(kids) // 2]
        if port.getpid([last]) != last:
            raise AssertionError("getpid of the last child is wrong")
        out["children_d0"] = rate(lambda: port.getpid([]), b, batch=64)
        out["children_d1"] = rate(lambda: port.getpid([last]), b, batch=64)
        out["children_d1_first"] = rate(lambda: port.getpid([first]), b / 2, batch=64)
        out["children_d1_mid"] = rate(lambda: port.getpid([mid]), b / 2, batch=64)
        out["children_d0"]["fork_per_s"] = (CHILDREN - 1) / fork_s
        out["children_d0"].update(affinity_note(port))
        out["children_d0"]["port_rss_kb"] = proc_kb(pid, "VmRSS")
        t0 = now()
    finally:
        close_port(port)
    out["children_d0"]["close_s"] = now() - t0
    return out


def w_memory(budget: float, **_: Any) -> dict:
    """Row 7: port RSS idle and PSS per idle forked child."""
    port = open_port()
    try:
        pid = port_pid(port)
        port.getpid([])
        time.sleep(0.2)
        rss = proc_kb(pid, "VmRSS")
        port_pss = proc_kb(pid, "Pss", "smaps_rollup")
        kids = [port.fork([]) for _ in range(MEM_CHILDREN)]
        for k in kids[:3]:
            port.getpid([k])
        time.sleep(0.2)
        pss = [proc_kb(k, "Pss", "smaps_rollup") for k in kids]
        krss = [proc_kb(k, "VmRSS") for k in kids]
        rss_after = proc_kb(pid, "VmRSS")
        res = {
            "rss": {"value": rss, "port_pss_kb": port_pss, "rss_with_children_kb": rss_after},
            "pss_child": {
                "value": sum(pss) / len(pss),
                "min": min(pss),
                "max": max(pss),
                "child_rss_kb": sum(krss) / len(krss),
            },
        }
        res["rss"].update(affinity_note(port))
    finally:
        close_port(port)
    return res


WORKERS: dict[str, Callable[..., dict]] = {
    "pingpong": w_pingpong,
    "getpid": w_getpid,
    "forkexit": w_forkexit,
    "stdout": w_stdout,
    "stdin": w_stdin,
    "children": w_children,
    "memory": w_memory,
}


def worker_main(name: str, budget: float, data_file: str) -> int:
    try:
        res = WORKERS[name](budget, data_file=data_file)
        print("BENCH-RESULT " + json.dumps({"ok": True, "result": res}), flush=True)
    except BaseException as e:  # noqa: BLE001
        tb = traceback.format_exc()
        print(tb, file=sys.stderr)
        msg = f"{type(e).__name__}: {e}"
        print("BENCH-RESULT " + json.dumps({"ok": False, "error": msg}), flush=True)
    return 0


# ----------------------------------------------------------------------------
# Driver
# ----------------------------------------------------------------------------


def run_worker(name: str, pinned: bool, budget: float, data_file: str) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name]
    cmd += ["--budget", str(budget), "--data-file", data_file]
    if pinned:
        cmd = ["taskset", "-c", "0"] + cmd
    try:
        p = subprocess.run(
            cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT, cwd=str(ROOT)
        )
    except subprocess.TimeoutExpired as e:
        err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
        return {"ok": False, "error": f"timed out after {WORKER_TIMEOUT:.0f}s", "stderr": err}
    for line in reversed(p.stdout.splitlines()):
        if line.startswith("BENCH-RESULT "):
            d = json.loads(line[len("BENCH-RESULT ") :])
            if not d["ok"]:
                d["stderr"] = p.stderr
            return d
    return {
        "ok": False,
        "error": f"worker exited {p.returncode} without a result",
        "stderr": p.stderr,
    }


@dataclass
class Row:
    num: str
    name: str
    pin: str
    key: str  # result key in the worker output
    unit: str
    value: float | None = None
    baseline: float | None = None
    baseline_name: str = ""
    target: str = ""
    alcove: float | None = None
    alcove_text: str = ""
    result: str = ""
    notes: list[str] = field(default_factory=list)


def fmt_num(v: float | None, unit: str = "") -> str:
    if v is None:
        return "—"
    if unit in ("calls/s", "cycles/s", "round trips/s"):
        return f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}"
    if unit == "MB/s":
        return f"{v:,.0f}"
    if unit == "kB":
        return f"{v:,.0f}"
    if unit == "bytes":
        return f"{v:,.0f}"
    return f"{v:.3g}"


def machine_info() -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "kernel": f"{platform.system()} {platform.release()} {platform.machine()}",
        "cpu": cpu,
        "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "commit": commit or "(no commit)",
    }


def make_data_file() -> str:
    """A STREAM_SIZE file of incompressible-ish bytes, on tmpfs when possible."""
    for d in ("/dev/shm", tempfile.gettempdir()):
        try:
            st = os.statvfs(d)
            if st.f_bavail * st.f_frsize < 2 * STREAM_SIZE:
                continue
            fd, path = tempfile.mkstemp(prefix="niche-bench-", suffix=".dat", dir=d)
        except OSError:
            continue
        block = os.urandom(1024 * 1024)
        with os.fdopen(fd, "wb") as f:
            for _ in range(STREAM_SIZE // len(block)):
                f.write(block)
        return path
    raise RuntimeError("no room for the stream test file")


def build_rows(results: dict[tuple[str, str], dict]) -> list[Row]:
    rows: list[Row] = []

    def get(group: str, pin: str, key: str) -> tuple[dict | None, str | None]:
        d = results.get((group, pin))
        if d is None:
            return None, "not run"
        if not d.get("ok"):
            return None, d.get("error", "failed")
        r = d["result"].get(key)
        if r is None:
            return None, f"no {key} in result"
        return r, None

    for pin in ("unpinned", "pinned"):
        pi = 0 if pin == "unpinned" else 1
        pp, err = get("pingpong", pin, "pingpong")
        base = pp["value"] if pp else None
        r = Row("1", "baseline: raw pipe ping-pong (22 B frames)", pin, "pingpong", "round trips/s")
        r.value = base
        r.target = "—"
        r.result = "—" if pp else "ERROR"
        if err:
            r.notes.append(err)
        rows.append(r)

        for depth in (0, 1, 4, 16):
            key = f"getpid_d{depth}"
            d, err = get("getpid", pin, key)
            r = Row("2", f"getpid, depth {depth}", pin, key, "calls/s")
            r.alcove = ALCOVE[key][pi]
            ok = True
            if d:
                r.value = d["value"]
                ok = r.value >= 2 * r.alcove
                if depth == 0:
                    r.baseline, r.baseline_name = base, "ping-pong"
                    ok = ok and base is not None and r.value >= 0.5 * base
                r.result = "PASS" if ok else "MISS"
            else:
                r.result = "ERROR"
                r.notes.append(err or "")
            r.target = ">= 50% of ping-pong, >= 2x alcove" if depth == 0 else ">= 2x alcove"
            rows.append(r)

        d, err = get("forkexit", pin, "forkexit")
        r = Row("3", "fork + exit + exit event", pin, "forkexit", "cycles/s")
        r.alcove = ALCOVE["forkexit"][pi]
        r.target = ">= 2x alcove"
        if d:
            r.value = d["value"]
            r.result = "PASS" if r.value >= 2 * r.alcove else "MISS"
            if d.get("note"):
                r.notes.append(d["note"])
            if d.get("children_left") not in (0, None):
                r.notes.append(f"children left in the port: {d['children_left']}")
        else:
            r.result, r.notes = "ERROR", [err or ""]
        rows.append(r)

        d, err = get("stdout", pin, "stdout")
        raw, _ = get("stdout", pin, "stdout_raw")
        r = Row("4", "stdout: `cat` 256 MiB file -> port.stdout", pin, "stdout", "MB/s")
        r.alcove, r.alcove_text = ALCOVE["stdout"][pi], "440-672"
        r.target = ">= 50% of raw pipe, >= 2x alcove"
        if d and raw:
            r.value, r.baseline, r.baseline_name = d["value"], raw["value"], "raw pipe"
            ok = r.value >= 0.5 * r.baseline and r.value >= 2 * r.alcove
            r.result = "PASS" if ok else "MISS"
            if d.get("note"):
                r.notes.append(d["note"])
        else:
            r.result, r.notes = "ERROR", [err or ""]
        rows.append(r)

        d, err = get("stdin", pin, "stdin")
        raw, _ = get("stdin", pin, "stdin_raw")
        r = Row("5", "stdin: port.stdin -> `wc -c`", pin, "stdin", "MB/s")
        r.alcove_text = "— (drops data)"
        r.target = ">= 50% of raw pipe"
        if d and raw:
            r.value, r.baseline, r.baseline_name = d["value"], raw["value"], "raw pipe"
            r.result = "PASS" if r.value >= 0.5 * r.baseline else "MISS"
        else:
            r.result, r.notes = "ERROR", [err or ""]
        rows.append(r)

        for key, base_key, label in (
            ("children_d0", "children0_d0", f"getpid, depth 0, {CHILDREN} children alive"),
            ("children_d1", "children0_d1", f"getpid, depth 1 (last of {CHILDREN} children)"),
        ):
            d, err = get("children", pin, key)
            b0, _ = get("children", pin, base_key)
            r = Row("6", label, pin, key, "calls/s")
            # alcove's 2.5k/s is for getpid of the port; the depth-1 row has only
            # the independence target.
            d0 = key == "children_d0"
            r.alcove = ALCOVE["children"][pi] if d0 else None
            r.target = f">= {INDEPENDENT:.0%} of 0 children" + (", >= 2x alcove" if d0 else "")
            if d and b0:
                r.value, r.baseline, r.baseline_name = d["value"], b0["value"], "0 children"
                ok = r.value >= INDEPENDENT * r.baseline
                ok = ok and (r.alcove is None or r.value >= 2 * r.alcove)
                r.result = "PASS" if ok else "MISS"
                if key == "children_d0":
                    r.notes.append(
                        f"forks {d.get('fork_per_s', 0):,.0f}/s, port RSS "
                        f"{d.get('port_rss_kb', 0):,} kB with {CHILDREN} children, "
                        f"close {d.get('close_s', 0):.2f} s"
                    )
                else:
                    f1, _ = get("children", pin, "children_d1_first")
                    m1, _ = get("children", pin, "children_d1_mid")
                    if f1 and m1:
                        r.notes.append(
                            f"first child {fmt_num(f1['value'], 'calls/s')}/s, "
                            f"middle child {fmt_num(m1['value'], 'calls/s')}/s"
                        )
            else:
                r.result, r.notes = "ERROR", [err or ""]
            rows.append(r)

        d, err = get("memory", pin, "rss")
        r = Row("7", "port RSS, idle", pin, "rss", "kB")
        r.alcove = ALCOVE["rss"][pi]
        r.target = "<= alcove / 2"
        if d:
            r.value = d["value"]
            r.result = "PASS" if r.value <= r.alcove / 2 else "MISS"
            r.notes.append(
                f"port PSS {d.get('port_pss_kb')} kB; RSS {d.get('rss_with_children_kb')} kB "
                f"with {MEM_CHILDREN} children"
            )
        else:
            r.result, r.notes = "ERROR", [err or ""]
        rows.append(r)
        d, err = get("memory", pin, "pss_child")
        r = Row("7", f"PSS per idle forked child (avg of {MEM_CHILDREN})", pin, "pss_child", "kB")
        r.alcove = ALCOVE["pss_child"][pi]
        r.target = "<= alcove / 2"
        if d:
            r.value = d["value"]
            r.result = "PASS" if r.value <= r.alcove / 2 else "MISS"
            r.notes.append(
                f"min {d.get('min')} / max {d.get('max')} kB; child RSS "
                f"{d.get('child_rss_kb', 0):.0f} kB"
            )
        else:
            r.result, r.notes = "ERROR", [err or ""]
        rows.append(r)

    r = Row("8", "binary size, build/native/niche-port", "—", "size", "bytes")
    r.alcove = ALCOVE["size"][0]
    r.target = f"< {SIZE_LIMIT:,} B"
    if PORT_BIN.exists():
        r.value = PORT_BIN.stat().st_size
        r.result = "PASS" if r.value < SIZE_LIMIT else "MISS"
    else:
        r.result, r.notes = "ERROR", ["binary missing"]
    rows.append(r)

    # Group by measurement: each row's unpinned and pinned runs side by side.
    first: dict[str, int] = {}
    for i, r in enumerate(rows):
        first.setdefault(r.key, i)
    return sorted(rows, key=lambda r: (first[r.key], r.pin != "unpinned"))


def ratio_text(v: float | None, b: float | None, lower_is_better: bool = False) -> str:
    if v is None or b is None or b == 0:
        return "—"
    x = v / b
    if lower_is_better:
        return f"{b / v:.2f}x" if v else "—"
    return f"{x:.0%}" if x < 10 else f"{x:.1f}x"


def render(rows: list[Row], info: dict, budget: float, wall: float) -> str:
    lines = [
        "# niche `make bench`",
        "",
        f"- date: {info['date']}",
        f"- machine: {info['nproc']} CPUs ({info['affinity']} usable), {info['cpu']}",
        f"- kernel: {info['kernel']}",
        f"- python: {info['python']}; commit: {info['commit']}; "
        f"port: {info.get('port_version', '?')}",
        f"- budget: {budget:.1f} s per measurement; whole run {wall:.0f} s; "
        "pinned = `taskset -c 0` (port and children inherit it)",
        "",
        "| # | measurement | pin | value | unit | same-run baseline | ratio | target "
        "| alcove | vs alcove | result |",
        "|---|---|---|--:|---|--:|--:|---|--:|--:|---|",
    ]
    notes: list[str] = []
    for r in rows:
        lower = r.unit in ("kB", "bytes")
        base = f"{fmt_num(r.baseline, r.unit)} ({r.baseline_name})" if r.baseline else "—"
        ratio = ratio_text(r.value, r.baseline)
        alc = r.alcove_text or fmt_num(r.alcove, r.unit)
        if r.alcove is None:
            vs = "—"
        elif lower:
            vs = ratio_text(r.value, r.alcove, lower_is_better=True)
        else:
            vs = f"{r.value / r.alcove:.2f}x" if r.value is not None else "—"
        res = r.result
        if r.notes and any(r.notes):
            notes.append(
                f"{len(notes) + 1}. {r.name} ({r.pin}): " + "; ".join(n for n in r.notes if n)
            )
            res += f" [{len(notes)}]"
        lines.append(
            f"| {r.num} | {r.name} | {r.pin} | {fmt_num(r.value, r.unit)} | {r.unit} | {base} "
            f"| {ratio} | {r.target} | {alc} | {vs} | {res} |"
        )
    if notes:
        lines += ["", "Notes:", ""] + notes
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.result] = counts.get(r.result, 0) + 1
    summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if k != "—")
    lines += ["", f"Summary: {summary}.", ""]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--data-file", default="", help=argparse.SUPPRESS)
    ap.add_argument("--budget", type=float, default=DEFAULT_BUDGET)
    ap.add_argument("--only", default="", help="comma-separated groups: " + ",".join(WORKERS))
    ap.add_argument("--no-write", action="store_true", help="print only, write no results")
    args = ap.parse_args()
    if args.worker:
        return worker_main(args.worker, args.budget, args.data_file)

    for b in (PORT_BIN, PINGPONG_BIN):
        if not b.exists():
            print(f"bench: {b} is missing (make all build/bench/pingpong)", file=sys.stderr)
            return 1
    if not shutil.which("taskset"):
        print("bench: taskset is missing (util-linux); pinned rows will fail", file=sys.stderr)
    groups = [g for g in (args.only.split(",") if args.only else WORKERS) if g]
    info = machine_info()
    t_start = now()
    data_file = make_data_file() if {"stdout"} & set(groups) else ""
    results: dict[tuple[str, str], dict] = {}
    try:
        for g in groups:
            for pin in ("unpinned", "pinned"):
                t0 = now()
                d = run_worker(g, pin == "pinned", args.budget, data_file)
                results[(g, pin)] = d
                status = "ok" if d.get("ok") else "ERROR: " + d.get("error", "")
                print(f"bench: {g:<9} {pin:<8} {now() - t0:5.1f} s  {status}", file=sys.stderr)
                if not d.get("ok") and d.get("stderr"):
                    print("    " + d["stderr"].strip().replace("\n", "\n    "), file=sys.stderr)
                if g == "getpid" and d.get("ok"):
                    info.setdefault("port_version", d["result"].get("port_version", "?"))
    finally:
        if data_file:
            try:
                os.unlink(data_file)
            except OSError:
                pass
    rows = build_rows(results)
    if args.only:
        ran = set(groups)
        rows = [r for r in rows if r.num == "8" or any(k in ran for k in _groups_of(r))]
    text = render(rows, info, args.budget, now() - t_start)
    print(text)
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        tmp = RESULTS / "latest.md.tmp"
        tmp.write_text(text)
        shutil.copyfile(tmp, RESULTS / f"{stamp}.md")
        os.replace(tmp, RESULTS / "latest.md")
        print(f"bench: wrote {RESULTS / 'latest.md'} and {stamp}.md", file=sys.stderr)
    return 1 if any(r.result == "ERROR" for r in rows) else 0


def _groups_of(r: Row) -> list[str]:
    return {
        "1": ["pingpong"],
        "2": ["getpid"],
        "3": ["forkexit"],
        "4": ["stdout"],
        "5": ["stdin"],
        "6": ["children"],
        "7": ["memory"],
    }.get(r.num, [])


if __name__ == "__main__":
    sys.exit(main())
