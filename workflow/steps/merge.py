"""MergeBatch and RecordBatchFailure: one label set per frame, or the reason each frame failed."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from workflow.adapters.s3 import S3Store
from workflow.domain.detections import Detections
from workflow.domain.frames import S3Uri
from workflow.domain.merge import merge_models
from workflow.domain.run import Batch, BatchInference, BatchResult, FrameFailure, InferenceRecord, RunContext
from workflow.domain.taxonomy import COCO_TO_ADAS, ClassMap


def default_class_map() -> ClassMap:
    """COCO names and the taxonomy's own names, mapped into the default ADAS taxonomy."""
    taxonomy = COCO_TO_ADAS.taxonomy
    return ClassMap(taxonomy=taxonomy, mapping={**{n: n for n in taxonomy.names}, **COCO_TO_ADAS.mapping})


def _read_outputs(
    record: InferenceRecord, model_format: str, s3: S3Store
) -> tuple[dict[str, Detections], list[FrameFailure]]:
    """The per-frame detections of one completed inference, and the frames it failed on."""
    assert record.output_location
    payload = s3.get_json(record.output_location)
    if model_format == "jumpstart":
        from workflow.domain.parsers import from_jumpstart

        frame = record.frames[0]
        width, height = payload.get("image_size", [0, 0])[:2] if "image_size" in payload else (0, 0)
        return {frame: from_jumpstart(payload, width, height, frame, record.model)}, []
    found: dict[str, Detections] = {}
    failures: list[FrameFailure] = []
    for item in payload.get("results", [payload]):
        if "error" in item:
            reason = item["error"].get("reason") or item["error"].get("type", "unknown error")
            failures.append(FrameFailure(frame=item["frame"], reason=f"{record.model}: {reason}"))
        else:
            found[item["frame"]] = Detections.from_dict(item)
    return found, failures


def merge_batch(batch: Batch, run: RunContext, inference: BatchInference, s3: S3Store) -> BatchResult:
    """Map every model's detections into the taxonomy and merge them per frame; write them to S3."""
    formats = {m.name: m.response_format for m in run.models}
    class_map = default_class_map()
    per_frame: dict[str, list[Detections]] = defaultdict(list)
    problems: dict[str, list[str]] = defaultdict(list)
    dropped: dict[str, int] = defaultdict(int)
    for record in inference.inferences:
        if record.status != "Completed":
            for frame in record.frames:
                problems[frame].append(f"{record.model}: {record.failure_reason}")
            continue
        found, failures = _read_outputs(record, formats.get(record.model, "autolabel"), s3)
        for failure in failures:
            problems[failure.frame].append(failure.reason)
        for frame, dets in found.items():
            mapped, lost = class_map.apply(dets)
            per_frame[frame].append(mapped)
            for name, n in lost.items():
                dropped[name] += n
    labeled = []
    failed = []
    for frame in batch.frames:
        if per_frame.get(frame):
            labeled.append(merge_models(per_frame[frame]).to_dict())
        else:
            reasons = problems.get(frame) or ["no model returned a result for this frame"]
            failed.append(FrameFailure(frame=frame, reason="; ".join(reasons)).model_dump())
    key = run.key("labels", f"{batch.batch_id}.json")
    s3.put_json(
        S3Uri(run.bucket, key),
        {
            "batch_id": batch.batch_id,
            "frames": labeled,
            "failed": failed,
            "dropped_classes": dict(dropped),
        },
    )
    return BatchResult(batch_id=batch.batch_id, labels_key=key, labeled=len(labeled), failed=len(failed))


def record_batch_failure(batch: Batch, run: RunContext, error: dict[str, Any], s3: S3Store) -> BatchResult:
    """Every frame of a batch whose branch failed, with the reason, so nothing vanishes."""
    error_name = str(error.get("Error", "States.TaskFailed"))
    cause = str(error.get("Cause", ""))
    reasons: dict[str, str] = {}
    try:
        detail = json.loads(cause)
        for item in detail.get("failures", []):
            reasons[item["frame"]] = item["reason"]
        message = detail.get("errorMessage") or detail.get("message") or cause
    except (ValueError, AttributeError, TypeError):
        message = cause
    failed = [
        FrameFailure(
            frame=f, reason=reasons.get(f) or f"{error_name}: {message}"[:1000], stage="batch"
        ).model_dump()
        for f in batch.frames
    ]
    key = run.key("labels", f"{batch.batch_id}.json")
    s3.put_json(S3Uri(run.bucket, key), {"batch_id": batch.batch_id, "frames": [], "failed": failed})
    return BatchResult(batch_id=batch.batch_id, labels_key=key, labeled=0, failed=len(failed))
