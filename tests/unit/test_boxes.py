"""Class-aware NMS and IoU."""

from __future__ import annotations

import numpy as np
import pytest

from workflow.domain.boxes import box_iou, nms


def test_iou_of_known_boxes() -> None:
    # Given two 10x10 boxes overlapping by half, and a disjoint one
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[5, 0, 15, 10], [20, 20, 30, 30]], np.float32)
    # Then IoU is 50 / 150 and 0
    np.testing.assert_allclose(box_iou(a, b), [[50 / 150, 0.0]], rtol=1e-6)


def test_overlapping_boxes_of_one_class_keep_the_best() -> None:
    # Given two heavily overlapping cars and a separate car
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.6, 0.9, 0.5], np.float32)
    # When NMS runs, Then the best of the pair and the separate car remain, best first
    keep = nms(boxes, scores, np.zeros(3, np.int64), iou_threshold=0.5)
    assert keep.tolist() == [1, 2]


def test_boxes_of_different_classes_never_suppress_each_other() -> None:
    # Given the same box as a car and as a truck
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    # When NMS runs, Then both remain
    keep = nms(boxes, np.array([0.9, 0.8], np.float32), np.array([2, 7]), iou_threshold=0.5)
    assert sorted(keep.tolist()) == [0, 1]


def test_max_keep_and_empty_input() -> None:
    # Given many separate boxes, When NMS keeps at most 3, Then the 3 best remain
    boxes = np.array([[i * 20, 0, i * 20 + 10, 10] for i in range(10)], np.float32)
    scores = np.linspace(0.1, 1.0, 10).astype(np.float32)
    assert nms(boxes, scores, np.zeros(10, np.int64), 0.5, max_keep=3).tolist() == [9, 8, 7]
    # And no boxes give no indices
    assert nms(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64), 0.5).size == 0


# Ported from the tests of domain/merge.py (removed: only tests called it; fusion.py fuses models).
@pytest.mark.parametrize(
    ("a", "b", "iou"),
    [
        ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),
        ((0, 0, 10, 10), (20, 20, 30, 30), 0.0),
        ((0, 0, 10, 10), (10, 0, 20, 10), 0.0),  # touching edges share no area
        ((0, 0, 10, 10), (5, 0, 15, 10), 50 / 150),
        ((0, 0, 10, 10), (2, 2, 7, 7), 25 / 100),  # contained
        ((0, 0, 0, 0), (0, 0, 0, 0), 0.0),  # degenerate boxes never divide by zero
        ((192.37, 0.0, 402.31, 374.0), (192.37, 0.0, 402.31, 374.0), 1.0),
    ],
)
def test_iou_of_two_boxes_is_symmetric(a: tuple[float, ...], b: tuple[float, ...], iou: float) -> None:
    got = box_iou(np.array([a], np.float32), np.array([b], np.float32))
    assert got.shape == (1, 1) and got.dtype == np.float32
    assert got[0, 0] == pytest.approx(iou, abs=1e-6)
    assert box_iou(np.array([b], np.float32), np.array([a], np.float32))[0, 0] == pytest.approx(got[0, 0])


@pytest.mark.parametrize(("n", "m"), [(3, 2), (0, 4), (2, 0)])
def test_box_iou_is_pairwise(n: int, m: int) -> None:
    rng = np.random.default_rng(7)

    def boxes(k: int) -> np.ndarray:
        corner = rng.uniform(0, 100, (k, 2))
        return np.concatenate([corner, corner + rng.uniform(1, 50, (k, 2))], axis=1).astype(np.float32)

    a, b = boxes(n), boxes(m)
    got = box_iou(a, b)
    assert got.shape == (n, m)
    for i in range(n):
        for j in range(m):
            assert got[i, j] == pytest.approx(box_iou(a[i : i + 1], b[j : j + 1])[0, 0])


@pytest.mark.parametrize(
    ("rows", "kept"),
    [
        # a chain: the best suppresses its neighbour, which then cannot suppress the third
        ([(0, 0, 10, 10, 0.9), (1, 0, 11, 10, 0.8), (2, 0, 12, 10, 0.7)], [0]),
        ([(0, 0, 10, 10, 0.9), (2, 0, 12, 10, 0.8), (4, 0, 14, 10, 0.7)], [0, 2]),
        # IoU 1/3 under the threshold: both stay
        ([(0, 0, 10, 10, 0.6), (5, 0, 15, 10, 0.9)], [1, 0]),
    ],
    ids=["chain-all-close", "chain-skip", "below-threshold"],
)
def test_nms_chains(rows: list[tuple[float, ...]], kept: list[int]) -> None:
    boxes = np.array([r[:4] for r in rows], np.float32)
    scores = np.array([r[4] for r in rows], np.float32)
    assert nms(boxes, scores, np.zeros(len(rows), np.int64), 0.55).tolist() == kept


@pytest.mark.parametrize(("threshold", "kept"), [(0.3, [1]), (0.34, [1, 0])])
def test_the_nms_threshold_decides_which_overlaps_are_duplicates(threshold: float, kept: list[int]) -> None:
    # Given two boxes of one class overlapping with IoU 1/3
    boxes = np.array([(0, 0, 10, 10), (5, 0, 15, 10)], np.float32)
    scores = np.array([0.6, 0.9], np.float32)
    assert nms(boxes, scores, np.zeros(2, np.int64), threshold).tolist() == kept
