"""``niche.cgroup``: resource limits for process trees, through a port.

    from niche import cgroup
    with niche.Port() as port:
        box = port.fork([])
        with cgroup.Cgroup(port, "sandbox", pids_max=16, memory_max=64 << 20) as cg:
            cg.add(box)                 # a PID, or a niche.Process
            ...

Every file operation is a call of the port's process at ``chain`` (by
default the port process itself, usually root): the Python side may be
unprivileged and may even run on another machine. The cgroup file systems
are found in that process's ``/proc/self/mountinfo``, so this works on
cgroup v2-only hosts, v1 hosts and hybrid ones (v1 controllers plus an
empty cgroup2 hierarchy, or some controllers on each):

- each controller is used where the kernel has put it: a v1 hierarchy that
  has it mounted, else the cgroup2 hierarchy if its ``cgroup.controllers``
  lists it;
- the cgroup is a directory of the same name in each hierarchy used (and
  in the cgroup2 hierarchy, when there is one, to track the processes);
- limits map to the files of each version: ``memory.max`` /
  ``memory.limit_in_bytes``, ``pids.max``, ``cpu.max`` /
  ``cpu.cfs_quota_us`` + ``cpu.cfs_period_us``.

By default the new cgroup is created under the cgroup the port process is
in (``/proc/self/cgroup``), so whatever limits apply to the port still
apply inside; ``parent="/path"`` names another parent, as a cgroup path
(relative to the hierarchy's root, e.g. ``"/niche"``), and ``parent=cg``
nests the new cgroup in the Cgroup ``cg``.

PIDs are as the process at ``chain`` sees them (its PID namespace).
"""

from __future__ import annotations

import errno
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CONTROLLERS", "LEAF", "Cgroup", "CgroupError", "Hierarchy", "hierarchies", "into_leaf",
    "parse_hierarchies", "read_file", "write_file",
]

CONTROLLERS = ("memory", "pids", "cpu")
# The leaf cgroup v2 the agent's processes move into (see into_leaf).
LEAF = "niche-agent"
_READ = 65536


class CgroupError(OSError):
    """A cgroup operation failed; the message says what to do."""


@dataclass(frozen=True)
class Hierarchy:
    """One mounted cgroup hierarchy, as the port process sees it."""

    version: int  # 1 or 2
    mount: str  # where it is mounted, e.g. /sys/fs/cgroup/memory
    root: str  # the hierarchy's directory shown at the mount point (mountinfo "root")
    controllers: frozenset[str]  # v1: mounted with it; v2: in cgroup.controllers of the root
    own: str  # the cgroup of the port process in it (/proc/self/cgroup), e.g. "/"

    def dir(self, cgpath: str) -> str:
        """The directory of a cgroup path of this hierarchy."""
        rel = cgpath
        if self.root != "/" and (cgpath == self.root or cgpath.startswith(self.root + "/")):
            rel = cgpath[len(self.root):]
        rel = rel.strip("/")
        return f"{self.mount}/{rel}" if rel else self.mount

    @property
    def procs_file(self) -> str:
        return "cgroup.procs"


# --- file access through the port -------------------------------------------


def read_file(port: Any, chain: Sequence[int], path: str, *, timeout: float | None = None) -> bytes:
    """The whole content of a (small, virtual) file, read by the port."""
    fd = port.open(list(chain), path, "O_RDONLY", 0, timeout=timeout)
    try:
        out = bytearray()
        while True:
            data = port.read(list(chain), fd, _READ, timeout=timeout)
            if not data:
                return bytes(out)
            out += data
    finally:
        port.close(list(chain), fd, timeout=timeout)


def write_file(port: Any, chain: Sequence[int], path: str, data: str | bytes, *,
               timeout: float | None = None) -> None:
    """Write data to a file in one write(2), as cgroup files need."""
    if isinstance(data, str):
        data = data.encode()
    fd = port.open(list(chain), path, "O_WRONLY", 0, timeout=timeout)
    try:
        n = port.write(list(chain), fd, data, timeout=timeout)
        if n != len(data):
            raise CgroupError(
                errno.EIO,
                f"short write to {path}: {n} of {len(data)} bytes")
    finally:
        port.close(list(chain), fd, timeout=timeout)


def _unescape(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo.
    if "\\" not in field:
        return field
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 4 <= len(field) and field[i + 1:i + 4].isdigit():
            out.append(chr(int(field[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def hierarchies(port: Any, chain: Sequence[int] = (), *, timeout: float | None = None) -> list[Hierarchy]:
    """The cgroup hierarchies mounted in the mount namespace of the process
    at chain, with its own cgroup in each."""

    def text(path: str) -> str:
        return read_file(port, chain, path, timeout=timeout).decode(errors="surrogateescape")

    def controllers(mount: str) -> frozenset[str]:
        try:
            return frozenset(text(f"{mount}/cgroup.controllers").split())
        except OSError:
            return frozenset()

    return parse_hierarchies(text("/proc/self/mountinfo"), text("/proc/self/cgroup"), controllers)


def parse_hierarchies(mountinfo: str, proc_cgroup: str,
                      v2_controllers: Callable[[str], frozenset[str]]) -> list[Hierarchy]:
    """The hierarchies described by a /proc/PID/mountinfo and the
    /proc/PID/cgroup of the same process; v2_controllers(mount) gives the
    cgroup.controllers of a cgroup2 mount."""
    own_v1: dict[frozenset[str], str] = {}
    own_v2 = "/"
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, ctrls, path = parts
        if hid == "0" and not ctrls:
            own_v2 = path
        else:
            own_v1[frozenset(c for c in ctrls.split(",") if c)] = path
    seen: set[tuple[int, frozenset[str]]] = set()
    out: list[Hierarchy] = []
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep:
            continue
        f, r = left.split(), right.split()
        if len(f) < 5 or len(r) < 3 or r[0] not in ("cgroup", "cgroup2"):
            continue
        root, mount = _unescape(f[3]), _unescape(f[4])
        if r[0] == "cgroup2":
            key = (2, frozenset[str]())
            h = Hierarchy(2, mount, root, frozenset(v2_controllers(mount)), own_v2)
        else:
            opts = r[2].split(",")
            names = frozenset(o for o in opts if o.startswith("name="))
            ctrls = frozenset(o for o in opts if o not in ("rw", "ro") and "=" not in o
                              and o not in _V1_OPTIONS)
            key = (1, ctrls | names)
            h = Hierarchy(1, mount, root, ctrls, own_v1.get(ctrls | names, "/"))
        if key in seen:  # the same hierarchy mounted twice: the first will do
            continue
        seen.add(key)
        out.append(h)
    return out


_V1_OPTIONS = {"noprefix", "clone_children", "xattr", "cpuset_v2_mode", "favordynmods", "nofavordynmods",
               "relatime", "noatime", "nosuid", "nodev", "noexec", "nsdelegate", "memory_recursiveprot",
               "memory_localevents", "memory_hugetlb_accounting", "pids_localevents"}


def into_leaf(port: Any, chain: Sequence[int] = (), *, timeout: float | None = None) -> str | None:
    """Move every process of the port's cgroup v2 into its child ``LEAF``.

    cgroup v2 enables controllers only in cgroups without processes ("no
    internal processes"). A systemd unit with ``Delegate=yes`` starts the
    agent, sudo and the port in the unit's own cgroup, so a driver cgroup
    below it could get no memory/pids controller. Once everything is in the
    leaf, the unit's cgroup has no processes and new cgroups (Cgroup with no
    parent=) are made beside the leaf. Returns the leaf's path, or None
    where there is nothing to do: no cgroup2, or the port in its root cgroup
    (which is exempt from the rule and belongs to nobody to reorganise).
    """
    v2 = next((h for h in hierarchies(port, chain, timeout=timeout) if h.version == 2), None)
    if v2 is None or v2.own == "/":
        return None
    if v2.own.rsplit("/", 1)[-1] == LEAF:
        return v2.own
    d = v2.dir(v2.own)
    try:
        port.mkdir(list(chain), f"{d}/{LEAF}", 0o755, timeout=timeout)
    except FileExistsError:
        pass
    for pid in read_file(port, chain, f"{d}/cgroup.procs", timeout=timeout).split():
        try:
            write_file(port, chain, f"{d}/{LEAF}/cgroup.procs", pid, timeout=timeout)
        except ProcessLookupError:
            pass  # exited meanwhile
    return f"{v2.own.rstrip('/')}/{LEAF}"


# --- the cgroup ---------------------------------------------------------------


class Cgroup:
    """A cgroup named ``name`` under ``parent``, created (``mkdir``) in every
    hierarchy that hosts one of ``controllers``.

    ``memory_max``, ``pids_max`` and ``cpu_max`` (see the methods of the
    same names) are set right away when given. ``exist_ok=True`` adopts a
    cgroup that already exists. Use it as a context manager to remove it
    at the end, or call :meth:`remove`.
    """

    def __init__(self, port: Any, name: str, *, parent: str | Cgroup | None = None, chain: Sequence[int] = (),
                 controllers: Iterable[str] | None = None, exist_ok: bool = False,
                 memory_max: int | str | None = None, pids_max: int | str | None = None,
                 cpu_max: tuple[int | str, int] | int | str | None = None,
                 timeout: float | None = None) -> None:
        if not isinstance(name, str) or not name or "/" in name or name in (".", ".."):
            raise ValueError(f"a cgroup name is one path component, not {name!r}")
        if isinstance(parent, Cgroup):
            if parent.port is not port:
                raise ValueError("a parent Cgroup must belong to the same port")
            if controllers is None:
                controllers = [c for c in CONTROLLERS if c in parent.controllers]
            if chain == ():
                chain = parent.chain
        elif parent is not None and (not isinstance(parent, str) or not parent.startswith("/")):
            raise ValueError(f"parent is a Cgroup or a cgroup path starting with '/', e.g. '/niche', "
                             f"not {parent!r}")
        self.port = port
        self.chain = list(chain)
        self.name = name
        self.timeout = timeout
        explicit = controllers is not None
        wanted = tuple(CONTROLLERS if controllers is None else controllers)
        if isinstance(parent, Cgroup):
            hs = parent.hierarchies
        else:
            hs = hierarchies(port, self.chain, timeout=timeout)
        if not hs:
            raise CgroupError(
                errno.ENOENT,
                "no cgroup file system is mounted where the port runs: mount one, e.g. "
                "`mount -t cgroup2 none /sys/fs/cgroup`, or run the port in the host's "
                "mount namespace")
        self.hierarchies = hs
        v2 = next((h for h in hs if h.version == 2), None)
        self.controllers: dict[str, Hierarchy] = {}
        missing = []
        for c in wanted:
            h = next((h for h in hs if h.version == 1 and c in h.controllers), None)
            if h is None and v2 is not None and c in v2.controllers:
                h = v2
            if h is None:
                missing.append(c)
            else:
                self.controllers[c] = h
        if missing and explicit:
            raise CgroupError(
                errno.EOPNOTSUPP,
                f"cgroup controllers not available where the port runs: {', '.join(missing)} "
                "(in no v1 hierarchy and not in cgroup2's cgroup.controllers): "
                "enable them in the kernel, or leave them out of controllers=")
        self.missing = frozenset(missing)
        used: list[Hierarchy] = []
        for h in [*self.controllers.values(), *([v2] if v2 else [])]:
            if h not in used:
                used.append(h)
        if not used:
            used = hs[:1]
        self.dirs: dict[Hierarchy, str] = {}
        self.parents: dict[Hierarchy, str] = {}
        for h in used:
            if isinstance(parent, Cgroup):
                if h not in parent.dirs:
                    raise ValueError(f"the parent cgroup {parent.path()} is not in the hierarchy at "
                                     f"{h.mount}: create it with the controllers the child needs")
                pdir = parent.dirs[h]
            else:
                own = h.own
                if h.version == 2 and parent is None and own.rsplit("/", 1)[-1] == LEAF:
                    own = own.rsplit("/", 1)[0] or "/"  # beside the leaf (into_leaf), not in it
                pdir = h.dir(parent if parent is not None else own)
            self.parents[h] = pdir
            self.dirs[h] = f"{pdir.rstrip('/')}/{name}"
        created: list[str] = []
        try:
            for h, d in self.dirs.items():
                if h.version == 2:
                    need = [c for c, hh in self.controllers.items() if hh is h]
                    self._enable_v2(self.parents[h], need)
                try:
                    port.mkdir(self.chain, d, 0o755, timeout=timeout)
                    created.append(d)
                except FileExistsError:
                    if not exist_ok:
                        raise CgroupError(
                            errno.EEXIST,
                            f"the cgroup {d} exists already: remove it, pick another name, "
                            "or pass exist_ok=True to use it") from None
                except OSError as e:
                    raise self._explain(e, f"cannot create the cgroup {d}") from None
            if memory_max is not None:
                self.memory_max(memory_max)
            if pids_max is not None:
                self.pids_max(pids_max)
            if cpu_max is not None:
                if isinstance(cpu_max, tuple):
                    self.cpu_max(*cpu_max)
                else:
                    self.cpu_max(cpu_max)
        except BaseException:
            for d in reversed(created):
                try:
                    port.rmdir(self.chain, d, timeout=timeout)
                except OSError:
                    pass
            raise

    # --- helpers ----------------------------------------------------------

    @staticmethod
    def _explain(e: OSError, what: str) -> OSError:
        hint = {
            errno.EPERM: "the port process lacks the privilege: run the port as root "
                         "(exec_prefix='sudo -n') or delegate the parent cgroup to its user",
            errno.EACCES: "the port process may not write there: run the port as root "
                          "(exec_prefix='sudo -n') or delegate the parent cgroup to its user",
            errno.EROFS: "the cgroup file system is mounted read-only where the port runs (a container?): "
                         "mount it read-write or run the port on the host",
            errno.ENOENT: "the parent cgroup does not exist: create it first or pass another parent=",
        }.get(e.errno or 0, "")
        msg = f"{what}: {e.strerror or e}" + (f"; {hint}" if hint else "")
        return CgroupError(e.errno or 0, msg)

    def _read(self, path: str) -> bytes:
        return read_file(self.port, self.chain, path, timeout=self.timeout)

    def _write(self, path: str, data: str | bytes, what: str) -> None:
        try:
            write_file(self.port, self.chain, path, data, timeout=self.timeout)
        except CgroupError:
            raise
        except OSError as e:
            raise self._explain(e, f"{what} ({path} <- {data!r})") from None

    def _enable_v2(self, pdir: str, need: list[str]) -> None:
        if not need:
            return
        try:
            have = set(self._read(f"{pdir}/cgroup.subtree_control").decode().split())
            avail = set(self._read(f"{pdir}/cgroup.controllers").decode().split())
        except OSError as e:
            raise self._explain(e, f"cannot read the controllers of the parent cgroup {pdir}") from None
        todo = [c for c in need if c not in have]
        if not todo:
            return
        off = [c for c in todo if c not in avail]
        if off:
            raise CgroupError(
                errno.EOPNOTSUPP,
                f"the {', '.join(off)} controller(s) are not enabled for {pdir}: "
                f"enable them in its parent's cgroup.subtree_control "
                f"(echo +{off[0]} > {pdir.rsplit('/', 1)[0]}/cgroup.subtree_control)")
        try:
            write_file(self.port, self.chain, f"{pdir}/cgroup.subtree_control",
                       " ".join(f"+{c}" for c in todo), timeout=self.timeout)
        except OSError as e:
            if e.errno == errno.EBUSY:  # EBUSY: "no internal processes"
                raise CgroupError(
                    errno.EBUSY,
                    f"cannot enable {', '.join(todo)} in {pdir}: it holds processes, and "
                    "cgroup v2 enables controllers only for cgroups without processes: "
                    "pass a parent= without processes (e.g. a systemd unit with Delegate=yes "
                    "whose processes live in a leaf)") from None
            raise self._explain(e, f"cannot enable {', '.join(todo)} in {pdir}/cgroup.subtree_control") \
                from None

    def _dir_of(self, controller: str) -> tuple[Hierarchy, str]:
        h = self.controllers.get(controller)
        if h is None:
            raise CgroupError(
                errno.EOPNOTSUPP,
                f"the {controller} controller is not available where the port runs "
                "(in no v1 hierarchy and not in cgroup2's cgroup.controllers): "
                "enable it in the kernel or the boot options")
        return h, self.dirs[h]

    @property
    def version(self) -> str:
        """'v2', 'v1' or 'hybrid': which kinds of hierarchy this cgroup uses for its controllers."""
        vs = {h.version for h in self.controllers.values()} or {h.version for h in self.dirs}
        return "hybrid" if vs == {1, 2} else f"v{vs.pop()}"

    def path(self, controller: str | None = None) -> str:
        """The directory of the cgroup: for a controller, or the main one
        (the cgroup2 one when there is one)."""
        if controller is not None:
            return self._dir_of(controller)[1]
        return self.dirs[self._main()]

    def _main(self) -> Hierarchy:
        return next((h for h in self.dirs if h.version == 2), next(iter(self.dirs)))

    # --- files ------------------------------------------------------------

    def get(self, filename: str, controller: str | None = None) -> str:
        """The content of one of the cgroup's files, stripped; in the
        hierarchy of controller (default: guessed from the file name)."""
        ctl = controller or filename.split(".", 1)[0]
        d = self.dirs[self.controllers[ctl]] if ctl in self.controllers else self.path()
        try:
            return self._read(f"{d}/{filename}").decode().strip()
        except OSError as e:
            raise self._explain(e, f"cannot read {d}/{filename}") from None

    def set(self, filename: str, value: str | int, controller: str | None = None) -> None:
        """Write value to one of the cgroup's files."""
        ctl = controller or filename.split(".", 1)[0]
        d = self.dirs[self.controllers[ctl]] if ctl in self.controllers else self.path()
        self._write(f"{d}/{filename}", str(value), f"cannot set {filename}")

    def memory_max(self, limit: int | str) -> None:
        """Limit memory use to limit bytes ("max" or -1: no limit).
        v2 ``memory.max``; v1 ``memory.limit_in_bytes``."""
        h, d = self._dir_of("memory")
        unlimited = limit in ("max", -1)
        if not unlimited and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise ValueError(f"memory_max is a number of bytes or 'max', not {limit!r}")
        if h.version == 2:
            self._write(f"{d}/memory.max", "max" if unlimited else str(limit), "cannot set memory.max")
        else:
            self._write(f"{d}/memory.limit_in_bytes", "-1" if unlimited else str(limit),
                        "cannot set memory.limit_in_bytes")

    def pids_max(self, limit: int | str) -> None:
        """Limit the number of processes (and threads) to limit ("max": none)."""
        _, d = self._dir_of("pids")
        unlimited = limit in ("max", -1)
        if not unlimited and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise ValueError(f"pids_max is a number or 'max', not {limit!r}")
        self._write(f"{d}/pids.max", "max" if unlimited else str(limit), "cannot set pids.max")

    def cpu_max(self, quota_us: int | str, period_us: int = 100000) -> None:
        """Allow quota_us of CPU time per period_us ("max": no limit).
        v2 ``cpu.max``; v1 ``cpu.cfs_period_us`` and ``cpu.cfs_quota_us``."""
        h, d = self._dir_of("cpu")
        unlimited = quota_us in ("max", -1)
        for what, v in (("quota_us", quota_us), ("period_us", period_us)):
            if (what == "period_us" or not unlimited) and (
                    not isinstance(v, int) or isinstance(v, bool) or v <= 0):
                raise ValueError(f"cpu_max {what} is a positive number of microseconds, not {v!r}")
        if h.version == 2:
            value = f"{'max' if unlimited else quota_us} {period_us}"
            self._write(f"{d}/cpu.max", value, "cannot set cpu.max")
        else:
            self._write(f"{d}/cpu.cfs_period_us", str(period_us), "cannot set cpu.cfs_period_us")
            self._write(f"{d}/cpu.cfs_quota_us", "-1" if unlimited else str(quota_us),
                        "cannot set cpu.cfs_quota_us")

    # --- processes --------------------------------------------------------

    def add(self, pid: Any) -> None:
        """Move a process (a PID, or a niche.Process) into the cgroup, in
        every hierarchy it uses. Its children forked later stay in it."""
        pid = _pid(pid)
        for d in self.dirs.values():
            self._move(pid, d, f"cannot move process {pid} into {d}")

    def _move(self, pid: int, d: str, what: str) -> None:
        try:
            write_file(self.port, self.chain, f"{d}/cgroup.procs", str(pid), timeout=self.timeout)
        except FileNotFoundError:  # very old v1 kernels: tasks only
            self._write(f"{d}/tasks", str(pid), what)
        except OSError as e:
            if e.errno == errno.ESRCH:
                raise CgroupError(
                    errno.ESRCH,
                    f"{what}: no process {pid} (PIDs are as the port process at "
                    f"{self.chain} sees them)") from None
            raise self._explain(e, what) from None

    def procs(self) -> list[int]:
        """The PIDs in the cgroup (in any of its hierarchies), sorted."""
        pids: set[int] = set()
        for d in self.dirs.values():
            try:
                data = self._read(f"{d}/cgroup.procs")
            except FileNotFoundError:
                continue
            pids.update(int(x) for x in data.split())
        return sorted(pids)

    def _procs_of(self, d: str) -> list[int]:
        return [int(x) for x in self._read(f"{d}/cgroup.procs").split()]

    def kill(self, sig: Any = "SIGKILL") -> None:
        """Send sig to every process in the cgroup."""
        for d in self.dirs.values():
            for pid in self._procs_of(d):
                try:
                    self.port.kill(self.chain, pid, sig, timeout=self.timeout)
                except ProcessLookupError:
                    pass

    def remove(self, processes: str = "move", *, wait: float = 5.0) -> None:
        """Remove the cgroup (rmdir in every hierarchy).

        Processes still in it are first moved to the parent cgroup
        (``processes="move"``), killed with SIGKILL and waited for
        (``"kill"``), or make this fail (``"fail"``). Sub-cgroups make it
        fail: remove them first.
        """
        if processes not in ("move", "kill", "fail"):
            raise ValueError("processes must be 'move', 'kill' or 'fail'")
        deadline = time.monotonic() + wait
        for h, d in self.dirs.items():
            try:
                left = self._procs_of(d)
            except FileNotFoundError:
                continue  # gone already
            while left:
                if processes == "fail":
                    raise CgroupError(
                        errno.EBUSY,
                        f"the cgroup {d} still holds processes {left}: stop them, or "
                        "remove(processes='move') / remove(processes='kill')")
                for pid in left:
                    if processes == "kill":
                        try:
                            self.port.kill(self.chain, pid, "SIGKILL", timeout=self.timeout)
                        except ProcessLookupError:
                            pass
                    else:
                        try:
                            write_file(self.port, self.chain, f"{self.parents[h]}/cgroup.procs", str(pid),
                                       timeout=self.timeout)
                        except ProcessLookupError:
                            pass
                        except OSError as e:
                            raise self._explain(e, f"cannot move process {pid} out of {d} into "
                                                   f"{self.parents[h]} (pass processes='kill' to kill "
                                                   "it instead)") from None
                if time.monotonic() > deadline:
                    raise CgroupError(
                        errno.EBUSY,
                        f"the cgroup {d} still holds processes {left} after {wait:g} s")
                time.sleep(0.01 if processes == "move" else 0.05)
                left = self._procs_of(d)
        for d in self.dirs.values():
            while True:
                try:
                    self.port.rmdir(self.chain, d, timeout=self.timeout)
                    break
                except FileNotFoundError:
                    break
                except OSError as e:
                    # An exiting process can keep the cgroup busy a moment.
                    if e.errno == errno.EBUSY and time.monotonic() < deadline:
                        time.sleep(0.02)
                        continue
                    if e.errno == errno.EBUSY:
                        raise CgroupError(
                            errno.EBUSY,
                            f"cannot remove the cgroup {d}: it still has processes or "
                            "sub-cgroups: remove those first") from None
                    raise self._explain(e, f"cannot remove the cgroup {d}") from None

    def __enter__(self) -> Cgroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove("kill")

    def __repr__(self) -> str:
        return f"<niche.cgroup.Cgroup {self.path()} ({self.version})>"


def _pid(p: Any) -> int:
    if hasattr(p, "pid") and hasattr(p, "chain"):
        p = p.pid
    if isinstance(p, bool) or not isinstance(p, int) or p <= 0:
        raise ValueError(f"a PID is a positive int or a niche.Process, not {p!r}")
    return p
