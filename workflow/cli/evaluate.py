"""``autolabel eval PRED GT``: COCO-style AP of predictions against COCO or KITTI labels."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from workflow.evaluation import evaluate_files, format_report, parse_class_map


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
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    return 0
