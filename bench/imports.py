"""Cold start: how long each Lambda handler takes to import, against `import boto3` alone.

Each import runs in a fresh interpreter (as a Lambda cold start does), several times; the median
counts. The environment is Lambda's as the template sets it (``LAMBDA_TASK_ROOT``, and
``POWERTOOLS_TRACE_DISABLED`` from ``TracingDetail``: by default Invocations, no X-Ray SDK;
``--tracing-detail AwsCalls`` measures the handlers with the SDK). Results: a table on stdout and
bench-out/imports.json.

    python -m bench.imports [--repeat 5] [--tracing-detail Invocations|AwsCalls] [--only list_page,...]
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
# POWERTOOLS_TRACE_DISABLED as template.yaml sets it from its TracingDetail parameter
TRACE_DISABLED = {"Invocations": "true", "AwsCalls": "false"}

PROBE = f"""
import importlib.util, json, os, sys, time
os.environ.update(DATA_BUCKET="b", TOKEN_TABLE="t", LEDGER_TABLE="l", AWS_DEFAULT_REGION="us-east-1",
                  LAMBDA_TASK_ROOT="/var/task", POWERTOOLS_TRACE_DISABLED=sys.argv[2])
start, cpu = time.perf_counter(), time.process_time()
if sys.argv[1] == "boto3":
    import boto3  # noqa: F401
else:
    spec = importlib.util.spec_from_file_location("app", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
print(json.dumps({{"s": elapsed, "cpu_s": cpu, "heavy": sorted(n for n in {HEAVY!r} if n in sys.modules),
                  "xray_sdk": "aws_xray_sdk" in sys.modules}}))
"""


def _once(target: str, trace_disabled: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, target, trace_disabled],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "median_s": statistics.median(r["s"] for r in runs),
        "median_cpu_s": statistics.median(r["cpu_s"] for r in runs),
        "heavy": runs[0]["heavy"],
        "xray_sdk": runs[0]["xray_sdk"],
    }


def measure(targets: list[str], repeat: int, trace_disabled: str = "true") -> dict[str, dict[str, Any]]:
    """Each target ``repeat`` times, in rounds over all of them (boto3 among them), so that a busy
    machine's load drifts over every target alike rather than over the ones measured last."""
    runs: dict[str, list[dict[str, Any]]] = {t: [] for t in targets}
    for _ in range(repeat):
        for target in targets:
            runs[target].append(_once(target, trace_disabled))
    return {target: _summary(found) for target, found in runs.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tracing-detail", choices=sorted(TRACE_DISABLED), default="Invocations")
    parser.add_argument("--only", help="comma-separated handler folders (default: all)")
    args = parser.parse_args(argv)
    trace_disabled = TRACE_DISABLED[args.tracing_detail]
    only = set(args.only.split(",")) if args.only else None
    apps = [
        app
        for app in sorted((ROOT / "functions").glob("*/app.py"))
        if only is None or app.parent.name in only
    ]
    measured = measure(["boto3", *map(str, apps)], args.repeat, trace_disabled)
    boto3_s, boto3_cpu_s = measured["boto3"]["median_s"], measured["boto3"]["median_cpu_s"]
    rows = []
    for app in apps:
        found = measured[str(app)]
        rows.append(
            {
                "handler": app.parent.name,
                "import_s": round(found["median_s"], 3),
                "vs_boto3": round(found["median_s"] / boto3_s, 2),
                "heavy_modules": found["heavy"],
                "xray_sdk": found["xray_sdk"],
                # CPU time of the import (process_time): steadier than wall time on a busy machine
                "import_cpu_s": round(found["median_cpu_s"], 3),
                "cpu_vs_boto3": round(found["median_cpu_s"] / boto3_cpu_s, 2),
            }
        )
    print(
        f"import boto3 alone: {boto3_s:.3f} s wall, {boto3_cpu_s:.3f} s CPU (median of {args.repeat}, "
        f"fresh interpreter each); TracingDetail={args.tracing_detail}"
    )
    print(f"{'handler':24} {'wall s':>7} {'x boto3':>8} {'CPU s':>7} {'x boto3':>8}  {'X-Ray SDK':9}  heavy")
    for row in rows:
        heavy = ", ".join(row["heavy_modules"]) or "-"
        sdk = "yes" if row["xray_sdk"] else "no"
        print(
            f"{row['handler']:24} {row['import_s']:7.3f} {row['vs_boto3']:8.2f} {row['import_cpu_s']:7.3f} "
            f"{row['cpu_vs_boto3']:8.2f}  {sdk:9}  {heavy}"
        )
    OUT.parent.mkdir(exist_ok=True)
    figures = {
        "boto3_s": round(boto3_s, 3),
        "handlers": rows,
        "boto3_cpu_s": round(boto3_cpu_s, 3),
        "tracing_detail": args.tracing_detail,
        "repeat": args.repeat,
    }
    OUT.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"written {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
