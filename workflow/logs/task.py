"""The extraction task (ECS Fargate): one drive log object in S3 -> frames, lineage and report in S3.

``python -m workflow.logs.task`` reads its work from the environment, as the ``drivelogs`` state
machine's ``ecs:runTask.sync`` container overrides set it:

- ``LOG_URI``, ``LOG_ETAG``: the log object and the version the ledger claimed (a changed object is refused);
- ``OUTPUT_PREFIX``: ``s3://<data bucket>/drivelogs/<log id>/``; frames go under ``frames/``,
  lineage to ``frames.jsonl``, counts to ``extraction.json`` (the layout of ``workflow.logs.extract``);
- ``PROFILE``: optional, a labeling profile (``s3://...`` or inline JSON) whose ``logs`` section applies;
- ``WORK_DIR`` (default ``/tmp/drivelog``, the task's ephemeral storage), ``WORKERS`` (default: CPU count).

It exits non-zero when the log cannot be read or yields no frame; the state machine checks the
container's exit code (``runTask.sync`` itself succeeds whenever the task stops).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflow.domain.frames import S3Uri
from workflow.domain.selection import LogSettings


@dataclass(frozen=True)
class TaskSettings:
    """The task's settings, read once from the environment."""

    log_uri: str
    etag: str
    output_prefix: str
    profile: str
    work_dir: Path
    workers: int

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TaskSettings:
        e = os.environ if env is None else env
        missing = [k for k in ("LOG_URI", "LOG_ETAG", "OUTPUT_PREFIX") if not e.get(k)]
        if missing:
            raise SystemExit(f"extraction task: missing environment {missing}")
        return cls(
            log_uri=e["LOG_URI"],
            etag=e["LOG_ETAG"].strip('"'),
            output_prefix=e["OUTPUT_PREFIX"].rstrip("/") + "/",
            profile=e.get("PROFILE", ""),
            work_dir=Path(e.get("WORK_DIR", "/tmp/drivelog")),
            workers=int(e.get("WORKERS") or os.cpu_count() or 1),
        )


def log_settings(profile: str, s3: Any) -> LogSettings:
    """The ``logs`` section of the profile (inline JSON/YAML or ``s3://``), else the defaults."""
    from workflow.domain.profile import parse_profile

    if not profile:
        return LogSettings()
    if profile.startswith("s3://"):
        loc = S3Uri.parse(profile)
        text = s3.get_object(Bucket=loc.bucket, Key=loc.key)["Body"].read().decode()
        return parse_profile(text, profile).logs
    return parse_profile(profile, "PROFILE").logs


def download(s3: Any, uri: str, etag: str, target: Path) -> None:
    """The claimed version of the log: HeadObject with IfMatch refuses a replaced object (412)."""
    loc = S3Uri.parse(uri)
    s3.head_object(Bucket=loc.bucket, Key=loc.key, IfMatch=f'"{etag}"')  # an entity tag is quoted
    target.parent.mkdir(parents=True, exist_ok=True)
    s3.download_file(loc.bucket, loc.key, str(target))


def upload(s3: Any, folder: Path, prefix: str, threads: int = 16) -> int:
    """Every file under ``folder`` to ``prefix`` (relative paths kept); returns how many."""
    loc = S3Uri.parse(prefix)
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]

    def put(path: Path) -> None:
        s3.upload_file(str(path), loc.bucket, loc.key + path.relative_to(folder).as_posix())

    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(put, files))
    return len(files)


def run_task(settings: TaskSettings, s3: Any) -> dict[str, Any]:
    """Download, extract (one process per camera topic), upload; returns the extraction report."""
    from workflow.logs.extract import extract_logs
    from workflow.logs.sources import discover

    logs = log_settings(settings.profile, s3)
    name = settings.log_uri.rsplit("/", 1)[-1]
    local = settings.work_dir / "log" / name
    out = settings.work_dir / "out"
    shutil.rmtree(settings.work_dir, ignore_errors=True)
    download(s3, settings.log_uri, settings.etag, local)
    report = extract_logs(discover([local], {local: settings.log_uri}), out, logs, workers=settings.workers)
    local.unlink()  # room on the ephemeral storage for the frames
    report["uploaded"] = upload(s3, out, settings.output_prefix)
    return report


def main() -> int:
    import boto3

    settings = TaskSettings.from_env()
    report = run_task(settings, boto3.client("s3"))
    summary = {
        k: report[k] for k in ("frames", "messages_seen", "rejected", "reduction", "failed_logs", "uploaded")
    }
    print(json.dumps({"log_uri": settings.log_uri, "output_prefix": settings.output_prefix, **summary}))
    return 1 if report["failed_logs"] or not report["frames"] else 0


if __name__ == "__main__":
    sys.exit(main())
