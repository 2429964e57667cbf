"""Support for the fan-in tests (tests/unit): a run's records written as its steps write them.

``merged_batch`` writes what PrepareRun and MergeBatch leave for one batch of hand-made fused,
routed frames (the profile, the batch, its labels with segmentation lines, its review lines per
stream and its counts); ``planned`` runs PlanReview and AssembleManifest; ``published`` hands each
job's output lines to CollectReview, then runs PublishShard on every shard and FinishRun.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from workflow.adapters.ledger import FrameLedger
from workflow.adapters.run_store import RunStore
from workflow.adapters.s3 import S3Store
from workflow.domain.detections import Detections, Provenance
from workflow.domain.profile import LabelingProfile
from workflow.domain.records import (
    BATCH_FIELD,
    BatchItem,
    BatchLabels,
    LabeledFrame,
    PageCounts,
    ShardPlan,
    batch_id,
)
from workflow.domain.routing import RouteDecision
from workflow.domain.run import ManifestResult, ModelEndpoint, ReviewResult, RunContext
from workflow.settings import Settings
from workflow.steps.collect import collect_review
from workflow.steps.finish import finish_run
from workflow.steps.manifest import batch_segmentation, review_lines
from workflow.steps.plan import assemble_manifest, plan_review
from workflow.steps.publish import publish_shard

BATCH = batch_id(0, 0, 0)


def synthetic_frame(
    rng: np.random.Generator, names: list[str], boxes: int, batch: int, frame: int
) -> tuple[Detections, RouteDecision]:
    """One fused, auto-routed 1600x900 frame of ``boxes`` random boxes (classes ``names`` in turn),
    ``s3://frames/<batch>/<frame>.jpg``: the frames of the memory tests and bench.shard_memory."""
    xy = rng.uniform(0, 800, (boxes, 2))
    dets = Detections(
        boxes=np.hstack([xy, xy + rng.uniform(5, 100, (boxes, 2))]).astype(np.float32),
        scores=rng.uniform(0.3, 1, boxes).astype(np.float32),
        class_ids=np.zeros(boxes, np.int64),
        class_names=tuple(names[i % len(names)] for i in range(boxes)),
        image_width=1600,
        image_height=900,
        provenance=Provenance(model="m", version="synthetic"),
        frame=f"s3://frames/{batch:04d}/{frame:04d}.jpg",
    )
    return dets, RouteDecision(route="auto", boxes=boxes)


def run_context(models: list[str], **changes: Any) -> RunContext:
    """The ``$.run`` of run-1 in bucket ``data``, with its profile stored by PrepareRun."""
    run = RunContext(
        run_id="run-1",
        bucket="data",
        run_prefix="runs/run-1",
        sources_key="runs/run-1/sources.json",
        source_count=1,
        batches_prefix="runs/run-1/batches/",
        batch_size=8,
        max_concurrency=1,
        batch_timeout_seconds=3600,
        review="human",
        review_timeout_seconds=86400,
        models=[ModelEndpoint(name=m, endpoint_name=f"e-{m}") for m in models],
        profile_key="runs/run-1/profile.json",
    )
    return run.model_copy(update=changes)


def merged_batch(
    s3: S3Store,
    run: RunContext,
    profile: LabelingProfile,
    settings: Settings,
    frames: list[tuple[Detections, RouteDecision]],
    batch: str = BATCH,
) -> BatchLabels:
    """The run's profile and one batch of fused, routed frames, as PrepareRun, ListPage and MergeBatch
    write them (MergeBatch's writes after fusion: segmentation lines, review lines, labels, counts)."""
    s3.put_json(f"s3://{run.bucket}/{run.profile_key}", profile.to_dict())
    store = RunStore(s3, run.bucket, run.run_prefix)
    store.put_batch(BatchItem(batch_id=batch, frames=[d.frame for d, _ in frames]))
    models = [m.name for m in run.models]
    labeled = [LabeledFrame(frame=d.frame, labels=d.to_dict(), models=models, route=r) for d, r in frames]
    segmentation, errors = batch_segmentation(run, profile, settings, s3, [f.detections() for f in labeled])
    labels = BatchLabels(
        batch_id=batch, frames=labeled, segmentation=segmentation, segmentation_errors=errors
    )
    store.put_labels(labels, len(frames), review_lines(batch, labeled, run, profile, settings))
    return labels


def planned(s3: S3Store, run: RunContext, settings: Settings) -> ManifestResult:
    """PlanReview, then AssembleManifest on each of its parts."""
    manifest = plan_review(run, settings, s3)
    for part in manifest.parts:
        assemble_manifest(run, part, s3)
    return manifest


def job_line(line: dict[str, Any], batch: str = BATCH) -> dict[str, Any]:
    """An output line as Ground Truth writes it: the input line's fields (its batch among them) copied."""
    return {BATCH_FIELD: batch, **line}


def published(
    s3: S3Store,
    run: RunContext,
    manifest: ManifestResult,
    outputs: dict[int, list[dict[str, Any]]],
    settings: Settings,
    ledger: FrameLedger,
    review_error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Each part's job output (part index -> output lines) through CollectReview; then PublishShard on
    every planned shard and FinishRun. Returns FinishRun's summary."""
    reviews = []
    for index, lines in outputs.items():
        part = manifest.parts[index]
        uri = s3.put_lines(f"s3://{run.bucket}/out/p{index}.manifest", lines)
        job = f"{run.run_id}-p{index:03d}"
        review = ReviewResult(
            job_name=job, status="Completed", output_manifest_uri=uri, label_attribute="reviewed"
        )
        reviews.append(collect_review(run, part, review, s3).model_dump(mode="json"))
    state = {"run": run.model_dump(mode="json"), "reviews": reviews, "review_error": review_error}
    for shard in s3.get_json(f"s3://{run.bucket}/{manifest.shards_key}"):
        publish_shard(ShardPlan.model_validate(shard), state, settings, s3, ledger)
    # the run's one source and its one listing page, as PrepareRun and ListPage write them
    s3.put_json(f"s3://{run.bucket}/{run.sources_key}", [{"index": 0, "uri": "s3://frames/"}])
    page = PageCounts(
        source="s3://frames/",
        source_index=0,
        page=0,
        listed=manifest.frames,
        frames=manifest.frames,
        batches=1,
        skipped=0,
    )
    RunStore(s3, run.bucket, run.run_prefix).put_page(page, [])
    return finish_run(state, settings, s3, ledger)


def frame_reports(s3: S3Store, report: dict[str, Any]) -> list[dict[str, Any]]:
    """Every frame's line of the run's report (one file per shard)."""
    return [line for uri in report["frame_reports"] for line in s3.get_lines(uri)]
