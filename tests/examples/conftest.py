"""Helpers for the tests of examples/chrootex and examples/nsex.

Each example runs as a real subprocess (build/venv/bin/python example.py -v)
with its stdin a pipe; nothing is mocked. ``-v`` makes the example print
the sandbox's host PID and UID on stderr; the helpers use them, and /proc,
to check that nothing is left behind.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PY = str(ROOT / "build" / "venv" / "bin" / "python") if (ROOT / "build/venv/bin/python").exists() \
    else sys.executable
MARK = "NICHE_EXAMPLE_TEST"  # in the environment of the example and its port


def _skip_reason() -> str | None:
    if not sys.platform.startswith("linux"):
        return "Linux only"
    if os.geteuid() != 0:
        return "the examples need root (namespaces, mount, chroot)"
    if not Path(os.environ.get("NICHE_PORT") or ROOT / "build/native/niche-port").exists():
        return "build/native/niche-port is not built (run make)"
    return None


@dataclass
class Run:
    rc: int
    out: str
    err: str
    pid: int  # the sandbox's PID on the host
    uid: int
    mark: str


def _parse(err: str) -> tuple[int, int]:
    m = re.search(r": pid (\d+) uid (\d+)", err)
    assert m, f"no '-v' line on stderr: {err!r}"
    return int(m.group(1)), int(m.group(2))


def _env(mark: str) -> dict[str, str]:
    env = dict(os.environ)
    env[MARK] = mark
    return env


def run_example(script: Path, commands: str, *args: str, timeout: float = 60) -> Run:
    """Run the example with commands piped to the shell; wait for its exit."""
    mark = secrets.token_hex(8)
    p = subprocess.run([PY, str(script), "-v", *args], input=commands, capture_output=True, text=True,
                       timeout=timeout, env=_env(mark), cwd=ROOT)
    pid, uid = _parse(p.stderr)
    return Run(p.returncode, p.stdout, p.stderr, pid, uid, mark)


class Session:
    """The example as a subprocess fed line by line (for timed input); as a
    context manager, killed at the end if still running."""

    def __init__(self, script: Path, *args: str) -> None:
        self.mark = secrets.token_hex(8)
        self.proc = subprocess.Popen([PY, str(script), "-v", *args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     env=_env(self.mark), cwd=ROOT)
        self.pid = self.uid = 0

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def send(self, line: str) -> None:
        assert self.proc.stdin
        self.proc.stdin.write(line)
        self.proc.stdin.flush()

    def ready(self, timeout: float = 20) -> int:
        """Wait for the shell to run; its UID (see wait_uid)."""
        self.send("echo ready\n")
        return self.wait_uid(timeout)

    def fork_bomb(self, seconds: float = 2) -> int:
        """Start a fork bomb in the (ready) shell; the most processes of the
        sandbox's UID seen on the host during ``seconds``."""
        self.send("b(){ b|b& }; b\n")
        peak = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            peak = max(peak, len(uid_pids(self.uid)))
            time.sleep(0.02)
        return peak

    def wait_uid(self, timeout: float = 20) -> int:
        """The sandbox's UID, found on the host: the process with the mark
        in its environment is the port; its child that has exec'd is the shell."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for pid in marked_pids(self.mark):
                for child in children(pid):
                    uid = proc_uid(child)
                    if uid not in (None, 0):
                        self.pid, self.uid = child, uid
                        return uid
            time.sleep(0.05)
        raise AssertionError("the sandbox did not start")

    def finish(self, timeout: float = 60) -> Run:
        out, err = self.proc.communicate(timeout=timeout)
        return Run(self.proc.returncode, out, err, self.pid, self.uid, self.mark)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def proc_uid(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def children(pid: int) -> list[int]:
    out = []
    for p in _pids():
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            out.append(p)
    return out


def marked_pids(mark: str) -> list[int]:
    """Processes whose environment holds the test's mark (the example, the port,
    and the port's children that have not exec'd)."""
    needle = f"{MARK}={mark}".encode()
    out = []
    for p in _pids():
        try:
            if needle in Path(f"/proc/{p}/environ").read_bytes().split(b"\0"):
                out.append(p)
        except OSError:
            continue
    return out


def uid_pids(uid: int) -> list[int]:
    return [p for p in _pids() if proc_uid(p) == uid]


def assert_nothing_left(run: Run, timeout: float = 5) -> None:
    """No process with the sandbox's UID, nor with the run's mark, is alive;
    the sandbox's host PID is gone."""
    deadline = time.monotonic() + timeout
    while True:
        left = uid_pids(run.uid) + marked_pids(run.mark)
        gone = not Path(f"/proc/{run.pid}").exists() or proc_uid(run.pid) != run.uid
        if not left and gone:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"left behind: {left} (sandbox pid {run.pid} gone: {gone})")
        time.sleep(0.05)


def assert_fork_bomb_held_to_nproc(script: Path, nproc: int = 8) -> None:
    """A fork bomb in the example's shell stops at ``--nproc`` processes (on
    the host and in the sandbox's /proc); the shell survives it."""
    with Session(script, "--nproc", str(nproc)) as s:
        s.ready()
        peak = s.fork_bomb()
        s.send("set -- /proc/[0-9]*; echo procs=$#\nexit 4\n")
        r = s.finish()
    assert r.rc == 4, r.err
    assert 2 <= peak <= nproc, peak
    m = re.search(r"procs=(\d+)", r.out)
    assert m and 1 <= int(m.group(1)) <= nproc, r.out
    assert "Cannot fork" in r.err or "can't fork" in r.err
    assert_nothing_left(r)


def host_mounts() -> str:
    """This (host) process's mount table, to compare before and after."""
    return Path("/proc/self/mountinfo").read_text()


def limits_of(out: str) -> dict[str, str]:
    """/proc/<pid>/limits as printed by cat: {'Max processes': '8', ...} (soft)."""
    res = {}
    for line in out.splitlines():
        m = re.match(r"(Max [a-z ]+?)\s{2,}(\S+)\s+(\S+)", line)
        if m:
            res[m.group(1)] = m.group(2)
    return res


@pytest.fixture(autouse=True)
def _needs_root() -> None:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)


sys.modules.setdefault("examplehelpers", sys.modules[__name__])
