"""examples/nsex: an interactive shell in new namespaces (issue 4)."""

from __future__ import annotations

import os
from pathlib import Path

import examplehelpers as h

SCRIPT = h.ROOT / "examples" / "nsex" / "nsex.py"


def test_session_pid1_uid_hostname_status() -> None:
    r = h.run_example(SCRIPT, "echo pid=$$\nid -u\nid -g\nid -G\nhostname\nexit 3\n",
                      "--hostname", "nsbox")
    assert r.rc == 3, r.err
    lines = r.out.splitlines()
    assert lines[0] == "pid=1"  # the first process of its new PID namespace
    assert lines[1] == lines[2] == lines[3] == str(r.uid)
    assert 0xF0000000 <= r.uid < 0xF0010000
    assert lines[4] == "nsbox"
    assert os.uname().nodename != "nsbox"  # the host's name is untouched
    h.assert_nothing_left(r)


def test_sees_host_tree_but_only_its_own_processes_and_network() -> None:
    r = h.run_example(SCRIPT, "ls /\necho ---\nset -- /proc/[0-9]*; echo $#\n"
                      "cut -d: -f1 /proc/net/dev | tail -n +3 | tr -d ' '\nexit\n")
    assert r.rc == 0, r.err
    tree, rest = r.out.split("---\n")
    assert set(tree.split()) == {e for e in os.listdir("/") if not e.startswith(".")}  # host /
    nprocs, *ifaces = rest.split()
    assert nprocs == "1"  # /proc of the new PID namespace: only the shell
    assert ifaces == ["lo"]  # a new network namespace
    h.assert_nothing_left(r)


def test_writes_only_in_tmp_and_host_mounts_unchanged() -> None:
    before = h.host_mounts()
    r = h.run_example(SCRIPT, "echo x > /x\necho x > /var/tmp/x\necho x > /dev/shm/x\n"
                      "echo ok > /tmp/f && cat /tmp/f\nexit 0\n")
    assert r.rc == 0
    assert r.out.splitlines() == ["ok"]
    assert r.err.count("Read-only file system") == 3, r.err
    for p in ("/x", "/var/tmp/x", "/dev/shm/x"):
        assert not os.path.exists(p)
    assert h.host_mounts() == before  # read-only only in the sandbox's namespace
    h.assert_nothing_left(r)


def test_limits_are_set() -> None:
    r = h.run_example(SCRIPT, "cat /proc/self/limits\n", "--nproc", "7", "--nofile", "33",
                      "--fsize", "4096", "--cpu", "9", "--memory", str(256 << 20))
    assert r.rc == 0, r.err
    lim = h.limits_of(r.out)
    assert lim["Max processes"] == "7"
    assert lim["Max open files"] == "33"
    assert lim["Max file size"] == "4096"
    assert lim["Max cpu time"] == "9"
    assert lim["Max address space"] == str(256 << 20)
    assert lim["Max core file size"] == "0"
    h.assert_nothing_left(r)


def test_fork_bomb_is_limited_by_nproc() -> None:
    h.assert_fork_bomb_held_to_nproc(SCRIPT, 8)


def test_no_privilege_back_through_setuid_binaries() -> None:
    r = h.run_example(SCRIPT, "grep NoNewPrivs /proc/self/status\nexit\n")
    assert r.out.split() == ["NoNewPrivs:", "1"]
    h.assert_nothing_left(r)


def test_example_killed_leaves_nothing() -> None:
    """If the example itself dies, the port kills the sandbox (signaloneof
    SIGKILL): an interactive shell ignores SIGTERM."""
    with h.Session(SCRIPT) as s:
        s.ready()
        s.proc.kill()
        s.proc.wait(10)
        h.assert_nothing_left(h.Run(-9, "", "", s.pid, s.uid, s.mark), timeout=10)


def test_bad_root_fails_cleanly() -> None:
    p = h.subprocess.run([h.PY, str(SCRIPT), "--root", "/nonexistent/dir"], input="exit\n",
                         capture_output=True, text=True, timeout=60)
    assert p.returncode == 255
    assert "setting up the sandbox" in p.stderr


def test_cgroup_pids_max_holds_the_whole_sandbox() -> None:
    """alcove's nsex: a cgroup limits the sandbox as a whole (here pids.max,
    with RLIMIT_NPROC out of the way); the cgroup is removed at the end."""
    with h.Session(SCRIPT, "--nproc", "100", "--pids-max", "5") as s:
        try:
            s.ready()
        except AssertionError:
            r = s.finish()
            if "cgroup" in r.err:
                h.pytest.skip(f"no usable cgroup here: {r.err.strip().splitlines()[-1]}")
            raise
        peak = s.fork_bomb()
        s.send("exit 4\n")
        r = s.finish()
    assert r.rc == 4, r.err
    assert 2 <= peak <= 5, peak
    assert "no cgroup controller here for: pids" not in r.err
    assert not list(Path("/sys/fs/cgroup").glob("*/niche-nsex.*")) and not list(
        Path("/sys/fs/cgroup").glob("niche-nsex.*"))
    h.assert_nothing_left(r)
