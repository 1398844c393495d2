"""The board files (issue 7): example agent configurations that use only the
board's own pins, systemd units that say what they should, and a sudoers
snippet that grants exactly one command."""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOARDS = ["beaglebone", "rpi"]
PORT = "/usr/lib/niche/niche-port"
SUDOERS_RULE = f'niche ALL=(root) NOPASSWD: {PORT} ""'
FILES = ["board.toml", "agent.toml", "niche-agent.service", "niche-port-serial.service", "sudoers",
         "README.md"]
# What each example must show (brief of issue 7): pin -> (direction, backend)
EXPECTED_LINES = {
    "beaglebone": {"P9_12": ("out", None), "USR0": ("out", "led"), "P9_15": ("in", None)},
    "rpi": {"PIN11": ("out", None), "ACT": ("out", "led"), "PIN13": ("in", None)},
}
# Options that make systemd set no_new_privs for a service with User=: sudo would fail.
IMPLY_NNP = ["SystemCallFilter", "SystemCallArchitectures", "RestrictAddressFamilies", "RestrictNamespaces",
             "PrivateDevices", "ProtectKernelTunables", "ProtectKernelModules", "ProtectKernelLogs",
             "ProtectClock", "MemoryDenyWriteExecute", "RestrictRealtime", "RestrictSUIDSGID",
             "LockPersonality"]


def load_toml(board: str, name: str) -> dict:
    with open(ROOT / "boards" / board / name, "rb") as f:
        return tomllib.load(f)


def unit(board: str, name: str) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",),
                                   comment_prefixes=("#", ";"), empty_lines_in_values=False)
    cp.optionxform = str  # systemd keys are case-sensitive
    cp.read_string((ROOT / "boards" / board / name).read_text())
    return cp


@pytest.mark.parametrize("board", BOARDS)
def test_board_has_every_file(board):
    missing = [f for f in FILES if not (ROOT / "boards" / board / f).is_file()]
    assert not missing


@pytest.mark.parametrize("board", BOARDS)
def test_agent_toml_uses_board_pins(board):
    cfg = load_toml(board, "agent.toml")
    pins = load_toml(board, "board.toml")
    known = set(pins.get("pins", {})) | set(pins.get("leds", {}))
    assert cfg["agent"]["board"] == board
    assert cfg["mqtt"]["host"] in ("localhost", "127.0.0.1")
    assert cfg["port"] == {"exec_prefix": "sudo -n", "progname": PORT}
    lines = cfg["gpio"]
    used = {d["pin"]: (d.get("direction", "out"), d.get("backend")) for d in lines.values()}
    assert set(used) <= known, set(used) - known
    assert used == EXPECTED_LINES[board]
    for name, d in lines.items():
        if d.get("backend") == "led":
            assert d["pin"] in pins["leds"], f"gpio.{name}: the led backend needs an LED of the board"
        if d.get("direction") == "in":
            assert d.get("bias") == "pull-up" and d.get("debounce_ms", 0) > 0, f"gpio.{name}"


@pytest.mark.parametrize("board", BOARDS)
def test_agent_toml_passes_the_agents_check(board):
    """As `niche-agent --check` does it: every key known, every pin resolved."""
    config = pytest.importorskip("niche.agent.config")
    cfg = config.load(str(ROOT / "boards" / board / "agent.toml"))
    assert cfg.board_name == board
    assert cfg.exec_prefix == "sudo -n" and cfg.progname == PORT
    assert len(cfg.lines) == 3


@pytest.mark.parametrize("board", BOARDS)
def test_agent_unit(board):
    cp = unit(board, "niche-agent.service")
    svc = cp["Service"]
    argv = shlex.split(svc["ExecStart"])
    assert Path(argv[0]).name == "niche-agent" and argv[0].startswith("/"), argv
    assert argv[1:] == ["--config", "/etc/niche/agent.toml"]
    assert svc["User"] == "niche"
    assert svc["Restart"] == "on-failure"
    # sudo is set-user-ID: no_new_privs, set directly or implied, breaks it.
    assert svc["NoNewPrivileges"] == "no"
    assert not [k for k in IMPLY_NNP if k in svc], "an option that implies NoNewPrivileges=yes"
    assert svc["ProtectSystem"] == "strict"
    assert svc["ProtectHome"] == "yes" and svc["PrivateTmp"] == "yes"
    assert "ReadWritePaths" in svc
    assert svc["KillMode"] == "mixed"  # SIGTERM to the agent alone: it resets outputs through the port
    # driver cgroups (memory_max, pids_max) live in the unit's delegated subtree
    assert svc["Delegate"] == "yes" or {"memory", "pids"} <= set(svc["Delegate"].split())
    assert cp["Install"]["WantedBy"] == "multi-user.target"


@pytest.mark.parametrize("board", BOARDS)
def test_serial_unit(board):
    cp = unit(board, "niche-port-serial.service")
    svc = cp["Service"]
    assert svc["ExecStart"] == PORT
    tty = svc["TTYPath"]
    assert tty.startswith("/dev/tty")
    assert svc["StandardInput"] == "tty-force" and svc["StandardOutput"] == "tty"
    stty = shlex.split(svc["ExecStartPre"])
    assert Path(stty[0]).name == "stty" and stty[1:3] == ["-F", tty]
    assert "raw" in stty and "-echo" in stty
    assert svc["TTYReset"] == "no"  # a reset would put the line back in cooked mode
    dev_unit = tty[1:].replace("/", "-") + ".device"
    assert cp["Unit"]["BindsTo"] == dev_unit


@pytest.mark.parametrize("name", ["niche-agent.service", "niche-port-serial.service"])
@pytest.mark.parametrize("board", BOARDS)
def test_units_verify(board, name, tmp_path):
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze not installed (Debian package systemd): units checked by parsing only")
    shutil.copy(ROOT / "boards" / board / name, tmp_path / name)
    proc = subprocess.run([exe, "verify", str(tmp_path / name)], capture_output=True, text=True,
                          env={**os.environ, "SYSTEMD_LOG_COLOR": "0"})
    # The programs are installed on the board, not here; any other complaint counts.
    problems = [ln for ln in (proc.stdout + proc.stderr).splitlines()
                if ln.strip() and "is not executable: No such file or directory" not in ln]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("board", BOARDS)
def test_sudoers_grants_exactly_the_port(board):
    text = (ROOT / "boards" / board / "sudoers").read_text()
    rules = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    # One user, one target user, one command, no arguments (""), nothing else:
    # no Defaults, no aliases, no includes (#include would be a "comment" here).
    assert rules == [SUDOERS_RULE]
    assert not any(ln.lstrip().startswith(("#include", "@include")) for ln in text.splitlines())
    assert text.endswith("\n")  # sudo ignores a last line without a newline


@pytest.mark.parametrize("board", BOARDS)
def test_sudoers_visudo(board, tmp_path):
    visudo = shutil.which("visudo") or next(
        (p for p in ("/usr/sbin/visudo", "/sbin/visudo") if os.access(p, os.X_OK)), None)
    if visudo is None:
        pytest.skip("visudo not installed (Debian package sudo): sudoers syntax not checked by visudo")
    f = tmp_path / "niche"
    shutil.copy(ROOT / "boards" / board / "sudoers", f)
    f.chmod(0o440)
    proc = subprocess.run([visudo, "-cf", str(f)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("board", BOARDS)
def test_readme_covers_the_install(board):
    text = (ROOT / "boards" / board / "README.md").read_text()
    for step in (PORT, "useradd --system", "--groups gpio niche", "visudo -cf",
                 "/etc/sudoers.d/niche", "/etc/systemd/system/niche-agent.service",
                 "systemctl enable --now niche-agent", "exec_prefix", "CLONE_NEWUSER"):
        assert step in text, step
