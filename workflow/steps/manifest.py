"""BuildManifest: the Ground Truth jobs' inputs (only the frames routed to people) and COCO pre-labels.

Frames the profile's routing auto-accepts go to no job: Publish writes them as machine labels.
The others go to adjustment jobs, or to verification jobs when routed to ``verify``. Each job
takes at most 100,000 frames and 10 labels (crowd-bounding-box): a profile with more reviewed classes (and
``review.large_taxonomy: split``) gets one job per group of 10 classes, in taxonomy order. A frame
goes to each group's job that holds a class of its boxes, showing only that group's boxes; a frame
without reviewed boxes goes to every group's job, so people can draw objects of any class.

Frames whose labels carry instance masks also get a semantic-segmentation label: a label-map PNG
(``segmentation/<frame stem>-<hash>.png``) and a line of ``segmentation/input-NNN.manifest``
under the attribute ``<prelabel attribute>-seg-ref``, for teams that run segmentation adjustment
jobs (the workflow starts none). Only masks a model drew are painted, of the reviewed classes:
a box whose fused ``support`` has no member with ``mask: true`` carries a box-shaped mask made
by fusion, and painting it would claim a rectangle of pixels no model segmented, so it is left
out (its pixels stay BACKGROUND unless another mask covers them). Labels without ``support``
(not fused) count as drawn masks. A frame with no such mask gets no PNG. A taxonomy whose
reviewed classes share a colour (or white, the BACKGROUND colour) yields no PNG at all, and
says why, rather than failing the run.
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal

import numpy as np

from workflow.adapters.s3 import S3Store
from workflow.domain.coco import CocoBuilder
from workflow.domain.detections import Detections
from workflow.domain.frames import S3Uri
from workflow.domain.groundtruth import (
    input_manifest_line,
    label_category_config,
    split_manifest,
    worker_ui_template,
)
from workflow.domain.profile import LabelingProfile, default_profile
from workflow.domain.routing import RouteDecision, verification_categories, verification_ui_template
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
from workflow.steps.labels import batch_files
from workflow.steps.prepare import run_profile

_UNROUTED = RouteDecision(route="adjust", reasons=("no route recorded",))
SEGMENTATION_SUFFIX = "-seg-ref"


@dataclass(frozen=True)
class RoutedFrame:
    """A labeled frame (fused, taxonomy names) and where routing sent it."""

    detections: Detections
    decision: RouteDecision


def routed_frames(run: RunContext, s3: S3Store) -> list[RoutedFrame]:
    """Every labeled frame of the run with its route (frames labeled before routing: adjust)."""
    found = []
    for batch in batch_files(run, s3):
        for data in batch.get("frames", []):
            route = data.get("route")
            decision = RouteDecision.model_validate(route) if route else _UNROUTED
            found.append(RoutedFrame(Detections.from_dict(data), decision))
    return found


def group_taxonomy(taxonomy: Taxonomy, group: tuple[str, ...]) -> Taxonomy:
    """The reviewed classes of one label-category group, as a taxonomy of their own."""
    return Taxonomy(classes=tuple(taxonomy.get(name) for name in group))


def frames_for_group(
    frames: list[RoutedFrame], group: tuple[str, ...], reviewed: tuple[str, ...]
) -> list[Detections]:
    """The frames a group's job reviews, each with only the group's boxes (see the module docstring)."""
    chosen = []
    for frame in frames:
        dets = frame.detections
        names = set(dets.class_names)
        if names & set(group) or not names & set(reviewed):
            chosen.append(dets.select(np.array([n in group for n in dets.class_names], np.bool_)))
    return chosen


def build_manifest(run: RunContext, settings: Settings, s3: S3Store) -> ManifestResult:
    """Write the input manifest part(s), label categories, worker templates and COCO pre-labels."""
    profile = run_profile(run, s3)
    taxonomy = profile.taxonomy
    frames = routed_frames(run, s3)
    base = S3Uri(run.bucket, run.key("review"))
    # The first (usually only) group of label categories is the manifest-wide one.
    categories_uri, template_uri = _group_files(s3, base, settings, profile.review_groups()[0], "")
    parts = _adjust_parts(run, profile, settings, s3, [f for f in frames if f.decision.job_task == "adjust"])
    parts += _verify_parts(
        run, profile, settings, s3, [f for f in frames if f.decision.job_task == "verify"], len(parts)
    )
    coco = CocoBuilder(taxonomy, description=f"machine pre-labels of run {run.run_id}")
    for frame in frames:
        coco.add_detections(frame.detections)
    s3.put_json(S3Uri(run.bucket, run.key("prelabels.coco.json")), coco.to_dict())
    return ManifestResult(
        parts=parts,
        frames_to_review=sum(1 for f in frames if f.decision.to_people),
        label_categories_uri=categories_uri,
        ui_template_uri=template_uri,
        prelabel_attribute=settings.prelabel_attribute,
        categories=list(profile.review_groups()[0]),
        workers_per_frame=review_workers(profile, settings),
        segmentation=write_segmentation(run, profile, settings, s3, [f.detections for f in frames]),
    )


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


def write_segmentation(
    run: RunContext, profile: LabelingProfile, settings: Settings, s3: S3Store, labeled: list[Detections]
) -> SegmentationOutput:
    """Label-map PNGs of the frames with drawn masks of reviewed classes, and their manifest part(s)."""
    attribute = segmentation_attribute(settings.prelabel_attribute)
    reviewed = group_taxonomy(profile.taxonomy, profile.taxonomy.reviewed_names)
    frames = [d for d in (painted(d, profile.taxonomy) for d in labeled) if len(d)]
    if not frames:
        return SegmentationOutput(attribute=attribute)
    try:
        palette(reviewed)
    except SegmentationError as exc:
        return SegmentationOutput(attribute=attribute, frames_not_written=len(frames), reason=str(exc))
    job = f"{run.run_id}-prelabel"

    def one(dets: Detections) -> dict[str, Any] | str:
        try:
            png = label_map_png(dets, reviewed)
        except SegmentationError as exc:
            return f"{dets.frame}: {exc}"
        uri = s3.put_bytes(S3Uri(run.bucket, label_map_key(run, dets.frame)), png, "image/png")
        confidence = class_confidences(dets)
        return segmentation_manifest_line(dets.frame, uri, reviewed, attribute, job, confidence=confidence)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(one, frames))
    lines = [r for r in results if isinstance(r, dict)]
    errors = [r for r in results if isinstance(r, str)]
    base = S3Uri(run.bucket, run.key("segmentation"))
    uris = [
        s3.put_lines(base.join(f"input-{i:03d}.manifest"), chunk)
        for i, chunk in enumerate(split_manifest(lines))
    ]
    return SegmentationOutput(
        frames=len(lines),
        manifest_uris=uris,
        attribute=attribute,
        frames_not_written=len(errors),
        reason=errors[0] if errors else None,
    )


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
    run: RunContext, settings: Settings, dets: list[Detections], taxonomy: Taxonomy
) -> list[dict[str, Any]]:
    return [
        input_manifest_line(
            d.frame, d, taxonomy, attribute=settings.prelabel_attribute, job_name=f"{run.run_id}-prelabel"
        )
        for d in dets
    ]


def _adjust_parts(
    run: RunContext, profile: LabelingProfile, settings: Settings, s3: S3Store, frames: list[RoutedFrame]
) -> list[ManifestPart]:
    base = S3Uri(run.bucket, run.key("review"))
    groups = profile.review_groups()
    parts: list[ManifestPart] = []
    for number, group in enumerate(groups):
        taxonomy = group_taxonomy(profile.taxonomy, group)
        lines = _lines(
            run, settings, frames_for_group(frames, group, profile.taxonomy.reviewed_names), taxonomy
        )
        categories_uri = template_uri = None
        if number > 0 and lines:
            categories_uri, template_uri = _group_files(s3, base, settings, group, f"-g{number}")
        parts += _write_parts(s3, base, lines, len(parts), "adjust", categories_uri, template_uri)
    return parts


def _write_parts(
    s3: S3Store,
    base: S3Uri,
    lines: list[dict[str, Any]],
    first_index: int,
    task: Literal["adjust", "verify"],
    categories_uri: str | None,
    template_uri: str | None,
) -> list[ManifestPart]:
    """The manifest lines as ``input-NNN.manifest`` parts of at most 100,000 lines (one job each)."""
    parts = []
    for offset, chunk in enumerate(split_manifest(lines)):
        index = first_index + offset
        uri = s3.put_lines(base.join(f"input-{index:03d}.manifest"), chunk)
        parts.append(
            ManifestPart(
                index=index,
                manifest_uri=uri,
                frames=len(chunk),
                task=task,
                label_categories_uri=categories_uri,
                ui_template_uri=template_uri,
            )
        )
    return parts


def _verify_parts(
    run: RunContext,
    profile: LabelingProfile,
    settings: Settings,
    s3: S3Store,
    frames: list[RoutedFrame],
    first_index: int,
) -> list[ManifestPart]:
    """One verification job per 100,000 frames; the whole label (every reviewed class) is verified."""
    if not frames:
        return []
    base = S3Uri(run.bucket, run.key("review"))
    categories_uri = s3.put_json(base.join("verification-categories.json"), verification_categories())
    template = verification_ui_template(settings.prelabel_attribute, "Are these machine labels right?")
    template_uri = s3.put_bytes(
        base.join("verification-template.liquid.html"), template.encode(), "text/html"
    )
    lines = _lines(run, settings, [f.detections for f in frames], profile.taxonomy)
    return _write_parts(s3, base, lines, first_index, "verify", categories_uri, template_uri)
