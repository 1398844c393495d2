"""niche.cgroup on the real kernel (issue 4): create a cgroup through the
port, set limits, move processes in, watch the limits bite, remove it.

The host may be v2-only, v1 or hybrid; the parsing of each layout is
also checked on recorded /proc files."""

from __future__ import annotations

import errno
import os
import sys
import uuid

import pytest
from niche import cgroup
from niche.cgroup import Cgroup, CgroupError
from porthelpers import read_all_until_exit, wait_exit, wait_until

T = 10

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creating cgroups needs root")


def _name() -> str:
    return f"niche-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def cg(port):
    """A fresh cgroup (memory, pids, cpu where available); removed after."""
    g = Cgroup(port, _name())
    try:
        yield g
    finally:
        g.remove("kill")
        assert not any(os.path.exists(d) for d in g.dirs.values())


def _proc_cgroup_paths(pid: int) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        return f.read()


def _need(g: Cgroup, controller: str) -> None:
    if controller not in g.controllers:
        pytest.skip(f"no {controller} controller on this host")


# --- detection ------------------------------------------------------------------


def test_hierarchies_match_the_host(port):
    hs = cgroup.hierarchies(port)
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split(" - ")[1].split()[0] for line in f if " - " in line]
    assert len([h for h in hs if h.version == 2]) == min(mounts.count("cgroup2"), 1)
    assert len([h for h in hs if h.version == 1]) <= mounts.count("cgroup")
    for h in hs:
        assert os.path.isdir(h.mount)
        assert os.path.isdir(h.dir(h.own)), h
        if h.version == 2:
            with open(f"{h.mount}/cgroup.controllers") as f:
                assert h.controllers == frozenset(f.read().split())


V2_ONLY_MOUNTINFO = (
    "22 28 0:21 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n"
    "26 22 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 "
    "rw,nsdelegate,memory_recursiveprot\n"
)
V2_ONLY_CGROUP = "0::/system.slice/niche.service\n"

V1_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
"""
V1_CGROUP = """\
9:name=systemd:/user.slice
8:pids:/user.slice/user-1000.slice
4:memory:/user.slice
2:cpu,cpuacct:/
"""

HYBRID_MOUNTINFO = V1_MOUNTINFO + (
    "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate\n"
    # a container's view: the same hierarchy bind-mounted again, and a space escaped
    "42 31 0:36 /docker/abc /mnt/my\\040pids rw,relatime - cgroup cgroup rw,pids\n"
)
HYBRID_CGROUP = V1_CGROUP + "0::/user.slice/session-1.scope\n"


def test_parse_v2_only():
    hs = cgroup.parse_hierarchies(V2_ONLY_MOUNTINFO, V2_ONLY_CGROUP,
                                  lambda m: frozenset({"cpu", "memory", "pids"}))
    assert hs == [cgroup.Hierarchy(2, "/sys/fs/cgroup", "/", frozenset({"cpu", "memory", "pids"}),
                                   "/system.slice/niche.service")]
    assert hs[0].dir(hs[0].own) == "/sys/fs/cgroup/system.slice/niche.service"
    assert hs[0].dir("/") == "/sys/fs/cgroup"


def test_parse_v1():
    hs = cgroup.parse_hierarchies(V1_MOUNTINFO, V1_CGROUP, lambda m: frozenset())
    by = {h.mount: h for h in hs}
    assert set(by) == {"/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids",
                       "/sys/fs/cgroup/systemd"}
    assert by["/sys/fs/cgroup/cpu,cpuacct"].controllers == {"cpu", "cpuacct"}
    assert by["/sys/fs/cgroup/cpu,cpuacct"].own == "/"
    assert by["/sys/fs/cgroup/pids"].own == "/user.slice/user-1000.slice"
    assert by["/sys/fs/cgroup/systemd"].controllers == frozenset()
    assert by["/sys/fs/cgroup/systemd"].own == "/user.slice"
    assert all(h.version == 1 for h in hs)


def test_parse_hybrid():
    hs = cgroup.parse_hierarchies(HYBRID_MOUNTINFO, HYBRID_CGROUP, lambda m: frozenset({"hugetlb"}))
    v2 = [h for h in hs if h.version == 2]
    assert len(v2) == 1 and v2[0].mount == "/sys/fs/cgroup/unified"
    assert v2[0].own == "/user.slice/session-1.scope"
    assert len([h for h in hs if "pids" in h.controllers]) == 1  # the second mount is skipped
    # A mount of a sub-directory maps cgroup paths below it.
    h = cgroup.Hierarchy(1, "/mnt/my pids", "/docker/abc", frozenset({"pids"}), "/docker/abc/x")
    assert h.dir(h.own) == "/mnt/my pids/x"
    assert cgroup._unescape("/mnt/my\\040pids") == "/mnt/my pids"


# --- the life of a cgroup -----------------------------------------------------


def test_create_and_remove(port):
    g = Cgroup(port, _name())
    assert g.dirs
    for d in g.dirs.values():
        assert os.path.isdir(d)
        assert os.path.exists(f"{d}/cgroup.procs")
    assert g.version in ("v1", "v2", "hybrid")
    assert g.path() in g.dirs.values()
    assert g.procs() == []
    assert repr(g).startswith("<niche.cgroup.Cgroup ")
    g.remove()
    assert not any(os.path.exists(d) for d in g.dirs.values())
    g.remove()  # removing twice is harmless


def test_create_twice_and_exist_ok(port, cg):
    with pytest.raises(CgroupError, match="exists already.*exist_ok"):
        Cgroup(port, cg.name)
    again = Cgroup(port, cg.name, exist_ok=True)
    assert again.dirs == cg.dirs


def test_bad_names_and_parents(port):
    for bad in ("", "a/b", "..", ".", None):
        with pytest.raises(ValueError):
            Cgroup(port, bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Cgroup(port, "x", parent="relative")
    with pytest.raises(CgroupError, match="parent cgroup does not exist"):
        Cgroup(port, _name(), parent="/niche-no-such-parent-" + uuid.uuid4().hex[:6])
    with pytest.raises(CgroupError, match="not available"):
        Cgroup(port, _name(), controllers=["no-such-controller"])


def test_memory_max_set_and_read_back(cg):
    _need(cg, "memory")
    cg.memory_max(64 << 20)
    file = "memory.max" if cg.controllers["memory"].version == 2 else "memory.limit_in_bytes"
    assert int(cg.get(file)) == 64 << 20
    with open(f"{cg.path('memory')}/{file}") as f:  # the kernel's own view
        assert int(f.read()) == 64 << 20
    cg.memory_max("max")
    assert cg.get(file) == "max" or int(cg.get(file)) > 1 << 40
    with pytest.raises(ValueError):
        cg.memory_max(-5)
    with pytest.raises(ValueError):
        cg.memory_max("lots")


def test_pids_max_and_cpu_max_set_and_read_back(cg):
    _need(cg, "pids")
    cg.pids_max(7)
    assert cg.get("pids.max") == "7"
    cg.pids_max("max")
    assert cg.get("pids.max") == "max"
    _need(cg, "cpu")
    cg.cpu_max(25000, 100000)
    if cg.controllers["cpu"].version == 2:
        assert cg.get("cpu.max") == "25000 100000"
    else:
        assert (cg.get("cpu.cfs_quota_us"), cg.get("cpu.cfs_period_us")) == ("25000", "100000")
    cg.cpu_max("max")
    if cg.controllers["cpu"].version == 2:
        assert cg.get("cpu.max").startswith("max")
    else:
        assert cg.get("cpu.cfs_quota_us") == "-1"
    with pytest.raises(ValueError):
        cg.cpu_max(0)


def test_limits_given_at_creation(port):
    with Cgroup(port, _name(), pids_max=5, memory_max=32 << 20, cpu_max=(50000, 100000)) as g:
        if "pids" in g.controllers:
            assert g.get("pids.max") == "5"
        if "memory" in g.controllers:
            f = "memory.max" if g.controllers["memory"].version == 2 else "memory.limit_in_bytes"
            assert int(g.get(f)) == 32 << 20
    assert not any(os.path.exists(d) for d in g.dirs.values())


def test_move_a_process_in(port, cg):
    c = port.fork([], timeout=T)
    cg.add(c)
    assert cg.procs() == [c]
    seen = _proc_cgroup_paths(c)
    for h, d in cg.dirs.items():
        rel = "/" + d[len(h.mount):].strip("/")
        assert f":{rel}\n" in seen, (rel, seen)
    # Children forked later are born inside.
    g = port.fork([c], timeout=T)
    assert sorted(cg.procs()) == sorted([c, g])
    # A niche.Process works as well as a PID.
    p = port.root.fork()
    cg.add(p)
    assert p.pid in cg.procs()


def test_move_a_missing_process(cg):
    from porthelpers import free_pid

    with pytest.raises(CgroupError, match="no process"):
        cg.add(free_pid())
    with pytest.raises(ValueError):
        cg.add(0)


def test_pids_max_stops_a_fork_bomb(port, cg):
    _need(cg, "pids")
    cg.pids_max(3)
    c = port.fork([], timeout=T)
    cg.add(c)
    # The port's own forks: c and two children fit, the third fails.
    a = port.fork([c], timeout=T)
    b = port.fork([c], timeout=T)
    with pytest.raises(BlockingIOError):  # EAGAIN
        port.fork([c], timeout=T)
    with pytest.raises(BlockingIOError):
        port.fork([c, a], timeout=T)
    assert int(cg.get("pids.current")) == 3
    port.exit([c, a], 0, timeout=T)
    port.exit([c, b], 0, timeout=T)
    assert wait_exit(port, [c, a]) == ("exit_status", 0)
    assert wait_until(lambda: int(cg.get("pids.current")) == 1, 5)
    # A fork bomb (bounded, in case the limit did not hold) exec'd inside.
    port.execvp([c], sys.executable, [sys.executable, "-c", FORK_BOMB], timeout=T)
    port.eof([c], timeout=T)
    out, ev = read_all_until_exit(port, [c], timeout=30)
    assert ev == ("exit_status", 0), port.stderr([c], timeout=0.2)
    forked, err = out.split()
    assert int(forked) == 2  # python itself is the third
    assert int(err) == errno.EAGAIN
    assert int(cg.get("pids.max")) == 3


FORK_BOMB = """
import os, time
kids, err = [], None
for i in range(50):
    try:
        pid = os.fork()
    except OSError as e:
        err = e.errno
        break
    if pid == 0:
        time.sleep(10)
        os._exit(0)
    kids.append(pid)
print(len(kids), err, flush=True)
for k in kids:
    os.kill(k, 9)
    os.waitpid(k, 0)
"""


def test_memory_max_kills_a_memory_hog(port, cg):
    _need(cg, "memory")
    cg.memory_max(32 << 20)
    if cg.controllers["memory"].version == 1:
        try:  # no swap escape hatch on v1 when memsw accounting exists
            cg.set("memory.memsw.limit_in_bytes", 32 << 20)
        except CgroupError:
            pass
    c = port.fork([], timeout=T)
    cg.add(c)
    code = "b = bytearray(200 << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\nprint('survived')"
    port.execvp([c], "python3", ["python3", "-c", code], timeout=T)
    port.eof([c], timeout=T)
    out, ev = read_all_until_exit(port, [c], timeout=60)
    assert b"survived" not in out
    assert ev in (("termsig", "sigkill"), ("exit_status", 1)), ev  # OOM kill, or MemoryError


def test_remove_moves_processes_out(port, cg):
    c = port.fork([], timeout=T)
    cg.add(c)
    dirs = dict(cg.dirs)
    cg.remove()  # default: move them to the parent
    assert not any(os.path.exists(d) for d in dirs.values())
    assert port.getpid([c], timeout=T) == c  # alive, elsewhere
    for h, parent in cg.parents.items():
        rel = "/" + parent[len(h.mount):].strip("/")
        assert f":{rel}\n" in _proc_cgroup_paths(c)


def test_remove_fails_clearly_or_kills(port, cg):
    c = port.fork([], timeout=T)
    port.execvp([c], "sleep", ["sleep", "100"], timeout=T)
    cg.add(c)
    with pytest.raises(CgroupError, match="still holds processes.*processes='kill'"):
        cg.remove("fail")
    assert cg.procs() == [c]
    cg.remove("kill")
    assert wait_exit(port, [c]) == ("termsig", "sigkill")
    assert not any(os.path.exists(d) for d in cg.dirs.values())
    with pytest.raises(ValueError):
        cg.remove("explode")


def test_nested_cgroups(port, cg):
    _need(cg, "pids")
    cg.pids_max(10)
    inner = Cgroup(port, "inner", parent=cg, pids_max=2)
    assert all(d.startswith(cg.dirs[h] + "/") for h, d in inner.dirs.items())
    c = port.fork([], timeout=T)
    inner.add(c)
    assert inner.procs() == [c]
    assert int(cg.get("pids.current")) == 1  # counted in the outer one too
    with pytest.raises(CgroupError, match="sub-cgroups"):
        cg.remove(wait=0.2)
    inner.remove()  # c moves up into cg
    assert cg.procs() == [c]
    with pytest.raises(CgroupError, match="not available"):
        Cgroup(port, "x", parent=cg, controllers=["no-such-controller"])


def test_v2_hierarchy_without_controllers(port):
    """On a hybrid host the cgroup2 hierarchy has no (or few) controllers:
    it still tracks processes."""
    hs = cgroup.hierarchies(port)
    if not any(h.version == 2 for h in hs):
        pytest.skip("no cgroup2 hierarchy")
    with Cgroup(port, _name(), controllers=[]) as g:
        assert [h.version for h in g.dirs] == [2]
        c = port.fork([], timeout=T)
        g.add(c)
        assert g.procs() == [c]
    assert wait_exit(port, [c]) == ("termsig", "sigkill")


def test_cgroup_of_a_deeper_chain(port):
    """The file operations can be done by any process of the tree."""
    c = port.fork([], timeout=T)
    with Cgroup(port, _name(), chain=[c], controllers=["pids"]) as g:
        g2 = port.fork([c], timeout=T)
        g.add(g2)
        assert g.procs() == [g2]
