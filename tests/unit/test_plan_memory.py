"""PlanReview streams: its memory holds the open job and shard and running totals, never every
batch's counts. Measured with tracemalloc over synthetic runs of 2,000 and 20,000 batches.

The S3 stand-in here answers the counts and batch listings from the batch number (nothing stored
in memory) and writes what PlanReview writes to files on disk, so the traced memory is the
step's own. (The real ``S3Store.put_stream`` buffers up to one multipart part, 8 MiB: the
adapter's bound, not the step's, and not measured here.)
"""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from fan_in_steps import run_context

from workflow.domain.frames import S3Uri
from workflow.domain.records import PartRange, batch_id
from workflow.settings import Settings
from workflow.steps.plan import plan_review

RUN = run_context(["m"], profile_key=None)
SETTINGS = Settings(data_bucket="data", token_table="t", ledger_table="l")
FRAMES = 100  # per batch
LOST_EVERY = 500  # every 500th batch left no record


def name(k: int) -> str:
    return batch_id(0, k // 10, k % 10)


class DiskS3:
    """Just the S3Store calls PlanReview makes: synthetic counts and batches, writes to disk."""

    def __init__(self, root: Path, batches: int) -> None:
        self.root, self.batches = root, batches

    def _uri(self, uri: str | S3Uri) -> S3Uri:
        return uri if isinstance(uri, S3Uri) else S3Uri.parse(uri)

    def list_objects(self, prefix: str | S3Uri, page_size: int | None = None) -> Iterator[tuple[S3Uri, int]]:
        loc = self._uri(prefix)
        sub = loc.key.rstrip("/").rsplit("/", 1)[-1]
        assert sub in ("batches", "counts"), loc
        for k in range(self.batches):
            if sub == "counts" and k % LOST_EVERY == 0:
                continue
            yield S3Uri(loc.bucket, f"{loc.key}{name(k)}.json"), 100

    def get_json(self, uri: str | S3Uri) -> Any:
        key = self._uri(uri).key
        batch = key.rsplit("/", 1)[-1].removesuffix(".json")
        if "/batches/" in key:
            return {"batch_id": batch, "frames": [f"s3://logs/{batch}/{i:03d}.png" for i in range(FRAMES)]}
        assert "/counts/" in key, key
        return {
            "batch_id": batch,
            "frames": FRAMES,
            "labeled": FRAMES,
            "failed": 0,
            "streams": {"adjust-g0": 50, "verify": 50},
            "routes": {"adjust": 50, "verify": 50},
            "objects": {"adjust": 100, "verify": 100},
        }

    def _write(self, uri: str | S3Uri, chunks: Iterable[bytes]) -> str:
        loc = self._uri(uri)
        path = self.root / loc.key
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:
            for chunk in chunks:
                out.write(chunk)
        return str(loc)

    def put_bytes(self, uri: str | S3Uri, body: bytes, content_type: str) -> str:
        return self._write(uri, [body])

    def put_json(self, uri: str | S3Uri, data: Any) -> str:
        return self._write(uri, [json.dumps(data).encode()])

    def put_lines(self, uri: str | S3Uri, lines: list[dict[str, Any]]) -> str:
        return self._write(uri, [(json.dumps(line) + "\n").encode() for line in lines])

    def put_stream(self, uri: str | S3Uri, chunks: Iterable[bytes], content_type: str) -> int:
        self._write(uri, chunks)
        return (self.root / self._uri(uri).key).stat().st_size


def planned(tmp_path: Path, batches: int) -> tuple[int, Any, Path]:
    s3 = DiskS3(tmp_path / str(batches), batches)
    plan_review(RUN, SETTINGS, s3)  # type: ignore[arg-type]  # warm-up: imports, caches
    tracemalloc.start()
    try:
        result = plan_review(RUN, SETTINGS, s3)  # type: ignore[arg-type]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak, result, s3.root / RUN.run_prefix


def test_plan_review_memory_does_not_grow_with_the_batches(tmp_path: Path) -> None:
    # Given runs of 2,000 and 20,000 batches of 100 frames, every 500th batch lost, half of each
    # batch to adjustment and half to verification (so a job of 100,000 frames spans 2,000 batches:
    # an open job's batch list is the bound the step may hold, whatever the run's size)
    small, _, _ = planned(tmp_path, 2_000)
    big, result, root = planned(tmp_path, 20_000)
    # Then the plan is whole: every batch counted, the lost ones failed, jobs of <= 100,000 frames
    lost = len(range(0, 20_000, LOST_EVERY))
    assert (result.frames, result.lost_batches) == (20_000 * FRAMES, lost)
    assert (result.labeled, result.failed) == ((20_000 - lost) * FRAMES, lost * FRAMES)
    shards = json.loads((root / "plan" / "shards.json").read_text())
    assert [b for s in shards for b in s["batches"]] == [name(k) for k in range(20_000)]
    assert len(shards) == result.shard_count == 20_000 * FRAMES // 10_000
    ranges = [PartRange.model_validate(r) for r in json.loads((root / "plan" / "parts.json").read_text())]
    assert sorted(r.index for r in ranges) == [p.index for p in result.parts]
    assert sum(p.frames for p in result.parts) == (20_000 - lost) * FRAMES
    assert max(p.frames for p in result.parts) <= 100_000
    # And the step's peak memory for 10x the batches stays within 1.5x
    assert big < 1.5 * small, f"peak {small / 1e6:.2f} MB for 2,000 batches, {big / 1e6:.2f} MB for 20,000"
