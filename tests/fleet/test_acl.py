"""boards/mosquitto/acl on a real mosquitto (password_file + acl_file): boards
work under it, one board cannot command another, the CLI user can command all."""

from __future__ import annotations

import json
import uuid

import agenthelpers as ah
import fleethelpers as fh
import pytest

ACL = ah.ROOT / "boards" / "mosquitto" / "acl"
LINES = {"led": {"pin": "SIM3"}}


@pytest.fixture(scope="module")
def ids() -> list[str]:
    return [f"acl{i}-{uuid.uuid4().hex[:4]}" for i in range(2)]


@pytest.fixture(scope="module")
def acl_broker(tmp_path_factory, ids):
    reason = ah.tool_missing("mosquitto", "mosquitto_passwd")
    if reason:
        pytest.skip(reason)
    users = {ids[0]: "pw0", ids[1]: "pw1", "cli": "clipw"}
    b = ah.Broker(tmp_path_factory.mktemp("acl-broker"), users=users)
    b.conf.write_text(b.conf.read_text() + f"acl_file {ACL}\n")
    b.start()
    yield b
    b.stop()


def cli_config(tmp_path, b: ah.Broker, user: str, pw: str):
    p = tmp_path / f"{user}.toml"
    p.write_text(f'[mqtt]\nhost = "{b.host}"\nport = {b.port}\nusername = "{user}"\npassword = "{pw}"\n')
    return p


def niche(config, *args: str) -> ah.subprocess.CompletedProcess:
    return ah.subprocess.run([fh.PYTHON, "-m", "niche.cli", "-c", str(config), *args],
                             capture_output=True, text=True, timeout=30)


def test_a_board_cannot_command_another(tmp_path, fresh_sims, acl_broker, ids, agent_factory, client_factory):
    b = acl_broker
    watcher = client_factory(b, protocol="5", username="cli", password="clipw", topics=("niche/#",))
    boards = [ah.start_online(agent_factory, b, s, watcher, lines=LINES, agent_id=i,
                              mqtt={"protocol": "5", "username": i, "password": pw})
              for s, i, pw in zip(fresh_sims[:2], ids, ("pw0", "pw1"), strict=True)]
    victim, intruder = boards
    cli = cli_config(tmp_path, b, "cli", "clipw")
    as_intruder = cli_config(tmp_path, b, intruder.id, "pw1")

    # the intruder board's own credentials: its command to the victim is dropped by the broker
    r = niche(as_intruder, "--timeout", "2", "set", victim.id, "led", "ON")
    assert r.returncode == 3 and "no reply" in r.stderr
    raw = client_factory(b, protocol="5", username=intruder.id, password="pw1", topics=(intruder.topic("#"),))
    raw.publish(victim.topic("gpio", "led", "set"), "ON")  # PUBACKed: the broker has dealt with it
    raw.publish(victim.topic("status"), "offline", retain=True)  # nor can it speak for the victim
    # ...and the CLI user can: a toggle from OFF gives ON, so neither ON above got through
    r = niche(cli, "--json", "toggle", victim.id, "led")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["state"] == "ON" and fresh_sims[0].level(3) == 1
    assert fresh_sims[1].level(3) == 0
    out = json.loads(niche(cli, "--json", "boards").stdout)
    assert out["boards"][victim.id] == {"led": "ON"} and out["boards"][intruder.id] == {"led": "OFF"}
    # a board's user sees nothing of another board: only its own topics reached `raw`
    assert {m.topic.split("/")[1] for m in raw.since()} <= {intruder.id}
