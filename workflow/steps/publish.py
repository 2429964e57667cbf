"""Publish: the reviewed dataset and a report that accounts for every input frame."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from workflow.adapters.ledger import FrameLedger
from workflow.adapters.s3 import S3Store
from workflow.domain.coco import CocoBuilder
from workflow.domain.detections import Detections
from workflow.domain.frames import S3Uri
from workflow.domain.groundtruth import ReviewedFrame, input_manifest_line, parse_output_line
from workflow.domain.run import ReviewResult, RunContext
from workflow.settings import Settings
from workflow.steps.labels import labeled_frames
from workflow.steps.merge import default_class_map


def _reviewed_lines(reviews: list[ReviewResult], s3: S3Store) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for review in reviews:
        if review.output_manifest_uri:
            lines.extend(s3.get_lines(review.output_manifest_uri))
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


def publish(state: dict[str, Any], settings: Settings, s3: S3Store, ledger: FrameLedger) -> dict[str, Any]:
    """Write dataset/ (output manifest, COCO, stats) and report.json; settle the frames in the ledger."""
    run = RunContext.model_validate(state["run"])
    taxonomy = default_class_map().taxonomy
    labeled, failed = labeled_frames(run, s3)
    skipped = s3.get_json(S3Uri(run.bucket, run.key("skipped.json")))
    prelabels = {d.frame: d for d in labeled}
    reviews = [ReviewResult.model_validate(r) for r in state.get("reviews") or []]
    review_error = state.get("review_error")

    base = S3Uri(run.bucket, run.key("dataset"))
    coco = CocoBuilder(taxonomy, description=f"dataset of run {run.run_id}")
    review_failures: list[dict[str, str]] = []
    if reviews and not review_error:
        lines = _reviewed_lines(reviews, s3)
        attribute = reviews[0].label_attribute
        reviewed = [parse_output_line(line, attribute) for line in lines]
        for frame in reviewed:
            if frame.failed:
                review_failures.append(
                    {"frame": frame.source_ref, "reason": f"review: {frame.failure_reason}"}
                )
            else:
                coco.add_reviewed(frame)
        review = {
            "status": "reviewed",
            "jobs": [r.job_name for r in reviews],
            **_adjustment_stats(reviewed, prelabels),
        }
        counts = Counter(b.class_name for r in reviewed if not r.failed for b in r.boxes)
    else:
        lines = [
            input_manifest_line(
                d.frame, d, taxonomy, attribute=settings.prelabel_attribute, job_name=f"{run.run_id}-prelabel"
            )
            for d in labeled
        ]
        for dets in labeled:
            coco.add_detections(dets)
        review = {"status": "skipped" if run.review == "skip" else ("failed" if review_error else "none")}
        if review_error:
            review["error"] = review_error
        counts = Counter(n for d in labeled for n in d.class_names)

    outputs = {
        "output_manifest": s3.put_lines(base.join("output.manifest"), lines),
        "coco": s3.put_json(base.join("coco.json"), coco.to_dict()),
    }
    stats = {"objects_per_class": dict(sorted(counts.items())), "review": review}
    outputs["stats"] = s3.put_json(base.join("stats.json"), stats)

    # A frame Ground Truth could not label keeps no label in the dataset: it counts as failed.
    failed_in_review = {f["frame"] for f in review_failures}
    labeled = [d for d in labeled if d.frame not in failed_in_review]
    failed = failed + review_failures
    frames = (
        [{"frame": d.frame, "status": "labeled", "objects": len(d)} for d in labeled]
        + [{"frame": f["frame"], "status": "failed", "reason": f["reason"]} for f in failed]
        + [{"frame": s["frame"], "status": "skipped", "reason": s["reason"]} for s in skipped]
    )
    summary = {
        "run_id": run.run_id,
        "frames_found": len(labeled) + len(failed) + len(skipped),
        "labeled": len(labeled),
        "failed": len(failed),
        "skipped": len(skipped),
        "objects_per_class": stats["objects_per_class"],
        "review": review.get("status"),
        "outputs": outputs,
    }
    report_uri = S3Uri(run.bucket, run.key("report.json"))
    outputs["report"] = str(report_uri)
    s3.put_json(report_uri, {**summary, "review": review, "frames": frames})
    settle = [(d.frame, "labeled") for d in labeled] + [(f["frame"], "failed") for f in failed]
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda fs: ledger.settle(fs[0], run.run_id, fs[1]), settle))
    return summary
