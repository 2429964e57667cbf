"""The records a run stores between its steps, and the plan that cuts its fan-in.

Every stored object of a run has one type here and one owner (``workflow.adapters.run_store``).
The fan-out writes small per-page and per-batch records; the fan-in reads them in bounded pieces:

- ``ListPage`` (one listing page of one source, at most ``PAGE_SIZE`` keys) writes the page's
  batches and a :class:`PageCounts` (what it listed, claimed and skipped, and why);
- ``MergeBatch`` writes the batch's :class:`BatchLabels` (every frame's fused labels and route,
  every failure), the batch's review lines per :data:`stream <review_stream>` and a small
  :class:`BatchCounts`; ``RecordBatchFailure`` writes the same records for a failed batch;
- ``PlanReview`` reads only the counts and cuts :class:`ReviewPart` (one labeling job, at most
  100,000 frames) and :class:`ShardPlan` (one dataset shard, at most ``SHARD_FRAMES`` frames);
- ``PublishShard`` reads each batch's labels once and writes a :class:`ShardCounts`;
  ``FinishRun`` adds the shard and page counts up into the run's summary.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from workflow.domain.routing import RouteDecision

if TYPE_CHECKING:
    from workflow.domain.detections import Detections

# One S3 listing page: the most keys one ListPage invocation lists, filters and claims.
PAGE_SIZE = 1000
# The most frames one dataset shard (COCO file, output manifest part, report part) holds.
SHARD_FRAMES = 10_000
# Ground Truth's limit of data objects per labeling job.
MAX_FRAMES_PER_JOB = 100_000
# The input-line field that names a frame's batch (Ground Truth copies input fields into its output).
BATCH_FIELD = "autolabel-batch"
# Failure and skip reasons kept verbatim per batch/page; beyond that, counted per reason only.
EXAMPLES = 5
# Labeled frames per shard that report.html's gallery lists (frame, route, classes, lowest score).
GALLERY_PER_SHARD = 500
# frames in report.html's gallery, at most: spread evenly over the shards' samples, so one shard
# (a 10,000-frame run) already fills it, and the page (buffered by FinishRun's upload, about 2 KB
# a frame) is the same size at 10,000 frames as at 10 million
GALLERY_MAX = 500
# Keys per listing page of the run's own records (counts, pages, batches, shards): a parsed page of
# 1,000 keys is ~2.5 MB in flight, of 100 ~0.5 MB, so a step's memory stops growing with the run
# from 100 records (10,000 frames at batch 100) on, for 10x the LISTs (2,000 at 10M frames, $0.01).
LIST_PAGE = 100


class _Record(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)


def claim_page(source: int, page: int) -> str:
    """The name of listing page ``page`` of source ``source``: the ledger records it on each claim."""
    return f"s{source:04d}-p{page:06d}"


def batch_id(source: int, page: int, index: int) -> str:
    """The id of the ``index``-th batch of listing page ``page`` of source ``source``.

    Ids sort in listing order, so a listing of the batches prefix returns them in frame order.
    """
    return f"{claim_page(source, page)}-b{index:03d}"


def claim_page_of(batch: str) -> str:
    """The listing page a batch's frames were claimed from (its id less the batch index)."""
    return batch.rsplit("-b", 1)[0]


def batch_id_of(batch_key: str) -> str:
    """The batch id of a ``.../batches/<batch_id>.json`` key (the LabelBatches Map's item)."""
    return batch_key.rsplit("/", 1)[-1].removesuffix(".json")


def review_stream(task: Literal["adjust", "verify"], group: int = 0) -> str:
    """The name of a review stream: the frames of one job type and one label-category group."""
    return "verify" if task == "verify" else f"adjust-g{group}"


class FrameFailure(_Record):
    """One frame that could not be labeled, and why."""

    frame: str
    reason: str
    stage: str = "inference"
    next_route: str = ""  # what the next run that claims the frame should do with it (e.g. adjust)


class SkippedFrame(_Record):
    """One object a run did not label, and why (not a frame, too large, another run's...)."""

    frame: str
    reason: str


class LineageProblem(_Record):
    """A drive log's lineage chunk that a listing page could not fully use: the chunk, why, and how
    many of the page's frames it left without their lineage record (they are labeled all the same)."""

    chunk: str
    reason: str
    frames: int = Field(ge=0, description="the page's frames labeled without lineage because of it")


class BatchItem(_Record):
    """One batch of frames as ListPage writes it (``batches/<batch_id>.json``)."""

    batch_id: str
    frames: list[str]
    adjust: list[str] = Field(
        default_factory=list, description="frames an earlier run asked to send to adjustment (e.g. rejected)"
    )
    lineage: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="frames extracted from drive logs: frame -> its FrameLineage.published() record",
    )


class PageCounts(_Record):
    """What one listing page held (``pages/<source>-<page>.json``)."""

    source: str
    source_index: int
    page: int
    listed: int = Field(ge=0, description="objects the listing returned")
    frames: int = Field(ge=0, description="frames claimed for this run and put in batches")
    batches: int = Field(ge=0)
    skipped: int = Field(ge=0)
    skipped_reasons: dict[str, int] = Field(default_factory=dict)
    ignored: int = Field(
        0, ge=0, description="folder markers, the workflow's own objects, drive-log lineage sidecars"
    )
    logs: list[dict[str, Any]] = Field(
        default_factory=list,
        description="selection counts (LogSelection) of the drive logs whose selection.json the page listed",
    )
    lineage_problems: list[LineageProblem] = Field(
        default_factory=list,
        description="lineage chunks of the page's frames that are missing, unreadable or damaged",
    )
    more: bool = Field(False, description="the listing goes on: a page after this one is expected")


class LabeledFrame(_Record):
    """One frame's fused labels (taxonomy names), the models that answered and its review route."""

    frame: str
    labels: dict[str, Any] = Field(description="Detections.to_dict()")
    models: list[str] = Field(default_factory=list)
    route: RouteDecision

    def detections(self) -> Detections:
        from workflow.domain.detections import Detections

        return Detections.from_dict(self.labels)


class BatchLabels(_Record):
    """Everything MergeBatch (or RecordBatchFailure) found for one batch (``labels/<batch_id>.json``)."""

    batch_id: str
    frames: list[LabeledFrame] = Field(default_factory=list)
    failed: list[FrameFailure] = Field(default_factory=list)
    dropped: dict[str, int] = Field(
        default_factory=dict,
        description="detections dropped, per 'unmapped:<class>' / 'below threshold:<class>'",
    )
    segmentation: list[dict[str, Any]] = Field(
        default_factory=list, description="semantic-segmentation manifest lines of the batch's label maps"
    )
    segmentation_errors: list[str] = Field(default_factory=list)
    lineage: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="the batch's drive-log lineage (BatchItem.lineage)"
    )


class BatchCounts(_Record):
    """The counters of one batch (``counts/<batch_id>.json``): all the planner reads."""

    batch_id: str
    frames: int = Field(ge=0)
    labeled: int = Field(ge=0)
    failed: int = Field(ge=0)
    streams: dict[str, int] = Field(default_factory=dict, description="review stream -> frames")
    routes: dict[str, int] = Field(default_factory=dict)
    objects: dict[str, int] = Field(default_factory=dict, description="objects per route, and 'audit'")
    audit: int = 0
    failure_reasons: dict[str, int] = Field(default_factory=dict)

    @property
    def to_people(self) -> int:
        """Frames routed to people: verify, adjust, and the audited auto-accepted frames."""
        return self.routes.get("verify", 0) + self.routes.get("adjust", 0) + self.audit

    @classmethod
    def of(cls, labels: BatchLabels, frames: int, streams: Mapping[str, int]) -> BatchCounts:
        routes: Counter[str] = Counter(f.route.route for f in labels.frames)
        objects: Counter[str] = Counter()
        for f in labels.frames:
            n = len(f.labels.get("detections", []))
            objects[f.route.route] += n
            objects["audit"] += n if f.route.audit else 0
        return cls(
            batch_id=labels.batch_id,
            frames=frames,
            labeled=len(labels.frames),
            failed=len(labels.failed),
            streams={k: v for k, v in streams.items() if v},
            routes=dict(routes),
            objects=dict(objects),
            audit=sum(1 for f in labels.frames if f.route.audit),
            failure_reasons=dict(Counter(short_reason(f.reason) for f in labels.failed)),
        )


def short_reason(reason: str, limit: int = 160) -> str:
    """A failure reason as a grouping key: its first line, cut to ``limit`` characters."""
    first = reason.strip().splitlines()[0] if reason.strip() else "unknown"
    return first if len(first) <= limit else first[: limit - 1] + "…"


class ReviewPart(_Record):
    """One labeling job: the frames of one review stream in a run of consecutive batches."""

    index: int
    stream: str
    task: Literal["adjust", "verify"]
    group: int = 0
    frames: int = Field(ge=1, le=MAX_FRAMES_PER_JOB)
    batches: list[str] = Field(min_length=1)
    sizes: list[int] = Field(default_factory=list, description="lines of each batch in this job")


class ShardPlan(_Record):
    """One shard of the published dataset: consecutive batches of at most SHARD_FRAMES frames."""

    index: int
    frames: int = Field(ge=0)
    batches: list[str] = Field(min_length=1)


class PartRange(_Record):
    """Where one labeling job lies in batch order (``plan/parts.json``): PublishShard reads these
    once and asks each job whose range holds a batch for the batch's reviewed lines."""

    index: int
    stream: str
    first_batch: str
    last_batch: str

    @classmethod
    def of(cls, part: ReviewPart) -> PartRange:
        return cls(
            index=part.index, stream=part.stream, first_batch=part.batches[0], last_batch=part.batches[-1]
        )

    def holds(self, batch: str) -> bool:
        return self.first_batch <= batch <= self.last_batch


def parts_of(batch: str, ranges: Iterable[PartRange]) -> list[int]:
    """The jobs (parts) whose batch range holds ``batch``: the only ones that can have reviewed it."""
    return sorted(r.index for r in ranges if r.holds(batch))


class PartCutter:
    """Cuts labeling jobs of at most ``limit`` frames per review stream from batches fed in batch
    order, closing each job as soon as the next batch would overflow it. Jobs are numbered in
    closing order; the jobs still open at the end close in stream order (adjust-g0, ..., verify).
    It holds only the open jobs (at most one job's batches per stream)."""

    def __init__(self, limit: int = MAX_FRAMES_PER_JOB) -> None:
        self.limit = limit
        self.count = 0
        self._open: dict[str, list[tuple[str, int]]] = {}
        self._frames: dict[str, int] = {}

    def add(self, batch: BatchCounts) -> list[ReviewPart]:
        closed = []
        for stream, n in sorted(batch.streams.items(), key=lambda item: _stream_order(item[0])):
            if not n:
                continue
            members = self._open.setdefault(stream, [])
            if members and self._frames[stream] + n > self.limit:
                closed.append(self._close(stream))
                members = self._open.setdefault(stream, [])
            members.append((batch.batch_id, n))
            self._frames[stream] = self._frames.get(stream, 0) + n
        return closed

    def finish(self) -> list[ReviewPart]:
        streams = sorted((s for s, m in self._open.items() if m), key=_stream_order)
        return [self._close(s) for s in streams]

    def _close(self, stream: str) -> ReviewPart:
        members = self._open.pop(stream)
        self._frames.pop(stream, None)
        part = ReviewPart(
            index=self.count,
            stream=stream,
            task="verify" if stream == "verify" else "adjust",
            group=0 if stream == "verify" else int(stream.removeprefix("adjust-g")),
            frames=sum(n for _, n in members),
            batches=[b for b, _ in members],
            sizes=[n for _, n in members],
        )
        self.count += 1
        return part


def cut_parts(counts: Iterable[BatchCounts], limit: int = MAX_FRAMES_PER_JOB) -> list[ReviewPart]:
    """Labeling jobs of at most ``limit`` frames per review stream, in batch order (see :class:`PartCutter`).

    A batch's lines of one stream never split across two jobs (a batch holds at most 500 frames).
    """
    cutter = PartCutter(limit)
    parts = [part for batch in counts for part in cutter.add(batch)]
    return parts + cutter.finish()


def _stream_order(stream: str) -> tuple[int, int]:
    return (1, 0) if stream == "verify" else (0, int(stream.removeprefix("adjust-g")))


class ShardCutter:
    """Cuts dataset shards of consecutive batches, at most ``limit`` frames each (one batch may
    exceed it), from batches fed in order; holds only the open shard."""

    def __init__(self, limit: int = SHARD_FRAMES) -> None:
        self.limit = limit
        self.count = 0
        self._batches: list[str] = []
        self._frames = 0

    def add(self, batch: BatchCounts) -> ShardPlan | None:
        closed = None
        if self._batches and self._frames + batch.frames > self.limit:
            closed = self.finish()
        self._batches.append(batch.batch_id)
        self._frames += batch.frames
        return closed

    def finish(self) -> ShardPlan | None:
        if not self._batches:
            return None
        shard = ShardPlan(index=self.count, frames=self._frames, batches=self._batches)
        self.count += 1
        self._batches, self._frames = [], 0
        return shard


def cut_shards(counts: Iterable[BatchCounts], limit: int = SHARD_FRAMES) -> list[ShardPlan]:
    """Dataset shards of consecutive batches, at most ``limit`` frames each (see :class:`ShardCutter`)."""
    cutter = ShardCutter(limit)
    shards = [s for s in (cutter.add(b) for b in counts) if s is not None]
    last = cutter.finish()
    return shards + ([last] if last is not None else [])


class ShardCounts(_Record):
    """The counters of one published shard (``dataset/shards/<index>.counts.json``)."""

    index: int
    frames: int = 0  # frames of the shard's batches
    labeled: int = 0
    failed: int = 0
    objects_per_class: dict[str, int] = Field(default_factory=dict)
    labeled_by: dict[str, int] = Field(default_factory=dict)
    failure_reasons: dict[str, int] = Field(default_factory=dict)
    failure_examples: list[FrameFailure] = Field(default_factory=list)
    dropped: dict[str, int] = Field(default_factory=dict)
    routes: dict[str, int] = Field(default_factory=dict)
    objects_per_route: dict[str, int] = Field(default_factory=dict)
    review: dict[str, int] = Field(
        default_factory=dict, description="adjusted/unadjusted/verified/... frames"
    )
    segmentation_frames: int = 0
    segmentation_errors: list[str] = Field(default_factory=list)
    scorecard: dict[str, Any] | None = None
    outputs: dict[str, str] = Field(default_factory=dict)
    score_histogram: dict[str, int] = Field(
        default_factory=dict, description="pre-labels per 'model|class|bin' (bin = score in tenths, 0..9)"
    )
    gallery_frames: int = Field(
        0,
        description=f"frames in the shard's gallery sample for report.html (its first {GALLERY_PER_SHARD} "
        "labeled frames, in dataset/shards/<index>.gallery.json)",
    )


def score_bin(score: float) -> int:
    """The histogram bin of a score in [0, 1]: tenths, 1.0 in the last bin."""
    return min(9, max(0, int(float(score) * 10)))


def add_counts(total: Counter[str], part: Mapping[str, int]) -> None:
    """Add one record's counter into a running total."""
    total.update({k: int(v) for k, v in part.items()})


def failures_uri(error: dict[str, Any]) -> str | None:
    """The S3 URI of a failed batch's per-frame reasons, when the error's cause names one."""
    try:
        detail = json.loads(str(error.get("Cause", "")))
    except ValueError:
        return None
    uri = detail.get("failures_uri") if isinstance(detail, dict) else None
    return str(uri) if uri else None


def batch_failures(
    frames: list[str], error: dict[str, Any], stored: list[dict[str, str]] | None = None
) -> list[FrameFailure]:
    """The failure of each frame from a branch's error (``Error`` and ``Cause``, as a Catch gives them),
    with the per-frame reasons stored at the cause's ``failures_uri`` when given (``stored``)."""
    error_name = str(error.get("Error", "States.TaskFailed"))
    cause = str(error.get("Cause", ""))
    reasons: dict[str, str] = {item["frame"]: item["reason"] for item in stored or []}
    try:
        detail = json.loads(cause)
        for item in detail.get("failures", []):
            reasons[item["frame"]] = item["reason"]
        message = detail.get("errorMessage") or detail.get("message") or cause
    except (ValueError, AttributeError, TypeError):
        message = cause
    if error_name == "States.Timeout" and not message:
        message = "no model answered within the run's batch_timeout_seconds"
    return [
        FrameFailure(frame=f, reason=reasons.get(f) or f"{error_name}: {message}"[:1000], stage="batch")
        for f in frames
    ]
