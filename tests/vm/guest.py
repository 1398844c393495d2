"""Boot a VM-lane guest under qemu-system and hand out its serial line.

The guest (built by `make vm-prep` into build/vm/<arch>/) runs vm/init.c as
PID 1, which prints NICHE-* lines on the console and then runs the port with
its stdin/stdout on a second serial device. Here that device is a qemu
`-chardev pty`, so `start()` returns a /dev/pts path that behaves like a
serial-attached board: `niche.Port(serial=path)`.

    g = Guest("arm64"); path = g.start(); ...; g.stop()

Logs: build/vm/<arch>/console.log (the guest's console) and qemu.log.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
VMDIR = Path(os.environ.get("NICHE_VM_DIR", ROOT / "build" / "vm"))
ARCHES = ("x86_64", "arm64", "armhf", "raspi0")

# qemu per guest: binary, machine arguments, console device, port tty in the guest
_MACHINES = {
    "x86_64": ("qemu-system-x86_64",
               ["-machine", "q35", "-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "2",
                "-m", "512"],
               "ttyS0", "hvc0"),
    "arm64": ("qemu-system-aarch64",
              ["-M", "virt", "-cpu", "cortex-a53", "-m", "512"],
              "ttyAMA0", "hvc0"),
    "armhf": ("qemu-system-arm",
              ["-M", "virt,highmem=off", "-cpu", "cortex-a15", "-m", "512"],
              "ttyAMA0", "hvc0"),
    # the real BCM2835 GPIO driver; console on the PL011, the port on the mini UART
    "raspi0": ("qemu-system-arm", ["-M", "raspi0"], "ttyAMA0", "ttyS1"),
}

REQUIRE = os.environ.get("NICHE_REQUIRE_VM") == "1"


def vm_unavailable(reason: str) -> None:
    """Skip the test (or fail it, under NICHE_REQUIRE_VM=1) with one clear line."""
    import pytest

    msg = f"VM lane not run: {reason}"
    if REQUIRE:
        pytest.fail(msg + " (NICHE_REQUIRE_VM=1)", pytrace=False)
    pytest.skip(msg)


BOOT_TIMEOUT = float(os.environ.get("NICHE_VM_BOOT_TIMEOUT", "120"))


class GuestError(RuntimeError):
    pass


def _die_with_parent() -> None:
    """In the qemu child: SIGKILL when the test process dies, however it dies."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def lane_problem() -> str | None:
    """Why no guest at all can run here, or None."""
    if not any(shutil.which(m[0]) for m in _MACHINES.values()):
        return "qemu-system is not installed (`make vm-deps` installs it, as root)"
    if not any((VMDIR / a / "guest.json").exists() for a in ARCHES):
        return f"no guest is built under {VMDIR} (`make vm-prep` builds them)"
    return None


def qemu_problem(arch: str) -> str | None:
    """Why this guest cannot run here, or None."""
    binary = _MACHINES[arch][0]
    if not shutil.which(binary):
        return f"{binary} not found (make vm-deps installs qemu-system-x86/qemu-system-arm)"
    cfg = VMDIR / arch / "guest.json"
    if not cfg.exists():
        shown = cfg.relative_to(ROOT) if cfg.is_relative_to(ROOT) else cfg
        return f"{shown} missing (make vm-prep builds it)"
    return None


def qemu_user(arch: str) -> list[str] | None:
    """The qemu-user command prefix for a guest's port binary (None: native)."""
    return {
        "arm64": ["qemu-aarch64-static", "-cpu", "cortex-a53"],
        "armhf": ["qemu-arm-static", "-cpu", "cortex-a8"],
        "raspi0": ["qemu-arm-static", "-cpu", "arm1176"],
    }.get(arch)


def port_binary(arch: str) -> Path:
    """The port binary that goes into this guest (build/vm/ARCH/guest.json),
    or the cross build of `make cross` when the guest is not assembled."""
    cfg = VMDIR / arch / "guest.json"
    if cfg.exists():
        return Path(json.loads(cfg.read_text())["port"])
    triple = {"x86_64": "native", "arm64": "aarch64-linux-musl",
              "armhf": "armv7-linux-musleabihf", "raspi0": "armv6-linux-musleabihf"}[arch]
    return ROOT / "build" / triple / "niche-port"


class Guest:
    def __init__(self, arch: str):
        if arch not in _MACHINES:
            raise ValueError(f"unknown guest {arch!r}; one of {ARCHES}")
        self.arch = arch
        self.dir = VMDIR / arch
        self.console = self.dir / "console.log"
        self.qemu_log = self.dir / "qemu.log"
        self.proc: subprocess.Popen | None = None
        self.serial: str | None = None
        self.boot_seconds: float | None = None
        self.config = {}

    # -- lifecycle -------------------------------------------------------
    def command(self) -> list[str]:
        self.config = json.loads((self.dir / "guest.json").read_text())
        binary, machine, console, tty = _MACHINES[self.arch]
        append = f"console={console} panic=-1 niche_arch={self.arch} niche_tty={tty}"
        cmd = [binary, *machine, "-nodefaults", "-display", "none", "-no-reboot",
               "-kernel", self.config["kernel"], "-initrd", self.config["initrd"],
               "-append", append,
               "-serial", f"file:{self.console}"]
        if self.config.get("dtb"):
            cmd += ["-dtb", self.config["dtb"]]
        if tty == "hvc0":
            bus = "virtio-serial-pci" if self.arch == "x86_64" else "virtio-serial-device"
            cmd += ["-device", bus, "-chardev", "pty,id=port",
                    "-device", "virtconsole,chardev=port"]
        else:  # the second UART
            cmd += ["-chardev", "pty,id=port", "-serial", "chardev:port"]
        return cmd

    def start(self, timeout: float = BOOT_TIMEOUT) -> str:
        """Boot; wait for the READY line; return the port's serial path."""
        problem = qemu_problem(self.arch)
        if problem:
            raise GuestError(problem)
        self.console.unlink(missing_ok=True)
        cmd = self.command()
        t0 = time.monotonic()
        with open(self.qemu_log, "wb") as log:
            log.write((" ".join(cmd) + "\n").encode())
            log.flush()
            self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         preexec_fn=_die_with_parent)
        deadline = t0 + timeout
        while True:
            qlog = self.qemu_log.read_text(errors="replace")
            m = re.search(r"char device redirected to (/dev/pts/\d+) \(label port\)", qlog)
            if m:
                self.serial = m.group(1)
            con = self.console.read_text(errors="replace") if self.console.exists() else ""
            if "NICHE-FAIL" in con:
                self.stop()
                raise GuestError(f"{self.arch}: init failed\n{self.logs()}")
            if "NICHE-READY" in con and self.serial:
                break
            if self.proc.poll() is not None:
                raise GuestError(f"{self.arch}: qemu exited ({self.proc.returncode}) "
                                 f"before READY\n{self.logs()}")
            if time.monotonic() > deadline:
                self.stop()
                raise GuestError(f"{self.arch}: no READY within {timeout:.0f} s\n{self.logs()}")
            time.sleep(0.1)
        self.boot_seconds = time.monotonic() - t0
        return self.serial

    def stop(self, timeout: float = 10) -> None:
        """Stop qemu (SIGTERM, then SIGKILL); the guest has nothing to save."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def wait_exit(self, timeout: float = 30) -> int | None:
        """Wait for the guest to power off by itself (the port exited)."""
        if not self.proc:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    # -- what the guest said ---------------------------------------------
    def console_text(self) -> str:
        return self.console.read_text(errors="replace") if self.console.exists() else ""

    def gpiochips(self) -> list[dict]:
        """The gpiochips init saw: [{'name': 'gpiochip0', 'label': ..., 'lines': N}]."""
        out = []
        for m in re.finditer(r"NICHE-GPIOCHIP name=(\S+) label=(\S*) lines=(\d+)",
                             self.console_text()):
            out.append({"name": m.group(1), "label": m.group(2), "lines": int(m.group(3))})
        return out

    def logs(self, tail: int = 60) -> str:
        con = self.console_text().splitlines()[-tail:]
        q = self.qemu_log.read_text(errors="replace") if self.qemu_log.exists() else ""
        return (f"--- {self.qemu_log}\n{q}--- {self.console} (last {tail} lines)\n"
                + "\n".join(con))

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
