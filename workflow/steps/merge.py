"""MergeBatch and RecordBatchFailure: one label set per frame, or the reason each frame failed.

MergeBatch maps each model's detections into the taxonomy with the run's profile (class map,
per-class thresholds; what is dropped is counted), fuses the models' labels of each frame
(``workflow.domain.fusion``) and routes the frame (``workflow.domain.routing``).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from typing import Any

import numpy as np

from workflow.adapters.s3 import S3Store
from workflow.domain.detections import Detections
from workflow.domain.frames import S3Uri
from workflow.domain.fusion import ModelOutput, fuse
from workflow.domain.profile import LabelingProfile
from workflow.domain.routing import RouteDecision, route_frame
from workflow.domain.run import Batch, BatchInference, BatchResult, FrameFailure, InferenceRecord, RunContext
from workflow.steps.prepare import run_profile


def _read_outputs(
    record: InferenceRecord, model_format: str, s3: S3Store
) -> tuple[dict[str, Detections], list[FrameFailure]]:
    """The per-frame detections of one completed inference, and the frames it failed on."""
    assert record.output_location
    payload = s3.get_json(record.output_location)
    if model_format == "jumpstart":
        from workflow.domain.parsers import from_jumpstart

        # JumpStart answers in pixels of the frame but does not say its size: read it from the header.
        frame = record.frames[0]
        width, height = s3.image_size(frame)
        return {frame: from_jumpstart(payload, width, height, frame, record.model)}, []
    found: dict[str, Detections] = {}
    failures: list[FrameFailure] = []
    for item in payload.get("results", [payload]):
        if "error" in item:
            error = item["error"]
            reason = ": ".join(str(error[k]) for k in ("type", "reason") if error.get(k)) or "unknown error"
            failures.append(FrameFailure(frame=item["frame"], reason=f"{record.model}: {reason}"))
        else:
            # A one-image answer does not know its frame (the endpoint is not told): the request does.
            frame = item.get("frame") or (record.frames[0] if len(record.frames) == 1 else "")
            found[frame] = Detections.from_dict({**item, "frame": frame})
    return found, failures


def model_output(dets: Detections, model: str, profile: LabelingProfile) -> tuple[ModelOutput, Counter[str]]:
    """One model's detections in taxonomy names, over its thresholds, with its weights.

    Returns them and the count of dropped detections per reason and class
    (``unmapped:<model class>``, ``below threshold:<taxonomy class>``).
    """
    mapping = profile.mapping(model)
    mapped, lost = profile.class_map(model).apply(dets)
    keep = np.array(
        [s >= mapping.threshold(n) for n, s in zip(mapped.class_names, mapped.scores, strict=True)]
    )
    dropped = Counter({f"unmapped:{name}": n for name, n in lost.items()})
    dropped.update(f"below threshold:{n}" for n, k in zip(mapped.class_names, keep, strict=True) if not k)
    output = ModelOutput(
        model=model,
        detections=mapped.select(keep.astype(np.bool_).reshape(-1)),
        weight=mapping.weight,
        class_weights=dict(mapping.class_weights),
        covers=mapping.covers(),
    )
    return output, dropped


def fuse_frame(outputs: list[ModelOutput], run_models: list[str], profile: LabelingProfile) -> dict[str, Any]:
    """The frame's fused labels (label JSON) with the review route the profile gives them."""
    settings = profile.fusion
    fused = fuse(outputs, settings.method, settings.iou, settings.skip_score)
    answered = [o.model for o in outputs]
    decision = route_frame(
        fused,
        {o.model: o.covers for o in outputs},
        profile.routing,
        missing_models=[m for m in run_models if m not in answered],
    )
    return {**fused.to_dict(), "models": answered, "route": decision.model_dump(mode="json")}


def _to_adjustment(route: dict[str, Any]) -> dict[str, Any]:
    """People rejected this frame's labels in an earlier run's verification: they adjust it this time."""
    decision = RouteDecision.model_validate(route)
    reasons = (*decision.reasons, "rejected in an earlier verification job")
    return decision.model_copy(update={"route": "adjust", "audit": False, "reasons": reasons}).model_dump(
        mode="json"
    )


def merge_batch(batch: Batch, run: RunContext, inference: BatchInference, s3: S3Store) -> BatchResult:
    """Map every model's detections into the taxonomy, fuse them per frame, route each frame; write to S3."""
    formats = {m.name: m.response_format for m in run.models}
    profile = run_profile(run, s3)
    per_frame: dict[str, list[ModelOutput]] = defaultdict(list)
    problems: dict[str, list[str]] = defaultdict(list)
    dropped: Counter[str] = Counter()
    for record in inference.inferences:
        if record.status != "Completed":
            for frame in record.frames:
                problems[frame].append(f"{record.model}: {record.failure_reason}")
            continue
        found, failures = _read_outputs(record, formats.get(record.model, "autolabel"), s3)
        for failure in failures:
            problems[failure.frame].append(failure.reason)
        for frame, dets in found.items():
            output, lost = model_output(dets, record.model, profile)
            per_frame[frame].append(output)
            dropped.update(lost)
    labeled = []
    failed = []
    run_models = [m.name for m in run.models]
    for frame in batch.frames:
        if per_frame.get(frame):
            labels = fuse_frame(per_frame[frame], run_models, profile)
            if frame in batch.adjust:
                labels["route"] = _to_adjustment(labels["route"])
            labeled.append(labels)
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
            "dropped_classes": {
                k.split(":", 1)[1]: n for k, n in dropped.items() if k.startswith("unmapped:")
            },
            "dropped": dict(sorted(dropped.items())),
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
