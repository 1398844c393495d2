"""The generated files are committed: they must match the specs."""

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _gen():
    spec = importlib.util.spec_from_file_location("niche_gen", ROOT / "tools" / "gen.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["niche_gen"] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_generated_files_are_up_to_date():
    stale = [rel for rel, text in _gen().generate().items() if (ROOT / rel).read_text() != text]
    assert not stale, f"stale generated files (run `make gen`): {stale}"


def test_every_port_call_has_a_c_handler():
    gen = _gen()
    calls = gen.parse_calls((ROOT / "port/calls.spec").read_text())
    sources = "".join(p.read_text() for p in (ROOT / "port").rglob("*.c"))
    missing = [gen.fn_name(c) for c in calls
               if not c.client and f"int {gen.fn_name(c)}(struct niche_ctx *c)" not in sources]
    assert not missing, f"calls in the spec with no C handler: {missing}"


def test_every_spec_call_is_a_method(tmp_path):
    import niche

    gen = _gen()
    for c in gen.parse_calls((ROOT / "port/calls.spec").read_text()):
        assert callable(getattr(niche.Port, c.name)), c.name
        assert callable(getattr(niche.Process, c.name)), c.name


def test_gen_runs_standalone(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "tools/gen.py"), "--out", str(tmp_path)],
                         capture_output=True, text=True, check=True)
    assert "wrote port/gen/calls.c" in out.stdout
    assert (tmp_path / "agent/niche/_calls.py").read_text() == (ROOT / "agent/niche/_calls.py").read_text()
