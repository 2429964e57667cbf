"""`autolabel export RUN --format F --out DIR`: a run's published dataset in another tool's format."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workflow.exports.source import ExportError, open_run
from workflow.exports.writers import FORMATS, WRITERS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", help="a local run's OUT folder, or s3://BUCKET/runs/ID/"
    )
    parser.add_argument("--format", required=True, choices=FORMATS, dest="fmt")
    parser.add_argument("--out", required=True, type=Path, help="folder to write the export into")
    parser.add_argument(
        "--presign",
        type=int,
        default=0,
        metavar="SECONDS",
        help="S3 runs: image URLs presigned for this long (default: s3:// URIs)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        source = open_run(args.run_dir, args.presign)
    except (ExportError, FileNotFoundError) as exc:
        print(f"autolabel export: {exc}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    frames = WRITERS[args.fmt](source.frames(), source.categories, args.out, source.image)
    print(f"{args.fmt}: {frames} frames of run {source.run_id} written to {args.out}/")
    return 0
