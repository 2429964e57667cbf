"""`autolabel` command line: one sub-command per module in this package.

Each sub-command module defines ``add_arguments(parser)`` and ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("workflow.cli.run", "label frames from a folder or s3:// prefix through the workflow"),
    "demo": ("workflow.cli.run", "label the bundled demo photos (or --input DIR) locally"),
    "detect": ("workflow.cli.detect", "run a model on images and write overlay images"),
    "eval": ("workflow.cli.evaluate", "COCO-style AP of predictions against COCO or KITTI labels"),
    "calibrate": (
        "workflow.cli.calibrate",
        "per-class accept thresholds reaching a target precision, into a profile",
    ),
    "serve": ("workflow.cli.serve", "run the local asynchronous inference endpoint"),
    "cost": ("workflow.cli.cost", "estimate what a run of N frames costs in AWS"),
    "scorecard": ("workflow.cli.scorecard", "how reviewers changed the pre-labels, per class and per model"),
    "endpoint": ("workflow.cli.endpoint", "package, upload or resolve a model endpoint for sam deploy"),
    "runs": ("workflow.cli.runs", "list the local runs of a workspace with their counts"),
    "resume": ("workflow.cli.runs", "finish an interrupted local run: only what is missing is labeled"),
    "logs": ("workflow.cli.logs", "inspect drive logs (.bag, .db3, .mcap) and extract their camera frames"),
    "export": (
        "workflow.cli.export",
        "a run's labels as COCO, COCO results, YOLO, Label Studio, CVAT or FiftyOne",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autolabel", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        sp = sub.add_parser(name, help=help_text, description=help_text)
        adder = getattr(module, f"add_{name}_arguments", None) or module.add_arguments
        adder(sp)
        sp.set_defaults(_runner=getattr(module, f"run_{name}", None) or module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args._argv = list(sys.argv[1:] if argv is None else argv)  # a local run records it, to resume it
    return int(args._runner(args))


if __name__ == "__main__":
    sys.exit(main())
