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
from workflow.domain.groundtruth import label_category_config, worker_ui_template
from workflow.domain.profile import LabelingProfile, default_profile
from workflow.domain.records import BatchLabels, ReviewPart, ShardPlan, batch_failures, cut_parts, cut_shards
from workflow.domain.routing import verification_categories, verification_ui_template
from workflow.domain.run import ManifestPart, ManifestResult, RunContext, SegmentationOutput
from workflow.settings import Settings
from workflow.steps.prepare import run_profile

SEGMENTATION_SUFFIX = "-seg-ref"


def plan_review(run: RunContext, settings: Settings, s3: S3Store) -> ManifestResult:
    """Read every batch's counts (only they), cut the labeling jobs and the dataset shards, and
    write the jobs' label categories and worker templates. Batches that left no record are failed."""
    store = RunStore(s3, run.bucket, run.run_prefix)
    profile = run_profile(run, s3)
    counts = {c.batch_id: c for c in store.all_counts()}
    lost = [b for b in _listed_batches(store) if b not in counts]
    for name in lost:
        frames = store.get_batch(name).frames
        cause = {
            "Error": "BatchLost",
            "Cause": "the batch's branch ended without a result or a failure record",
        }
        counts[name] = store.put_labels(
            BatchLabels(batch_id=name, failed=batch_failures(frames, cause)), len(frames), {}
        )
    ordered = [counts[k] for k in sorted(counts)]
    base = S3Uri(run.bucket, run.key("review"))
    groups = profile.review_groups()
    categories_uri, template_uri = _group_files(s3, base, settings, groups[0], "")
    review_parts = cut_parts(ordered) if run.reviewed else []
    parts = [_manifest_part(p, store, s3, base, settings, groups) for p in review_parts]
    for part in review_parts:
        store.put_part(part)
    shards = _with_parts(cut_shards(ordered), review_parts)
    store.put_shards(shards)
    return ManifestResult(
        parts=parts,
        frames_to_review=0 if not run.reviewed else sum(c.to_people for c in ordered),
        frames=sum(c.frames for c in ordered),
        labeled=sum(c.labeled for c in ordered),
        failed=sum(c.failed for c in ordered),
        lost_batches=len(lost),
        shards_key=store.shards_key(),
        shard_count=len(shards),
        label_categories_uri=categories_uri,
        ui_template_uri=template_uri,
        prelabel_attribute=settings.prelabel_attribute,
        categories=list(groups[0]),
        workers_per_frame=review_workers(profile, settings),
        segmentation=SegmentationOutput(attribute=segmentation_attribute(settings.prelabel_attribute)),
    )


def _listed_batches(store: RunStore) -> list[str]:
    prefix = S3Uri(store.bucket, store.batches_prefix())
    return [uri.key.rsplit("/", 1)[-1].removesuffix(".json") for uri, _ in store.s3.list_objects(prefix)]


def _with_parts(shards: list[ShardPlan], parts: list[ReviewPart]) -> list[ShardPlan]:
    """Tell each shard which jobs reviewed each of its batches (so it reads only those outputs)."""
    by_batch: dict[str, list[int]] = {}
    for part in parts:
        for name in part.batches:
            by_batch.setdefault(name, []).append(part.index)
    return [s.model_copy(update={"review_parts": [by_batch.get(b, []) for b in s.batches]}) for s in shards]


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
    template = worker_ui_template(settings.prelabel_attribute, settings.task_title, list(group))
    template_uri = s3.put_bytes(
        base.join(f"worker-template{suffix}.liquid.html"), template.encode(), "text/html"
    )
    return categories_uri, template_uri
