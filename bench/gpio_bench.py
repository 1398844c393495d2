#!/usr/bin/env python3
"""`make bench`, GPIO rows (issue 5, "Tests and figures"): called by bench/run.py.

    build/venv/bin/python bench/gpio_bench.py [--budget S] [--only sim,vm]

prints the rows as JSON (bench/run.py merges them into its table). Two
measurement groups, each in its own subprocess with a time limit:

- ``sim`` (fast lane, host): niche-gpio-sim (FUSE) mounted in a tmp dir;
  ``line.set(v)`` of a sysfs-backend line through a local niche.Port vs raw
  ``os.pwrite`` of the simulator's ``gpioN/value`` from this Python, in
  alternating slices.
- ``vm`` (x86_64 guest of the VM lane, booted once): a chardev line of the
  gpio-sim chip ``niche-sim`` driven through the guest's port over its serial
  line vs the same GPIO_V2_LINE_SET_VALUES_IOCTL loop run inside the guest by
  bench/gpio_toggle.c (copied into the guest through the port and exec'd by
  it); edge latency from a gpio-sim ``pull`` write (through the port) to the
  edge event in Python; and 1000 pulls written at 1 kHz inside the guest by
  gpio_toggle, every edge counted in Python (seqno contiguous).

See bench/README.md ("GPIO rows").
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
BUILD = Path(os.environ.get("BUILD", ROOT / "build"))
if not BUILD.is_absolute():
    BUILD = ROOT / BUILD
TOGGLE_BIN = BUILD / "bench" / "gpio_toggle-x86_64"
GUEST_BIN = "/niche-bench-gpio"  # where gpio_toggle goes in the guest (its initramfs root)
LABEL = "niche-sim"
OUT_LINE, RAW_LINE, IN_LINE = 8, 9, 10  # gpio-sim lines nothing else in the guest uses
SIM_LINE, SIM_RAW_LINE, SIM_PIPE_LINE = 0, 1, 2  # simulator lines (host)
PIPE_LINE = 11  # the guest's line for pipelined toggles
LOCAL_LINE = 12  # the guest's line for the local-port path (G2g)
LOCAL_FD = 100  # the line's descriptor in the guest's local port (bench/gpio_toggle.c port)
PIPE_DEPTH = 64  # pipelined writes in flight (gpio.request(pipeline=...))
PIPE_BURST = 64  # pipelined set()s per timed call, then sync(): every one confirmed in its slice
PIPE_STREAM = 1024  # the same, sync() after this many (row G2ps: a stream of writes)
EDGES_N = 1000  # pulls of the 1 kHz row
EDGES_PERIOD_US = 1000
LAT_MAX = 200  # edge-latency samples at most
SERIAL_T = 15.0  # timeout of each call over the serial line
TOGGLE_TARGET = 0.30  # port toggles >= 30% of the raw loop
PIPE_BEFORE, PIPE_X, PIPE_LIMIT = 1200.0, 10, 0.80  # issue 11: 10x the 1.2k/s, or 80% of the line
WORKER_TIMEOUT = {"sim": 60.0, "vm": 150.0}
GROUPS = ("sim", "vm")

sys.path.insert(0, str(ROOT / "agent"))
sys.path.insert(0, str(HERE))


def now() -> float:
    return time.perf_counter()


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


# ----------------------------------------------------------------------------
# sim: the fast lane on the host
# ----------------------------------------------------------------------------


def sim_problem() -> str | None:
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as e:
        return f"mfusepy not usable: {e}"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    if os.geteuid() != 0:
        return "the simulator rows run as root (allow_other, chroot, setuid)"
    return None


def w_sim(budget: float) -> dict:
    """line.set() on the simulator through a local port vs raw pwrite()s."""
    import niche
    import run as core
    from niche import gpio
    from niche.gpio.sim import Simulator

    problem = sim_problem()
    if problem:
        return {"skipped": problem}
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="niche-bench-sim-") as d, Simulator(Path(d) / "gpio") as sim:
        root = sim.root

        def put(rel: str, data: str) -> None:
            fd = os.open(root / rel, os.O_WRONLY)
            try:
                os.write(fd, data.encode())
            finally:
                os.close(fd)

        def changes(n: int) -> int:
            return int((root / "sim" / f"{n}.changes").read_text())

        put("export", str(SIM_RAW_LINE))
        put(f"gpio{SIM_RAW_LINE}/direction", "low")
        raw_fd = os.open(root / f"gpio{SIM_RAW_LINE}" / "value", os.O_WRONLY)
        port = niche.Port()
        try:
            line = gpio.request(port, f"SIM{SIM_LINE}", board="sim", direction="out",
                                sysfs_root=str(root))
            pline = gpio.request(port, f"SIM{SIM_PIPE_LINE}", board="sim", direction="out",
                                 sysfs_root=str(root), pipeline=PIPE_DEPTH)
            st = {"port": 0, "raw": 0, "pipe": 0}

            def port_once() -> None:
                st["port"] += 1
                line.set(st["port"] & 1)

            def raw_once() -> None:
                st["raw"] += 1
                os.pwrite(raw_fd, b"1" if st["raw"] & 1 else b"0", 0)

            def pipe_burst() -> None:
                for _ in range(PIPE_BURST):
                    st["pipe"] += 1
                    pline.set(st["pipe"] & 1)
                pline.sync()

            c0, r0, p0 = changes(SIM_LINE), changes(SIM_RAW_LINE), changes(SIM_PIPE_LINE)
            out["sim_port"], out["sim_raw"], pipe = core.rate_interleaved(
                [port_once, raw_once, pipe_burst], 3 * budget, batch=16)
            out["sim_pipe"] = {k: v * PIPE_BURST if k in ("value", "min", "max") else v
                               for k, v in pipe.items()}
            out["sim_pipe"]["changes"] = changes(SIM_PIPE_LINE) - p0
            out["sim_pipe"]["calls"] = st["pipe"]
            out["sim_pipe"]["level_ok"] = (root / "sim" / str(SIM_PIPE_LINE)).read_text().strip() == str(
                st["pipe"] & 1)
            pline.release()
            # every write changed the level: the simulator counted each toggle
            out["sim_port"]["changes"] = changes(SIM_LINE) - c0
            out["sim_port"]["calls"] = st["port"]
            out["sim_raw"]["changes"] = changes(SIM_RAW_LINE) - r0
            out["sim_raw"]["calls"] = st["raw"]
            out["sim_port"]["level_ok"] = (root / "sim" / str(SIM_LINE)).read_text().strip() == str(
                st["port"] & 1)
            line.release()
        finally:
            os.close(raw_fd)
            port.close()
            put("unexport", str(SIM_RAW_LINE))
    return out


# ----------------------------------------------------------------------------
# vm: the x86_64 guest of the VM lane
# ----------------------------------------------------------------------------


def vm_problem() -> str | None:
    sys.path.insert(0, str(ROOT / "tests" / "vm"))
    try:
        from guest import qemu_problem
    except ImportError as e:
        return f"tests/vm/guest.py not importable: {e}"
    p = qemu_problem("x86_64")
    if p:
        return p
    if not TOGGLE_BIN.exists():
        return f"{TOGGLE_BIN.relative_to(ROOT)} missing (make bench builds it)"
    return None


def serial_vmin1(port: Any) -> bool:
    """Work around niche.Port's serial transport: pyserial's timeout=0 leaves
    the tty at VMIN=0/VTIME=0, where read() returns 0 bytes when nothing is
    there, and Port takes that for end of file ("the port exited") whenever
    select() wakes without data (seen on qemu's pty on the first call after
    the handshake, 3 of 3 opens). With VMIN=1 an empty non-blocking read is
    EAGAIN, which Port handles. True when applied."""
    import termios

    fd = getattr(port, "_rfd", None)
    if not isinstance(fd, int) or not os.isatty(fd):
        return False
    a = termios.tcgetattr(fd)
    a[6][termios.VMIN], a[6][termios.VTIME] = 1, 0
    termios.tcsetattr(fd, termios.TCSANOW, a)
    return True


def slice_rates(text: str, tag: str) -> dict:
    """The median, least and most of gpio_toggle's "TAG N NS" lines, per second."""
    rates = sorted(int(a) / (int(b) / 1e9) for a, b in re.findall(rf"^{tag} (\d+) (\d+)", text, re.M))
    if not rates:
        raise RuntimeError(f"gpio_toggle printed no {tag} lines: {text!r}")
    return {"value": rates[len(rates) // 2], "min": rates[0], "max": rates[-1]}


def run_in_guest(port: Any, argv: list[str], timeout: float) -> tuple[str, tuple]:
    """fork a child of the guest's port, execve argv in it; (stdout, exit event)."""
    c = port.fork([], timeout=SERIAL_T)
    port.execve([c], argv[0], argv, [], timeout=SERIAL_T)
    out = b""
    deadline = now() + timeout
    while True:
        out += port.stdout([c], timeout=0.2)
        ev = port.event([c], timeout=0)
        if ev is not None and ev[0] in ("exit_status", "termsig"):
            out += port.stdout([c], timeout=0.2)
            return out.decode(errors="replace"), tuple(ev)
        if now() > deadline:
            port.kill([], c, "SIGKILL", timeout=SERIAL_T)
            raise TimeoutError(f"{argv} did not finish within {timeout:.0f} s: {out!r}")


def w_vm(budget: float) -> dict:
    sys.path.insert(0, str(ROOT / "tests" / "vm"))
    import niche
    import run as core
    from guest import Guest
    from niche import gpio, uapi
    from niche import protocol as _p
    from niche._calls import CALLS
    from niche.gpio import chips
    from niche.sandbox import read_file

    problem = vm_problem()
    if problem:
        return {"skipped": problem}
    out: dict[str, Any] = {}
    g = Guest("x86_64")
    path = g.start()
    out["boot_s"] = g.boot_seconds
    port = None
    try:
        m = re.search(r"NICHE-SIM dev=(\S+) chip=(\S+)", g.console_text())
        if not m:
            raise RuntimeError("no NICHE-SIM line on the guest's console")
        simdir = f"/sys/devices/platform/{m.group(1)}/{m.group(2)}"
        t0 = now()
        port = niche.Port(serial=path, start_timeout=SERIAL_T)
        out["open_s"] = now() - t0
        out["vmin_workaround"] = serial_vmin1(port)
        r = port.root
        chip = chips.find_chip(r, (LABEL,), timeout=SERIAL_T)
        out["chip"] = f"{chip.name} ({chip.label}, {chip.lines} lines)"

        # gpio_toggle into the guest's root (its initramfs, a tmpfs)
        data = TOGGLE_BIN.read_bytes()
        fd = r.open(GUEST_BIN, ["O_WRONLY", "O_CREAT", "O_TRUNC", "O_CLOEXEC"], 0o755, timeout=SERIAL_T)
        try:
            off = 0
            while off < len(data):
                off += r.write(fd, data[off : off + 16384], timeout=SERIAL_T)
        finally:
            r.close(fd, timeout=SERIAL_T)

        def sim_value(n: int) -> str:
            return read_file(r, f"{simdir}/sim_gpio{n}/value", timeout=SERIAL_T).decode().strip()

        # -- toggles/s: line.set() over the serial line, interleaved with its floors
        line = gpio.request(port, f"{LABEL}:{OUT_LINE}", direction="out", timeout=SERIAL_T)
        st = {"n": 0, "m": 0}
        packed = [uapi.pack("struct gpio_v2_line_values", bits=v, mask=1) for v in (0, 1)]

        def set_once() -> None:
            st["n"] += 1
            line.set(st["n"] & 1)

        def ioctl_once() -> None:  # the same ioctl, struct packed once: what niche.gpio adds
            st["m"] += 1
            line.process.ioctl(line.fd, "GPIO_V2_LINE_SET_VALUES_IOCTL", packed[st["m"] & 1],
                               timeout=SERIAL_T)

        out["vm_set"], out["vm_ioctl"], out["vm_getpid"] = core.rate_interleaved(
            [set_once, ioctl_once, lambda: r.getpid(timeout=SERIAL_T)], 3 * budget, batch=8, rounds=9)
        line.set(True)
        out["vm_set"]["level_ok"] = sim_value(OUT_LINE) == "1"
        line.set(False)
        out["vm_set"]["level_ok"] = out["vm_set"]["level_ok"] and sim_value(OUT_LINE) == "0"
        line.release()

        # -- pipelined toggles over the same line, and what the line's byte rate allows
        pline = gpio.request(port, f"{LABEL}:{PIPE_LINE}", direction="out", timeout=SERIAL_T,
                             pipeline=PIPE_DEPTH)
        pst = {"n": 0}

        def pipe_burst() -> None:
            for _ in range(PIPE_BURST):
                pst["n"] += 1
                pline.set(pst["n"] & 1)
            pline.sync()

        null = r.open("/dev/null", ["O_WRONLY", "O_CLOEXEC"], 0, timeout=SERIAL_T)
        blob = bytes(16384)

        def bulk_write() -> None:  # the line's throughput host -> guest, frames of 16 KiB
            r.write(null, blob, timeout=SERIAL_T)

        pipe, bulk = core.rate_interleaved([pipe_burst, bulk_write], 2 * budget, batch=1, rounds=5)
        r.close(null, timeout=SERIAL_T)
        out["vm_pipe"] = {k: v * PIPE_BURST if k in ("value", "min", "max") else v for k, v in pipe.items()}

        def pipe_stream() -> None:  # a long stream: the pipeline stays full between syncs
            for _ in range(PIPE_STREAM):
                pst["n"] += 1
                pline.set(pst["n"] & 1)
            pline.sync()

        long = core.rate(pipe_stream, budget, batch=1, warmup=0, slices=3)
        out["vm_pipe_stream"] = {k: v * PIPE_STREAM if k in ("value", "min", "max") else v
                                 for k, v in long.items()}
        pline.set(True)
        pline.sync()
        out["vm_pipe"]["level_ok"] = sim_value(PIPE_LINE) == "1"
        call, args = pline._calls[True]
        frame = len(_p.encode_call(1, pline.process.chain, call, args))
        bulk_frame = len(_p.encode_call(1, (), CALLS["write"], (_p.arg_int(null, "fd"),
                                                                _p.arg_bytes(blob, "buf"))))
        out["vm_line"] = {"bytes_s": bulk["value"] * bulk_frame, "min": bulk["min"] * bulk_frame,
                          "max": bulk["max"] * bulk_frame, "frame": frame}
        pline.release()

        # -- the raw loop in the guest, on another line of the same chip
        slices = 5
        text, ev = run_in_guest(port, [GUEST_BIN, "toggle", chip.path, str(RAW_LINE), str(slices),
                                       str(max(50, int(budget * 1000 / slices)))], 30 + budget)
        if ev != ("exit_status", 0):
            raise RuntimeError(f"gpio_toggle toggle: {ev} {text!r}")
        level = re.search(r"level (\d)", text)
        out["vm_raw"] = {**slice_rates(text, "slice"),
                         "level_ok": bool(level) and sim_value(RAW_LINE) == level.group(1)}

        # -- the local-port path: a port started in the guest by a C client there
        # (what niche-agent on the board does), the ioctl frames encoded here
        fork_f = _p.encode_call(1, (), CALLS["fork"], ())
        set_f = [_p.encode_call(1, (1,), CALLS["ioctl"], (
            _p.arg_int(LOCAL_FD, "fd"), _p.arg_const("GPIO_V2_LINE_SET_VALUES_IOCTL", "request", "ioctl"),
            _p.arg_cstruct(packed[v], "argp"))) for v in (0, 1)]
        text, ev = run_in_guest(port, [GUEST_BIN, "port", "/niche-port", chip.path, str(LOCAL_LINE),
                                       str(slices), str(max(50, int(budget * 1000 / slices))),
                                       str(PIPE_BURST), fork_f.hex(), set_f[0].hex(), set_f[1].hex()],
                                60 + 2 * budget)
        level = re.search(r"level (\d)", text)
        if ev != ("exit_status", 0) or not level:
            raise RuntimeError(f"gpio_toggle port: {ev} {text!r}")
        level_ok = sim_value(LOCAL_LINE) == level.group(1)
        for key, tag in (("vm_local", "slice"), ("vm_local_pipe", "pslice")):
            out[key] = {**slice_rates(text, tag), "level_ok": level_ok}
        text, ev = run_in_guest(port, [GUEST_BIN, "pingpong", str(slices),
                                       str(max(50, int(budget * 1000 / slices)))], 30 + budget)
        if ev != ("exit_status", 0):
            raise RuntimeError(f"gpio_toggle pingpong: {ev} {text!r}")
        out["vm_pingpong"] = slice_rates(text, "slice")

        # -- edges: an input line waiting in edges(), its pull written through the port
        inp = gpio.request(port, f"{LABEL}:{IN_LINE}", direction="in", edge="both", timeout=SERIAL_T)
        pull = r.open(f"{simdir}/sim_gpio{IN_LINE}/pull", ["O_WRONLY", "O_CLOEXEC"], 0, timeout=SERIAL_T)
        try:
            r.write(pull, b"pull-down", timeout=SERIAL_T)
            time.sleep(0.05)
            inp.edges(timeout=0.2)  # drain
            lat: list[float] = []
            wr: list[float] = []
            wrong = 0
            level = False
            end = now() + budget
            while len(lat) < LAT_MAX and (now() < end or len(lat) < 20):
                level = not level
                t0 = now()
                r.write(pull, b"pull-up" if level else b"pull-down", timeout=SERIAL_T)
                t1 = now()
                got = inp.edges(timeout=5)
                t2 = now()
                if len(got) != 1 or got[0].rising != level:
                    wrong += 1
                    inp.edges(timeout=0.1)
                    continue
                lat.append(t2 - t0)
                wr.append(t1 - t0)
            if level:
                r.write(pull, b"pull-down", timeout=SERIAL_T)
                inp.edges(timeout=1)
            out["edge_lat"] = {"p50_ms": pct(lat, 0.5) * 1e3, "p99_ms": pct(lat, 0.99) * 1e3,
                               "max_ms": max(lat) * 1e3, "n": len(lat), "wrong": wrong,
                               "write_p50_ms": statistics.median(wr) * 1e3}

            # -- 1000 pulls at 1 kHz written inside the guest; then as fast as it can
            for key, period in (("edges_1khz", EDGES_PERIOD_US), ("edges_max", 0)):
                inp.edges(timeout=0.1)
                c = port.fork([], timeout=SERIAL_T)
                t0 = now()
                port.execve([c], GUEST_BIN, [GUEST_BIN, "pulls", f"{simdir}/sim_gpio{IN_LINE}/pull",
                                             str(EDGES_N), str(period)], [], timeout=SERIAL_T)
                edges: list = []
                last = now()
                while len(edges) < EDGES_N and now() - last < 1.5:
                    more = inp.edges(timeout=0.25)
                    if more:
                        edges += more
                        last = now()
                t_all = now() - t0
                text = b""
                ev = None
                deadline = now() + 10
                while ev is None and now() < deadline:
                    text += port.stdout([c], timeout=0.1)
                    e = port.event([c], timeout=0)
                    ev = e if e and e[0] in ("exit_status", "termsig") else None
                text += port.stdout([c], timeout=0.1)
                mm = re.search(rb"pulls (\d+) (\d+) late (\d+) mingap (-?\d+)", text)
                seq = [e.seqno for e in edges]
                gaps = sum(1 for a, b in zip(seq, seq[1:], strict=False) if b != a + 1)
                alt = all(e.rising == (i % 2 == 0) for i, e in enumerate(edges))
                out[key] = {
                    "sent": EDGES_N, "got": len(edges), "seq_gaps": gaps, "alternating": alt,
                    "guest_ms": int(mm.group(2)) / 1e6 if mm else None,
                    "late_max_us": int(mm.group(3)) / 1e3 if mm else None,
                    "mingap_us": int(mm.group(4)) / 1e3 if mm else None,
                    # an edge gpio-sim/irq_sim merged never gets a seqno: the
                    # kernel's count of queued events is the last seqno
                    "kernel_seq": seq[-1] - seq[0] + 1 if seq else 0,
                    "wall_s": t_all, "exit": list(ev) if ev else None,
                }
                if len(edges) % 2:  # leave it pulled down
                    r.write(pull, b"pull-down", timeout=SERIAL_T)
                    inp.edges(timeout=0.2)
        finally:
            r.close(pull, timeout=SERIAL_T)
            inp.release()
            r.unlink(GUEST_BIN, timeout=SERIAL_T)
            deadline = now() + 3  # the holders exit after replying to exit()
            while port.cpid([], timeout=SERIAL_T) and now() < deadline:
                time.sleep(0.05)
            out["children_left"] = [c.pid for c in port.cpid([], timeout=SERIAL_T)]
    finally:
        if port is not None:
            try:
                port.close()
            except Exception:  # noqa: BLE001 - the guest goes anyway
                pass
        g.stop()
    return out


# ----------------------------------------------------------------------------
# rows
# ----------------------------------------------------------------------------


def row(num: str, name: str, key: str, unit: str, **kw: Any) -> dict:
    d = {"num": num, "name": name, "pin": "unpinned", "key": key, "unit": unit, "value": None,
         "baseline": None, "baseline_name": "", "target": "", "result": "", "notes": []}
    d.update(kw)
    return d


def noisy(x: dict, unit: str) -> list[str]:
    if x.get("min") and x.get("max", 0) > 1.3 * x["min"]:
        return [f"noisy: slices ranged {x['min']:,.0f} to {x['max']:,.0f} {unit}"]
    return []


def sim_rows(res: dict) -> list[dict]:
    name = "GPIO toggles, simulator (sysfs backend): line.set() via local port"
    if not res.get("ok"):
        return [row("G1", name, "gpio_sim", "toggles/s", target=">= 30% of raw", result="ERROR",
                    notes=[res.get("error", "failed")])]
    d = res["result"]
    if "skipped" in d:
        return [row("G1", name, "gpio_sim", "toggles/s", target=">= 30% of raw", result="SKIP",
                    notes=[f"not run: {d['skipped']}"])]
    p, raw = d["sim_port"], d["sim_raw"]
    r = row("G1", name, "gpio_sim", "toggles/s", value=p["value"], baseline=raw["value"],
            baseline_name="raw pwrite", target=f">= {TOGGLE_TARGET:.0%} of raw")
    ok = p["value"] >= TOGGLE_TARGET * raw["value"]
    lost = [f"{k}: {x['calls']} writes, simulator counted {x['changes']} changes"
            for k, x in (("port", p), ("raw", raw)) if x["changes"] != x["calls"]]
    if lost or not p.get("level_ok"):
        ok = False
        r["notes"].append("toggles lost: " + "; ".join(lost) if lost else "final level wrong")
    r["result"] = "PASS" if ok else "MISS"
    r["notes"].append("baseline: os.pwrite() of b'1'/b'0' to the simulator's gpioN/value from this "
                      "Python (alternating slices); every write of both counted by MOUNT/sim/N.changes")
    r["notes"] += noisy(p, "toggles/s")
    q = d["sim_pipe"]
    rp = row("G1", "GPIO toggles, simulator (sysfs backend): pipelined line.set() via local port "
             f"(pipeline={PIPE_DEPTH})", "gpio_sim_pipe", "toggles/s", value=q["value"],
             baseline=raw["value"], baseline_name="raw pwrite", target=f">= {TOGGLE_TARGET:.0%} of raw")
    okp = q["value"] >= TOGGLE_TARGET * raw["value"]
    if q["changes"] != q["calls"] or not q.get("level_ok"):
        okp = False
        rp["notes"].append(f"toggles lost: {q['calls']} writes, simulator counted {q['changes']} changes")
    rp["result"] = "PASS" if okp else "MISS"
    rp["notes"].append(f"{PIPE_BURST} set()s then sync() per timed call (every write's reply checked "
                       "inside its slice); same simulator, same slices as the row above")
    rp["notes"] += noisy(q, "toggles/s")
    return [r, rp]


def vm_rows(res: dict) -> list[dict]:
    names = {
        "G2": "GPIO toggles, VM x86_64 gpio-sim (chardev): line.set() over the serial line",
        "G2d": "diagnostic: same ioctl, struct pre-packed (port.ioctl)",
        "G2s": "diagnostic: getpid over the same serial line",
        "G2p": f"GPIO toggles, VM x86_64 gpio-sim (chardev): pipelined line.set() over the serial line "
               f"(pipeline={PIPE_DEPTH})",
        "G2ps": "GPIO toggles, VM x86_64 gpio-sim (chardev): pipelined line.set() over the serial line "
                f"(pipeline={PIPE_DEPTH}), a stream: sync() every {PIPE_STREAM}",
        "G2l": "serial line's frame rate: host->guest bytes/s / bytes per toggle frame",
        "G2g": "GPIO toggles, VM x86_64 gpio-sim (chardev): via a port local to the guest, "
               "one call at a time",
        "G2f": "diagnostic: pipe ping-pong between two processes in the guest (22 B)",
        "G2gp": "GPIO toggles, VM x86_64 gpio-sim (chardev): via a port local to the guest, "
                f"pipelined ({PIPE_BURST} calls, then their replies)",
        "G3": "edge latency: gpio-sim pull write (via port) -> Python edge, p50",
        "G3b": "edge latency, p99",
        "G4": f"edges at 1 kHz ({EDGES_N} pulls in the guest): kernel edge events -> Python",
    }
    units = {"G2": "toggles/s", "G2d": "calls/s", "G2s": "calls/s", "G2p": "toggles/s", "G2ps": "toggles/s",
             "G2l": "toggles/s", "G2g": "toggles/s", "G2gp": "toggles/s", "G2f": "round trips/s",
             "G3": "ms", "G3b": "ms", "G4": "edges"}
    keys = {"G2": "gpio_vm", "G2d": "gpio_vm_ioctl", "G2s": "gpio_vm_getpid", "G2p": "gpio_vm_pipe",
            "G2ps": "gpio_vm_pipe_stream",
            "G2l": "gpio_vm_line_limit", "G2g": "gpio_vm_local", "G2gp": "gpio_vm_local_pipe",
            "G2f": "gpio_vm_pingpong",
            "G3": "gpio_edge_p50",
            "G3b": "gpio_edge_p99", "G4": "gpio_edges_1khz"}
    targets = {"G2": f">= {TOGGLE_TARGET:.0%} of raw", "G2d": "—", "G2s": "— (transport floor)",
               "G2p": f">= {PIPE_X}x line.set() (issue 11: 1.2k/s -> 12k/s) or >= {PIPE_LIMIT:.0%} "
                      "of the line's frame rate",
               "G2ps": f">= {PIPE_X}x line.set() (issue 11: 1.2k/s -> 12k/s) or >= {PIPE_LIMIT:.0%} "
                       "of the line's frame rate",
               "G2l": "— (report)", "G2g": f">= {TOGGLE_TARGET:.0%} of raw",
               "G2gp": f">= {TOGGLE_TARGET:.0%} of raw", "G2f": "— (floor of G2g)",
               "G3": "— (report)", "G3b": "— (report)", "G4": "none lost"}

    def base(k: str, **kw: Any) -> dict:
        return row(k[:2], names[k], keys[k], units[k], target=targets[k], **kw)

    if not res.get("ok") or "skipped" in res.get("result", {}):
        skipped = res.get("result", {}).get("skipped")
        why = f"not run: {skipped}" if skipped else res.get("error", "failed")
        return [base(k, result="SKIP" if skipped else "ERROR", notes=[why]) for k in names]
    d = res["result"]
    rows = []
    s, raw = d["vm_set"], d["vm_raw"]
    r = base("G2", value=s["value"], baseline=raw["value"], baseline_name="raw ioctl loop in guest")
    r["result"] = "PASS" if s["value"] >= TOGGLE_TARGET * raw["value"] else "MISS"
    if not (s.get("level_ok") and raw.get("level_ok")):
        r["result"] = "MISS"
        r["notes"].append("gpio-sim's sim_gpioN/value did not show the last level written")
    r["notes"].append(
        "baseline: bench/gpio_toggle.c in the guest (copied in through the port, exec'd by it): "
        "GPIO_V2_LINE_SET_VALUES_IOCTL in a C loop on its own line of the same chip, what a libgpiod "
        "loop does (the guest has no Python for a gpiod loop); the port's figure pays one serial "
        f"round trip per toggle (getpid over the same line: {d['vm_getpid']['value']:,.0f}/s), "
        f"the raw loop none; guest booted in {d['boot_s']:.1f} s, TCG (no KVM)")
    if d.get("vmin_workaround"):
        r["notes"].append("the serial fd was set to VMIN=1 first: niche.Port's serial transport "
                          "otherwise fails its first call (see bench/README.md)")
    r["notes"] += noisy(s, "toggles/s")
    rows.append(r)
    rows.append(base("G2d", value=d["vm_ioctl"]["value"], baseline=s["value"], baseline_name="line.set()",
                     result="—", notes=noisy(d["vm_ioctl"], "calls/s")))
    rows.append(base("G2s", value=d["vm_getpid"]["value"], result="—",
                     notes=noisy(d["vm_getpid"], "calls/s")))
    p, ln = d["vm_pipe"], d["vm_line"]
    limit = ln["bytes_s"] / ln["frame"]
    rp = base("G2p", value=p["value"], baseline=limit, baseline_name="line's frame rate")
    ok = p["value"] >= PIPE_X * PIPE_BEFORE or p["value"] >= PIPE_LIMIT * limit
    rp["result"] = "PASS" if ok and p.get("level_ok") else "MISS"
    rp["notes"].append(f"{PIPE_BURST} set()s then sync() per timed call, every reply checked in its "
                       f"slice; {p['value'] / s['value']:.1f}x line.set() of row G2 in this run "
                       f"({s['value']:,.0f}/s); issue 11's before: {PIPE_BEFORE:,.0f}/s")
    if not p.get("level_ok"):
        rp["notes"].append("gpio-sim's sim_gpioN/value did not show the last level written")
    rp["notes"] += noisy(p, "toggles/s")
    rows.append(rp)
    q = d["vm_pipe_stream"]
    rq = base("G2ps", value=q["value"], baseline=limit, baseline_name="line's frame rate")
    ok = q["value"] >= PIPE_X * PIPE_BEFORE or q["value"] >= PIPE_LIMIT * limit
    rq["result"] = "PASS" if ok else "MISS"
    rq["notes"].append(f"{PIPE_STREAM} set()s then sync() per timed call (the row above syncs every "
                       f"{PIPE_BURST}, and so drains the pipeline that often); "
                       f"{q['value'] / s['value']:.1f}x line.set() of row G2 in this run")
    rq["notes"] += noisy(q, "toggles/s")
    rows.append(rq)
    rows.append(base("G2l", value=limit, result="—", notes=[
        f"{ln['bytes_s'] / 1e3:,.0f} kB/s host->guest (write() of 16 KiB frames to the guest's "
        f"/dev/null, slices interleaved with G2p's) / {ln['frame']} B per toggle frame (the "
        "ioctl call as encoded); replies go the other way, on their own direction of the line"]
        + noisy({k: v / ln["frame"] for k, v in ln.items() if k in ("min", "max")}, "toggles/s")))
    for k, key in (("G2g", "vm_local"), ("G2gp", "vm_local_pipe")):
        x = d[key]
        r = base(k, value=x["value"], baseline=raw["value"], baseline_name="raw ioctl loop in guest")
        r["result"] = "PASS" if x["value"] >= TOGGLE_TARGET * raw["value"] and x["level_ok"] else "MISS"
        if k == "G2g":
            r["notes"].append(
                "bench/gpio_toggle.c `port` in the guest: it requests the line, starts the guest's "
                "/niche-port on two pipes with the line's descriptor, forks a child of it and sends "
                "GPIO_V2_LINE_SET_VALUES_IOCTL calls to that child (depth 1, as a line holder is), "
                "frames encoded by niche.protocol on the host; every reply checked; same raw loop "
                "as row G2")
        if not x["level_ok"]:
            r["notes"].append("gpio-sim's sim_gpioN/value did not show the last level written")
        r["notes"] += noisy(x, "toggles/s")
        rows.append(r)
    pp = d["vm_pingpong"]
    rows.append(base("G2f", value=pp["value"], result="—", notes=[
        "bench/gpio_toggle.c `pingpong`: what one local round trip between two processes costs in "
        "this guest (TCG: a context switch flushes the emulated TLB); G2g makes two per toggle "
        "(client -> port -> holder and back)"] + noisy(pp, "round trips/s")))
    e = d["edge_lat"]
    note = (f"{e['n']} edges; host time from the pull write call to the edge in line.edges(): two "
            f"serial hops (the write call's round trip alone: p50 {e['write_p50_ms']:.2f} ms) and the "
            f"holder's watch; max {e['max_ms']:.1f} ms")
    if e["wrong"]:
        note += f"; {e['wrong']} writes gave no edge or the wrong one"
    rows.append(base("G3", value=e["p50_ms"], result="—" if not e["wrong"] else "MISS", notes=[note]))
    rows.append(base("G3b", value=e["p99_ms"], result="—"))
    k, x = d["edges_1khz"], d["edges_max"]
    # niche's part: every event the kernel queued reaches Python (seqno contiguous)
    ok = k["got"] == k["kernel_seq"] and k["seq_gaps"] == 0 and k["got"] > 0
    r = base("G4", value=k["got"], baseline=k["kernel_seq"], baseline_name="kernel events",
             result="PASS" if ok else "MISS")
    if k["sent"] != k["kernel_seq"]:
        r["notes"].append(
            f"{k['sent'] - k['kernel_seq']} of the {k['sent']} pulls made no kernel event: gpio-sim's "
            "irq_sim merges two pulls whose irq work has not run in between (the TCG guest's vCPU "
            "stalls; see the longest gap), before anything niche reads")
    r["notes"].append(
        f"bench/gpio_toggle.c in the guest writes pull-up/pull-down to sim_gpioN/pull, each write at "
        f"least {EDGES_PERIOD_US} us after the last (shortest gap {k['mingap_us']:.0f} us, longest "
        f"{EDGES_PERIOD_US / 1e3 + (k['late_max_us'] or 0) / 1e3:.1f} ms; {k['guest_ms']:.0f} ms in "
        f"all); {_losses(k)}; in Python {k['wall_s']:.2f} s after the exec")
    r["notes"].append(f"as fast as the guest writes ({x['sent']} in {x['guest_ms']:.1f} ms): {_losses(x)}")
    if d.get("children_left"):
        r["notes"].append(f"children of the guest's port left: {d['children_left']}")
    rows.append(r)
    return rows


def _losses(x: dict) -> str:
    """Where edges went missing: merged at the source (gpio-sim's irq_sim
    fires once for two pulls before its irq work runs: no event, no seqno) or
    dropped after the kernel queued them (a seqno gap: the line's event
    buffer overflowed before the holder's watch read it)."""
    merged = x["sent"] - x["kernel_seq"]
    dropped = x["kernel_seq"] - x["got"]
    return (f"{x['got']} of {x['sent']} edges received, seqno contiguous: {x['seq_gaps'] == 0} "
            f"({x['seq_gaps']} gaps, {dropped} queued by the kernel but not received), "
            f"{merged} merged before the kernel queued them, alternating: {x['alternating']}")


def run_group(name: str, budget: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", name, "--budget", str(budget)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=WORKER_TIMEOUT[name], cwd=str(ROOT))
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {WORKER_TIMEOUT[name]:.0f}s"}
    for ln in reversed(p.stdout.splitlines()):
        if ln.startswith("BENCH-RESULT "):
            d = json.loads(ln[len("BENCH-RESULT ") :])
            if not d["ok"]:
                d["stderr"] = p.stderr
            return d
    return {"ok": False, "error": f"worker exited {p.returncode} without a result", "stderr": p.stderr}


def run(budget: float, groups: tuple[str, ...] = GROUPS, log: Any = None) -> list[dict]:
    """Measure and return the rows (dicts with bench/run.py's Row fields)."""
    rows: list[dict] = []
    for gname in groups:
        t0 = now()
        res = run_group(gname, budget)
        if log:
            status = "ok" if res.get("ok") else "ERROR: " + res.get("error", "")
            if res.get("ok") and "skipped" in res["result"]:
                status = "skipped: " + res["result"]["skipped"]
            log(f"bench: gpio-{gname:<5} {'':<8} {now() - t0:5.1f} s  {status}")
            if not res.get("ok") and res.get("stderr"):
                log("    " + res["stderr"].strip()[-3000:].replace("\n", "\n    "))
        rows += sim_rows(res) if gname == "sim" else vm_rows(res)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", choices=GROUPS, help=argparse.SUPPRESS)
    ap.add_argument("--budget", type=float, default=float(os.environ.get("NICHE_BENCH_BUDGET", "1.2")))
    ap.add_argument("--only", default=",".join(GROUPS))
    args = ap.parse_args()
    if args.worker:
        try:
            res = (w_sim if args.worker == "sim" else w_vm)(args.budget)
            print("BENCH-RESULT " + json.dumps({"ok": True, "result": res}), flush=True)
        except BaseException as e:  # noqa: BLE001 - the row says ERROR with the reason
            print(traceback.format_exc(), file=sys.stderr)
            print("BENCH-RESULT " + json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}),
                  flush=True)
        return 0
    groups = tuple(g for g in args.only.split(",") if g)
    print(json.dumps(run(args.budget, groups, log=lambda s: print(s, file=sys.stderr)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
