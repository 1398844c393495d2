"""docs/robustness.md, the bad-input table, is made by tools/robustness.py
from real runs: a short run of the same classes here must find nothing that
crashed, hung or was lost, and the committed table must be the tool's,
current (every class, the same descriptions) and clean."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TABLE = ROOT / "docs" / "robustness.md"
BAD = ("crash", "hang", "lost")


def _tool():
    spec = importlib.util.spec_from_file_location("robustness", ROOT / "tools" / "robustness.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


tool = _tool()


def test_committed_table_is_current_and_clean() -> None:
    text = TABLE.read_text()
    rows = tool.parse(text)
    assert set(rows) == set(tool.CLASSES), "docs/robustness.md is stale: run `make robustness`"
    for name, (what, _) in tool.CLASSES.items():
        assert f"| {name} | {what} |" in text, f"{name}: description changed, run `make robustness`"
        r = rows[name]
        assert r["tried"] >= 300, f"{name}: only {r['tried']} cases in the committed table"
        assert r["tried"] == sum(r[o] for o in tool.OUTCOMES)
        assert all(r[o] == 0 for o in BAD), f"{name}: {r}"
        assert r["up"], name
        assert r["error"] > 0, f"{name}: no case was refused, so nothing bad was tried"


@pytest.mark.skipif(os.geteuid() != 0 or not tool.PORT_BIN.exists() or not tool.AGENT.exists(),
                    reason="needs root (the simulator), the built port and the installed agent")
def test_a_short_run_finds_nothing(tmp_path: Path) -> None:
    out = tmp_path / "robustness.md"
    assert tool.main(["--quick", "-o", str(out)]) == 0, out.read_text() if out.exists() else ""
    rows = tool.parse(out.read_text())
    assert set(rows) == set(tool.CLASSES)
    for name, r in rows.items():
        assert r["tried"] == 12 and r["up"] and all(r[o] == 0 for o in BAD), (name, r)
