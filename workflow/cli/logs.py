"""`autolabel logs inspect FILE...` and `autolabel logs extract FILE... --out DIR`: drive logs to frames.

Logs: ROS 1 ``.bag`` (split parts ``<stem>_N.bag`` read as one log), ROS 2 ``.db3``, ``.mcap``, a
rosbag2 folder, or a folder of any of them. The settings come from the profile's ``logs`` section
(``--profile``), with the flags given here on top.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from workflow.domain.errors import ConfigurationError
from workflow.domain.selection import LogSettings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="logs_command", required=True)
    inspect = sub.add_parser("inspect", help="topics of each log: type, count, rate, time span")
    inspect.add_argument("paths", nargs="+", type=Path, metavar="FILE")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of tables")
    extract = sub.add_parser(
        "extract", help="camera frames of each log to DIR/frames, lineage in frames.jsonl"
    )
    extract.add_argument("paths", nargs="+", type=Path, metavar="FILE")
    extract.add_argument("--out", type=Path, required=True, help="output folder")
    extract.add_argument(
        "--profile", type=Path, metavar="FILE", help="labeling profile whose logs section applies"
    )
    add_settings_arguments(extract)


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """The extraction and selection flags (also on `autolabel run` when its source is a drive log)."""
    g = parser.add_argument_group("drive logs (override the profile's logs section)")
    g.add_argument(
        "--topic", action="append", dest="topics", metavar="TOPIC", help="camera topic (repeatable)"
    )
    g.add_argument("--gps-topic", help="NavSatFix topic (default: the log's only one)")
    g.add_argument("--imu-topic", help="Imu topic (default: the log's only one)")
    g.add_argument(
        "--max-skew", type=float, dest="max_skew_s", help="seconds between a frame and its GPS/IMU"
    )
    g.add_argument("--clock", choices=("header", "log"), help="frame time: header stamp or log time")
    g.add_argument("--raw-format", choices=("jpeg", "png"), help="file format of converted raw images")
    g.add_argument("--bayer", choices=("demosaic", "reject"), help="what to do with Bayer-encoded raw images")
    g.add_argument("--every-nth", type=int, help="keep every N-th frame of a topic")
    g.add_argument("--min-interval", type=float, dest="min_interval_s", help="seconds between kept frames")
    g.add_argument(
        "--min-distance", type=float, dest="min_distance_m", help="metres travelled between kept frames"
    )
    g.add_argument(
        "--dedupe", action=argparse.BooleanOptionalAction, default=None, help="near-duplicate removal"
    )
    g.add_argument("--hash", choices=("phash", "dhash"), dest="hash_method", help="perceptual hash")
    g.add_argument("--max-hash-distance", type=int, help="bits within which a frame is a near-duplicate")
    g.add_argument("--workers", type=int, default=1, help="processes: camera topics extracted at once")


def settings_from_args(args: argparse.Namespace, base: LogSettings | None = None) -> LogSettings:
    """The profile's log settings (or the defaults) with the flags given on top; ValidationError if bad."""
    data: dict[str, Any] = (base or LogSettings()).model_dump()
    for name in ("gps_topic", "imu_topic", "max_skew_s", "clock", "raw_format", "bayer"):
        if getattr(args, name, None) is not None:
            data[name] = getattr(args, name)
    if getattr(args, "topics", None):
        data["topics"] = tuple(args.topics)
    selection = data["selection"]
    for name in ("every_nth", "min_interval_s", "min_distance_m"):
        if getattr(args, name, None) is not None:
            selection[name] = getattr(args, name)
    for flag, key in (
        ("dedupe", "enabled"),
        ("hash_method", "method"),
        ("max_hash_distance", "max_distance"),
    ):
        if getattr(args, flag, None) is not None:
            selection["dedupe"][key] = getattr(args, flag)
    return LogSettings.model_validate(data)


def _profile_settings(args: argparse.Namespace) -> LogSettings:
    from workflow.domain.profile import load_profile

    path = getattr(args, "profile", None)
    base = load_profile(path).logs if path is not None else None
    return settings_from_args(args, base)


def run(args: argparse.Namespace) -> int:
    from workflow.logs.reader import LogError
    from workflow.logs.sources import discover

    try:
        sources = discover(args.paths)
        if args.logs_command == "inspect":
            return _inspect(sources, args.json)
        settings = _profile_settings(args)
    except (ConfigurationError, ValidationError, LogError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = extract(sources, args.out, settings, args.workers)
    return 1 if report["failed_logs"] or not report["frames"] else 0


def _inspect(sources: list[Any], as_json: bool) -> int:
    from workflow.logs.reader import LogError, format_inspection, inspect_log

    status, summaries = 0, []
    for source in sources:
        try:
            summaries.append(inspect_log(source))
        except LogError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
    if as_json:
        print(json.dumps(summaries, indent=2))
    else:
        print("\n\n".join(format_inspection(s) for s in summaries))
    return status


def extract(sources: list[Any], out: Path, settings: LogSettings, workers: int = 1) -> dict[str, Any]:
    """Extract the logs into ``out`` and print what happened, per log and per selection rule."""
    from workflow.logs.extract import extract_logs

    report = extract_logs(sources, out, settings, workers)
    for log in report["logs"]:
        sel = log["selection"]
        drops = ", ".join(f"{rule} {n}" for rule, n in sel["dropped"].items() if n) or "none"
        fps = sel["seen"] / log["seconds"] if log["seconds"] else 0.0
        print(
            f"{log['log']}: {sel['seen']} frames on {len(log['topics'])} topic(s), {sel['kept']} kept, "
            f"dropped: {drops}; {sel['rejected']} rejected  ({log['seconds']:.2f} s, {fps:.0f} frames/s)"
        )
        for item in log["rejected"][:20]:
            print(f"  rejected {item['topic']}#{item['index']} ({item['log_uri']}): {item['reason']}")
        for note in log["notes"]:
            print(f"  note: {note}")
    for failed in report["failed_logs"]:
        print(f"error: {failed['log']} ({failed['files']}): {failed['reason']}", file=sys.stderr)
    print(f"{report['frames']} frames in {out / report['frames_dir']}/, lineage in {out / report['lineage']}")
    return report


def stage_drive_logs(args: argparse.Namespace) -> str | int:
    """`autolabel run LOG --out OUT`: extract and select the log's frames into OUT/frames first.

    Returns the folder the run labels (``args.source`` itself when it is no drive log), or an exit
    status when no frame came out; a log that cannot be read is reported and the others go on.
    Lineage lands in OUT/frames.jsonl, the counts in OUT/extraction.json.
    """
    from workflow.logs.reader import LogError
    from workflow.logs.sources import discover, is_log_path

    path = Path(args.source)
    if str(args.source).startswith("s3://") or not is_log_path(path):
        return str(args.source)
    try:
        settings = _profile_settings(args)
        sources = discover([path])
    except (ConfigurationError, ValidationError, LogError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f">> extracting frames from {len(sources)} drive log(s) into {args.out / 'frames'}")
    report = extract(sources, args.out, settings, args.workers)
    if not report["frames"]:
        print("error: no frames to label from the drive log(s)", file=sys.stderr)
        return 2
    args.failed_logs = len(report["failed_logs"])  # the others are labeled; the exit status says so
    return str(args.out / report["frames_dir"])
