"""`autolabel export RUN --format F --out DIR`: a run's published dataset in another tool's format."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from workflow.exports.source import ExportError, open_run
from workflow.exports.writers import FORMATS, WRITERS, write_label_studio


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_dir", metavar="RUN_DIR", help="a local run's OUT folder, or s3://BUCKET/runs/ID/"
    )
    parser.add_argument("--format", required=True, choices=FORMATS, dest="fmt")
    parser.add_argument("--out", required=True, type=Path, help="folder to write the export into")
    parser.add_argument(
        "--document-root",
        default="/",
        metavar="DIR",
        help="label-studio, local runs: Label Studio's LOCAL_FILES_DOCUMENT_ROOT (image URLs are "
        "/data/local-files/?d=<path under it>; default /)",
    )
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
    if args.fmt == "label-studio":
        frames = write_label_studio(
            source.frames(), source.categories, args.out, source.image, args.document_root
        )
    else:
        frames = WRITERS[args.fmt](source.frames(), source.categories, args.out, source.image)
    print(f"{args.fmt}: {frames} frames of run {source.run_id} written to {args.out}/")
    return 0
