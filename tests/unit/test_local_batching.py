"""A local run's frames per batch when none is asked for: two batches per endpoint worker, 8 to 64."""

from __future__ import annotations

import pytest

from workflow.local.runner import AUTO_BATCH_MAX, AUTO_BATCH_MIN, auto_batch_size


@pytest.mark.parametrize(
    ("frames", "workers", "expected"),
    [
        (0, 2, AUTO_BATCH_MIN),  # nothing to label: still a valid batch size
        (5, 2, AUTO_BATCH_MIN),  # a few frames: batches of 8, progress a batch at a time
        (40, 2, 10),  # 4 batches of 10 for two workers
        (120, 2, 30),  # 4 batches of 30
        (121, 2, 31),  # rounded up: still 4 batches, the last one short
        (120, 16, AUTO_BATCH_MIN),
        (100_000, 2, AUTO_BATCH_MAX),  # a large folder: batches of 64, each batch's cost amortised
    ],
)
def test_two_batches_per_worker_within_the_bounds(frames: int, workers: int, expected: int) -> None:
    assert auto_batch_size(frames, workers) == expected
    assert AUTO_BATCH_MIN <= expected <= AUTO_BATCH_MAX
