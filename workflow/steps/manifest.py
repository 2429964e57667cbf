"""The review side of a run: each batch's review lines, the plan of jobs and shards, and the
assembly of each job's input manifest from the batches' lines.

Frames the profile's routing auto-accepts go to no job: Publish writes them as machine labels.
The others go to adjustment jobs, or to verification jobs when routed to ``verify``. Each job
takes at most 100,000 frames and 10 labels (crowd-bounding-box): a profile with more reviewed classes (and
``review.large_taxonomy: split``) gets one job per group of 10 classes, in taxonomy order. A frame
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
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from workflow.adapters.s3 import S3Store
from workflow.domain.detections import Detections
from workflow.domain.frames import S3Uri
from workflow.domain.groundtruth import input_manifest_line
from workflow.domain.profile import LabelingProfile
from workflow.domain.records import (
    BATCH_FIELD,
    LabeledFrame,
    review_stream,
)
from workflow.domain.run import RunContext
from workflow.domain.segmentation import (
    SegmentationError,
    class_confidences,
    label_map_png,
    palette,
    segmentation_manifest_line,
)
from workflow.domain.taxonomy import Taxonomy
from workflow.settings import Settings
from workflow.steps.plan import segmentation_attribute


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
    if not run.reviewed:
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


def _lines(
    run: RunContext, settings: Settings, dets: list[Detections], taxonomy: Taxonomy, batch_id: str
) -> list[dict[str, Any]]:
    job = f"{run.run_id}-prelabel"
    return [
        input_manifest_line(d.frame, d, taxonomy, attribute=settings.prelabel_attribute, job_name=job)
        | {BATCH_FIELD: batch_id}
        for d in dets
    ]
