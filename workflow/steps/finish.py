"""FinishRun: the run's report, statistics, scorecard and dataset index, from its counters.

It reads the listing pages' and the dataset shards' counters (one small object each), never a
frame's labels, and adds them up into ``report.json``, ``dataset/stats.json``,
``dataset/scorecard.json`` and ``dataset/index.json`` (which lists every shard's files).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from workflow.adapters.ledger import FrameLedger
from workflow.adapters.run_store import RunStore
from workflow.adapters.s3 import S3Store
from workflow.domain.prices import cost_estimate
from workflow.domain.profile import LabelingProfile
from workflow.domain.records import EXAMPLES, FrameFailure, ShardCounts, add_counts, short_reason
from workflow.domain.run import ReviewResult, RunContext, review_outcome
from workflow.domain.scorecard import merge_scorecards, scorecard_from_state
from workflow.reports.store import write_report_html
from workflow.settings import Settings
from workflow.steps.plan import review_workers
from workflow.steps.prepare import run_profile


def finish_run(state: dict[str, Any], settings: Settings, s3: S3Store, ledger: FrameLedger) -> dict[str, Any]:
    """Add the shards' and pages' counters up into the run's report, stats, scorecard and index."""
    run = RunContext.model_validate(state["run"])
    profile = run_profile(run, s3)
    store = RunStore(s3, run.bucket, run.run_prefix)
    pages = list(store.pages())
    shards = sorted(store.shard_counts(), key=lambda c: c.index)
    total = _totals(shards)
    found = sum(p.frames + p.skipped for p in pages)
    skipped = sum(p.skipped for p in pages)
    skipped_reasons: Counter[str] = Counter()
    for page in pages:
        add_counts(skipped_reasons, page.skipped_reasons)
    labeled, failed = total["labeled"], total["failed"]
    jobs, review_failed = review_outcome(state)
    card = merge_scorecards(scorecard_from_state(s.scorecard) for s in shards if s.scorecard)
    review = _review_section(run, profile, jobs, review_failed, total, labeled)
    routing = _routing_report(total, profile, review_workers(profile, settings))
    stats = {
        "objects_per_class": dict(sorted(total["objects_per_class"].items())),
        "dropped_detections": dict(sorted(total["dropped"].items())),
        "review": review,
        "routing": routing,
    }
    index = {
        "run_id": run.run_id,
        "shards": [{"index": s.index, "frames": s.frames, "labeled": s.labeled, **s.outputs} for s in shards],
        "skipped": [str(store.uri(f"skipped/{p.source_index:04d}-{p.page:06d}.json")) for p in pages],
    }
    outputs = {
        "index": s3.put_json(store.uri("dataset/index.json"), index),
        "stats": s3.put_json(store.uri("dataset/stats.json"), stats),
    }
    if card.frames:
        outputs["scorecard"] = s3.put_json(store.uri("dataset/scorecard.json"), card.to_dict())
    outputs["report"] = str(store.uri("report.json"))
    summary = {
        "run_id": run.run_id,
        "status": "SUCCEEDED",
        "frames_found": found,
        "labeled": labeled,
        "failed": failed,
        "skipped": skipped,
        "lost": found - labeled - failed - skipped,
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
    report = {
        **summary,
        **stats,
        "profile": run.profile_name,
        "sources": {"count": run.source_count, "pages": len(pages), "listed": sum(p.listed for p in pages)},
        "failures": _reasons(total["failure_reasons"], [e for s in shards for e in s.failure_examples]),
        "skips": dict(skipped_reasons.most_common()),
        "scorecard": card.to_dict() if card.frames else None,
        "segmentation": _segmentation_section(shards, settings),
        "frame_reports": [s.outputs["frame_report"] for s in shards],
    }
    outputs["report_html"] = str(store.uri("report.html"))
    s3.put_json(store.uri("report.json"), report)
    write_report_html(store, report, shards, {c.name: c.color for c in profile.taxonomy.classes})
    ledger.mark_run(run.run_id, "succeeded")
    return summary


def _totals(shards: list[ShardCounts]) -> dict[str, Any]:
    total: dict[str, Any] = {"labeled": 0, "failed": 0}
    counters = (
        "objects_per_class",
        "labeled_by",
        "failure_reasons",
        "dropped",
        "routes",
        "objects_per_route",
        "review",
    )
    for name in counters:
        total[name] = Counter()
    for shard in shards:
        total["labeled"] += shard.labeled
        total["failed"] += shard.failed
        for name in counters:
            add_counts(total[name], getattr(shard, name))
    return total


def _reasons(reasons: Counter[str], examples: list[FrameFailure]) -> list[dict[str, Any]]:
    """Failures grouped by reason, most frequent first, each with a few example frames."""
    out = []
    for reason, count in reasons.most_common():
        frames = [e.frame for e in examples if short_reason(e.reason) == reason][:EXAMPLES]
        out.append({"reason": reason, "frames": count, "examples": frames})
    return out


def _review_section(
    run: RunContext,
    profile: LabelingProfile,
    jobs: dict[int, ReviewResult],
    review_failed: str | None,
    total: dict[str, Any],
    labeled: int,
) -> dict[str, Any]:
    if not run.reviewed:
        return {"status": "skipped"}
    if review_failed:
        return {"status": "failed", "error": review_failed}
    if not jobs:
        return {"status": "auto-accepted" if profile.routing.enabled and labeled else "none"}
    review = total["review"]
    by_people = any(how.startswith("people") for how in total["labeled_by"])
    return {
        "status": "reviewed" if by_people else "simulated (no person reviewed)",
        "jobs": [jobs[p].job_name for p in sorted(jobs)],
        "frames_adjusted": review.get("frames_adjusted", 0),
        "frames_unadjusted": review.get("frames_unadjusted", 0),
        "frames_failed_in_review": sum(
            n for r, n in total["failure_reasons"].items() if r.startswith(("review:", "verification:"))
        ),
        "objects_before_review": review.get("objects_before_review", 0),
        "objects_after_review": review.get("objects_after_review", 0),
        "frames_verified": review.get("frames_verified", 0),
        "frames_simulated": review.get("frames_simulated", 0),
        "audit": {"frames": review.get("audit_frames", 0), "adjusted": review.get("audit_adjusted", 0)},
    }


def _routing_report(total: dict[str, Any], profile: LabelingProfile, workers: int) -> dict[str, Any]:
    """Frames and objects per route, and the review cost (``workers`` per frame) with and without routing."""
    routes, objects = total["routes"], total["objects_per_route"]
    frames = {k: routes.get(k, 0) for k in ("auto", "verify", "adjust", "audit")}
    to_verify = frames["verify"]
    to_adjust = frames["adjust"] + frames["audit"]
    labeled = frames["auto"] + frames["verify"] + frames["adjust"]
    return {
        "enabled": profile.routing.enabled,
        "frames": frames,
        "objects": {k: objects.get(k, 0) for k in ("auto", "verify", "adjust")},
        "frames_to_people": to_adjust + to_verify,
        "labeled_by": dict(sorted(total["labeled_by"].items())),
        "review_cost": cost_estimate(to_adjust, to_verify, labeled, profile.review.workforce, workers),
    }


def _segmentation_section(shards: list[ShardCounts], settings: Settings) -> dict[str, Any]:
    frames = sum(s.segmentation_frames for s in shards)
    section: dict[str, Any] = {
        "frames": frames,
        "manifests": [
            s.outputs["segmentation_manifest"] for s in shards if "segmentation_manifest" in s.outputs
        ],
        "attribute": f"{settings.prelabel_attribute}-seg-ref",
        "labeling_job": "none started: an input for segmentation adjustment jobs",
    }
    errors = [e for s in shards for e in s.segmentation_errors]
    if errors:
        section["errors"] = errors[:EXAMPLES]
    return section
