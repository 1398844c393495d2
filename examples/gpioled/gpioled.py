#!/usr/bin/env python3
"""gpioled: blink an LED from a process that holds nothing but the LED.

The Python version of alcove's examples/gpioled.erl. Two processes of the
port do the work:

* the *port* process exports the pin (legacy sysfs) or requests the line
  (GPIO character device), clones the child, keeps only what it needs at the
  end (the ``unexport`` descriptor; nothing in --chardev mode) and drops its
  own privileges;
* the *child*, cloned into new IPC, mount, network, PID and UTS namespaces,
  chroots into the pin's ``gpioN/`` directory, opens ``value`` (or inherits
  only the line descriptor) and drops to a random high UID/GID with no
  capabilities and ``no_new_privs``. Every blink is a write (an ioctl) made
  by that child.

Run as root::

    examples/gpioled/gpioled.py 60 10                     # sysfs GPIO 60
    examples/gpioled/gpioled.py --board beaglebone P9_12  # a header pin
    examples/gpioled/gpioled.py --chardev gpiochip0:17    # uAPI v2
    examples/gpioled/gpioled.py --sysfs-root /tmp/sim 3 6 # the simulator

See README.md next to this file for every step and why.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import niche
from niche import uapi
from niche.gpio import chips
from niche.gpio.boards import Board
from niche.gpio.chardev import line_request
from niche.gpio.errors import GpioError
from niche.gpio.sysfs import chip_base
from niche.sandbox import (
    DEFAULT_LIMITS,
    NAMESPACES,
    Identity,
    SandboxError,
    drop_privileges,
    keep_only,
    verify,
)

T = 10.0  # timeout (seconds) of every port call
SYSFS_ROOT = "/sys/class/gpio"
# What the port process gives up for itself: it keeps its PID namespace
# (a new one would only apply to children it never makes again).
PORT_NAMESPACES = ["CLONE_NEWIPC", "CLONE_NEWNS", "CLONE_NEWNET", "CLONE_NEWUTS"]


def log(args: argparse.Namespace, msg: str) -> None:
    if args.verbose:
        print(f"gpioled: {msg}", file=sys.stderr, flush=True)


def describe(who: str, pid: int, st: dict[str, str]) -> str:
    """One line of what verify() read back from the process's own /proc/self/status."""
    return (f"{who} pid {pid} uid {st['Uid'].split()[0]} gid {st['Gid'].split()[0]} "
            f"CapEff {st.get('CapEff')} CapPrm {st.get('CapPrm')} NoNewPrivs {st.get('NoNewPrivs')} "
            f"NSpid {' '.join(st.get('NSpid', '').split())}")


# --- the privilege steps ------------------------------------------------------


def write_file(proc: niche.Process, path: str, data: bytes) -> None:
    fd = proc.open(path, ["O_WRONLY", "O_CLOEXEC"], timeout=T)
    try:
        proc.write(fd, data, timeout=T)
    finally:
        proc.close(fd, timeout=T)


def export(proc: niche.Process, root: str, number: int) -> str:
    """Ask the kernel for gpioN/ (EBUSY: it is already exported, which is fine);
    make it an output, low. Returns the pin's directory."""
    try:
        write_file(proc, f"{root}/export", str(number).encode())
    except FileNotFoundError as e:
        raise GpioError(f"no {root}/export: the kernel needs CONFIG_GPIO_SYSFS=y "
                        "(or use --chardev, or --sysfs-root for the simulator)") from e
    except OSError as e:
        if e.errno == errno.EINVAL:
            raise GpioError(f"GPIO {number} does not exist on this kernel") from e
        if e.errno != errno.EBUSY:
            raise
    d = f"{root}/gpio{number}"
    deadline = time.monotonic() + 2.0
    while True:  # udev may still be setting up (chown, chmod) the new directory
        try:
            write_file(proc, f"{d}/active_low", b"0")
            break
        except OSError as e:
            if e.errno not in (errno.ENOENT, errno.EACCES) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    # "low": direction out and level low in one store, no glitch
    write_file(proc, f"{d}/direction", b"low")
    return d


def empty_root(proc: niche.Process) -> None:
    """chroot into an empty, read-only tmpfs that exists only in the process's
    own mount namespace (mounted on /proc, which exists wherever the port
    runs: nothing outside sees it). Every descriptor it needs is open already."""
    proc.mount("none", "/", "", ["MS_REC", "MS_PRIVATE"], "", timeout=T)
    proc.mount("tmpfs", "/proc", "tmpfs", ["MS_RDONLY", "MS_NOSUID", "MS_NODEV", "MS_NOEXEC"],
               "size=4k,mode=0555", timeout=T)
    proc.chdir("/proc", timeout=T)
    proc.chroot(".", timeout=T)
    proc.chdir("/", timeout=T)


def sandbox_child(parent: niche.Process, keep: Sequence[int], chroot: str | None,
                  control: str | None, args: argparse.Namespace) -> tuple[niche.Process, int]:
    """Clone the child that will hold the LED; returns it and its descriptor
    (``control`` opened by the child itself inside the chroot, else keep[0])."""
    child = parent.clone(list(NAMESPACES), timeout=T)
    try:
        # 1. nothing inherited but what it needs (the port's unexport fd goes)
        keep_only(child, keep, timeout=T)
        # opened now, read after the drop: a chrooted process has no /proc
        status_fd = child.open("/proc/self/status", ["O_RDONLY", "O_CLOEXEC"], timeout=T)
        # 2. a root that is the pin's directory (or nothing at all)
        if chroot is not None:
            child.chdir(chroot, timeout=T)
            child.chroot(".", timeout=T)
            child.chdir("/", timeout=T)
        else:
            empty_root(child)
        # 3. the control file, opened by the child itself, while it still may
        fd = child.open(f"/{control}", ["O_WRONLY", "O_CLOEXEC"], timeout=T) if control else keep[0]
        # 4. no forks, few files
        for resource, lim in DEFAULT_LIMITS.items():
            child.setrlimit(resource, lim, timeout=T)
        # 5. a random high UID/GID: every capability goes; no_new_privs
        ident = Identity.random()
        drop_privileges(child, ident, timeout=T)
        # 6. read back by the child itself; any privilege left is an error
        st = verify(child, ident, status_fd, timeout=T)
        child.close(status_fd, timeout=T)
    except BaseException:
        kill_quietly(parent, child.pid)
        raise
    log(args, describe("child", child.pid, st))
    return child, fd


def drop_port(proc: niche.Process, args: argparse.Namespace) -> None:
    """The port process gives up the rest: it leaves the host's namespaces
    (but PID), takes an empty root and a random UID/GID. What it kept (the
    unexport descriptor) it was left with by keep_only() before the clone:
    now it also holds the pipes to the child, which must stay."""
    status_fd = proc.open("/proc/self/status", ["O_RDONLY", "O_CLOEXEC"], timeout=T)
    proc.unshare(PORT_NAMESPACES, timeout=T)
    empty_root(proc)
    ident = Identity.random()
    drop_privileges(proc, ident, timeout=T)
    st = verify(proc, ident, status_fd, timeout=T)
    proc.close(status_fd, timeout=T)
    log(args, describe("port", proc.pid, st))


def kill_quietly(parent: niche.Process, pid: int) -> None:
    try:
        parent.kill(pid, "SIGKILL", timeout=T)
    except (OSError, niche.PortError):
        pass


def wait_exit(port: niche.Port, proc: niche.Process, timeout: float = T) -> niche.port.Event | None:
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        ev = port.event(proc.chain, timeout=left)
        if ev is not None and ev[0] in ("exit_status", "termsig"):
            return ev
    return None


def finish_child(port: niche.Port, child: niche.Process) -> None:
    """The child exits by itself (the port process, no longer the same UID,
    could not signal it); its descriptor, the line, is closed with it."""
    try:
        child.exit(0, timeout=T)
    except niche.PortError:
        pass
    if wait_exit(port, child) is None:
        raise niche.PortError(f"the child {child.pid} did not exit")


# --- the two ways to reach the pin -------------------------------------------


@dataclass
class Led:
    name: str  # what the lines say: gpio60, gpiochip0:17
    child: niche.Process
    fd: int
    chardev: bool

    def set(self, value: bool) -> None:
        if self.chardev:
            self.child.ioctl(self.fd, "GPIO_V2_LINE_SET_VALUES_IOCTL",
                             uapi.pack("struct gpio_v2_line_values", bits=int(value), mask=1), timeout=T)
        else:
            self.child.write(self.fd, b"1" if value else b"0", timeout=T)


def sysfs_number(proc: niche.Process, args: argparse.Namespace, root: str) -> int:
    if args.board is None:
        try:
            return int(args.pin)
        except ValueError:
            raise GpioError(f"{args.pin!r}: a sysfs GPIO number, or a pin name with --board") from None
    board = Board.load(args.board)
    ref = board.resolve(args.pin)
    if ref.sysfs is not None:
        return ref.sysfs
    if ref.sysfs_offset is not None:
        return chip_base(proc, root, board.sysfs_chips, timeout=T) + ref.sysfs_offset
    raise GpioError(f"{args.pin}: no legacy sysfs number on the {board.name} board (try --chardev)")


def setup_sysfs(port: niche.Port, proc: niche.Process, args: argparse.Namespace):
    root = args.sysfs_root.rstrip("/") or "/"
    number = sysfs_number(proc, args, root)
    d = export(proc, root, number)
    ufd = proc.open(f"{root}/unexport", ["O_WRONLY", "O_CLOEXEC"], timeout=T)

    def unexport() -> None:
        proc.write(ufd, str(number).encode(), timeout=T)
        proc.close(ufd, timeout=T)

    try:
        keep_only(proc, [ufd], timeout=T)  # before the clone: the port has no child yet
        child, fd = sandbox_child(proc, [], d, "value", args)
    except BaseException:
        unexport()
        raise
    return Led(f"gpio{number}", child, fd, False), unexport


def setup_chardev(port: niche.Port, proc: niche.Process, args: argparse.Namespace):
    board = Board.load(args.board) if args.board else Board("generic")
    ref = board.resolve(args.chardev)
    try:
        chip, offset = chips.locate(proc, ref, hint=board.overlay_hint, timeout=T)
    except ValueError as e:  # gpioled says it as a usage error: --chardev CHIP:LINE or a pin
        raise GpioError(f"{e} (--chardev wants CHIP:LINE, e.g. gpiochip0:17 or a chip label, "
                        "or a pin name with --board)") from e
    req = line_request(proc, offset, direction="out", initial=False, active_low=False, bias=None,
                       edge=None, debounce_ms=None, consumer="gpioled", timeout=T)
    chipfd = proc.open(chip.path, ["O_RDWR", "O_CLOEXEC"], timeout=T)
    try:
        _, out = proc.ioctl(chipfd, "GPIO_V2_GET_LINE_IOCTL", req, timeout=T)
    except OSError as e:
        if not chips.is_busy(e):
            raise
        who = chips.line_info(proc, chip.path, offset, timeout=T).consumer or "an unnamed consumer"
        raise GpioError(f"{chip.name} line {offset} is busy: held by {who}") from e
    finally:
        proc.close(chipfd, timeout=T)
    linefd = uapi.unpack("struct gpio_v2_line_request", out).fd
    try:
        keep_only(proc, [linefd], timeout=T)
        child, fd = sandbox_child(proc, [linefd], None, None, args)
    finally:
        proc.close(linefd, timeout=T)  # only the child holds the line now
    return Led(f"{chip.name}:{offset}", child, fd, True), lambda: None


# --- main ----------------------------------------------------------------------


def blink(led: Led, count: int, interval: float) -> None:
    for i in range(count):
        for value in (True, False):
            led.set(value)
            print(f"{led.name} {'high' if value else 'low'}", flush=True)
            if i < count - 1 or value:
                time.sleep(interval)


def run(port: niche.Port, args: argparse.Namespace) -> int:
    # Locally the port's own root process is "the port" and drops its
    # privileges. Over --serial the port is a board's (or a VM's) PID 1
    # service that must stay root for whoever connects next: a forked
    # child of it plays the port's part, and is removed at the end.
    proc = port.root.fork(timeout=T) if args.serial else port.root
    led = None
    try:
        setup = setup_chardev if args.chardev else setup_sysfs
        led, release = setup(port, proc, args)
        try:
            drop_port(proc, args)
            blink(led, args.count, args.interval_ms / 1000)
            finish_child(port, led.child)
            led = None
        finally:
            if led is not None:  # failed or interrupted: whoever is still root kills it
                try:
                    led.set(False)
                except (OSError, niche.PortError):
                    pass
                try:
                    finish_child(port, led.child)
                except niche.PortError:
                    if proc is not port.root:
                        kill_quietly(port.root, led.child.pid)
            release()  # unexport, through the kept descriptor
    finally:
        if proc is not port.root:
            try:
                proc.exit(0, timeout=T)
                if wait_exit(port, proc) is None:
                    raise niche.PortError("no exit")
            except niche.PortError:
                kill_quietly(port.root, proc.pid)
                wait_exit(port, proc, 2)
    return 0


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Blink an LED from a sandboxed, privilege-dropped child of the port "
                    "(alcove's gpioled). Run as root.")
    p.add_argument("pin", nargs="?", metavar="PIN",
                   help="sysfs GPIO number, or a pin name with --board (not with --chardev)")
    p.add_argument("count", nargs="?", type=int, metavar="COUNT", help="blinks (default 10)")
    p.add_argument("--board", help="board table for pin names: beaglebone, rpi, sim, or a board.toml")
    p.add_argument("--chardev", metavar="CHIP:LINE",
                   help="use the GPIO character device: gpiochipN:LINE, LABEL:LINE, or a pin with --board")
    p.add_argument("--sysfs-root", default=SYSFS_ROOT, metavar="DIR",
                   help="the directory that stands for /sys/class/gpio (a simulator)")
    p.add_argument("--interval-ms", type=float, default=100, metavar="N",
                   help="half period, milliseconds (default: %(default)s)")
    p.add_argument("--serial", metavar="PATH",
                   help="drive the port already running on this serial line (a board, a VM)")
    p.add_argument("--reattach", action="store_true",
                   help="with --serial: keep what the port's previous session left running "
                        "(by default a new session ends it first)")
    p.add_argument("--exec-prefix", help='run the local port under this prefix, e.g. "sudo -n"')
    p.add_argument("-v", "--verbose", action="store_true",
                   help="print, on stderr, what the child and the port read back from /proc/self/status")
    args = p.parse_args(argv)
    if args.chardev:
        if args.pin is not None and args.count is None:
            args.pin, args.count = None, args.pin
        if args.pin is not None:
            p.error("with --chardev the line is CHIP:LINE; PIN is not used")
        if args.count is not None:
            try:
                args.count = int(args.count)
            except ValueError:
                p.error(f"COUNT must be a number, not {args.count!r}")
    elif args.pin is None:
        p.error("PIN is required (or --chardev CHIP:LINE)")
    if args.reattach and not args.serial:
        p.error("--reattach is for a port on a serial line (--serial)")
    if args.count is None:
        args.count = 10
    if args.count < 1:
        p.error("COUNT must be at least 1")
    if args.interval_ms < 0:
        p.error("--interval-ms must not be negative")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.serial and os.geteuid() != 0 and not args.exec_prefix:
        print("gpioled: run as root, or pass --exec-prefix 'sudo -n'", file=sys.stderr)
        return 2
    try:
        if args.serial:
            port = niche.Port(serial=args.serial, start_timeout=15, reattach=args.reattach)
        else:
            port = niche.Port(exec_prefix=args.exec_prefix)
    except niche.PortError as e:
        print(f"gpioled: {e}", file=sys.stderr)
        return 1
    try:
        with port:
            return run(port, args)
    except KeyboardInterrupt:
        return 130
    except (OSError, GpioError, SandboxError, niche.PortError) as e:
        print(f"gpioled: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
