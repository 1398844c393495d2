#!/usr/bin/env python3
"""chrootex: an interactive shell in a chroot sandbox, driven through niche-port.

The Python version of alcove's examples/chrootex.erl. The port clones a child
in new IPC, mount, network, PID and UTS namespaces; the child builds a minimal
read-only root (a tmpfs with /bin /lib /lib64 /usr bound read-only, a private
/tmp, /proc for its PID namespace, a few device nodes), chroots into it, sets
resource limits and the hostname, drops to a random unprivileged UID/GID and
execs ``/bin/sh -i``. This script then wires the shell to the terminal
(``niche.terminal.attach``) until it exits, and exits with its status.

Run as root (or with ``--exec-prefix "sudo -n"``)::

    examples/chrootex/chrootex.py --hostname box --nproc 16

See README.md next to this file for every step and why.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import traceback
from collections.abc import Sequence

import niche
from niche import sandbox, terminal

T = 10.0  # timeout (seconds) of every call made to set the sandbox up

CLONE_FLAGS = ["CLONE_NEWIPC", "CLONE_NEWNS", "CLONE_NEWNET", "CLONE_NEWPID", "CLONE_NEWUTS"]
DEFAULT_BINDS = ["/bin", "/lib", "/lib64", "/usr"]
DEVICES = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom"]
# alcove's id(): 16#f0000000 + rand(0..16#ffff), a UID/GID no one else uses.
ID_BASE, ID_SPAN = 0xF0000000, 0x10000


def random_id() -> int:
    return ID_BASE + secrets.randbelow(ID_SPAN)


# --- building the sandbox ----------------------------------------------------


def make_private(sb: niche.Process) -> None:
    """Stop mount propagation: nothing mounted below leaks to the host."""
    sb.mount("none", "/", "", ["MS_REC", "MS_PRIVATE"], "", timeout=T)


def bind_readonly(sb: niche.Process, src: str, dst: str) -> None:
    """Bind src on dst, then remount the bind read-only, nosuid, nodev.

    MS_RDONLY is ignored by the first MS_BIND mount(2); it takes a second,
    MS_REMOUNT|MS_BIND call to change the flags of the new mount point (and of
    that mount point only: the host's mount stays read-write)."""
    sb.mount(src, dst, "", ["MS_BIND", "MS_REC"], "", timeout=T)
    sb.mount("none", dst, "", ["MS_BIND", "MS_REMOUNT", "MS_RDONLY", "MS_NOSUID", "MS_NODEV"], "",
             timeout=T)


def mkdirs(sb: niche.Process, path: str, mode: int = 0o755) -> None:
    parts = path.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        try:
            sb.mkdir("/" + "/".join(parts[:i]), mode, timeout=T)
        except FileExistsError:
            pass


def build_tree(sb: niche.Process, root: str, binds: Sequence[str], tmp_size: str) -> None:
    """Build the minimal root at ``root``, in the sandbox's mount namespace."""
    root = root.rstrip("/") or "/"
    sb.mount("tmpfs", root, "tmpfs", ["MS_NOSUID", "MS_NODEV"], "size=1m,mode=0755", timeout=T)
    for path in binds:
        if not os.path.lexists(path):
            continue  # e.g. no /lib64 on this architecture
        inside = root + path
        if os.path.islink(path):
            # /bin -> usr/bin on merged-/usr systems: keep the symlink, so
            # the tree has the host's layout and one bind of /usr serves both.
            mkdirs(sb, os.path.dirname(inside))
            sb.symlink(os.readlink(path), inside, timeout=T)
        elif os.path.isdir(path):
            mkdirs(sb, inside)
            bind_readonly(sb, path, inside)
    # /dev: only harmless character devices, each bound over an empty file.
    mkdirs(sb, root + "/dev")
    for dev in DEVICES:
        if os.path.exists(dev):
            fd = sb.open(root + dev, ["O_RDONLY", "O_CREAT", "O_CLOEXEC"], 0o666, timeout=T)
            sb.close(fd, timeout=T)  # an open file would keep step 9's remount busy
            sb.mount(dev, root + dev, "", ["MS_BIND"], "", timeout=T)
    # /tmp: the one writable place, a size-limited tmpfs of its own.
    mkdirs(sb, root + "/tmp")
    sb.mount("tmpfs", root + "/tmp", "tmpfs", ["MS_NOSUID", "MS_NODEV"], f"size={tmp_size},mode=1777",
             timeout=T)
    # /proc of the new PID namespace: mounted by its PID 1, it shows only it.
    mkdirs(sb, root + "/proc")
    sb.mount("proc", root + "/proc", "proc", ["MS_NOSUID", "MS_NODEV", "MS_NOEXEC"], "", timeout=T)
    # Last, the root itself read-only: nothing outside /tmp can be written.
    sb.mount("none", root, "", ["MS_BIND", "MS_REMOUNT", "MS_RDONLY", "MS_NOSUID", "MS_NODEV"], "",
             timeout=T)


def start_sandbox(port: niche.Port, args: argparse.Namespace, root: str, ident: int) -> niche.Process:
    sb = port.root.clone(CLONE_FLAGS, timeout=T)
    # If this script dies, the port sends the exec'd shell SIGKILL, which an
    # interactive shell (that ignores SIGTERM) cannot ignore.
    port.setcpid([], sb.pid, "signaloneof", port.signal_constant([], "SIGKILL", timeout=T), timeout=T)
    make_private(sb)
    build_tree(sb, root, DEFAULT_BINDS + args.bind, args.tmp_size)
    sb.chroot(root, timeout=T)
    sb.chdir("/", timeout=T)
    sb.sethostname(args.hostname, timeout=T)
    sandbox.set_limits(sb, {
        "RLIMIT_NPROC": args.nproc,  # processes of the sandbox's (unique) UID
        "RLIMIT_NOFILE": args.nofile,  # open descriptors per process
        "RLIMIT_FSIZE": args.fsize,  # largest file a process may write
        "RLIMIT_CPU": args.cpu,  # CPU seconds per process (SIGXCPU, then SIGKILL)
        "RLIMIT_CORE": 0,  # no core dumps
    }, timeout=T)
    terminal.exec_shell(sb, args.shell, args.hostname, sandbox.Identity(ident, ident), timeout=T)
    return sb


# --- command line ------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Run an interactive shell in a chroot sandbox (namespaces, minimal read-only "
                    "tree, resource limits, random unprivileged UID/GID). Run as root.")
    p.add_argument("--hostname", default="chrootex", help="hostname in the sandbox (default: %(default)s)")
    p.add_argument("--root", default=None,
                   help="directory the tree is built on (a tmpfs is mounted there, in the sandbox's "
                        "mount namespace only); default: a new temporary directory, removed after")
    p.add_argument("--bind", action="append", default=[], metavar="DIR",
                   help="also bind DIR read-only into the tree (repeatable); "
                        "/bin /lib /lib64 /usr always are, when they exist")
    p.add_argument("--nproc", type=int, default=16, help="RLIMIT_NPROC (default: %(default)s)")
    p.add_argument("--nofile", type=int, default=64, help="RLIMIT_NOFILE (default: %(default)s)")
    p.add_argument("--fsize", type=int, default=16 << 20, help="RLIMIT_FSIZE, bytes (default: %(default)s)")
    p.add_argument("--cpu", type=int, default=60, help="RLIMIT_CPU, seconds (default: %(default)s)")
    p.add_argument("--tmp-size", default="16m", help="size of the sandbox's /tmp (default: %(default)s)")
    p.add_argument("--id", type=int, default=None,
                   help="UID and GID of the shell (default: random in 0xf0000000..0xf000ffff)")
    p.add_argument("--exec-prefix", default=None, help='run the port with this prefix, e.g. "sudo -n"')
    p.add_argument("-v", "--verbose", action="store_true",
                   help="print the sandbox's PID, UID and root on stderr")
    p.add_argument("shell", nargs="*", default=["/bin/sh", "-i"],
                   help="command to run in the sandbox (default: /bin/sh -i)")
    args = p.parse_args(argv)
    if not args.shell:
        args.shell = ["/bin/sh", "-i"]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if os.geteuid() != 0 and not args.exec_prefix:
        print("chrootex: run as root, or pass --exec-prefix 'sudo -n'", file=sys.stderr)
        return 2
    ident = args.id if args.id is not None else random_id()
    with niche.Port(exec_prefix=args.exec_prefix) as port:
        root, made = args.root, False
        if root is None:
            root = f"/tmp/niche-chrootex.{secrets.token_hex(6)}"
            port.mkdir([], root, 0o700, timeout=T)
            made = True
        try:
            sb = start_sandbox(port, args, root, ident)
            if args.verbose:
                print(f"chrootex: pid {sb.pid} uid {ident} root {root}", file=sys.stderr, flush=True)
            return terminal.attach(sb, prog="chrootex", timeout=T)
        except (OSError, niche.PortError) as e:
            print(f"chrootex: setting up the sandbox: {e}", file=sys.stderr)
            if args.verbose:
                traceback.print_exc()
            return 255
        finally:
            if made:
                # The mounts lived in the sandbox's namespace: here it is empty.
                try:
                    port.rmdir([], root, timeout=T)
                except (OSError, niche.PortError):
                    pass


if __name__ == "__main__":
    sys.exit(main())
