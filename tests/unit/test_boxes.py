"""Class-aware NMS and IoU."""

from __future__ import annotations

import numpy as np

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
