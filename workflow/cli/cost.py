"""``autolabel cost --frames N``: what a run of N frames costs in AWS, service by service."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from workflow.cost import (
    ENDPOINT_IDLE_HOURS_PER_RUN,
    LAMBDA_MS,
    LAMBDA_UNITS,
    PRICES,
    PRICES_AS_OF,
    PRICES_REGION,
    REVIEW_SECONDS_PER_FRAME,
    REVIEW_SECONDS_PER_OBJECT,
    Estimate,
    RunShape,
    estimate,
    function_settings,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``autolabel cost``."""
    parser.add_argument("--frames", type=_positive_int, required=True, help="frames in the run")
    parser.add_argument("--batch-size", type=_positive_int, default=8, help="frames per batch (default: 8)")
    parser.add_argument(
        "--models", type=_positive_int, default=1, help="models, one endpoint each (default: 1)"
    )
    parser.add_argument(
        "--sources",
        type=_positive_int,
        default=1,
        help="source prefixes the frames are spread over (default: 1)",
    )
    parser.add_argument("--instance-type", help="endpoint instance type (default: the template's)")
    parser.add_argument(
        "--throughput",
        type=_positive_float,
        default=10.0,
        metavar="FPS",
        help="frames per second one endpoint instance sustains (default: 10, an assumption)",
    )
    parser.add_argument(
        "--instance-usd-per-hour", type=_positive_float, help="for an instance type not in the table"
    )
    parser.add_argument("--review", choices=("human", "skip"), default="human")
    parser.add_argument(
        "--review-workers", type=_positive_int, default=1, help="reviewers per frame (default: 1)"
    )
    parser.add_argument("--objects-per-frame", type=float, default=10.0, help="pre-labeled boxes per frame")
    parser.add_argument("--workforce", choices=("private", "public"), default="private")
    parser.add_argument(
        "--worker-hourly-usd", type=float, default=0.0, help="private reviewers' wage (default: not priced)"
    )
    parser.add_argument(
        "--per-frame-requests", action="store_true", help="one request per frame (JumpStart endpoints)"
    )
    parser.add_argument("--template", type=Path, default=PROJECT_ROOT / "template.yaml")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the estimate as JSON")


def _read_template(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(template data, ASL definition) as local mode reads them (PyYAML, no AWS)."""
    from workflow.local.template import Template

    template = Template(path)
    definition_path, _ = template.state_machine()
    return template.data, json.loads(definition_path.read_text(encoding="utf-8"))


def format_estimate(result: Estimate) -> str:
    """The estimate as a table, then warnings and the assumptions behind it."""
    s = result.shape
    lines = [
        f"{s.frames:,} frames in {s.sources:,} source(s) ({s.pages:,} listing pages, {s.batches:,} batches, "
        f"{len(s.shards):,} shards), batch size {s.batch_size}, {s.models} model(s) on {s.instance_type}, "
        f"review: {s.review}"
        + (f" by {s.review_workers} {s.workforce} worker(s)" if s.review == "human" else ""),
        f"prices: {PRICES_REGION} list prices as of {PRICES_AS_OF} (AWS pricing pages; free tiers left out)",
        "",
    ]
    width = max(len(item.service) for item in result.items) + 2
    for item in result.items:
        lines.append(f"{item.service:<{width}}{item.usage:<48}{item.usd:>14,.2f} USD")
    lines += [
        f"{'total':<{width}}{'':<48}{result.total_usd:>14,.2f} USD",
        f"{'orchestration':<{width}}{'(all but the endpoint and review)':<48}"
        f"{result.orchestration_usd:>14,.2f} USD",
        f"{'per 1,000 frames':<{width}}{'':<48}{result.usd_per_1000_frames:>14,.2f} USD",
        "",
    ]
    lines += [f"warning: {w}" for w in result.warnings]
    lines += [
        "assumptions: Lambda "
        + ", ".join(
            f"{name.removesuffix('Function')} {fixed:g} ms + {per:g} ms/{LAMBDA_UNITS[name]}"
            for name, (fixed, per) in LAMBDA_MS.items()
            if per
        )
        + ", the others fixed",
        f"  endpoint: {s.throughput_fps:g} frames/s per instance, {ENDPOINT_IDLE_HOURS_PER_RUN * 60:.0f} min "
        "start + idle before scale-in per model and run",
        f"  review: {REVIEW_SECONDS_PER_FRAME:g} s per frame + {REVIEW_SECONDS_PER_OBJECT:g} s per box "
        f"x {s.objects_per_frame:g} boxes = {result.review_hours:,.0f} worker-hours",
        "  not included: S3 storage and transfer, CloudWatch logs and metrics, X-Ray traces, retries,",
        "  segmentation label maps (frames with masks), failed batches and runs (RecordBatchFailure,"
        " ReportFailedRun)",
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Print the estimate (and write it as JSON); 2 on a template or price problem."""
    try:
        template, definition = _read_template(args.template)
        parameters: dict[str, Any] = template.get("Parameters") or {}
        default_instance = parameters.get("EndpointInstanceType", {}).get("Default")
        shape = RunShape(
            frames=args.frames,
            batch_size=args.batch_size,
            models=args.models,
            sources=args.sources,
            instance_type=args.instance_type or str(default_instance or "ml.c5.xlarge"),
            throughput_fps=args.throughput,
            review=args.review,
            review_workers=args.review_workers,
            objects_per_frame=args.objects_per_frame,
            workforce=args.workforce,
            worker_hourly_usd=args.worker_hourly_usd,
            batch_requests=not args.per_frame_requests,
            instance_usd_per_hour=args.instance_usd_per_hour,
        )
        result = estimate(definition, function_settings(template), shape, PRICES)
    except (OSError, ValueError, KeyError) as exc:
        print(f"autolabel cost: {exc}", file=sys.stderr)
        return 2
    print(format_estimate(result))
    if args.json:
        payload = {
            "shape": asdict(shape),
            "items": [asdict(item) for item in result.items],
            "total_usd": round(result.total_usd, 2),
            "usd_per_1000_frames": round(result.usd_per_1000_frames, 4),
            "orchestration_usd": round(result.orchestration_usd, 2),
            "state_transitions": result.transitions,
            "child_executions": result.child_executions,
            "lambda_invocations": result.lambda_invocations,
            "review_worker_hours": round(result.review_hours, 1),
            "warnings": result.warnings,
            "prices": {"region": PRICES_REGION, "as_of": PRICES_AS_OF},
        }
        args.json.write_text(json.dumps(payload, indent=2), encoding="utf-8")
    return 0
