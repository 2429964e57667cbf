"""PublishShard and FinishRun: the reviewed dataset, in shards, and a report of every input frame.

PublishShard handles one shard of at most ``SHARD_FRAMES`` frames (consecutive batches): it reads
each batch's labels once, and the reviewed lines the jobs' outputs gave its batches, and writes the
shard's output manifest lines (the Ground Truth output line for frames people adjusted; the
pre-label line, ``human-annotated: "no"``, for frames routing auto-accepted; the pre-label line plus
the verdict for frames people verified), its COCO file and machine pre-labels, its segmentation
manifest, its per-frame report lines and its counters; then it settles its frames in the ledger.
A frame extracted from a drive log carries its lineage record (``BatchLabels.lineage``) onto its
manifest lines (top-level ``lineage``), its COCO images and its report line.
A frame routed to people whose review did not finish (failed, stopped, timed out) is failed with
that reason, not published as machine-labeled, so the next run sends it to people again.

FinishRun adds the shards' and listing pages' counters up into ``report.json``, ``stats.json``,
``scorecard.json`` and ``dataset/index.json`` (which lists every shard's files). A scorecard tells
what people did to the pre-labels of the frames they adjusted, per class and per model
(``workflow.domain.scorecard``); frames judged in verification jobs are not counted.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np

from workflow.adapters.ledger import FrameLedger
from workflow.adapters.run_store import RunStore, bounded_map
from workflow.adapters.s3 import S3Store
from workflow.adapters.spool import TextSpool
from workflow.domain.coco import CocoBuilder
from workflow.domain.detections import Detections
from workflow.domain.groundtruth import (
    ReviewedFrame,
    boxes_from_detections,
    input_manifest_line,
    output_manifest_line,
    parse_output_line,
)
from workflow.domain.lineage import LINEAGE_FIELD
from workflow.domain.profile import LabelingProfile
from workflow.domain.records import (
    BATCH_FIELD,
    EXAMPLES,
    GALLERY_PER_SHARD,
    BatchLabels,
    FrameFailure,
    LabeledFrame,
    ShardCounts,
    ShardPlan,
    add_counts,
    claim_page_of,
    parts_of,
    score_bin,
    short_reason,
)
from workflow.domain.run import ReviewResult, RunContext, review_outcome
from workflow.domain.scorecard import (
    UNKNOWN_MODEL,
    PreLabel,
    Scorecard,
    build_scorecard,
    prelabels_from_detections,
    scorecard_state,
)
from workflow.domain.taxonomy import Taxonomy
from workflow.domain.verification import rejection_reason, verification_verdict
from workflow.settings import Settings
from workflow.steps.prepare import run_profile

SETTLE_THREADS = 16
# Batches read ahead: a batch of 100 frames at 63 boxes is several MB parsed, and building the
# shard (CPU) is slower than 4 GETs in flight, so at most 8 batches wait in memory.
READ_THREADS = 4
# A stand-in reviewer (local --review simulate) wrote the review: no person looked at these frames.
SIMULATED = "machine (simulated review, no person)"


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
    """What people said about the frames of one batch."""

    def __init__(self) -> None:
        self.adjusted: dict[str, tuple[ReviewedFrame, dict[str, Any]]] = {}
        self.verified: dict[str, dict[str, Any]] = {}  # frame -> the verdict ("correct") and its metadata
        self.failures: dict[str, FrameFailure] = {}

    @classmethod
    def read(
        cls, lines: list[tuple[ReviewResult, dict[str, Any]]], attribute: str, profile: LabelingProfile
    ) -> _Review:
        review = cls()
        by_frame: dict[str, list[tuple[ReviewedFrame, dict[str, Any]]]] = defaultdict(list)
        for job, line in lines:
            frame_uri = str(line.get("source-ref"))
            verdict = verification_verdict(line, job.label_attribute)
            if verdict is not None:
                if verdict[0]:
                    attr = job.label_attribute
                    review.verified[frame_uri] = {k: line[k] for k in (attr, f"{attr}-metadata") if k in line}
                else:
                    reason = rejection_reason(line, job.label_attribute, verdict[1])
                    review.failures[frame_uri] = FrameFailure(
                        frame=frame_uri, reason=reason, stage="review", next_route="adjust"
                    )
                continue
            by_frame[frame_uri].append((parse_output_line(line, job.label_attribute), line))
        for frame_uri, parsed in by_frame.items():
            frame, line = _combined([p for p, _ in parsed], parsed[0][1], attribute, profile)
            if frame.failed:
                review.failures[frame_uri] = FrameFailure(
                    frame=frame_uri, reason=f"review: {frame.failure_reason}", stage="review"
                )
            else:
                review.adjusted[frame_uri] = (frame, line)
        return review


class _Shard:
    """One shard of the published dataset as it is built. What grows with the shard's boxes (the
    two COCO files' annotations, the output manifest's lines) is spooled to ephemeral storage as
    compact JSON text and streamed to S3 at the end; what stays in memory is a few small entries a
    frame (COCO images, report lines)."""

    def __init__(self, run: RunContext, taxonomy: Taxonomy, attribute: str, index: int) -> None:
        self.run, self.taxonomy, self.attribute = run, taxonomy, attribute
        self.spools = [TextSpool(separator=b","), TextSpool(separator=b","), TextSpool(terminator=b"\n")]
        self.coco = CocoBuilder(
            taxonomy, description=f"dataset of run {run.run_id}, shard {index}", sink=self.spools[0]
        )
        self.prelabels = CocoBuilder(
            taxonomy,
            description=f"machine pre-labels of run {run.run_id}, shard {index}",
            sink=self.spools[1],
        )
        self.lines = self.spools[2]  # the output manifest's lines
        self.segmentation: list[dict[str, Any]] = []
        self.segmentation_errors: list[str] = []
        self.report: list[dict[str, Any]] = []
        self.failed: list[FrameFailure] = []
        self.pages: dict[str, str] = {}  # frame -> the listing page it was claimed from
        self.counts: Counter[str] = Counter()
        self.labeled_by: Counter[str] = Counter()
        self.review: Counter[str] = Counter()
        self.adjusted: dict[str, tuple[ReviewedFrame, dict[str, Any]]] = {}
        self.prelabeled: dict[str, Detections] = {}
        self.lineage: dict[str, dict[str, Any]] = {}  # the current batch's drive-log records
        self.frames = 0
        self.dropped: Counter[str] = Counter()
        self.routes: Counter[str] = Counter()
        self.route_objects: Counter[str] = Counter()
        self.histogram: Counter[str] = Counter()

    def add_batch(self, labels: BatchLabels, people: _Review, review_failed: str | None) -> None:
        """One batch's frames: each published as people or the machine left it, or failed."""
        add_counts(self.dropped, labels.dropped)
        self.lineage = labels.lineage
        self.frames += len(labels.frames) + len(labels.failed)
        page = claim_page_of(labels.batch_id)
        self.pages.update({f.frame: page for f in labels.frames})
        self.pages.update({f.frame: page for f in labels.failed})
        for failure in labels.failed:
            self.fail(failure)
        failed_in_review = set()
        for frame in labels.frames:
            dets = frame.detections()
            self.prelabels.add_detections(dets, fields=self.fields(frame.frame))
            _count_scores(self.histogram, dets)
            self.routes[frame.route.route] += 1
            self.routes["audit"] += int(frame.route.audit)
            self.route_objects[frame.route.route] += len(dets)
            if frame.frame in people.adjusted:
                self.reviewed(frame, dets, people.adjusted[frame.frame])
            elif frame.frame in people.verified:
                self.verified(frame, dets, people.verified[frame.frame])
            elif not self.run.reviewed:
                self.machine(frame, dets, "machine")
            elif not frame.route.to_people:
                self.machine(frame, dets, "machine (auto-accepted)")
            else:
                failed_in_review.add(frame.frame)
                default = FrameFailure(
                    frame=frame.frame,
                    reason=review_failed or "review: the frame is missing from the job output",
                    stage="review",
                )
                self.fail(people.failures.get(frame.frame) or default)
        self.segmentation += [
            s | self.fields(str(s.get("source-ref")))
            for s in labels.segmentation
            if s.get("source-ref") not in failed_in_review
        ]
        self.segmentation_errors += labels.segmentation_errors

    def close(self) -> None:
        for spool in self.spools:
            spool.close()

    def fields(self, frame: str) -> dict[str, Any]:
        """The frame's lineage as an extra key (of a manifest line, COCO image, report line), if any."""
        record = self.lineage.get(frame)
        return {} if record is None else {LINEAGE_FIELD: record}

    def _line(self, line: dict[str, Any]) -> None:
        self.lines.append(json.dumps(line, separators=(",", ":")))

    def _published(self, frame: LabeledFrame, how: str, objects: int, classes: Any = ()) -> None:
        self.labeled_by[how] += 1
        entry: dict[str, Any] = {
            "frame": frame.frame,
            "status": "labeled",
            "objects": objects,
            "route": frame.route.route,
            "labeled_by": how,
            "classes": sorted(set(classes)),
            "min_score": frame.route.min_score,
        }
        if frame.route.audit:
            entry["audit"] = True
        self.report.append(entry | self.fields(frame.frame))

    def machine(self, frame: LabeledFrame, dets: Detections, how: str) -> None:
        """A frame published with its fused pre-labels (``human-annotated: "no"``)."""
        job = f"{self.run.run_id}-prelabel"
        line = input_manifest_line(dets.frame, dets, self.taxonomy, self.attribute, job)
        self._line(line | self.fields(frame.frame))
        self.coco.add_detections_as(self.prelabels, dets, fields=self.fields(frame.frame))
        self.counts.update(dets.class_names)
        self._published(frame, how, len(dets), dets.class_names)

    def verified(self, frame: LabeledFrame, dets: Detections, verdict: dict[str, Any]) -> None:
        """A frame people verified: its pre-label line plus the verdict, as Ground Truth writes it."""
        job = f"{self.run.run_id}-prelabel"
        line = input_manifest_line(dets.frame, dets, self.taxonomy, self.attribute, job) | verdict
        self._line(line | self.fields(frame.frame))
        self.coco.add_detections_as(self.prelabels, dets, fields=self.fields(frame.frame))
        self.counts.update(dets.class_names)
        meta = next((v for k, v in verdict.items() if k.endswith("-metadata") and isinstance(v, dict)), {})
        human = meta.get("human-annotated") == "yes"
        self.review["frames_verified" if human else "frames_simulated"] += 1
        self._published(frame, "people (verified)" if human else SIMULATED, len(dets), dets.class_names)

    def reviewed(
        self, frame: LabeledFrame, dets: Detections, people: tuple[ReviewedFrame, dict[str, Any]]
    ) -> None:
        """A frame published as people adjusted it."""
        reviewed, line = people
        self._line({k: v for k, v in line.items() if k != BATCH_FIELD} | self.fields(frame.frame))
        self.coco.add_reviewed(reviewed, fields=self.fields(frame.frame))
        self.counts.update(b.class_name for b in reviewed.boxes)
        status = reviewed.adjustment_status or "unknown"
        self.review[f"frames_{status}"] += 1
        self.review["objects_before_review"] += len(dets)
        self.review["objects_after_review"] += len(reviewed.boxes)
        if frame.route.audit:
            self.review["audit_frames"] += 1
            self.review["audit_adjusted"] += int(status == "adjusted")
        if reviewed.human_annotated:  # a reviewer scorecard counts only frames a person submitted
            self.adjusted[frame.frame] = people
            self.prelabeled[frame.frame] = dets
        else:
            self.review["frames_simulated"] += 1
        self._published(
            frame,
            "people (adjusted)" if reviewed.human_annotated else SIMULATED,
            len(reviewed.boxes),
            [b.class_name for b in reviewed.boxes],
        )

    def fail(self, failure: FrameFailure) -> None:
        self.failed.append(failure)
        entry = {"frame": failure.frame, "status": "failed", "reason": failure.reason}
        self.report.append(entry | self.fields(failure.frame))


def _batch_inputs(
    store: RunStore, batch_id: str, parts: list[int], jobs: dict[int, ReviewResult]
) -> tuple[BatchLabels, list[tuple[ReviewResult, dict[str, Any]]]]:
    labels = store.get_labels(batch_id) or BatchLabels(batch_id=batch_id)
    lines = [(jobs[p], line) for p, line in store.reviewed(batch_id, [p for p in parts if p in jobs])]
    return labels, lines


def publish_shard(
    shard: ShardPlan, state: dict[str, Any], settings: Settings, s3: S3Store, ledger: FrameLedger
) -> ShardCounts:
    """Publish one shard: its frames' final labels, COCO, segmentation lines, report lines; settle them."""
    run = RunContext.model_validate(state["run"])
    profile = run_profile(run, s3)
    store = RunStore(s3, run.bucket, run.run_prefix)
    jobs, review_failed = review_outcome(state)
    out = _Shard(run, profile.taxonomy, settings.prelabel_attribute, shard.index)
    try:
        ranges = store.part_ranges() if jobs else []
        pairs = [(b, parts_of(b, ranges)) for b in shard.batches]
        read = bounded_map(lambda bp: _batch_inputs(store, bp[0], bp[1], jobs), pairs, threads=READ_THREADS)
        for labels, lines in read:
            # a frame reviewed in several jobs: one line under the jobs' label attribute, as each wrote it
            attribute = lines[0][0].label_attribute if lines else settings.label_attribute
            out.add_batch(labels, _Review.read(lines, attribute, profile), review_failed)
        card = scorecard(out.adjusted, out.prelabeled, profile.taxonomy) if out.adjusted else None
        outputs = _write_shard(store, shard.index, out)
    finally:
        out.close()
    _settle(ledger, run.run_id, out, run.labeling_version)
    gallery = [e for e in out.report if e["status"] == "labeled"][:GALLERY_PER_SHARD]
    store.put_shard_gallery(shard.index, gallery)
    counts = ShardCounts(
        index=shard.index,
        frames=out.frames,
        labeled=sum(out.labeled_by.values()),
        failed=len(out.failed),
        objects_per_class=dict(out.counts),
        labeled_by=dict(out.labeled_by),
        failure_reasons=dict(Counter(short_reason(f.reason) for f in out.failed)),
        failure_examples=out.failed[:EXAMPLES],
        dropped=dict(out.dropped),
        routes=dict(out.routes),
        objects_per_route=dict(out.route_objects),
        review=dict(out.review),
        segmentation_frames=len(out.segmentation),
        segmentation_errors=out.segmentation_errors[:EXAMPLES],
        scorecard=None if card is None else scorecard_state(card),
        outputs=outputs,
        score_histogram=dict(out.histogram),
        gallery_frames=len(gallery),
    )
    store.put_shard_counts(counts)
    return counts


def _count_scores(histogram: Counter[str], dets: Detections) -> None:
    """Pre-labels per model, class and score bin (each supporting model's own score)."""
    fallback = frame_models(dets)[0]
    for i, name in enumerate(dets.class_names):
        votes = dets.support[i] if dets.support is not None else ()
        for model, score in [(v.model, v.score) for v in votes] or [(fallback, float(dets.scores[i]))]:
            histogram[f"{model}|{name}|{score_bin(score)}"] += 1


def _write_shard(store: RunStore, index: int, out: _Shard) -> dict[str, str]:
    """Stream the shard's files to S3 (each a multipart upload past one part)."""
    name = f"{index:05d}"
    s3 = store.s3

    def stream(key: str, chunks: Iterator[bytes], content_type: str) -> str:
        s3.put_stream(store.uri(key), chunks, content_type)
        return str(store.uri(key))

    outputs = {
        "output_manifest": stream(
            f"dataset/output-{name}.manifest", out.lines.chunks(), "application/jsonlines"
        ),
        "coco": stream(f"dataset/coco-{name}.json", out.coco.json_chunks(), "application/json"),
        "prelabels_coco": stream(
            f"prelabels/coco-{name}.json", out.prelabels.json_chunks(), "application/json"
        ),
        "frame_report": s3.put_lines(store.uri(f"report/frames-{name}.jsonl"), out.report),
    }
    if out.segmentation:
        outputs["segmentation_manifest"] = s3.put_lines(
            store.uri(f"dataset/segmentation-{name}.manifest"), out.segmentation
        )
    return outputs


def _settle(ledger: FrameLedger, run_id: str, out: _Shard, version: str) -> None:
    settle = [(e["frame"], "labeled", "") for e in out.report if e["status"] == "labeled"]
    settle += [(f.frame, "failed", f.next_route) for f in out.failed]
    # Every frame came in a batch, whose id names its claim page: each settles by a put.
    pages = out.pages
    ledger.settle_many([(f, s, r, pages[f]) for f, s, r in settle], run_id, version, threads=SETTLE_THREADS)


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
