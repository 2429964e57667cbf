"""``autolabel eval PRED GT [--effort]``: COCO-style AP of predictions against COCO or KITTI labels,
and with ``--effort`` what reviewers would do to the pre-labels and the time it saves them."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from workflow.evaluation import evaluate_files, format_report, parse_class_map
from workflow.evaluation.effort import DEFAULT_SECONDS, format_effort
from workflow.evaluation.run import effort_files


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``autolabel eval``."""
    parser.add_argument(
        "pred",
        type=Path,
        help="predictions: COCO results/dataset json, or a folder of Detections JSON (.json/.out) "
        "or KITTI-format .txt files",
    )
    parser.add_argument("gt", type=Path, help="labels: a COCO json, or a KITTI label_2 folder or .txt file")
    parser.add_argument("--gt-format", choices=("coco", "kitti"), help="default: coco for .json, else kitti")
    parser.add_argument(
        "--class-map",
        type=parse_class_map,
        metavar="PRED=GT,...",
        help="predicted class -> labeled class, e.g. person=Pedestrian,car=Car (case-insensitive)",
    )
    parser.add_argument("--iou-type", choices=("bbox", "segm"), default="bbox")
    parser.add_argument("--max-dets", type=int, default=100, help="detections kept per frame (COCO: 100)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the report as JSON")
    parser.add_argument(
        "--effort",
        action="store_true",
        help="also match pre-labels to labels: kept / moved / deleted / added and the reviewer time "
        f"against labelling from scratch (draw {DEFAULT_SECONDS.draw} s, adjust {DEFAULT_SECONDS.adjust} s, "
        f"verify {DEFAULT_SECONDS.verify} s, delete {DEFAULT_SECONDS.delete} s per box)",
    )
    parser.add_argument(
        "--min-score",
        type=float,
        default=0.0,
        help="effort: only pre-labels scoring at least this are shown to people (default: all)",
    )


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table, optionally write JSON; 2 on unreadable input."""
    for path in (args.pred, args.gt):
        if not path.exists():
            print(f"autolabel eval: {path} does not exist", file=sys.stderr)
            return 2
    try:
        report = evaluate_files(
            args.pred, args.gt, args.gt_format, args.class_map, args.iou_type, args.max_dets
        )
    except (ValueError, KeyError) as exc:
        print(f"autolabel eval: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    data = report.to_dict()
    if args.effort:
        try:
            effort = effort_files(args.pred, args.gt, args.gt_format, args.class_map, args.min_score)
        except (ValueError, KeyError) as exc:
            print(f"autolabel eval: {exc}", file=sys.stderr)
            return 2
        print()
        print(format_effort(effort))
        data["effort"] = effort.to_dict()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    return 0
