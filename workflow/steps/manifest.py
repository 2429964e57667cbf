"""The review side of a run: each batch's review lines, the plan of jobs and shards, and the
assembly of each job's input manifest from the batches' lines.

Frames the profile's routing auto-accepts go to no job: Publish writes them as machine labels.
The others go to adjustment jobs, or to verification jobs when routed to ``verify``. Each job
takes at most 100,000 frames and 50 label categories: a profile with more reviewed classes (and
``review.large_taxonomy: split``) gets one job per group of 50 classes, in taxonomy order. A frame
goes to each group's job that holds a class of its boxes, showing only that group's boxes; a frame
without reviewed boxes goes to every group's job, so people can draw objects of any class.

MergeBatch writes each batch's manifest lines per review stream (``review_lines``); PlanReview
reads only the batches' counts and cuts the jobs and the dataset shards (``plan_review``);
AssembleManifest streams one job's lines into its input manifest (``assemble_manifest``). Each
line carries ``autolabel-batch`` (Ground Truth copies input fields to its output), so a job's
output can be split back by batch.

Frames whose labels carry instance masks also get a semantic-segmentation label: a label-map PNG
(``segmentation/<frame stem>-<hash>.png``) and a manifest line under the attribute
``<prelabel attribute>-seg-ref``, for teams that run segmentation adjustment jobs (the workflow
starts none). Only masks a model drew are painted, of the reviewed classes: a box whose fused
``support`` has no member with ``mask: true`` carries a box-shaped mask made by fusion, and
painting it would claim a rectangle of pixels no model segmented, so it is left out. Labels
without ``support`` (not fused) count as drawn masks. A frame with no such mask gets no PNG. A
taxonomy whose reviewed classes share a colour (or white, the BACKGROUND colour) yields no PNG at
all, and says why, rather than failing the run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from workflow.adapters.run_store import RunStore, lines_body
from workflow.adapters.s3 import S3Store
from workflow.domain.detections import Detections
from workflow.domain.errors import AutolabelError
from workflow.domain.frames import S3Uri
from workflow.domain.groundtruth import input_manifest_line, label_category_config, worker_ui_template
from workflow.domain.profile import LabelingProfile, default_profile
from workflow.domain.records import (
    BatchLabels,
    LabeledFrame,
    ReviewPart,
    ShardPlan,
    batch_failures,
    cut_parts,
    cut_shards,
    review_stream,
)
from workflow.domain.routing import verification_categories, verification_ui_template
from workflow.domain.run import ManifestPart, ManifestResult, RunContext, SegmentationOutput
from workflow.domain.segmentation import (
    SegmentationError,
    class_confidences,
    label_map_png,
    palette,
    segmentation_manifest_line,
)
from workflow.domain.taxonomy import Taxonomy
from workflow.settings import Settings
from workflow.steps.prepare import run_profile

SEGMENTATION_SUFFIX = "-seg-ref"
# The input-line field that names the frame's batch (copied by Ground Truth into the output line).
BATCH_FIELD = "autolabel-batch"


def group_taxonomy(taxonomy: Taxonomy, group: tuple[str, ...]) -> Taxonomy:
    """The reviewed classes of one label-category group, as a taxonomy of their own."""
    return Taxonomy(classes=tuple(taxonomy.get(name) for name in group))


def frames_for_group(
    frames: list[LabeledFrame], group: tuple[str, ...], reviewed: tuple[str, ...]
) -> list[Detections]:
    """The frames a group's job reviews, each with only the group's boxes (see the module docstring)."""
    chosen = []
    for frame in frames:
        dets = frame.detections()
        names = set(dets.class_names)
        if names & set(group) or not names & set(reviewed):
            chosen.append(dets.select(np.array([n in group for n in dets.class_names], np.bool_)))
    return chosen


def review_lines(
    batch_id: str, frames: list[LabeledFrame], run: RunContext, profile: LabelingProfile, settings: Settings
) -> dict[str, list[dict[str, Any]]]:
    """The batch's input-manifest lines per review stream (adjust groups, verify)."""
    if run.review == "skip":
        return {}
    reviewed = profile.taxonomy.reviewed_names
    adjust = [f for f in frames if f.route.job_task == "adjust"]
    verify = [f for f in frames if f.route.job_task == "verify"]
    streams: dict[str, list[dict[str, Any]]] = {}
    for number, group in enumerate(profile.review_groups()):
        taxonomy = group_taxonomy(profile.taxonomy, group)
        dets = frames_for_group(adjust, group, reviewed)
        streams[review_stream("adjust", number)] = _lines(run, settings, dets, taxonomy, batch_id)
    verified = [f.detections() for f in verify]
    streams[review_stream("verify")] = _lines(run, settings, verified, profile.taxonomy, batch_id)
    return streams


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
    review_parts = cut_parts(ordered) if run.review != "skip" else []
    parts = [_manifest_part(p, store, s3, base, settings, groups) for p in review_parts]
    for part in review_parts:
        store.put_part(part)
    shards = _with_parts(cut_shards(ordered), review_parts)
    store.put_shards(shards)
    return ManifestResult(
        parts=parts,
        frames_to_review=0 if run.review == "skip" else sum(c.to_people for c in ordered),
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


def painted(detections: Detections, taxonomy: Taxonomy) -> Detections:
    """The detections a label map paints: reviewed classes whose mask a model drew (module docstring)."""
    if detections.masks is None:
        return detections.select(np.zeros(len(detections), np.bool_))
    reviewed = set(taxonomy.reviewed_names)
    keep = [
        name in reviewed and (detections.support is None or any(s.mask for s in detections.support[i]))
        for i, name in enumerate(detections.class_names)
    ]
    return detections.select(np.array(keep, np.bool_))


def label_map_key(run: RunContext, frame: str) -> str:
    """Key of a frame's label-map PNG: its file stem and a hash of its URI (stems repeat across folders)."""
    digest = hashlib.sha256(frame.encode()).hexdigest()[:12]
    return run.key("segmentation", f"{PurePosixPath(frame).stem}-{digest}.png")


def batch_segmentation(
    run: RunContext, profile: LabelingProfile, settings: Settings, s3: S3Store, labeled: list[Detections]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Label-map PNGs of the batch's frames with drawn masks of reviewed classes: their manifest
    lines, and the reasons of frames whose label map could not be made."""
    attribute = segmentation_attribute(settings.prelabel_attribute)
    reviewed = group_taxonomy(profile.taxonomy, profile.taxonomy.reviewed_names)
    frames = [d for d in (painted(d, profile.taxonomy) for d in labeled) if len(d)]
    if not frames:
        return [], []
    try:
        palette(reviewed)
    except SegmentationError as exc:
        return [], [f"{len(frames)} frames with masks got no label map: {exc}"]
    job = f"{run.run_id}-prelabel"
    lines: list[dict[str, Any]] = []
    errors: list[str] = []
    for dets in frames:
        try:
            png = label_map_png(dets, reviewed)
        except SegmentationError as exc:
            errors.append(f"{dets.frame}: {exc}")
            continue
        uri = s3.put_bytes(S3Uri(run.bucket, label_map_key(run, dets.frame)), png, "image/png")
        confidence = class_confidences(dets)
        lines.append(
            segmentation_manifest_line(dets.frame, uri, reviewed, attribute, job, confidence=confidence)
        )
    return lines, errors


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


def _lines(
    run: RunContext, settings: Settings, dets: list[Detections], taxonomy: Taxonomy, batch_id: str
) -> list[dict[str, Any]]:
    job = f"{run.run_id}-prelabel"
    return [
        input_manifest_line(d.frame, d, taxonomy, attribute=settings.prelabel_attribute, job_name=job)
        | {BATCH_FIELD: batch_id}
        for d in dets
    ]
