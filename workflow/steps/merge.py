"""MergeBatch and RecordBatchFailure: one label set per frame, or the reason each frame failed.

MergeBatch maps each model's detections into the taxonomy with the run's profile (class map,
per-class thresholds; what is dropped is counted), fuses the models' labels of each frame
(``workflow.domain.fusion``) and routes the frame (``workflow.domain.routing``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import numpy as np

from workflow.adapters.run_store import RunStore
from workflow.adapters.s3 import S3Store
from workflow.domain.detections import Detections
from workflow.domain.fusion import ModelOutput, fuse
from workflow.domain.lineage import LINEAGE_FIELD
from workflow.domain.parsers import ModelOutputError, from_local
from workflow.domain.profile import LabelingProfile
from workflow.domain.records import EXAMPLES, BatchLabels, FrameFailure, LabeledFrame, batch_id_of
from workflow.domain.routing import RouteDecision, route_frame
from workflow.domain.run import Batch, BatchInference, BatchResult, InferenceRecord, RunContext
from workflow.domain.taxonomy import ClassMap
from workflow.settings import Settings
from workflow.steps.manifest import batch_segmentation, review_lines
from workflow.steps.prepare import run_profile


def _read_outputs(
    record: InferenceRecord, model_format: str, s3: S3Store
) -> tuple[dict[str, Detections], list[FrameFailure], dict[str, dict[str, int]]]:
    """The per-frame detections of one completed inference, the frames it failed on, and per frame
    the candidates the endpoint left out under the run's min-score (model class -> count)."""
    assert record.output_location
    payload = s3.get_json(record.output_location)
    if model_format == "jumpstart":
        from workflow.domain.parsers import from_jumpstart

        # JumpStart answers in pixels of the frame but does not say its size: read it from the header.
        frame = record.frames[0]
        width, height = s3.image_size(frame)
        return {frame: from_jumpstart(payload, width, height, frame, record.model)}, [], {}
    found: dict[str, Detections] = {}
    failures: list[FrameFailure] = []
    below: dict[str, dict[str, int]] = {}
    items = payload.get("results", [payload]) if isinstance(payload, dict) else payload
    if not isinstance(items, list):
        items = []
    wanted = set(record.frames)
    for item in items:
        if not isinstance(item, dict):
            continue
        frame = str(item.get("frame", ""))
        if not frame and len(record.frames) == 1:
            frame = record.frames[0]  # a one-image answer does not know its frame (the endpoint is not told)
        if frame not in wanted:
            continue  # an answer about no frame of this request: the frame is failed below, not guessed
        if "error" in item:
            error = item["error"] if isinstance(item["error"], dict) else {"reason": str(item["error"])}
            reason = ": ".join(str(error[k]) for k in ("type", "reason") if error.get(k)) or "unknown error"
            failures.append(FrameFailure(frame=frame, reason=f"{record.model}: {reason}"))
            continue
        try:
            found[frame] = from_local({**item, "frame": frame}, frame)
        except ModelOutputError as exc:
            failures.append(FrameFailure(frame=frame, reason=f"{record.model}: {exc.reason}"))
            continue
        cut = item.get("below_min_score")
        if isinstance(cut, dict):
            below[frame] = {str(k): int(v) for k, v in cut.items() if isinstance(v, int) and v > 0}
    return found, failures, below


def model_output(
    dets: Detections,
    model: str,
    profile: LabelingProfile,
    below: dict[str, int] | None = None,
    class_map: ClassMap | None = None,
) -> tuple[ModelOutput, Counter[str]]:
    """One model's detections in taxonomy names, over its thresholds, with its weights.

    Returns them and the count of dropped detections per reason and class
    (``unmapped:<model class>``, ``below threshold:<taxonomy class>``). ``below``: the candidates
    the endpoint already left out under the profile's lowest threshold, per model class (counted
    the same way). ``class_map``: the profile's map of this model, when the caller holds it.
    """
    mapping = profile.mapping(model)
    class_map = class_map or profile.class_map(model)
    mapped, lost = class_map.apply(dets)
    thresholds = {n: np.float32(mapping.threshold(n)) for n in set(mapped.class_names)}
    names = mapped.class_names
    keep = np.array([s >= thresholds[n] for n, s in zip(names, mapped.scores.tolist(), strict=True)])
    dropped = Counter({f"unmapped:{name}": n for name, n in lost.items()})
    dropped.update(f"below threshold:{n}" for n, k in zip(names, keep, strict=True) if not k)
    for name, count in (below or {}).items():
        target = class_map.mapping.get(name)
        dropped[f"unmapped:{name}" if target is None else f"below threshold:{target}"] += count
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


def labeled_frames(
    batch: Batch, run: RunContext, inference: BatchInference, profile: LabelingProfile, s3: S3Store
) -> BatchLabels:
    """Every frame of the batch fused and routed, or failed with the reasons of every model."""
    formats = {m.name: m.response_format for m in run.models}
    per_frame: dict[str, list[ModelOutput]] = defaultdict(list)
    problems: dict[str, list[str]] = defaultdict(list)
    dropped: Counter[str] = Counter()
    class_maps: dict[str, ClassMap] = {}
    for record in inference.inferences:
        if record.status != "Completed":
            for frame in record.frames:
                problems[frame].append(f"{record.model}: {record.failure_reason}")
            continue
        found, failures, below = _read_outputs(record, formats.get(record.model, "autolabel"), s3)
        for failure in failures:
            problems[failure.frame].append(failure.reason)
        for frame, dets in found.items():
            if record.model not in class_maps:
                class_maps[record.model] = profile.class_map(record.model)
            output, lost = model_output(
                dets, record.model, profile, below.get(frame), class_maps[record.model]
            )
            per_frame[frame].append(output)
            dropped.update(lost)
    labeled: list[LabeledFrame] = []
    failed: list[FrameFailure] = []
    run_models = [m.name for m in run.models]
    for frame in batch.frames:
        if per_frame.get(frame):
            labels = fuse_frame(per_frame[frame], run_models, profile)
            route = labels.pop("route")
            if frame in batch.adjust:
                route = _to_adjustment(route)
            models = labels.pop("models")
            labeled.append(
                LabeledFrame(
                    frame=frame, labels=labels, models=models, route=RouteDecision.model_validate(route)
                )
            )
        else:
            reasons = problems.get(frame) or ["no model returned a result for this frame"]
            failed.append(FrameFailure(frame=frame, reason="; ".join(reasons)))
    return BatchLabels(
        batch_id=batch.batch_id, frames=labeled, failed=failed, dropped=dict(sorted(dropped.items()))
    )


def merge_batch(
    batch_key: str, run: RunContext, inference: BatchInference, settings: Settings, s3: S3Store
) -> BatchResult:
    """Map every model's detections into the taxonomy, fuse them per frame, route each frame, and
    write the batch's records: labels, review lines per stream, segmentation label maps, counts."""
    store = RunStore(s3, run.bucket, run.run_prefix)
    batch_name = batch_id_of(batch_key)
    done = store.batch_done(batch_name)
    if done is not None:  # a retried or resumed batch: its records are written already
        return BatchResult(batch_id=batch_name, labeled=done.labeled, failed=done.failed)
    batch = store.get_batch(batch_name)
    profile = run_profile(run, s3)
    if inference.records_uri:
        records = [InferenceRecord.model_validate(r) for r in s3.get_json(inference.records_uri)]
        inference = inference.model_copy(update={"inferences": records})
    labels = labeled_frames(batch, run, inference, profile, s3)
    lines, errors = batch_segmentation(run, profile, settings, s3, [f.detections() for f in labels.frames])
    labels = labels.model_copy(
        update={"segmentation": lines, "segmentation_errors": errors[:EXAMPLES], "lineage": batch.lineage}
    )
    streams = review_lines(batch.batch_id, labels.frames, run, profile, settings)
    if batch.lineage:  # a drive-log frame's record rides on its review line (Ground Truth copies it)
        for stream in streams.values():
            for line in stream:
                record = batch.lineage.get(str(line.get("source-ref")))
                if record is not None:
                    line[LINEAGE_FIELD] = record
    counts = store.put_labels(labels, len(batch.frames), streams)
    return BatchResult(batch_id=batch.batch_id, labeled=counts.labeled, failed=counts.failed)
