"""The bad-input table (docs/robustness.md), from real runs: never edit the
table by hand, run ``make robustness`` (or ``tools/robustness.py --quick``).

Each class of bad input is sent N times to the real thing (the native port,
a niche-agent on the FUSE simulator with a real mosquitto, the agent's
config checker) and every case is sorted into one outcome:

- error: refused with a clear error (an exception with a message, a
  PROTOERR frame, an error topic, exit status 2 with a message);
- accepted: taken as valid input (harmless: only calls without effects are
  ever sent);
- crash: the port or agent died, or Python raised something unexplained;
- hang: no answer within the timeout;
- lost: a valid request after the case got a wrong answer or none.

After every batch a valid request must still work ("stays up").
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import queue
import random
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "agent"))

import niche  # noqa: E402
from niche import protocol as P  # noqa: E402
from niche._calls import CALLS  # noqa: E402

PORT_BIN = Path(os.environ.get("NICHE_PORT") or ROOT / "build" / "native" / "niche-port")
AGENT = ROOT / "build" / "venv" / "bin" / "niche-agent"
OUTCOMES = ("error", "accepted", "crash", "hang", "lost")
T = 5.0  # seconds for any one answer
Result = tuple[Counter, bool]  # outcomes, stayed up
JUNK: list[Any] = [None, -1, 0, 1 << 40, 1 << 63, -(1 << 70), 1.5, float("nan"), "", "x" * 200_000,
                   b"\0" * 64, "NOT_A_CONSTANT", "\udcff", [1, "a", None], {"a": 1}, object(), True]
# calls of port/calls.spec without effects on the system, whatever their arguments
SAFE_CALLS = ["version", "getpid", "getppid", "cpid", "getcpid", "getopt", "getenv", "environ",
              "getcwd", "clone_constant", "signal_constant", "errno_constant", "errno_id",
              "signal_id", "prctl_constant", "rlimit_constant", "getrlimit", "getresuid",
              "getresgid", "getgroups"]


def clean(data: bytes) -> bytes:
    """Random bytes that can never be read as a frame (so never as a call)."""
    return data.replace(P.MAGIC, b"N?")


# --- frames: the native port, byte by byte ------------------------------------


class RawPort:
    """The port on pipes; frames read up by a thread (niche.protocol's codec)."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen([str(PORT_BIN)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.DEVNULL)
        self.frames: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.rid = 0
        self.send(P.encode_hello())
        self.get(lambda f: f[0] == 0x81)

    def _read(self) -> None:
        f = self.proc.stdout
        assert f is not None
        while (hdr := f.read(P.HDR)) and len(hdr) == P.HDR:
            _, ftype, depth, n = P.HEADER.unpack(hdr)
            rest = f.read(n)
            self.frames.put((ftype, rest[4 * depth:]))
        self.frames.put(None)

    def send(self, data: bytes) -> bool:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
            return True
        except (BrokenPipeError, OSError):
            return False

    def get(self, pred: Callable[[tuple[int, bytes]], bool], timeout: float = T) -> tuple[list, Any]:
        """(frames before, the first frame matching pred); None: closed; 'hang'."""
        seen, deadline = [], time.monotonic() + timeout
        while True:
            try:
                fr = self.frames.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return seen, "hang"
            if fr is None or pred(fr):
                return seen, fr
            seen.append(fr)

    def probe(self) -> tuple[str, int]:
        """Flush a cut frame with zeros, then getpid: the outcome of what came before."""
        self.rid += 1
        rid = self.rid
        if not self.send(bytes(P.MAX_FRAME) + P.encode_call(rid, (), CALLS["getpid"], [])):
            return "crash", 0
        seen, fr = self.get(lambda f: f[0] == 0x82 and struct.unpack(">I", f[1][:4])[0] == rid)
        errs = sum(1 for f in seen if f[0] == 0x87)
        if fr is None:
            return "crash", errs
        if fr == "hang":
            return "hang", errs
        value, _ = P.decode_term(fr[1], 5)
        if fr[1][4] != 0 or value != self.proc.pid:
            return "lost", errs
        return ("error" if errs else "accepted"), errs

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


def frame_cases(rng: random.Random) -> Iterator[bytes]:
    ok = P.encode_call(1, (), CALLS["getpid"], [])
    while True:
        kind = rng.randrange(6)
        if kind == 0:
            yield clean(rng.randbytes(rng.randrange(1, 4096)))
        elif kind == 1:  # truncated
            yield ok[:rng.randrange(1, len(ok))]
        elif kind == 2:  # bad header: a depth the length cannot hold
            yield P.MAGIC + bytes([0x01, rng.randrange(2, 256)]) + struct.pack(">I", 4) + bytes(4)
        elif kind == 3:  # oversize
            yield P.MAGIC + bytes([0x01, 0]) + struct.pack(">I", P.MAX_FRAME + rng.randrange(1, 1 << 30))
        elif kind == 4:  # bad magic
            yield b"XC" + ok[2:]
        else:  # bad version / unknown frame type
            yield rng.choice([P.frame(0x02, (), struct.pack(">H", rng.randrange(2, 65536))),
                              P.frame(rng.randrange(3, 0x80), (), rng.randbytes(8))])


def run_frames(n: int, rng: random.Random) -> Result:
    out: Counter = Counter()
    port = RawPort()
    try:
        for data, _ in zip(frame_cases(rng), range(n), strict=False):
            port.send(data)
            res, _ = port.probe()
            out[res] += 1
            if res in ("crash", "hang"):
                port.close()
                port = RawPort()
        return out, port.probe()[0] in ("accepted", "error")
    finally:
        port.close()


# --- call arguments: niche.Port ------------------------------------------------


def call_outcome(fn: Callable[[], Any]) -> str:
    try:
        fn()
    except niche.PortClosed:
        return "crash"
    except TimeoutError:
        return "hang"
    except (TypeError, ValueError, OverflowError, OSError, niche.PortError, UnicodeError) as e:
        return "error" if str(e) else "crash"
    except Exception:  # noqa: BLE001 (anything else is a bug: counted, not hidden)
        return "crash"
    return "accepted"


def run_calls(n: int, rng: random.Random) -> Result:
    out: Counter = Counter()
    with niche.Port(str(PORT_BIN)) as port:
        pid = port.getpid([])
        names = [c for c in SAFE_CALLS if hasattr(port, c)]
        for _ in range(n):
            fn = getattr(port, rng.choice(names))
            args = [rng.choice(JUNK) for _ in range(rng.randrange(0, 4))]
            out[call_outcome(lambda fn=fn, args=args: fn([], *args, timeout=T))] += 1
        return out, port.getpid([], timeout=T) == pid


# --- serial garbage: a pty between niche.Port(serial=...) and the port --------


def run_serial(n: int, rng: random.Random) -> Result:
    out: Counter = Counter()
    master, slave = os.openpty()
    proc = subprocess.Popen([str(PORT_BIN)], stdin=master, stdout=master, start_new_session=True)
    os.close(master)
    try:
        with niche.Port(serial=os.ttyname(slave)) as port:
            for _ in range(n):
                seen = len(port.protocol_errors)
                os.write(slave, clean(rng.randbytes(rng.randrange(1, 512))))  # down the line
                res = call_outcome(lambda: port.getpid([], timeout=T) == proc.pid or 1 / 0)
                if res == "accepted" and len(port.protocol_errors) > seen:
                    res = "error"  # the port said what it skipped (a PROTOERR, before the reply)
                out["lost" if res == "crash" and proc.poll() is None else res] += 1
            return out, port.getpid([], timeout=T) == proc.pid
    finally:
        proc.kill()
        proc.wait(10)
        os.close(slave)


# --- configs and board files: niche-agent --check -----------------------------

GOOD = '[agent]\nid = "r"\nboard = "sim"\n[mqtt]\nhost = "127.0.0.1"\n[gpio.led]\npin = "SIM3"\n'
CONFIG_MUTATIONS = [
    "", "[agent", "[agent]\nid = 3\n", GOOD.replace('"SIM3"', '"NOPE99"'), GOOD + "[gpio.x]\npin = 1\n",
    GOOD.replace('"sim"', '"no-such-board"'), GOOD + '[gpio.led2]\npin = "SIM3"\n',
    GOOD + '[gpio.y]\npin = "SIM4"\ndirection = "sideways"\n', GOOD.replace('"127.0.0.1"', "[]"),
    GOOD + "[mqtt]\nport = 99999\n", GOOD + '[driver.d]\ncommand = []\n', "\0\xff\xfe",
    GOOD + '[gpio.z]\npin = "SIM5"\ndebounce_ms = -4\n', GOOD + "[port]\nserial = 7\n",
]


def check_config(text: str, d: Path) -> str:
    p = d / "agent.toml"
    p.write_text(text, errors="surrogateescape")
    try:
        r = subprocess.run([str(AGENT), "--check", "-c", str(p)], capture_output=True, text=True,
                           timeout=30, cwd=d)
    except subprocess.TimeoutExpired:
        return "hang"
    if "Traceback" in r.stderr or r.returncode not in (0, 2):
        return "crash"
    return "accepted" if r.returncode == 0 else ("error" if r.stderr.strip() else "crash")


def run_configs(n: int, rng: random.Random) -> Result:
    out: Counter = Counter()
    with tempfile.TemporaryDirectory() as d:
        for i in range(n):
            base = CONFIG_MUTATIONS[i % len(CONFIG_MUTATIONS)]
            if i >= len(CONFIG_MUTATIONS):  # then random damage to the good one
                cut = rng.randrange(len(GOOD))
                base = GOOD[:cut] + rng.choice(["=", "[", '"', "\n", "]]", "ö", "0x"]) + GOOD[cut:]
            out[check_config(base, Path(d))] += 1
        return out, check_config(GOOD, Path(d)) == "accepted"


BOARD_MUTATIONS = [
    '[pins]\nX1 = { sysfs = -1 }\n', '[pins]\nX1 = { chip = "nope", line = 999 }\n',
    '[pins]\nX1 = "GPIO17"\n', '[pins]\nX1 = { sysfs = 3 }\nX1b = { sysfs = 3 }\n', "[pins]\n",
    '[pins]\nX1 = { sysfs = 99999999999999999999 }\n', "pins = 3\n", '[pins]\n"" = { sysfs = 1 }\n',
]


def run_boards(n: int, rng: random.Random) -> Result:
    out: Counter = Counter()
    with tempfile.TemporaryDirectory() as d:
        for i in range(n):
            body = BOARD_MUTATIONS[i % len(BOARD_MUTATIONS)]
            (Path(d) / "bad.toml").write_text(f'name = "bad"\nbackend = "sysfs"\n{body}')
            pin = rng.choice(["X1", "X2", "X1b", ""])
            cfg = GOOD.replace('"sim"', '"bad.toml"').replace('"SIM3"', f'"{pin}"')
            out[check_config(cfg, Path(d))] += 1
        return out, check_config(GOOD, Path(d)) == "accepted"


# --- MQTT: a running agent on the simulator, a real mosquitto -----------------


def agent_helpers() -> Any:
    """tests/agent/conftest.py (Broker, AgentProc, Collector), under the name
    the test suite gives it, loaded once."""
    if "agenthelpers" not in sys.modules:
        path = ROOT / "tests" / "agent" / "conftest.py"
        spec = importlib.util.spec_from_file_location("agenthelpers", path)
        assert spec and spec.loader
        mod = importlib.util.module_from_spec(spec)
        sys.modules["agenthelpers"] = mod
        spec.loader.exec_module(mod)
    return sys.modules["agenthelpers"]


def run_mqtt(n: int, rng: random.Random) -> Result:
    from niche.gpio.sim import Simulator

    h = agent_helpers()

    out: Counter = Counter()
    with tempfile.TemporaryDirectory() as d:
        sim = Simulator(Path(d) / "gpio", timeout=20)
        sim.start()
        broker = h.Broker(Path(d) / "broker").start()
        a = h.AgentProc(Path(d) / "agent", broker, h.SimView(sim.root, sim))
        client = None
        try:
            client = h.Collector(broker)
            m = client.mark()
            a.start()
            client.wait_topic(a.topic("status"), "online", since=m, timeout=20)
            payloads = [b"", b"\xff\xfe", b"ON" * 50_000, b"{", b'{"state": []}', b"[1,2", b"null",
                        b'{"blink": -1}', b"42", b"TOGGLE\0", b'{"pulse_ms": 1e309}']
            topics = [a.topic("gpio", "led", "set"), a.topic("gpio", "nope", "set"), a.topic("gpio", "led"),
                      a.topic("gpio", "btn", "set"), a.topic("driver", "x", "stdin"), a.topic("x", "y", "z"),
                      a.topic("gpio", "led", "set", "extra"), a.topic("gpio", "", "set")]
            for i in range(n):
                topic, payload = rng.choice(topics), rng.choice(payloads)
                if i % 3 == 0:
                    payload = clean(rng.randbytes(rng.randrange(0, 300)))
                m = client.mark()
                client.publish(topic, payload)
                # the agent answers every command: with a state or on its error topic
                probe = client.mark()
                client.publish(a.topic("gpio", "lamp", "set"), "ON" if i % 2 else "OFF")
                try:
                    client.wait_topic(a.topic("gpio", "lamp"), "ON" if i % 2 else "OFF", since=probe,
                                      timeout=T)
                except AssertionError:
                    out["crash" if not a.running() else "lost"] += 1
                    continue
                errs = [x for x in client.since(m) if x.topic == a.topic("error")]
                out["error" if errs else "accepted"] += 1
            probe = client.mark()
            client.publish(a.topic("gpio", "lamp", "set"), "TOGGLE")
            up = a.running() and bool(client.wait_for(lambda x: x.topic == a.topic("gpio", "lamp"),
                                                      since=probe, timeout=T))
            return out, up
        finally:
            if client is not None:
                client.close()
            a.cleanup()
            broker.stop()
            sim.stop()


CLASSES: dict[str, tuple[str, Callable[[int, random.Random], Result]]] = {
    "frames": ("random bytes, truncated, bad header, oversize, bad magic, bad version/type; "
               "raw on the native port's stdin", run_frames),
    "call arguments": ("wrong types, out-of-range ints, unknown constants, 200 kB strings "
                       f"to the {len(SAFE_CALLS)} calls without effects, through niche.Port", run_calls),
    "MQTT payloads and topics": ("garbage, oversize, bad JSON, unknown lines, inputs, wrong topics, "
                                 "to an agent on the simulator via mosquitto", run_mqtt),
    "configs": ("agent.toml variants: syntax, types, unknown pins/boards, duplicates, ranges; "
                "niche-agent --check", run_configs),
    "serial garbage": ("random bytes written on the pty between niche.Port(serial=...) and the port",
                       run_serial),
    "board file with wrong pins": ("board.toml with bad/duplicate/huge/missing pins and configs "
                                   "naming pins it lacks", run_boards),
}


def table(results: dict[str, tuple[Counter, bool]], n: int) -> str:
    head = ["# Bad input: what was tried and what happened", "",
            "Generated by `make robustness` (tools/robustness.py): do not edit by hand.",
            f"Each class ran N = {n} cases against the real port/agent (seed 10). ",
            "*error*: refused with a clear error; *accepted*: valid input; *crash*, *hang*, *lost*: "
            "must be 0. *stays up*: a valid request after the batch is answered correctly.", "",
            "| class | what | tried | " + " | ".join(OUTCOMES) + " | stays up |",
            "| --- | --- | ---: | " + " | ".join("---:" for _ in OUTCOMES) + " | --- |"]
    rows = []
    for name, (what, _) in CLASSES.items():
        c, up = results[name]
        rows.append(f"| {name} | {what} | {sum(c.values())} | " + " | ".join(str(c[o]) for o in OUTCOMES)
                    + f" | {'yes' if up else 'NO'} |")
    return "\n".join(head + rows) + "\n"


def parse(text: str) -> dict[str, dict[str, Any]]:
    """The rows of a table made by table(): class -> {tried, outcomes..., up}."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 + len(OUTCOMES) and cells[0] in CLASSES:
            nums = [int(x) for x in cells[2:3 + len(OUTCOMES)]]
            rows[cells[0]] = {"tried": nums[0], **dict(zip(OUTCOMES, nums[1:], strict=True)),
                              "up": cells[-1] == "yes"}
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=300, help="cases per class")
    ap.add_argument("--quick", action="store_true", help="n = 12 (the test's run)")
    ap.add_argument("-o", "--output", type=Path, help="write the table here (default: stdout)")
    args = ap.parse_args(argv)
    n = 12 if args.quick else args.n
    results = {}
    for name, (_, run) in CLASSES.items():
        t0 = time.monotonic()
        results[name] = run(n, random.Random(10))
        print(f"{name}: {dict(results[name][0])} up={results[name][1]} ({time.monotonic() - t0:.1f} s)",
              file=sys.stderr)
    text = table(results, n)
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    bad = any(c[o] for c, _ in results.values() for o in ("crash", "hang", "lost"))
    return 1 if bad or not all(up for _, up in results.values()) else 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
