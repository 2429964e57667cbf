"""Publish: the reviewed dataset and a report that accounts for every input frame.

The output manifest holds one line per labeled frame: the Ground Truth output line for frames
people adjusted, and the pre-label line (``human-annotated: "no"``) for frames routing
auto-accepted or people verified as correct. The report tells how many frames and objects went
each way and what the review costs with and without routing.

After a review, ``scorecard.json`` (and the report's ``scorecard``) tells what people did to the
pre-labels of the frames they adjusted, per class and per model (``workflow.domain.scorecard``):
each pre-label as shown to them (reviewed classes, whole pixels) is kept, moved or deleted, and
boxes they drew are added; frames judged in verification jobs are not counted. When BuildManifest
wrote machine segmentation labels, ``segmentation.manifest`` holds them for the frames of the
dataset (frames that failed in review are left out); they are machine masks, not reconciled with
the box review, and no segmentation labeling job is started.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from workflow.adapters.ledger import FrameLedger
from workflow.adapters.s3 import S3Store
from workflow.domain.coco import CocoBuilder
from workflow.domain.detections import Detections
from workflow.domain.frames import S3Uri
from workflow.domain.groundtruth import (
    ReviewedFrame,
    boxes_from_detections,
    input_manifest_line,
    output_manifest_line,
    parse_output_line,
)
from workflow.domain.prices import cost_estimate
from workflow.domain.profile import LabelingProfile
from workflow.domain.routing import RouteDecision, route_counts, verification_verdict
from workflow.domain.run import ManifestResult, ReviewResult, RunContext
from workflow.domain.scorecard import (
    UNKNOWN_MODEL,
    PreLabel,
    Scorecard,
    build_scorecard,
    prelabels_from_detections,
)
from workflow.domain.taxonomy import Taxonomy
from workflow.settings import Settings
from workflow.steps.labels import batch_files, labeled_frames
from workflow.steps.manifest import RoutedFrame, review_workers, routed_frames
from workflow.steps.prepare import run_profile

# A stand-in reviewer (local --review simulate) wrote the review: no person looked at these frames.
SIMULATED = "machine (simulated review, no person)"


def _reviewed_lines(reviews: list[ReviewResult], s3: S3Store) -> list[tuple[ReviewResult, dict[str, Any]]]:
    lines: list[tuple[ReviewResult, dict[str, Any]]] = []
    for review in reviews:
        if review.output_manifest_uri:
            lines.extend((review, line) for line in s3.get_lines(review.output_manifest_uri))
    return lines


def _adjustment_stats(reviewed: list[ReviewedFrame], prelabels: dict[str, Detections]) -> dict[str, Any]:
    status = Counter(r.adjustment_status or "unknown" for r in reviewed if not r.failed)
    before = sum(len(prelabels[r.source_ref]) for r in reviewed if r.source_ref in prelabels)
    after = sum(len(r.boxes) for r in reviewed if not r.failed)
    return {
        "frames_adjusted": status.get("adjusted", 0),
        "frames_unadjusted": status.get("unadjusted", 0),
        "frames_failed_in_review": sum(1 for r in reviewed if r.failed),
        "objects_before_review": before,
        "objects_after_review": after,
    }


def _combined(
    frames: list[ReviewedFrame], line: dict[str, Any], attribute: str, profile: LabelingProfile
) -> tuple[ReviewedFrame, dict[str, Any]]:
    """One frame reviewed in several jobs (a taxonomy split into groups of 10 classes): the union."""
    if len(frames) == 1:
        return frames[0], line
    failed = [f for f in frames if f.failed]
    if failed:
        return failed[0], line
    names = profile.taxonomy.reviewed_names
    boxes = [b.model_copy(update={"class_id": names.index(b.class_name)}) for f in frames for b in f.boxes]
    size = frames[0].image_size
    assert size is not None
    jobs = "+".join(sorted({(f.job_name or "").removeprefix("labeling-job/") for f in frames}))
    adjusted = any(f.adjustment_status == "adjusted" for f in frames)
    out = output_manifest_line(
        {"source-ref": frames[0].source_ref}, attribute, boxes, jobs, adjusted, image_size=size
    )
    return parse_output_line(out, attribute), out


class _Review:
    """What people said about the frames routed to them."""

    def __init__(self) -> None:
        self.adjusted: dict[str, tuple[ReviewedFrame, dict[str, Any]]] = {}
        self.verified: dict[str, dict[str, Any]] = {}  # frame -> the verdict ("correct") and its metadata
        self.failures: list[dict[str, str]] = []

    @classmethod
    def read(cls, reviews: list[ReviewResult], s3: S3Store, profile: LabelingProfile) -> _Review:
        review = cls()
        by_frame: dict[str, list[tuple[ReviewedFrame, dict[str, Any]]]] = defaultdict(list)
        for job, line in _reviewed_lines(reviews, s3):
            frame_uri = str(line.get("source-ref"))
            verdict = verification_verdict(line, job.label_attribute)
            if verdict is not None:
                if verdict[0]:
                    attr = job.label_attribute
                    review.verified[frame_uri] = {k: line[k] for k in (attr, f"{attr}-metadata") if k in line}
                else:
                    reason = (
                        f"verification: people judged the labels wrong ({verdict[1]}); "
                        "the next run that claims it sends it to an adjustment job"
                    )
                    comments = _worker_comments(line.get(f"{job.label_attribute}-metadata", {}))
                    if comments:
                        reason += f"; reviewers said: {' | '.join(comments)}"
                    review.failures.append({"frame": frame_uri, "reason": reason, "next_route": "adjust"})
                continue
            by_frame[frame_uri].append((parse_output_line(line, job.label_attribute), line))
        attribute = reviews[0].label_attribute
        for frame_uri, parsed in by_frame.items():
            frame, line = _combined([p for p, _ in parsed], parsed[0][1], attribute, profile)
            if frame.failed:
                review.failures.append({"frame": frame_uri, "reason": f"review: {frame.failure_reason}"})
            else:
                review.adjusted[frame_uri] = (frame, line)
        return review


def _routing_report(
    frames: list[RoutedFrame], profile: LabelingProfile, labeled_by: dict[str, str], workers: int
) -> dict[str, Any]:
    """Frames and objects per route, and the review cost (``workers`` per frame) with and without routing."""
    decisions = [f.decision for f in frames]
    objects: Counter[str] = Counter()
    for f in frames:
        objects[f.decision.route] += len(f.detections)
        objects["audit"] += len(f.detections) if f.decision.audit else 0
    to_adjust = sum(1 for d in decisions if d.job_task == "adjust")
    to_verify = sum(1 for d in decisions if d.job_task == "verify")
    review = profile.review
    return {
        "enabled": profile.routing.enabled,
        "frames": route_counts(decisions),
        "objects": {k: objects.get(k, 0) for k in ("auto", "verify", "adjust", "audit")},
        "frames_to_people": to_adjust + to_verify,
        "labeled_by": dict(sorted(Counter(labeled_by.values()).items())),
        "review_cost": cost_estimate(to_adjust, to_verify, len(frames), review.workforce, workers),
    }


class _Dataset:
    """The published dataset as it is built: manifest lines, COCO, objects per class, who labeled what."""

    def __init__(self, run: RunContext, taxonomy: Taxonomy, attribute: str) -> None:
        self.run, self.taxonomy, self.attribute = run, taxonomy, attribute
        self.coco = CocoBuilder(taxonomy, description=f"dataset of run {run.run_id}")
        self.lines: list[dict[str, Any]] = []
        self.counts: Counter[str] = Counter()
        self.labeled_by: dict[str, str] = {}

    def machine(self, dets: Detections, how: str) -> None:
        """A frame published with its fused pre-labels (``human-annotated: "no"``)."""
        job = f"{self.run.run_id}-prelabel"
        self.lines.append(input_manifest_line(dets.frame, dets, self.taxonomy, self.attribute, job))
        self.coco.add_detections(dets)
        self.counts.update(dets.class_names)
        self.labeled_by[dets.frame] = how

    def verified(self, dets: Detections, verdict: dict[str, Any]) -> None:
        """A frame people verified: its pre-label line plus the verdict, as Ground Truth writes it."""
        job = f"{self.run.run_id}-prelabel"
        self.lines.append(input_manifest_line(dets.frame, dets, self.taxonomy, self.attribute, job) | verdict)
        self.coco.add_detections(dets)
        self.counts.update(dets.class_names)
        meta = next((v for k, v in verdict.items() if k.endswith("-metadata") and isinstance(v, dict)), {})
        human = meta.get("human-annotated") == "yes"
        self.labeled_by[dets.frame] = "people (verified)" if human else SIMULATED

    def reviewed(self, frame: ReviewedFrame, line: dict[str, Any]) -> None:
        """A frame published as people adjusted it."""
        self.lines.append(line)
        self.coco.add_reviewed(frame)
        self.counts.update(b.class_name for b in frame.boxes)
        self.labeled_by[frame.source_ref] = "people (adjusted)" if frame.human_annotated else SIMULATED


def _worker_comments(meta: Any) -> list[str]:
    """The comments of a verification line's ``worker-feedback`` (objects with ``comment``, or strings)."""
    feedback = meta.get("worker-feedback", []) if isinstance(meta, dict) else []
    comments = [f.get("comment", "") if isinstance(f, dict) else str(f) for f in feedback or []]
    return [c for c in comments if c]


def _with_people(frames: list[RoutedFrame], people: _Review, dataset: _Dataset) -> list[dict[str, str]]:
    """Each frame from where it went (job output, verification, auto-accept); returns review failures."""
    failures = list(people.failures)
    failed_frames = {f["frame"] for f in failures}
    for routed in frames:
        uri = routed.detections.frame
        if uri in people.adjusted:
            dataset.reviewed(*people.adjusted[uri])
        elif uri in people.verified:
            dataset.verified(routed.detections, people.verified[uri])
        elif not routed.decision.to_people:
            dataset.machine(routed.detections, "machine (auto-accepted)")
        elif uri not in failed_frames:
            failures.append({"frame": uri, "reason": "review: the frame is missing from the job output"})
    return failures


def _dropped(run: RunContext, s3: S3Store) -> dict[str, int]:
    """Detections the class maps and thresholds dropped, per reason and class, over the run."""
    dropped: Counter[str] = Counter()
    for batch in batch_files(run, s3):
        dropped.update(batch.get("dropped", {}))
    return dict(sorted(dropped.items()))


def _report_frames(
    labeled: list[Detections],
    routes: dict[str, RouteDecision],
    labeled_by: dict[str, str],
    failed: list[dict[str, str]],
    skipped: list[dict[str, str]],
) -> list[dict[str, Any]]:
    return (
        [
            {
                "frame": d.frame,
                "status": "labeled",
                "objects": len(d),
                "route": routes[d.frame].route,
                **({"audit": True} if routes[d.frame].audit else {}),
                "labeled_by": labeled_by.get(d.frame, "machine"),
            }
            for d in labeled
        ]
        + [{"frame": f["frame"], "status": "failed", "reason": f["reason"]} for f in failed]
        + [{"frame": s["frame"], "status": "skipped", "reason": s["reason"]} for s in skipped]
    )


def _review_status(
    run: RunContext, profile: LabelingProfile, review_error: Any, labeled: int
) -> dict[str, Any]:
    """The review section when no labeling job reported back."""
    if run.review == "skip":
        return {"status": "skipped"}
    if review_error:
        return {"status": "failed", "error": review_error}
    return {"status": "auto-accepted" if profile.routing.enabled and labeled else "none"}


def publish(state: dict[str, Any], settings: Settings, s3: S3Store, ledger: FrameLedger) -> dict[str, Any]:
    """Write dataset/ (output manifest, COCO, stats) and report.json; settle the frames in the ledger."""
    run = RunContext.model_validate(state["run"])
    profile = run_profile(run, s3)
    _, failed = labeled_frames(run, s3)
    frames = routed_frames(run, s3)
    labeled = [f.detections for f in frames]
    skipped = s3.get_json(S3Uri(run.bucket, run.key("skipped.json")))
    reviews = [ReviewResult.model_validate(r) for r in state.get("reviews") or []]
    review_error = state.get("review_error")

    dataset = _Dataset(run, profile.taxonomy, settings.prelabel_attribute)
    review_failures: list[dict[str, str]] = []
    card: Scorecard | None = None
    if reviews and not review_error:
        people = _Review.read(reviews, s3, profile)
        review_failures = _with_people(frames, people, dataset)
        # A reviewer scorecard counts only frames a person submitted (never a stand-in's).
        by_person = {uri: fl for uri, fl in people.adjusted.items() if fl[0].human_annotated}
        card = scorecard(by_person, {d.frame: d for d in labeled}, profile.taxonomy) if by_person else None
        reviewed = [f for f, _ in people.adjusted.values()] + _failed(review_failures)
        by_people = any(how.startswith("people") for how in dataset.labeled_by.values())
        review = {
            "status": "reviewed" if by_people else "simulated (no person reviewed)",
            "jobs": [r.job_name for r in reviews],
            **_adjustment_stats(reviewed, {d.frame: d for d in labeled}),
            "frames_verified": len(people.verified),
            "audit": _audit(frames, people),
        }
    else:
        for dets in labeled:
            dataset.machine(dets, "machine")
        review = _review_status(run, profile, review_error, len(labeled))

    routing = _routing_report(frames, profile, dataset.labeled_by, review_workers(profile, settings))
    base = S3Uri(run.bucket, run.key("dataset"))
    outputs = {
        "output_manifest": s3.put_lines(base.join("output.manifest"), dataset.lines),
        "coco": s3.put_json(base.join("coco.json"), dataset.coco.to_dict()),
    }
    if card is not None:
        outputs["scorecard"] = s3.put_json(base.join("scorecard.json"), card.to_dict())
    stats = {
        "objects_per_class": dict(sorted(dataset.counts.items())),
        "dropped_detections": _dropped(run, s3),
        "review": review,
        "routing": routing,
    }
    outputs["stats"] = s3.put_json(base.join("stats.json"), stats)

    # A frame Ground Truth could not label keeps no label in the dataset: it counts as failed.
    failed_in_review = {f["frame"] for f in review_failures}
    labeled = [d for d in labeled if d.frame not in failed_in_review]
    failed = failed + review_failures
    segmentation = _publish_segmentation(state, s3, base, failed_in_review)
    if segmentation["manifest"]:
        outputs["segmentation_manifest"] = segmentation["manifest"]
    summary = {
        "run_id": run.run_id,
        "frames_found": len(labeled) + len(failed) + len(skipped),
        "labeled": len(labeled),
        "failed": len(failed),
        "skipped": len(skipped),
        "objects_per_class": stats["objects_per_class"],
        "review": review.get("status"),
        "routing": {
            "frames": routing["frames"],
            "review_cost_usd": {
                k: routing["review_cost"][k] for k in ("with_routing", "without_routing", "saved")
            },
        },
        "outputs": outputs,
    }
    report_uri = S3Uri(run.bucket, run.key("report.json"))
    outputs["report"] = str(report_uri)
    routes = {f.detections.frame: f.decision for f in frames}
    report = {
        **summary,
        **stats,
        "profile": run.profile_name,
        "scorecard": None if card is None else card.to_dict(),
        "segmentation": segmentation,
        "frames": _report_frames(labeled, routes, dataset.labeled_by, failed, skipped),
    }
    s3.put_json(report_uri, report)
    settle = [(d.frame, "labeled", "") for d in labeled] + [
        (f["frame"], "failed", f.get("next_route", "")) for f in failed
    ]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda fs: ledger.settle(fs[0], run.run_id, fs[1], fs[2]), settle))
    return summary


def _audit(frames: list[RoutedFrame], people: _Review) -> dict[str, int]:
    """Audited auto-accepted frames people reviewed, and how many they had to change."""
    audited = [
        f.detections.frame for f in frames if f.decision.audit and f.detections.frame in people.adjusted
    ]
    changed = sum(1 for uri in audited if people.adjusted[uri][0].adjustment_status == "adjusted")
    return {"frames": len(audited), "adjusted": changed}


def _failed(failures: list[dict[str, str]]) -> list[ReviewedFrame]:
    return [ReviewedFrame(source_ref=f["frame"], failure_reason=f["reason"]) for f in failures]


def shown_prelabels(detections: Detections, taxonomy: Taxonomy) -> list[PreLabel]:
    """A frame's pre-labels as reviewers saw them: reviewed classes, boxes in whole pixels, with the
    models that supported each box (fused ``support``)."""
    names = taxonomy.reviewed_names
    shown = detections.select(np.array([n in names for n in detections.class_names], np.bool_))
    boxes = boxes_from_detections(shown, names)
    return [
        PreLabel(p.class_name, b.xyxy, p.models)
        for p, b in zip(prelabels_from_detections(shown), boxes, strict=True)
    ]


def frame_models(detections: Detections) -> list[str]:
    """The models that labeled a frame (the members of a fused label set, else its provenance)."""
    members = detections.provenance.settings.get("models") or []
    names = [str(m["name"]) for m in members if isinstance(m, dict) and m.get("name")]
    return names or [detections.provenance.model or UNKNOWN_MODEL]


def scorecard(
    adjusted: dict[str, tuple[ReviewedFrame, dict[str, Any]]],
    prelabels: dict[str, Detections],
    taxonomy: Taxonomy,
) -> Scorecard:
    """What people did to the pre-labels of the frames they adjusted, per class and per model."""
    return build_scorecard(
        (frame, shown_prelabels(prelabels[uri], taxonomy), frame_models(prelabels[uri]))
        for uri, (frame, _) in adjusted.items()
    )


def _publish_segmentation(
    state: dict[str, Any], s3: S3Store, base: S3Uri, failed: set[str]
) -> dict[str, Any]:
    """Copy BuildManifest's segmentation manifest(s) into ``segmentation.manifest``, for the frames of
    the dataset; return the report's ``segmentation`` section."""
    manifest = (state.get("review_input") or {}).get("manifest")
    written = ManifestResult.model_validate(manifest).segmentation if manifest else None
    if written is None:
        return {"frames": 0, "manifest": None}
    lines = [
        line
        for uri in written.manifest_uris
        for line in s3.get_lines(uri)
        if line.get("source-ref") not in failed
    ]
    section: dict[str, Any] = {
        "frames": len(lines),
        "manifest": s3.put_lines(base.join("segmentation.manifest"), lines) if lines else None,
        "attribute": written.attribute,
        "labeling_job": "none started: an input for segmentation adjustment jobs",
    }
    if written.frames_not_written:
        section |= {"frames_not_written": written.frames_not_written, "reason": written.reason}
    return section
