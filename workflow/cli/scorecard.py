"""``autolabel scorecard OUTPUT_MANIFEST``: how reviewers changed the pre-labels, per class and per model."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from workflow.domain.errors import AutolabelError
from workflow.domain.groundtruth import loads_manifest
from workflow.domain.scorecard import UNKNOWN_MODEL, format_scorecard, scorecard_from_manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``autolabel scorecard``."""
    parser.add_argument(
        "manifest", help="Ground Truth output manifest (local file or s3:// URI) of an adjustment job"
    )
    parser.add_argument("--label-attribute", default="reviewed", help="the job's LabelAttributeName")
    parser.add_argument(
        "--prelabel-attribute", default="prelabel", help="attribute of the machine pre-labels in the lines"
    )
    parser.add_argument(
        "--model",
        default=UNKNOWN_MODEL,
        help="model of the pre-labels whose metadata names no models (default: unknown)",
    )
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the scorecard as JSON")


def _read(location: str) -> str:
    if location.startswith("s3://"):
        import boto3  # only the s3:// case needs AWS
        from botocore.exceptions import BotoCoreError, ClientError

        from workflow.adapters.s3 import S3Store
        from workflow.domain.errors import ObjectUnreadable

        try:
            return S3Store(boto3.client("s3")).get_bytes(location).decode("utf-8")
        except (BotoCoreError, ClientError, ObjectUnreadable) as exc:
            raise OSError(f"cannot read {location}: {exc}") from exc
    return Path(location).read_text(encoding="utf-8")


def run(args: argparse.Namespace) -> int:
    """Print the scorecard table, optionally write JSON; 2 when the manifest cannot be read or compared."""
    try:
        lines = loads_manifest(_read(args.manifest))
        card = scorecard_from_manifest(
            lines, args.label_attribute, args.prelabel_attribute, default_model=args.model
        )
    except (OSError, ValueError, AutolabelError) as exc:
        print(f"autolabel scorecard: {exc}", file=sys.stderr)
        return 2
    print(format_scorecard(card))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(card.to_dict(), indent=2) + "\n")
    return 0
