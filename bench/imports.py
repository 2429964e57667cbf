"""Cold start: how long each Lambda handler takes to import, against `import boto3` alone.

Each import runs in a fresh interpreter (as a Lambda cold start does), several times; the median
counts. Results: a table on stdout and bench-out/imports.json.

    python -m bench.imports [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench-out" / "imports.json"
HEAVY = ("numpy", "PIL", "pycocotools")

PROBE = f"""
import importlib.util, json, os, sys, time
os.environ.update(DATA_BUCKET="b", TOKEN_TABLE="t", LEDGER_TABLE="l", AWS_DEFAULT_REGION="us-east-1",
                  POWERTOOLS_TRACE_DISABLED="true")
start = time.perf_counter()
if sys.argv[1] == "boto3":
    import boto3  # noqa: F401
else:
    spec = importlib.util.spec_from_file_location("app", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
elapsed = time.perf_counter() - start
print(json.dumps({{"s": elapsed, "heavy": sorted(n for n in {HEAVY!r} if n in sys.modules)}}))
"""


def _once(target: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, target], capture_output=True, text=True, cwd=ROOT, check=True
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def measure(target: str, repeat: int) -> dict[str, Any]:
    runs = [_once(target) for _ in range(repeat)]
    return {"median_s": statistics.median(r["s"] for r in runs), "heavy": runs[0]["heavy"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    boto3_s = measure("boto3", args.repeat)["median_s"]
    rows = []
    for app in sorted((ROOT / "functions").glob("*/app.py")):
        found = measure(str(app), args.repeat)
        rows.append(
            {
                "handler": app.parent.name,
                "import_s": round(found["median_s"], 3),
                "vs_boto3": round(found["median_s"] / boto3_s, 2),
                "heavy_modules": found["heavy"],
            }
        )
    print(f"import boto3 alone: {boto3_s:.3f} s (median of {args.repeat}, fresh interpreter each)")
    print(f"{'handler':24} {'import s':>9} {'x boto3':>8}  heavy modules")
    for row in rows:
        heavy = ", ".join(row["heavy_modules"]) or "-"
        print(f"{row['handler']:24} {row['import_s']:9.3f} {row['vs_boto3']:8.2f}  {heavy}")
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({"boto3_s": round(boto3_s, 3), "handlers": rows}, indent=2) + "\n")
    print(f"written {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
