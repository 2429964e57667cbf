"""PlanReview and AssembleManifest: the run's labeling jobs and dataset shards, from counts only.

PlanReview reads every batch's counts (not its labels), fails the batches whose branch left no
record, and cuts the review streams into labeling jobs of at most 100,000 frames and the dataset
into shards of at most 10,000 frames (``workflow.domain.records``). AssembleManifest streams one
job's lines, batch by batch, into its input manifest. Neither imports numpy: their memory is a
window of small objects, whatever the run's size.
"""

from __future__ import annotations

from collections.abc import Iterator

from workflow.adapters.run_store import RunStore, lines_body
from workflow.adapters.s3 import S3Store
from workflow.domain.errors import AutolabelError
from workflow.domain.frames import S3Uri
from workflow.domain.groundtruth import label_category_config
from workflow.domain.profile import LabelingProfile, default_profile
from workflow.domain.records import (
    LIST_PAGE,
    MAX_FRAMES_PER_JOB,
    SHARD_FRAMES,
    BatchCounts,
    BatchLabels,
    PartCutter,
    PartRange,
    ReviewPart,
    ShardCutter,
    ShardPlan,
    batch_failures,
)
from workflow.domain.run import ManifestPart, ManifestResult, RunContext, SegmentationOutput
from workflow.domain.verification import verification_categories
from workflow.domain.worker_templates import adjustment_ui_template, verification_ui_template
from workflow.settings import Settings
from workflow.steps.prepare import run_profile

SEGMENTATION_SUFFIX = "-seg-ref"


def plan_review(run: RunContext, settings: Settings, s3: S3Store) -> ManifestResult:
    """Read every batch's counts (only they), in batch order, and cut the labeling jobs and the
    dataset shards as they go: each job's plan is written when it closes and each shard streams
    into ``plan/shards.json``, so memory holds the open job and shard and running totals, never
    the run. Batches that left no record are failed. Writes the jobs' label categories and worker
    templates and ``plan/parts.json`` (each job's batch range, for PublishShard)."""
    store = RunStore(s3, run.bucket, run.run_prefix)
    profile = run_profile(run, s3)
    base = S3Uri(run.bucket, run.key("review"))
    groups = profile.review_groups()
    categories_uri, template_uri = _group_files(s3, base, settings, groups[0], "")
    totals = _Totals()
    part_cutter = PartCutter(MAX_FRAMES_PER_JOB)
    parts: list[ManifestPart] = []
    ranges: list[PartRange] = []

    def write(closed: list[ReviewPart]) -> None:
        for part in closed:
            store.put_part(part)
            parts.append(_manifest_part(part, store, s3, base, settings, groups))
            ranges.append(PartRange.of(part))

    def shards() -> Iterator[ShardPlan]:
        shard_cutter = ShardCutter(SHARD_FRAMES)
        for batch in _joined_counts(store, totals):
            totals.add(batch)
            if run.reviewed:
                write(part_cutter.add(batch))
            shard = shard_cutter.add(batch)
            if shard is not None:
                yield shard
        last = shard_cutter.finish()
        if last is not None:
            yield last
        if run.reviewed:
            write(part_cutter.finish())
        totals.shards = shard_cutter.count

    store.put_shards(shards())
    store.put_part_ranges(ranges)
    return ManifestResult(
        parts=sorted(parts, key=lambda p: p.index),
        frames_to_review=totals.to_people if run.reviewed else 0,
        frames=totals.frames,
        labeled=totals.labeled,
        failed=totals.failed,
        lost_batches=totals.lost,
        shards_key=store.shards_key(),
        shard_count=totals.shards,
        label_categories_uri=categories_uri,
        ui_template_uri=template_uri,
        prelabel_attribute=settings.prelabel_attribute,
        categories=list(groups[0]),
        workers_per_frame=review_workers(profile, settings),
        segmentation=SegmentationOutput(attribute=segmentation_attribute(settings.prelabel_attribute)),
    )


class _Totals:
    """The plan's running totals."""

    def __init__(self) -> None:
        self.frames = self.labeled = self.failed = self.to_people = self.lost = self.shards = 0

    def add(self, batch: BatchCounts) -> None:
        self.frames += batch.frames
        self.labeled += batch.labeled
        self.failed += batch.failed
        self.to_people += batch.to_people


def _joined_counts(store: RunStore, totals: _Totals) -> Iterator[BatchCounts]:
    """Every batch's counts once, in strictly increasing batch order (a lost batch's counts, written
    on the way, may show up again in a later page of the counts listing: skipped)."""
    last = ""
    for batch in _merge_join(store, totals):
        if batch.batch_id > last:
            last = batch.batch_id
            yield batch


def _merge_join(store: RunStore, totals: _Totals) -> Iterator[BatchCounts]:
    """Every batch's counts in batch order: the stored counts merge-joined with the ``batches/``
    listing (both in key order), a listed batch without counts failed on the way as lost."""
    counts = iter(store.all_counts())
    pending = next(counts, None)
    for name in _listed_batches(store):
        while pending is not None and pending.batch_id < name:
            yield pending
            pending = next(counts, None)
        if pending is not None and pending.batch_id == name:
            yield pending
            pending = next(counts, None)
            continue
        totals.lost += 1
        yield _fail_lost(store, name)
    while pending is not None:
        yield pending
        pending = next(counts, None)


def _fail_lost(store: RunStore, name: str) -> BatchCounts:
    frames = store.get_batch(name).frames
    cause = {
        "Error": "BatchLost",
        "Cause": "the batch's branch ended without a result or a failure record",
    }
    return store.put_labels(BatchLabels(batch_id=name, failed=batch_failures(frames, cause)), len(frames), {})


def _listed_batches(store: RunStore) -> Iterator[str]:
    prefix = S3Uri(store.bucket, store.batches_prefix())
    return (
        uri.key.rsplit("/", 1)[-1].removesuffix(".json")
        for uri, _ in store.s3.list_objects(prefix, LIST_PAGE)
    )


def _manifest_part(
    part: ReviewPart,
    store: RunStore,
    s3: S3Store,
    base: S3Uri,
    settings: Settings,
    groups: list[tuple[str, ...]],
) -> ManifestPart:
    categories_uri = template_uri = None
    if part.task == "verify":
        categories_uri = s3.put_json(base.join("verification-categories.json"), verification_categories())
        template = verification_ui_template(settings.prelabel_attribute, "Are these machine labels right?")
        template_uri = s3.put_bytes(
            base.join("verification-template.liquid.html"), template.encode(), "text/html"
        )
    elif part.group > 0:
        categories_uri, template_uri = _group_files(s3, base, settings, groups[part.group], f"-g{part.group}")
    return ManifestPart(
        index=part.index,
        manifest_uri=str(store.manifest_uri(part.index)),
        frames=part.frames,
        task=part.task,
        stream=part.stream,
        label_categories_uri=categories_uri,
        ui_template_uri=template_uri,
    )


class ManifestMismatch(AutolabelError):
    """The assembled manifest does not hold the frames its plan counted (a fragment changed)."""


def assemble_manifest(run: RunContext, part: ManifestPart, s3: S3Store) -> ManifestPart:
    """Stream one job's lines, batch by batch, into its input manifest (bounded memory: a window of
    batch fragments and one multipart part); the frames written must be the frames planned."""
    store = RunStore(s3, run.bucket, run.run_prefix)
    planned = store.get_part(part.index)
    written = 0

    def chunks() -> Iterator[bytes]:
        nonlocal written
        for lines in store.review_lines(planned.stream, planned.batches):
            written += len(lines)
            yield lines_body(lines)

    s3.put_stream(part.manifest_uri, chunks(), "application/jsonlines")
    if written != planned.frames:
        raise ManifestMismatch(f"part {part.index}: {written} lines written, {planned.frames} planned")
    return part


def review_workers(profile: LabelingProfile, settings: Settings) -> int:
    """Workers per frame of the run's labeling jobs: the profile's ``review.workers_per_frame``,
    except on the built-in default profile, where the deployment's WORKERS_PER_FRAME setting rules."""
    if profile == default_profile():
        return settings.workers_per_frame
    return profile.review.workers_per_frame


def segmentation_attribute(prelabel_attribute: str) -> str:
    """The label attribute of the machine segmentation labels (``prelabel`` -> ``prelabel-seg-ref``)."""
    return f"{prelabel_attribute}{SEGMENTATION_SUFFIX}"


def _group_files(
    s3: S3Store, base: S3Uri, settings: Settings, group: tuple[str, ...], suffix: str
) -> tuple[str, str]:
    """Write a group's label category file and adjustment worker template; return their URIs."""
    categories_uri = s3.put_json(base.join(f"label-categories{suffix}.json"), label_category_config(group))
    template = adjustment_ui_template(settings.prelabel_attribute, settings.task_title, list(group))
    template_uri = s3.put_bytes(
        base.join(f"worker-template{suffix}.liquid.html"), template.encode(), "text/html"
    )
    return categories_uri, template_uri
