#!/usr/bin/env python3
"""`make bench`: speed and memory of the port and niche.Port (issue 3).

One run measures every row twice, unpinned and pinned to one core (the
measurement runs in a subprocess under `taskset -c 0`, so the port and
all its children inherit the affinity), prints a markdown table and
writes it to bench/results/latest.md and a timestamped copy. See
bench/README.md for how to read it.

    build/venv/bin/python bench/run.py [--budget SECONDS] [--only NAME,...]

Each measurement runs for a fixed time budget (NICHE_BENCH_BUDGET, default
1.2 s) cut into slices, and reports the median slice; a row and its
same-run baseline run in alternating slices. Two diagnostic rows drive the
port with raw frames, without niche.Port, to split a gap between the C port
and the Python side. The exit status is 0 when every row was measured (MISS
rows included) and 1 when a row could not be measured (ERROR).
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
from collections.abc import Callable, Sequence
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
sys.path.insert(0, str(ROOT / "bench"))

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
QUIET = 0.25  # fraction of all CPUs busy above which the run waits (--wait-quiet)
SHARE = 0.60  # issue 11: getpid depth 0 of the ping-pong; stdout, stdin of the raw pipe
INDEPENDENT = 0.80  # 1000 children: at least this fraction of the 0-children rate


# ----------------------------------------------------------------------------
# Helpers shared by the workers
# ----------------------------------------------------------------------------


def now() -> float:
    return time.perf_counter()


def rate(fn: Callable[[], Any], budget: float, batch: int = 32, warmup: float = 0.1, slices: int = 5) -> dict:
    """Call fn() in batches for `budget` seconds, in `slices` equal slices;
    return the median slice rate (calls/s) and the spread. The median keeps a
    burst of background load in one slice from moving the number."""
    end = now() + warmup
    while now() < end:
        fn()
    rates: list[float] = []
    total = 0
    t_all = now()
    for _ in range(slices):
        n = 0
        t0 = now()
        while True:
            for _ in range(batch):
                fn()
            n += batch
            el = now() - t0
            if el >= budget / slices:
                break
        rates.append(n / el)
        total += n
    rates.sort()
    return {
        "value": rates[len(rates) // 2],
        "min": rates[0],
        "max": rates[-1],
        "n": total,
        "seconds": now() - t_all,
    }


def rate_interleaved(
    fns: Sequence[Callable[[], Any]], budget: float, batch: int = 64, rounds: int = 5
) -> list[dict]:
    """Time each of fns in turn, in `rounds` rounds of short slices (a, b, c,
    a, b, c, ...), so that all see the same background load; the median
    slice of each is its value. Together they take about `budget` seconds."""
    slices: list[list[float]] = [[] for _ in fns]
    counts = [0] * len(fns)
    for _ in range(rounds):
        for i, fn in enumerate(fns):
            r = rate(fn, budget / len(fns) / rounds, batch, warmup=0.02, slices=1)
            slices[i].append(r["value"])
            counts[i] += r["n"]
    out = []
    for v, n in zip(slices, counts, strict=True):
        v.sort()
        out.append({"value": v[len(v) // 2], "min": v[0], "max": v[-1], "n": n})
    return out


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


class PingPong:
    """Row 1: the raw Python-to-C pipe ping-pong with a getpid-sized frame."""

    # A depth-0 getpid CALL is 14 bytes (header 8, id 4, call 2); its REPLY is
    # 22 bytes (header 8, id 4, status 1, int term 9). Ping-pong 22 bytes both ways.
    FRAME = b"NC\x01\x00" + struct.pack(">IIH", 14, 1, 4) + bytes(8)

    def __enter__(self) -> PingPong:
        assert len(self.FRAME) == 22
        self.p = subprocess.Popen([str(PINGPONG_BIN)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.w, self.r = self.p.stdin.fileno(), self.p.stdout.fileno()
        return self

    def once(self) -> None:
        os.write(self.w, self.FRAME)
        got = os.read(self.r, 65536)
        while len(got) < 22:
            more = os.read(self.r, 65536)
            if not more:
                raise RuntimeError("pingpong exited")
            got += more

    def __exit__(self, *exc: object) -> None:
        self.p.stdin.close()
        self.p.wait(5)
        self.p.stdout.close()


class RawPort:
    """The port driven with raw frames, without niche.Port: what the C side
    alone costs for a depth-0 getpid (a diagnostic row)."""

    HELLO = b"NC\x02\x00" + struct.pack(">IH", 2, 1)
    GETPID = b"NC\x01\x00" + struct.pack(">IIH", 6, 7, 4)
    REPLY = 8 + 4 + 1 + 9

    def __enter__(self) -> RawPort:
        self.p = subprocess.Popen([str(PORT_BIN)], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.w, self.r = self.p.stdin.fileno(), self.p.stdout.fileno()
        os.write(self.w, self.HELLO)
        hdr = self._read(8)
        self._read(struct.unpack(">I", hdr[4:8])[0])
        if hdr[2] != 0x81:
            raise RuntimeError(f"raw port: no HELLO but {hdr!r}")
        return self

    def _read(self, n: int) -> bytes:
        got = b""
        while len(got) < n:
            more = os.read(self.r, n - len(got))
            if not more:
                raise RuntimeError("raw port exited")
            got += more
        return got

    def once(self) -> None:
        os.write(self.w, self.GETPID)
        got = self._read(self.REPLY)
        if got[2] != 0x82 or got[12] != 0:
            raise RuntimeError(f"raw port: unexpected reply {got!r}")

    def call(self, rid: int, call: int, args: bytes = b"") -> tuple[int, bytes]:
        """A depth-0 call; returns (status, term) of its reply (nothing else
        may be in flight)."""
        body = struct.pack(">IH", rid, call) + args
        os.write(self.w, b"NC\x01\x00" + struct.pack(">I", len(body)) + body)
        while True:
            hdr = self._read(8)
            rest = self._read(struct.unpack(">I", hdr[4:8])[0])
            if hdr[2] == 0x82:
                off = 4 * hdr[3]
                return rest[off + 4], rest[off + 5 :]

    def cat(self, path: str, size: int, deadline: float) -> int:
        """fork a child, execvp `cat path` in it and count the bytes of its
        STDOUT frames until `size` arrived: the C port's stdout path with
        the leanest Python reader (one 1 MiB read, frames skipped by length)."""
        st, term = self.call(1, 2)
        if st != 0:
            raise RuntimeError(f"raw fork failed: {st} {term!r}")
        child = struct.unpack(">q", term[1:9])[0]

        def b(x: bytes) -> bytes:
            return b"b" + struct.pack(">I", len(x)) + x

        args = b(b"cat") + b"l" + struct.pack(">I", 2) + b(b"cat") + b(path.encode())
        body = struct.pack(">IH", 2, 7) + args
        os.write(self.w, b"NC\x01\x01" + struct.pack(">Ii", 4 + len(body), child) + body)
        got = 0
        buf = bytearray(4 << 20)
        mv = memoryview(buf)
        start = end = 0
        while got < size:
            if now() > deadline:
                raise TimeoutError(f"raw cat: {got} of {size} bytes")
            if end > len(buf) // 2:  # compact: keep the partial frame
                buf[: end - start] = buf[start:end]
                start, end = 0, end - start
            k = os.readv(self.r, [mv[end:]])
            if not k:
                raise RuntimeError("raw port exited")
            end += k
            while end - start >= 8:
                n = int.from_bytes(buf[start + 4 : start + 8], "big")
                if end - start < 8 + n:
                    break
                if buf[start + 2] == 0x83:
                    got += n - 4 * buf[start + 3]
                start += 8 + n
        return got

    def __exit__(self, *exc: object) -> None:
        self.p.stdin.close()
        self.p.wait(5)
        self.p.stdout.close()


def w_getpid(budget: float, **_: Any) -> dict:
    """Rows 1 and 2: the ping-pong and getpid at depth 0 in alternating
    slices (same load for both), then getpid at depth 1, 4, 16 (one chain
    built with fork)."""
    out: dict = {}
    port = open_port()
    try:
        out["port_version"] = str(port.version([]))
        pid = port_pid(port)
        if port.getpid([]) != pid:
            raise AssertionError("getpid([]) is not the port's pid")
        with PingPong() as pp, RawPort() as raw:
            out["pingpong"], out["getpid_d0"], out["getpid_raw"] = rate_interleaved(
                [pp.once, lambda: port.getpid([]), raw.once], 3 * budget
            )
        out["pingpong"].update(affinity_note())
        chain: list[int] = []
        for depth in (1, 4, 16):
            while len(chain) < depth:
                chain = chain + [port.fork(chain)]
            c = list(chain)
            got = port.getpid(c)
            if got != c[-1]:
                raise AssertionError(f"getpid({c}) = {got}, want {c[-1]}")
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
    with RawPort() as rp:
        frames = _stream_rate(lambda deadline: rp.cat(data_file, size, deadline), budget)
    return {"stdout": res, "stdout_raw": raw, "stdout_frames": frames}


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
    """Row 6: getpid calls/s with 1000 children alive vs with none.

    Two ports run side by side: a reference port with one child, and a
    port with 1000; their calls alternate in short slices, so both see the
    same background load and only the number of children differs."""
    ref = open_port()
    port = open_port()
    out: dict = {}
    try:
        pid = port_pid(port)
        out["nofile"] = list(_raise_nofile(pid, 8 * CHILDREN + 1024))
        try:
            port.setopt([], "maxchild", CHILDREN + 100)
        except Exception as e:  # noqa: BLE001
            out["setopt_error"] = repr(e)
        ref_kid = ref.fork([])
        t0 = now()
        kids = [port.fork([]) for _ in range(CHILDREN)]
        fork_s = now() - t0
        first, mid, last = kids[0], kids[len(kids) // 2], kids[-1]
        if port.getpid([last]) != last:
            raise AssertionError("getpid of the last child is wrong")
        (
            out["children0_d0"],
            out["children_d0"],
            out["children0_d1"],
            out["children_d1"],
            out["children_d1_first"],
            out["children_d1_mid"],
        ) = rate_interleaved(
            [
                lambda: ref.getpid([]),
                lambda: port.getpid([]),
                lambda: ref.getpid([ref_kid]),
                lambda: port.getpid([last]),
                lambda: port.getpid([first]),
                lambda: port.getpid([mid]),
            ],
            budget * 3,
            rounds=10,
        )
        out["children_d0"]["fork_per_s"] = CHILDREN / fork_s
        out["children_d0"].update(affinity_note(port))
        out["children_d0"]["port_rss_kb"] = proc_kb(pid, "VmRSS")
        t0 = now()
        for k in kids:
            port.exit([k], 0)
        deadline = now() + 20
        while port.cpid([]):
            if now() > deadline:
                raise TimeoutError(f"{CHILDREN} exited children were not reaped within 20 s")
            time.sleep(0.01)
        out["children_d0"]["exit_s"] = now() - t0
        t0 = now()
    finally:
        close_port(port)
        close_port(ref)
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
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT, cwd=str(ROOT))
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
    if unit in ("calls/s", "cycles/s", "round trips/s", "toggles/s", "commands/s"):
        return f"{v / 1000:.1f}k" if v >= 1000 else f"{v:.0f}"
    if unit == "MB/s":
        return f"{v:,.0f}"
    if unit == "kB":
        return f"{v:,.0f}"
    if unit in ("bytes", "edges"):
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


def cpu_busy(seconds: float = 0.5) -> float:
    """Fraction of all CPUs busy over `seconds` (before the run: other load)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        idle = v[3] + (v[4] if len(v) > 4 else 0)
        return sum(v[:8]), idle

    t1, i1 = sample()
    time.sleep(seconds)
    t2, i2 = sample()
    return 1 - (i2 - i1) / max(t2 - t1, 1)


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
        pp, err = get("getpid", pin, "pingpong")
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
                    ok = ok and base is not None and r.value >= SHARE * base
                r.result = "PASS" if ok else "MISS"
            else:
                r.result = "ERROR"
                r.notes.append(err or "")
            r.target = f">= {SHARE:.0%} of ping-pong, >= 2x alcove" if depth == 0 else ">= 2x alcove"
            rows.append(r)

        d, err = get("getpid", pin, "getpid_raw")
        r = Row("2", "diagnostic: getpid, depth 0, raw frames, no niche.Port", pin, "getpid_raw", "calls/s")
        r.target = "— (C port alone)"
        if d:
            r.value, r.baseline, r.baseline_name = d["value"], base, "ping-pong"
            r.result = "—"
        else:
            r.result, r.notes = "ERROR", [err or ""]
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
        r.target = f">= {SHARE:.0%} of raw pipe, >= 2x alcove"
        if d and raw:
            r.value, r.baseline, r.baseline_name = d["value"], raw["value"], "raw pipe"
            ok = r.value >= SHARE * r.baseline and r.value >= 2 * r.alcove
            r.result = "PASS" if ok else "MISS"
            if d.get("note"):
                r.notes.append(d["note"])
        else:
            r.result, r.notes = "ERROR", [err or ""]
        rows.append(r)

        d, err = get("stdout", pin, "stdout_frames")
        r = Row("4", "diagnostic: stdout, raw frames, no niche.Port", pin, "stdout_frames", "MB/s")
        r.target = "— (C port alone)"
        if d and raw:
            r.value, r.baseline, r.baseline_name = d["value"], raw["value"], "raw pipe"
            r.result = "—"
        else:
            r.result, r.notes = "ERROR", [err or "no raw-pipe baseline"]
        rows.append(r)

        d, err = get("stdin", pin, "stdin")
        raw, _ = get("stdin", pin, "stdin_raw")
        r = Row("5", "stdin: port.stdin -> `wc -c`", pin, "stdin", "MB/s")
        r.alcove_text = "— (drops data)"
        r.target = f">= {SHARE:.0%} of raw pipe"
        if d and raw:
            r.value, r.baseline, r.baseline_name = d["value"], raw["value"], "raw pipe"
            r.result = "PASS" if r.value >= SHARE * r.baseline else "MISS"
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
                        f"forks {d.get('fork_per_s', 0):,.0f}/s; port RSS "
                        f"{d.get('port_rss_kb', 0):,} kB with {CHILDREN} children; "
                        f"exit+reap of {CHILDREN}: {d.get('exit_s', 0):.2f} s"
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
                f"min {d.get('min')} / max {d.get('max')} kB; child RSS {d.get('child_rss_kb', 0):.0f} kB"
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

    # Say so when the slices of a timed loop disagree: a noisy number.
    for r in rows:
        if r.unit in ("kB", "bytes"):
            continue
        for (_g, pin), d in results.items():
            x = d.get("result", {}).get(r.key) if d.get("ok") and pin == r.pin else None
            if isinstance(x, dict) and x.get("min") and x.get("max", 0) > 1.3 * x["min"]:
                lo, hi = fmt_num(x["min"], r.unit), fmt_num(x["max"], r.unit)
                r.notes.append(f"noisy: slices ranged {lo} to {hi}")
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
    if x < 0.01:  # e.g. a serial round trip per call against a C loop
        return f"{x:.2%}"
    return f"{x:.0%}" if x < 10 else f"{x:.1f}x"


def render(rows: list[Row], info: dict, budget: float, wall: float) -> str:
    lines = [
        "# niche `make bench`",
        "",
        f"- date: {info['date']}",
        f"- machine: {info['nproc']} CPUs ({info['affinity']} usable), {info['cpu']}",
        f"- kernel: {info['kernel']}",
        f"- load before the run: {info.get('busy', 0):.0%} of all CPUs busy, "
        f"loadavg {info.get('loadavg', '?')}"
        + (f", after waiting {info['waited']:.0f} s for quiet" if info.get("waited", 0) > 1 else "")
        + (" (other load: expect noisy numbers)" if info.get("busy", 0) > QUIET else ""),
        f"- python: {info['python']}; commit: {info['commit']}; port: {info.get('port_version', '?')}",
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
            notes.append(f"{len(notes) + 1}. {r.name} ({r.pin}): " + "; ".join(n for n in r.notes if n))
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
    ap.add_argument("--only", default="", help="comma-separated groups: " + ",".join([*WORKERS, *EXTRA]))
    ap.add_argument(
        "--wait-quiet",
        type=float,
        default=20.0,
        help="wait up to this many seconds for other load to drop below 25%% first",
    )
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
    groups = [g for g in (args.only.split(",") if args.only else [*WORKERS, *EXTRA]) if g]
    info = machine_info()
    # Other load (a test suite in another shell) skews every number: give it
    # a moment to finish, then say in the header how busy the machine was.
    t_wait = now()
    info["busy"] = cpu_busy()
    while info["busy"] > QUIET and now() - t_wait < args.wait_quiet:
        info["busy"] = cpu_busy(1.0)
    info["waited"] = now() - t_wait
    with open("/proc/loadavg") as f:
        info["loadavg"] = " ".join(f.read().split()[:3])
    t_start = now()
    data_file = make_data_file() if {"stdout"} & set(groups) else ""
    results: dict[tuple[str, str], dict] = {}
    extra: list[Row] = []
    try:
        for g in groups:
            if g in EXTRA:  # issue 5 and 6 rows: bench/gpio_bench.py, bench/agent_bench.py
                log = lambda s: print(s, file=sys.stderr)  # noqa: E731
                extra += [Row(**d) for d in EXTRA[g](args.budget, log=log)]
                continue
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
    rows += extra
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


def _extra_gpio(budget: float, log: Callable[[str], None]) -> list[dict]:
    import gpio_bench

    return gpio_bench.run(budget, log=log)


def _extra_agent(budget: float, log: Callable[[str], None]) -> list[dict]:
    import agent_bench

    return agent_bench.run(budget, log=log)


# Groups measured by their own modules (one run each, unpinned), after WORKERS.
EXTRA: dict[str, Callable[..., list[dict]]] = {"gpio": _extra_gpio, "agent": _extra_agent}


def _groups_of(r: Row) -> list[str]:
    return {
        "1": ["getpid"],
        "2": ["getpid"],
        "3": ["forkexit"],
        "4": ["stdout"],
        "5": ["stdin"],
        "6": ["children"],
        "7": ["memory"],
    }.get(r.num, [])


if __name__ == "__main__":
    sys.exit(main())
