"""Driver cgroups under a systemd unit with Delegate= on cgroup v2, without
systemd: a cgroup made by hand the way systemd leaves a delegated unit's
(the agent's process inside, an empty cgroup.subtree_control), the agent
started in it with a driver that has memory_max and pids_max. The agent and
its port must end in a leaf, the driver in its own cgroup beside it with
the limits set (on this host's v1 hierarchies where the controllers are
there, on cgroup2 where they are)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import AGENT, descendants, to_toml, wait_until
from niche.cgroup import LEAF, parse_hierarchies

HIERS = parse_hierarchies(Path("/proc/self/mountinfo").read_text(), Path("/proc/self/cgroup").read_text(),
                          lambda m: frozenset(Path(m, "cgroup.controllers").read_text().split()))
V2 = next((h for h in HIERS if h.version == 2), None)


def cgroup_of(pid: int, version: int, controller: str = "") -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, ctls, path = line.split(":", 2)
        if (version == 2 and ctls == "") or (version == 1 and controller in ctls.split(",")):
            return path
    raise AssertionError(f"{pid} is in no {controller or 'v2'} cgroup")


@pytest.fixture
def unit_cgroup(request):
    """A v2 cgroup below ours that looks like a delegated unit's."""
    if V2 is None:
        pytest.skip("no cgroup2 hierarchy mounted")
    name = f"niche-test-{os.getpid()}.service"
    path = f"{V2.own.rstrip('/')}/{name}"
    d = Path(V2.dir(path))
    d.mkdir()
    yield path, d
    for sub in sorted(d.rglob("*"), key=lambda p: -len(p.parts)):
        if sub.is_dir():
            for pid in (sub / "cgroup.procs").read_text().split():
                Path(V2.dir(V2.own), "cgroup.procs").write_text(pid)
            sub.rmdir()
    d.rmdir()


def test_driver_cgroup_beside_the_agents_leaf(broker, sim, agent_factory, client_factory, unit_cgroup):
    path, d = unit_cgroup
    assert (d / "cgroup.subtree_control").read_text().strip() == ""  # as systemd leaves it
    client = client_factory(broker)
    a = agent_factory(broker, sim, start=False, lines={"dled": {"pin": "SIM9"}})
    a.cfg["driver"] = {"echo": {"command": ["/bin/cat"], "gpio": ["dled"],
                                "memory_max": "32M", "pids_max": 7}}
    a.path.write_text(to_toml(a.cfg))
    m = client.mark()
    errf = open(a.stderr_path, "ab")  # noqa: SIM115
    procs = d / "cgroup.procs"
    # the agent is in the unit's cgroup before its first instruction, as under systemd
    a.proc = subprocess.Popen([str(AGENT), "-c", str(a.path), "-v"], stdout=subprocess.DEVNULL,
                              stderr=errf, start_new_session=True,
                              preexec_fn=lambda: procs.write_text(str(os.getpid())))
    errf.close()
    client.wait_topic(a.topic("driver", "echo", "state"), "running", since=m, timeout=20)
    port = a.port_pid()
    driver = wait_until(lambda: [p for p in descendants(port)
                                 if Path(f"/proc/{p}/comm").read_text().strip() == "cat"])
    assert driver, descendants(port)
    leaf = f"{path}/{LEAF}"
    own = f"{path}/niche-{a.id}-echo"
    # the unit's cgroup holds no process: the agent, its port and the line holders are in the leaf
    assert procs.read_text().split() == []
    for pid in (a.pid, port):
        assert cgroup_of(pid, 2) == leaf, pid
    assert cgroup_of(driver[0], 2) == own
    # the limits, in whichever hierarchy hosts each controller
    for ctl, files, want in (("memory", ("memory.max", "memory.limit_in_bytes"), str(32 << 20)),
                             ("pids", ("pids.max",), "7")):
        h = next(h for h in HIERS if ctl in h.controllers and (h.version == 1 or h is V2))
        cg = cgroup_of(driver[0], h.version, ctl)
        assert cg.endswith(f"/niche-{a.id}-echo"), (ctl, cg)
        f = next(Path(h.dir(cg), f) for f in files if Path(h.dir(cg), f).exists())
        assert f.read_text().strip() == want, (ctl, f)
    a.cleanup()
