#!/usr/bin/env python3
"""nsex: an interactive shell in a namespace container, driven through niche-port.

The Python version of alcove's examples/nsex.erl ("rewrite the chroot example
to run inside a namespace"). The port clones a child in new IPC, mount,
network, PID and UTS namespaces. Instead of building a tree, the child keeps
the host's file system but makes its own copy of the mount table read-only,
mount by mount, with a private /tmp and a /proc of its own PID namespace on
top (``--root DIR`` also chroots into a prepared tree, as alcove's nsex did).
It sets the hostname and resource limits, drops to a random unprivileged
UID/GID and execs ``/bin/sh -i``; this script wires the shell to the terminal
(``niche.terminal.attach``) and exits with its status.

Run as root (or with ``--exec-prefix "sudo -n"``)::

    examples/nsex/nsex.py --hostname box --nproc 16

See README.md next to this file for every step and why.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import sys
import traceback
from collections.abc import Sequence

import niche
from niche import cgroup, sandbox, terminal

T = 10.0  # timeout (seconds) of every call made to set the sandbox up

CLONE_FLAGS = ["CLONE_NEWIPC", "CLONE_NEWNS", "CLONE_NEWNET", "CLONE_NEWPID", "CLONE_NEWUTS"]
# Per-mount flags kept when a mount is made read-only (the rest of the
# options in mountinfo belong to the file system, not to the mount point).
KEPT_FLAGS = {"nosuid": "MS_NOSUID", "nodev": "MS_NODEV", "noexec": "MS_NOEXEC"}
# alcove's id(): 16#f0000000 + rand(0..16#ffff), a UID/GID no one else uses.
ID_BASE, ID_SPAN = 0xF0000000, 0x10000


def random_id() -> int:
    return ID_BASE + secrets.randbelow(ID_SPAN)


# --- building the sandbox ----------------------------------------------------


def unescape(field: str) -> str:
    """Mount points in mountinfo escape space, tab, newline and backslash as \\ooo."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mounts(sb: niche.Process) -> list[tuple[str, list[str]]]:
    """(mount point, per-mount options) of every mount the sandbox sees."""
    # read by the sandbox itself: its own copy of the mount table
    text = sandbox.read_file(sb, "/proc/self/mountinfo", timeout=T).decode(errors="surrogateescape")
    result = []
    for line in text.splitlines():
        fields = line.split()
        result.append((unescape(fields[4]), fields[5].split(",")))
    return result


def make_readonly(sb: niche.Process, verbose: bool) -> None:
    """Remount every mount point of the sandbox's copy of the mount table
    read-only. MS_BIND|MS_REMOUNT changes the flags of the mount point only,
    so the host's mounts stay as they were."""
    for path, opts in mounts(sb):
        flags = ["MS_BIND", "MS_REMOUNT", "MS_RDONLY"] + [KEPT_FLAGS[o] for o in opts if o in KEPT_FLAGS]
        try:
            sb.mount("none", path, "", flags, "", timeout=T)
        except OSError as e:  # e.g. a mount point hidden under another mount
            if verbose:
                print(f"nsex: {path} stays as it is: {e}", file=sys.stderr)


def build_view(sb: niche.Process, root: str, tmp_size: str, verbose: bool) -> None:
    sb.mount("none", "/", "", ["MS_REC", "MS_PRIVATE"], "", timeout=T)  # no propagation to the host
    make_readonly(sb, verbose)
    base = "" if root == "/" else root.rstrip("/")
    # /tmp: the one writable place, a size-limited tmpfs of the sandbox's own.
    sb.mount("tmpfs", base + "/tmp", "tmpfs", ["MS_NOSUID", "MS_NODEV"], f"size={tmp_size},mode=1777",
             timeout=T)
    # /proc of the new PID namespace: mounted by its PID 1, it shows only it.
    sb.mount("proc", base + "/proc", "proc", ["MS_NOSUID", "MS_NODEV", "MS_NOEXEC"], "", timeout=T)


def start_sandbox(port: niche.Port, args: argparse.Namespace, ident: int,
                  cg: cgroup.Cgroup | None = None) -> niche.Process:
    sb = port.root.clone(CLONE_FLAGS, timeout=T)
    # If this script dies, the port sends the exec'd shell SIGKILL, which an
    # interactive shell (that ignores SIGTERM) cannot ignore.
    port.setcpid([], sb.pid, "signaloneof", port.signal_constant([], "SIGKILL", timeout=T), timeout=T)
    if cg is not None:
        cg.add(sb)  # before anything runs in it: its children are born inside
    build_view(sb, args.root, args.tmp_size, args.verbose)
    if args.root != "/":
        sb.chroot(args.root, timeout=T)
    sb.chdir("/", timeout=T)
    sb.sethostname(args.hostname, timeout=T)
    sandbox.set_limits(sb, {
        "RLIMIT_NPROC": args.nproc,  # processes of the sandbox's (unique) UID
        "RLIMIT_NOFILE": args.nofile,  # open descriptors per process
        "RLIMIT_AS": args.memory,  # address space per process
        "RLIMIT_FSIZE": args.fsize,  # largest file a process may write
        "RLIMIT_CPU": args.cpu,  # CPU seconds per process (SIGXCPU, then SIGKILL)
        "RLIMIT_CORE": 0,  # no core dumps
    }, timeout=T)
    terminal.exec_shell(sb, args.shell, args.hostname, sandbox.Identity(ident, ident), timeout=T)
    return sb


# --- command line ------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Run an interactive shell in new namespaces (host file system read-only, private "
                    "/tmp and /proc, resource limits, random unprivileged UID/GID). Run as root.")
    p.add_argument("--hostname", default="nsex", help="hostname in the sandbox (default: %(default)s)")
    p.add_argument("--root", default="/",
                   help="chroot into this prepared tree (it needs /tmp and /proc directories); "
                        "default: / (no chroot)")
    p.add_argument("--nproc", type=int, default=16, help="RLIMIT_NPROC (default: %(default)s)")
    p.add_argument("--nofile", type=int, default=64, help="RLIMIT_NOFILE (default: %(default)s)")
    p.add_argument("--fsize", type=int, default=16 << 20, help="RLIMIT_FSIZE, bytes (default: %(default)s)")
    p.add_argument("--cpu", type=int, default=60, help="RLIMIT_CPU, seconds (default: %(default)s)")
    p.add_argument("--memory", type=int, default=512 << 20,
                   help="RLIMIT_AS, bytes (default: %(default)s)")
    p.add_argument("--memory-max", type=int, default=None,
                   help="put the sandbox in a new cgroup with this memory.max, bytes")
    p.add_argument("--pids-max", type=int, default=None,
                   help="put the sandbox in a new cgroup with this pids.max")
    p.add_argument("--tmp-size", default="16m", help="size of the sandbox's /tmp (default: %(default)s)")
    p.add_argument("--id", type=int, default=None,
                   help="UID and GID of the shell (default: random in 0xf0000000..0xf000ffff)")
    p.add_argument("--exec-prefix", default=None, help='run the port with this prefix, e.g. "sudo -n"')
    p.add_argument("-v", "--verbose", action="store_true",
                   help="print the sandbox's PID and UID, and mounts left writable, on stderr")
    p.add_argument("shell", nargs="*", default=["/bin/sh", "-i"],
                   help="command to run in the sandbox (default: /bin/sh -i)")
    args = p.parse_args(argv)
    if not args.shell:
        args.shell = ["/bin/sh", "-i"]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0 and not args.exec_prefix:
        print("nsex: run as root, or pass --exec-prefix 'sudo -n'", file=sys.stderr)
        return 2
    ident = args.id if args.id is not None else random_id()
    with niche.Port(exec_prefix=args.exec_prefix) as port:
        cg = None
        try:
            try:
                if args.memory_max is not None or args.pids_max is not None:
                    # alcove's nsex: a cgroup limits the sandbox as a whole.
                    cg = cgroup.Cgroup(port, f"niche-nsex.{secrets.token_hex(4)}",
                                       memory_max=args.memory_max, pids_max=args.pids_max, timeout=T)
                    wanted = {"memory"} if args.memory_max is not None else set()
                    wanted |= {"pids"} if args.pids_max is not None else set()
                    if wanted & cg.missing:
                        missing = ", ".join(sorted(wanted & cg.missing))
                        print(f"nsex: no cgroup controller here for: {missing}", file=sys.stderr)
                sb = start_sandbox(port, args, ident, cg)
            except (OSError, niche.PortError) as e:
                print(f"nsex: setting up the sandbox: {e}", file=sys.stderr)
                if args.verbose:
                    traceback.print_exc()
                return 255
            if args.verbose:
                print(f"nsex: pid {sb.pid} uid {ident}", file=sys.stderr, flush=True)
            return terminal.attach(sb, prog="nsex", timeout=T)
        finally:
            if cg is not None:
                cg.remove("kill", wait=T)


if __name__ == "__main__":
    sys.exit(main())
