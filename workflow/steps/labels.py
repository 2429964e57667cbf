"""Reading the per-batch label files a run wrote (shared by BuildManifest and Publish)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from workflow.adapters.s3 import S3Store
from workflow.domain.detections import Detections
from workflow.domain.frames import S3Uri
from workflow.domain.run import RunContext


def batch_files(run: RunContext, s3: S3Store) -> Iterator[dict[str, Any]]:
    """Every ``labels/<batch>.json`` of the run, in batch order."""
    for uri, _ in s3.list_objects(S3Uri(run.bucket, run.key("labels", ""))):
        if uri.key.endswith(".json"):
            yield s3.get_json(uri)


def labeled_frames(run: RunContext, s3: S3Store) -> tuple[list[Detections], list[dict[str, Any]]]:
    """All labeled frames (in taxonomy names) and all frame failures of the run."""
    labeled: list[Detections] = []
    failed: list[dict[str, Any]] = []
    for batch in batch_files(run, s3):
        labeled.extend(Detections.from_dict(d) for d in batch.get("frames", []))
        failed.extend(batch.get("failed", []))
    return labeled, failed
