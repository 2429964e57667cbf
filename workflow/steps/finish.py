"""FinishRun: the run's report, statistics, scorecard and dataset index, from its counters.

It reads the listing pages' and the dataset shards' counters (one small object each), never a
frame's labels, and adds them up into ``report.json``, ``dataset/stats.json``,
``dataset/scorecard.json`` and ``dataset/index.json`` (which lists every shard's files).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

from workflow.adapters.ledger import FrameLedger
from workflow.adapters.run_store import RunStore
from workflow.adapters.s3 import S3Store
from workflow.domain.errors import ObjectMissing, RunIncomplete
from workflow.domain.frames import S3Uri
from workflow.domain.prices import cost_estimate
from workflow.domain.profile import LabelingProfile
from workflow.domain.records import EXAMPLES, PageCounts, ShardCounts, add_counts, short_reason
from workflow.domain.run import ReviewResult, RunContext, review_outcome
from workflow.domain.scorecard import Scorecard, merge_scorecards, scorecard_from_state
from workflow.reports.store import GallerySample, write_report_html
from workflow.settings import Settings
from workflow.steps.plan import review_workers
from workflow.steps.prepare import run_profile


def finish_run(state: dict[str, Any], settings: Settings, s3: S3Store, ledger: FrameLedger) -> dict[str, Any]:
    """Add the shards' and pages' counters up into the run's report, stats, scorecard and index.

    One pass over each: ``dataset/index.json`` streams its shard and skip entries while running
    totals add them up; memory holds the totals, a few failure examples and the URI lists."""
    run = RunContext.model_validate(state["run"])
    profile = run_profile(run, s3)
    store = RunStore(s3, run.bucket, run.run_prefix)
    total = _Totals()
    pages = _PageTotals()
    index_uri = store.uri("dataset/index.json")
    s3.put_stream(index_uri, _index_chunks(run.run_id, store, total, pages), "application/json")
    _check_complete(run, s3, store, total, pages)
    labeled, failed = total.labeled, total.failed
    jobs, review_failed = review_outcome(state)
    card = total.card
    review = _review_section(run, profile, jobs, review_failed, total.counters, labeled)
    routing = _routing_report(total.counters, profile, review_workers(profile, settings))
    stats = {
        "objects_per_class": dict(sorted(total.counters["objects_per_class"].items())),
        "dropped_detections": dict(sorted(total.counters["dropped"].items())),
        "review": review,
        "routing": routing,
    }
    outputs = {
        "index": str(index_uri),
        "stats": s3.put_json(store.uri("dataset/stats.json"), stats),
    }
    if card.frames:
        outputs["scorecard"] = s3.put_json(store.uri("dataset/scorecard.json"), card.to_dict())
    outputs["report"] = str(store.uri("report.json"))
    summary = {
        "run_id": run.run_id,
        "status": "SUCCEEDED",
        "frames_found": pages.found,
        "labeled": labeled,
        "failed": failed,
        "skipped": pages.skipped,
        "lost": pages.found - labeled - failed - pages.skipped,
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
        "sources": {"count": run.source_count, "pages": pages.pages, "listed": pages.listed},
        "failures": _reasons(total.counters["failure_reasons"], total.examples),
        "skips": dict(pages.reasons.most_common()),
        "scorecard": card.to_dict() if card.frames else None,
        "segmentation": _segmentation_section(total, settings),
        "frame_reports": total.frame_reports,
    }
    if (selection := pages.selection.section()) is not None:  # frames from drive logs: what selection dropped
        report["drive_log_selection"] = selection
    if (lineage := pages.lineage_section()) is not None:  # frames labeled without their lineage record
        report["drive_log_lineage"] = lineage
    outputs["report_html"] = str(store.uri("report.html"))
    s3.put_json(store.uri("report.json"), report)
    colors = {c.name: c.color for c in profile.taxonomy.classes}
    write_report_html(store, report, total.gallery, colors)
    ledger.mark_run(run.run_id, "succeeded")
    return summary


COUNTERS = (
    "objects_per_class",
    "labeled_by",
    "failure_reasons",
    "dropped",
    "routes",
    "objects_per_route",
    "review",
)


class _Totals:
    """Running totals over the shards' counters (in shard order)."""

    def __init__(self) -> None:
        self.labeled = self.failed = self.segmentation_frames = 0
        self.counters: dict[str, Any] = {name: Counter() for name in COUNTERS}
        self.examples: dict[str, list[str]] = {}
        self.segmentation_errors: list[str] = []
        self.frame_reports: list[str] = []
        self.segmentation_manifests: list[str] = []
        self.card = Scorecard()
        self.shards: set[int] = set()
        self.gallery = GallerySample()  # report.html's score histogram and the shards its gallery shows

    def add(self, shard: ShardCounts) -> None:
        self.shards.add(shard.index)
        self.labeled += shard.labeled
        self.failed += shard.failed
        for name in COUNTERS:
            add_counts(self.counters[name], getattr(shard, name))
        for example in shard.failure_examples:
            frames = self.examples.setdefault(short_reason(example.reason), [])
            if len(frames) < EXAMPLES:
                frames.append(example.frame)
        self.segmentation_frames += shard.segmentation_frames
        room = EXAMPLES - len(self.segmentation_errors)
        self.segmentation_errors += shard.segmentation_errors[: max(room, 0)]
        if "frame_report" in shard.outputs:
            self.frame_reports.append(shard.outputs["frame_report"])
        if "segmentation_manifest" in shard.outputs:
            self.segmentation_manifests.append(shard.outputs["segmentation_manifest"])
        if shard.scorecard:
            self.card = merge_scorecards([self.card, scorecard_from_state(shard.scorecard)])
        self.gallery.add(shard)


class _PageTotals:
    """Running totals over the listing pages' counters."""

    def __init__(self) -> None:
        self.found = self.skipped = self.pages = self.listed = 0
        self.reasons: Counter[str] = Counter()
        self.selection = _LogTotals()
        self.lineage: dict[str, dict[str, Any]] = {}  # damaged lineage chunk -> reason, frames it cost
        self.seen: dict[int, set[int]] = {}  # source index -> its pages with a record
        self.final: dict[int, int] = {}  # source index -> its last page (the listing ended there)

    def add(self, page: PageCounts) -> None:
        self.seen.setdefault(page.source_index, set()).add(page.page)
        if not page.more:
            self.final[page.source_index] = page.page
        self.found += page.frames + page.skipped
        self.skipped += page.skipped
        self.pages += 1
        self.listed += page.listed
        add_counts(self.reasons, page.skipped_reasons)
        for log in page.logs:
            self.selection.add(log)
        for problem in page.lineage_problems:  # several pages may read one chunk: one entry, frames summed
            entry = self.lineage.setdefault(
                problem.chunk, {"chunk": problem.chunk, "reason": problem.reason, "frames": 0}
            )
            entry["frames"] += problem.frames

    def lineage_section(self) -> dict[str, Any] | None:
        """The drive-log lineage chunks the listing could not fully read, and the frames that are
        labeled without their record because of them."""
        if not self.lineage:
            return None
        problems = sorted(self.lineage.values(), key=lambda p: p["chunk"])
        return {
            "frames_without_lineage": sum(p["frames"] for p in problems),
            "chunks": len(problems),
            "problems": problems[:100],
        }


class _LogTotals:
    """What frame selection dropped in the drive logs the run's frames came from (their
    ``selection.json``, read by the listing pages): totals per rule and the first logs one by one."""

    def __init__(self) -> None:
        self.logs = self.seen = self.kept = self.rejected = 0
        self.dropped: Counter[str] = Counter()
        self.per_log: list[dict[str, Any]] = []

    def add(self, log: dict[str, Any]) -> None:
        self.logs += 1
        self.seen += int(log.get("seen", 0))
        self.kept += int(log.get("kept", 0))
        self.rejected += int(log.get("rejected", 0))
        add_counts(self.dropped, log.get("dropped", {}))
        if len(self.per_log) < 100:
            self.per_log.append(log)

    def section(self) -> dict[str, Any] | None:
        if not self.logs:
            return None
        return {
            "logs": self.logs,
            "messages_seen": self.seen,
            "frames_kept": self.kept,
            "dropped_by_rule": dict(self.dropped),
            "rejected": self.rejected,
            "reduction": round(1 - self.kept / self.seen, 4) if self.seen else 0.0,
            "per_log": self.per_log,
        }


def _index_chunks(run_id: str, store: RunStore, total: _Totals, pages: _PageTotals) -> Iterator[bytes]:
    """``dataset/index.json`` as it streams: every shard's files, then every page's skip list,
    adding each shard and page into the totals on the way."""
    yield ('{"run_id":' + json.dumps(run_id) + ',"shards":[').encode()
    sep = ""
    for shard in store.shard_counts():
        total.add(shard)
        entry = {"index": shard.index, "frames": shard.frames, "labeled": shard.labeled, **shard.outputs}
        yield (sep + json.dumps(entry, separators=(",", ":"))).encode()
        sep = ","
    yield b'],"skipped":['
    sep = ""
    for page in store.pages():
        pages.add(page)
        uri = str(store.uri(f"skipped/{page.source_index:04d}-{page.page:06d}.json"))
        yield (sep + json.dumps(uri)).encode()
        sep = ","
    yield b"]}"


def _check_complete(
    run: RunContext, s3: S3Store, store: RunStore, total: _Totals, pages: _PageTotals
) -> None:
    """Every listing page of every source and every planned shard must have left its record.

    A Distributed Map child that fails after its retries is caught in its branch, which writes
    ``failures/listing/<source>-<page>.json`` or ``failures/shards/<index>.json`` (its Error and
    Cause) and ends; a branch that could not even do that leaves nothing. Either way the run must
    not report success without those frames: RunIncomplete names each gap and its cause, the
    execution fails (ReportFailedRun writes the report), and a resumed run finishes it."""
    gaps: list[str] = []
    sources = s3.get_json(S3Uri(run.bucket, run.sources_key))
    for source in sources:
        index = int(source["index"])
        seen = pages.seen.get(index, set())
        last = pages.final.get(index, max(seen) + 1 if seen else 0)
        for page in sorted(set(range(last + 1)) - seen):
            cause = _failure(s3, store, f"failures/listing/{index}-{page}.json")
            gaps.append(f"source {source['uri']} page {page} was never listed ({cause})")
    try:
        planned = s3.get_json(S3Uri(run.bucket, store.shards_key()))
    except ObjectMissing:
        planned = []
    for shard in planned:
        if int(shard["index"]) not in total.shards:
            cause = _failure(s3, store, f"failures/shards/{int(shard['index'])}.json")
            gaps.append(f"shard {shard['index']} ({shard['frames']} frames) was never published ({cause})")
    if gaps:
        shown = "; ".join(gaps[:EXAMPLES]) + (
            f"; and {len(gaps) - EXAMPLES} more" if len(gaps) > EXAMPLES else ""
        )
        raise RunIncomplete(
            f"{len(gaps)} part(s) of run {run.run_id} left no record, so their frames are in no report: "
            f"{shown}. Resume the run (the same run id) to finish it."
        )


def _failure(s3: S3Store, store: RunStore, name: str) -> str:
    """The Error and Cause a failed branch wrote (a Lambda's Cause is its error JSON), in one line."""
    try:
        record = s3.get_json(store.uri(name))
    except ObjectMissing:
        return "its branch failed and left no failure record"
    error, cause = str(record.get("Error") or ""), str(record.get("Cause") or "")
    try:
        parsed = json.loads(cause)
        cause = f"{parsed.get('errorType', error)}: {parsed.get('errorMessage', '')}"
    except (ValueError, AttributeError):
        cause = f"{error}: {cause}" if cause else error
    return cause.strip().splitlines()[0][:300] if cause.strip() else "no cause given"


def _reasons(reasons: Counter[str], examples: dict[str, list[str]]) -> list[dict[str, Any]]:
    """Failures grouped by reason, most frequent first, each with a few example frames."""
    return [
        {"reason": reason, "frames": count, "examples": examples.get(reason, [])[:EXAMPLES]}
        for reason, count in reasons.most_common()
    ]


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


def _segmentation_section(total: _Totals, settings: Settings) -> dict[str, Any]:
    section: dict[str, Any] = {
        "frames": total.segmentation_frames,
        "manifests": total.segmentation_manifests,
        "attribute": f"{settings.prelabel_attribute}-seg-ref",
        "labeling_job": "none started: an input for segmentation adjustment jobs",
    }
    if total.segmentation_errors:
        section["errors"] = total.segmentation_errors
    return section
