"""The fault suite's table: one row per scenario, printed after the run, written to bench-out/faults.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

FIELDS = ("scenario", "frames_in", "labeled", "skipped", "failed", "lost", "duplicated", "dangling_tokens")
OUT = Path(__file__).resolve().parents[2] / "bench-out" / "faults.json"
ROWS: list[dict[str, Any]] = []


@pytest.fixture(scope="session")
def fault_table() -> list[dict[str, Any]]:
    """Scenario rows (dicts with FIELDS); the suite appends one per scenario it measured."""
    return ROWS


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not ROWS:
        return
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps([{k: r[k] for k in FIELDS} for r in ROWS], indent=1) + "\n")
    widths = [max(len(f), *(len(str(r[f])) for r in ROWS)) for f in FIELDS]
    terminalreporter.section(f"fault suite: {len(ROWS)} scenarios, written to {OUT}")
    terminalreporter.line("  ".join(f.ljust(w) for f, w in zip(FIELDS, widths, strict=True)))
    for row in ROWS:
        terminalreporter.line("  ".join(str(row[f]).ljust(w) for f, w in zip(FIELDS, widths, strict=True)))
