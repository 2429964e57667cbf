"""The plan of a run's fan-in: labeling jobs cut at 100,000 frames per review stream, dataset shards at
10,000 frames, both in batch order and never splitting a batch."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from workflow.domain.records import (
    MAX_FRAMES_PER_JOB,
    SHARD_FRAMES,
    BatchCounts,
    ReviewPart,
    batch_id,
    cut_parts,
    cut_shards,
)


def batches(n: int, frames: int = 500, **streams: int) -> list[BatchCounts]:
    """``n`` batches of ``frames`` frames each, with these review lines per stream (``adjust_g0=...``)."""
    lines = {name.replace("_", "-"): count for name, count in streams.items()}
    return [
        BatchCounts(
            batch_id=batch_id(0, i // 10, i % 10), frames=frames, labeled=frames, failed=0, streams=lines
        )
        for i in range(n)
    ]


def test_batch_ids_sort_in_listing_order() -> None:
    # Given batch ids of two sources, pages and positions
    ids = [batch_id(s, p, i) for s in (0, 1) for p in (0, 1, 10) for i in (0, 2, 11)]
    # When they are sorted as text (as an S3 listing returns their keys)
    # Then they keep the listing order, and name their source, page and position
    assert sorted(ids) == ids
    assert batch_id(3, 12, 7) == "s0003-p000012-b007"


def test_a_stream_of_more_than_100000_frames_is_cut_into_jobs_of_at_most_100000() -> None:
    # Given 201 batches of 500 frames, each sending all of them to adjustment: 100,500 frames
    counts = batches(201, adjust_g0=500)
    # When the labeling jobs are cut
    parts = cut_parts(counts)
    # Then the first job takes exactly 100,000 frames (200 batches), the second the last batch
    assert [(p.index, p.stream, p.frames, len(p.batches)) for p in parts] == [
        (0, "adjust-g0", MAX_FRAMES_PER_JOB, 200),
        (1, "adjust-g0", 500, 1),
    ]
    assert parts[0].batches == [c.batch_id for c in counts[:200]]
    assert parts[1].batches == [counts[200].batch_id] and parts[1].sizes == [500]


def test_a_batch_that_would_overflow_a_job_opens_the_next_one_whole() -> None:
    # Given three batches of 4, 4 and 4 review lines, and jobs of at most 10 frames
    counts = batches(3, frames=8, adjust_g0=4)
    # When the jobs are cut
    parts = cut_parts(counts, limit=10)
    # Then no batch's lines are split: 8 frames in the first job, 4 in the second
    assert [(p.frames, p.sizes) for p in parts] == [(8, [4, 4]), (4, [4])]


def test_each_review_stream_gets_its_own_jobs_adjustment_groups_first() -> None:
    # Given batches whose frames go to two adjustment groups and to verification
    counts = batches(3, frames=10, verify=3, adjust_g1=2, adjust_g0=5)
    # When the jobs are cut with a limit of 10 frames
    parts = cut_parts(counts, limit=10)
    # Then each stream is cut on its own, in the order adjust-g0, adjust-g1, verify, numbered in order
    assert [(p.index, p.stream, p.task, p.group, p.frames) for p in parts] == [
        (0, "adjust-g0", "adjust", 0, 10),
        (1, "adjust-g0", "adjust", 0, 5),
        (2, "adjust-g1", "adjust", 1, 6),
        (3, "verify", "verify", 0, 9),
    ]
    # And a batch without lines of a stream is in none of its jobs
    assert cut_parts(batches(2, frames=10), limit=10) == []


def test_no_job_may_hold_more_than_ground_truths_limit() -> None:
    # Given a part of 100,001 frames, When it is made, Then the record refuses it
    with pytest.raises(ValidationError):
        ReviewPart(index=0, stream="verify", task="verify", frames=MAX_FRAMES_PER_JOB + 1, batches=["b"])


def test_the_dataset_is_cut_into_shards_of_at_most_10000_frames_in_batch_order() -> None:
    # Given 25 batches of 500 frames (12,500 frames)
    counts = batches(25)
    # When the shards are cut
    shards = cut_shards(counts)
    # Then the first holds 20 batches (10,000 frames), the second the other 5
    assert [(s.index, s.frames, len(s.batches)) for s in shards] == [(0, SHARD_FRAMES, 20), (1, 2500, 5)]
    assert [b for s in shards for b in s.batches] == [c.batch_id for c in counts]


def test_a_batch_larger_than_a_shard_is_a_shard_of_its_own() -> None:
    # Given batches of 3, 12 and 3 frames, and shards of at most 10 frames
    counts = [*batches(1, frames=3), *batches(1, frames=12), *batches(1, frames=3)]
    counts = [c.model_copy(update={"batch_id": f"b{i}"}) for i, c in enumerate(counts)]
    # When the shards are cut
    shards = cut_shards(counts, limit=10)
    # Then the large batch stands alone (a batch is never split) and nothing is lost
    assert [(s.frames, s.batches) for s in shards] == [(3, ["b0"]), (12, ["b1"]), (3, ["b2"])]
    # And a run without batches has no shard
    assert cut_shards([]) == []
