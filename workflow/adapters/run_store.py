"""The run's stored objects: one owner for every key under ``runs/<run_id>/`` (S3).

Layout (all under the run's prefix):

```
request.json, profile.json, sources.json        PrepareRun
batches/<batch>.json          BatchItem          ListPage (the LabelBatches Map lists this prefix)
pages/<source>-<page>.json    PageCounts         ListPage
skipped/<source>-<page>.json  [SkippedFrame]     ListPage
labels/<batch>.json           BatchLabels        MergeBatch / RecordBatchFailure
counts/<batch>.json           BatchCounts        MergeBatch / RecordBatchFailure
review-lines/<stream>/<batch>.jsonl   manifest lines of the batch's frames in one review stream
plan/parts/<part>.json, plan/parts.json, plan/shards.json   PlanReview
review/input-<part>.manifest                    AssembleManifest (streamed from review-lines)
reviewed/<batch>/<part>.jsonl  output lines      CollectReview (a job's output split by batch)
dataset/...                                      PublishShard, FinishRun
report.json                                      FinishRun, or ReportFailedRun for a failed run
```

Reads that fan in run on a bounded thread pool and stream: memory holds a window of objects,
never the run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel

from workflow.domain.errors import ObjectMissing
from workflow.domain.frames import S3Uri
from workflow.domain.records import (
    LIST_PAGE,
    BatchCounts,
    BatchItem,
    BatchLabels,
    PageCounts,
    PartRange,
    ReviewPart,
    ShardCounts,
    ShardPlan,
    SkippedFrame,
)

if TYPE_CHECKING:
    from workflow.steps.ports import ObjectStore  # S3Store, or a test's in-memory fake

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
R = TypeVar("R")

READ_THREADS = 16


def bounded_map(fn: Callable[[T], R], items: Iterable[T], threads: int = READ_THREADS) -> Iterator[R]:
    """``map`` on a thread pool that keeps at most ``2 * threads`` calls in flight, in order."""
    window = 2 * threads
    with ThreadPoolExecutor(max_workers=threads) as pool:
        pending: list[Any] = []
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                yield pending.pop(0).result()
        for future in pending:
            yield future.result()


class RunStore:
    """Typed reads and writes of one run's objects."""

    def __init__(self, s3: ObjectStore, bucket: str, run_prefix: str) -> None:
        self.s3 = s3
        self.bucket = bucket
        self.prefix = run_prefix.rstrip("/")

    def uri(self, *parts: str) -> S3Uri:
        return S3Uri(self.bucket, "/".join([self.prefix, *parts]))

    # --- small JSON documents -----------------------------------------------------------------
    def put_model(self, key: str, record: BaseModel) -> str:
        return self.s3.put_json(self.uri(key), record.model_dump(mode="json"))

    def get_model(self, key: str, kind: type[M]) -> M:
        return kind.model_validate(self.s3.get_json(self.uri(key)))

    def get_optional(self, key: str) -> Any | None:
        try:
            return self.s3.get_json(self.uri(key))
        except ObjectMissing:
            return None

    # --- listing (ListPage) ---------------------------------------------------------------------
    def put_batch(self, batch: BatchItem) -> str:
        return self.put_model(f"batches/{batch.batch_id}.json", batch)

    def get_batch(self, batch_id: str) -> BatchItem:
        return self.get_model(f"batches/{batch_id}.json", BatchItem)

    def batches_prefix(self) -> str:
        return f"{self.prefix}/batches/"

    def put_page(self, counts: PageCounts, skipped: list[SkippedFrame]) -> None:
        name = f"{counts.source_index:04d}-{counts.page:06d}"
        self.s3.put_json(self.uri(f"skipped/{name}.json"), [s.model_dump(mode="json") for s in skipped])
        self.put_model(f"pages/{name}.json", counts)

    def pages(self) -> Iterator[PageCounts]:
        yield from (PageCounts.model_validate(d) for d in self._read_all("pages/"))

    def skipped(self, page_name: str) -> list[SkippedFrame]:
        return [
            SkippedFrame.model_validate(d) for d in self.s3.get_json(self.uri(f"skipped/{page_name}.json"))
        ]

    def skipped_pages(self) -> Iterator[list[SkippedFrame]]:
        for data in self._read_all("skipped/"):
            yield [SkippedFrame.model_validate(d) for d in data]

    # --- per batch (MergeBatch) -------------------------------------------------------------------
    def labels_key(self, batch_id: str) -> str:
        return f"labels/{batch_id}.json"

    def put_labels(
        self, labels: BatchLabels, frames: int, review_lines: dict[str, list[dict[str, Any]]]
    ) -> BatchCounts:
        """The batch's labels, its review lines per stream, then its counts (written last: the
        counts object is the batch's commit record, read by the planner and by resumed runs)."""
        for stream, lines in review_lines.items():
            if lines:
                self.s3.put_lines(self.uri(f"review-lines/{stream}/{labels.batch_id}.jsonl"), lines)
        self.put_model(self.labels_key(labels.batch_id), labels)
        counts = BatchCounts.of(labels, frames, {s: len(v) for s, v in review_lines.items()})
        self.put_model(f"counts/{labels.batch_id}.json", counts)
        return counts

    def batch_done(self, batch_id: str) -> BatchCounts | None:
        """The batch's counts if an earlier attempt (or run with the same id) finished it."""
        data = self.get_optional(f"counts/{batch_id}.json")
        return None if data is None else BatchCounts.model_validate(data)

    def get_labels(self, batch_id: str) -> BatchLabels | None:
        data = self.get_optional(self.labels_key(batch_id))
        return None if data is None else BatchLabels.model_validate(data)

    def all_counts(self) -> Iterator[BatchCounts]:
        """Every batch's counts, in batch order (listing, then bounded parallel GETs)."""
        yield from (BatchCounts.model_validate(d) for d in self._read_all("counts/"))

    def review_lines(self, stream: str, batch_ids: Iterable[str]) -> Iterator[list[dict[str, Any]]]:
        """The review lines of a stream, batch by batch, in order (bounded parallel GETs)."""
        yield from bounded_map(
            lambda b: self.s3.get_lines(self.uri(f"review-lines/{stream}/{b}.jsonl")), batch_ids
        )

    # --- plan (PlanReview) ------------------------------------------------------------------------
    def put_part(self, part: ReviewPart) -> str:
        return self.put_model(f"plan/parts/{part.index:03d}.json", part)

    def get_part(self, index: int) -> ReviewPart:
        return self.get_model(f"plan/parts/{index:03d}.json", ReviewPart)

    def put_shards(self, shards: Iterable[ShardPlan]) -> str:
        """``plan/shards.json`` (one JSON array: the PublishShards Map reads it), streamed from the
        shards as they are cut."""

        def chunks() -> Iterator[bytes]:
            sep = "["
            for shard in shards:
                yield (sep + json.dumps(shard.model_dump(mode="json"), separators=(",", ":"))).encode()
                sep = ","
            yield b"[]" if sep == "[" else b"]"

        uri = self.uri("plan/shards.json")
        self.s3.put_stream(uri, chunks(), "application/json")
        return str(uri)

    def put_part_ranges(self, ranges: list[PartRange]) -> str:
        return self.s3.put_json(self.uri("plan/parts.json"), [r.model_dump(mode="json") for r in ranges])

    def part_ranges(self) -> list[PartRange]:
        """Every labeling job's range of batches (none for a run without review, or an older plan)."""
        data = self.get_optional("plan/parts.json")
        return [PartRange.model_validate(d) for d in data or []]

    def shards_key(self) -> str:
        return f"{self.prefix}/plan/shards.json"

    def manifest_uri(self, part: int) -> S3Uri:
        return self.uri(f"review/input-{part:03d}.manifest")

    # --- review (CollectReview) -------------------------------------------------------------------
    def put_reviewed(self, batch_id: str, part: int, lines: list[dict[str, Any]]) -> str:
        return self.s3.put_lines(self.uri(f"reviewed/{batch_id}/{part:03d}.jsonl"), lines)

    def reviewed(self, batch_id: str, parts: Iterable[int]) -> list[tuple[int, dict[str, Any]]]:
        """The reviewed output lines of a batch's frames over the given jobs, with their job (part)."""
        lines: list[tuple[int, dict[str, Any]]] = []
        for part in parts:
            try:
                found = self.s3.get_lines(self.uri(f"reviewed/{batch_id}/{part:03d}.jsonl"))
            except ObjectMissing:
                continue
            lines.extend((part, line) for line in found)
        return lines

    # --- dataset (PublishShard, FinishRun) --------------------------------------------------------
    def put_shard_counts(self, counts: ShardCounts) -> str:
        return self.put_model(f"dataset/shards/{counts.index:05d}.counts.json", counts)

    def put_shard_gallery(self, index: int, entries: list[dict[str, Any]]) -> str:
        """The shard's sample for report.html's gallery (apart from its counters, which every
        FinishRun reads in full: only the first shards' samples are read, one at a time)."""
        return self.s3.put_json(self.uri(f"dataset/shards/{index:05d}.gallery.json"), entries)

    def shard_gallery(self, index: int) -> list[dict[str, Any]]:
        data = self.get_optional(f"dataset/shards/{index:05d}.gallery.json")
        return list(data or [])

    def shard_counts(self) -> Iterator[ShardCounts]:
        yield from (ShardCounts.model_validate(d) for d in self._read_all("dataset/shards/", ".counts.json"))

    # --- helpers ------------------------------------------------------------------------------------
    def _read_all(self, sub: str, suffix: str = ".json") -> Iterator[Any]:
        keys = (uri for uri, _ in self.s3.list_objects(self.uri(sub), LIST_PAGE) if uri.key.endswith(suffix))
        yield from bounded_map(self.s3.get_json, keys)


def lines_body(lines: Iterable[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines).encode()
