"""`autolabel runs` and `autolabel resume`: the local runs a workspace remembers."""

from __future__ import annotations

import argparse
import sys
import time

from workflow.cli.run import add_workspace_argument


def add_runs_arguments(parser: argparse.ArgumentParser) -> None:
    add_workspace_argument(parser)


def add_resume_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", help="the run to finish (see `autolabel runs`)")
    add_workspace_argument(parser)


def run_runs(args: argparse.Namespace) -> int:
    from workflow.local.workspace import Workspace

    workspace = Workspace(args.workspace)
    records = workspace.runs()
    workspace.close()
    if not records:
        print(f"no runs in workspace {workspace.root}")
        return 0
    print(f"workspace {workspace.root}")
    print(
        f"{'run':<32} {'status':<12} {'started':<17} {'found':>6} {'labeled':>7} {'skipped':>7} "
        f"{'failed':>6}  source"
    )
    for r in records:
        counts = r.get("counts") or {}
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.get("started_at", 0)))

        def n(key: str, c: dict = counts) -> str:  # type: ignore[type-arg]
            value = c.get(key)
            return "-" if value is None else str(value)

        print(
            f"{r['run_id']:<32} {r.get('status', '?'):<12} {started:<17} {n('frames_found'):>6} "
            f"{n('labeled'):>7} {n('skipped'):>7} {n('failed'):>6}  {r.get('source', '')}"
        )
    return 0


def run_resume(args: argparse.Namespace) -> int:
    from workflow.cli.main import build_parser
    from workflow.cli.run import _execute
    from workflow.local.workspace import Workspace

    workspace = Workspace(args.workspace)
    record = workspace.run(args.run_id)
    workspace.close()
    if record is None:
        where = f"in workspace {workspace.root} (see `autolabel runs`)"
        print(f"error: no run {args.run_id} {where}", file=sys.stderr)
        return 2
    if record.get("status") == "running":
        print(f"error: run {args.run_id} is still running (process {record.get('pid')})", file=sys.stderr)
        return 2
    if record.get("status") == "succeeded":
        print(f"run {args.run_id} already succeeded; nothing to resume")
        return 0
    command = record.get("command")
    if not command or command[0] not in ("run", "demo"):
        print(f"error: run {args.run_id} did not record the command that started it", file=sys.stderr)
        return 2
    # The options of the original command (models, profile, review, out), in this workspace.
    original = build_parser().parse_args(command)
    original.workspace = workspace.root
    original._argv = command
    print(f">> resuming run {args.run_id} on {record['source']}: only what is missing is labeled")
    return _execute(record["source"], original, run_id=args.run_id, request=record["request"])
