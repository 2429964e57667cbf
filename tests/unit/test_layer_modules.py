"""The Lambda layer carries every workflow module the handlers import (``LAYER_MODULES``)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import glob, importlib.util, json, os, sys
os.environ.update(DATA_BUCKET="b", TOKEN_TABLE="t", LEDGER_TABLE="l", AWS_DEFAULT_REGION="us-east-1")
for n, path in enumerate(sorted(glob.glob("functions/*/app.py"))):
    spec = importlib.util.spec_from_file_location(f"app{n}", path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
print(json.dumps(sorted(m for m in sys.modules if m.startswith("workflow."))))
"""


def test_every_workflow_module_a_handler_imports_is_in_the_layer() -> None:
    # Given the modules the Makefile copies into the layer
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(r"^LAYER_MODULES := (.*)$", makefile, re.M)
    assert match is not None
    shipped = {m.removesuffix(".py") for m in match.group(1).split()}
    # When every handler is imported, as Lambda imports it
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, cwd=ROOT, check=True)
    imported = json.loads(out.stdout.strip().splitlines()[-1])
    # Then each workflow module they load is under a shipped module
    missing = sorted({m.split(".")[1] for m in imported} - shipped)
    assert missing == [], f"handlers import workflow.{missing} which the layer does not carry"
