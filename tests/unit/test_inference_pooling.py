"""Merging the candidates of the whole frame, its tiles and mirrors into one set."""

from __future__ import annotations

import numpy as np

from workflow.inference.candidates import Candidates
from workflow.inference.pooling import drop_fragments, pool, select
from workflow.inference.tiling import View


def _cands(boxes: list[list[float]], scores: list[float], classes: list[int]) -> Candidates:
    return Candidates(
        np.asarray(boxes, np.float32).reshape(-1, 4),
        np.asarray(scores, np.float32),
        np.asarray(classes, np.int64),
    )


def test_pool_maps_views_to_frame_and_flags_cut_boxes() -> None:
    # Given the whole 1242x375 frame and its middle tile [400, 816), each with one car
    whole = (View(0, 0, 1242, 375), _cands([[0, 200, 390, 375]], [0.66], [2]))
    tile = (
        View(400, 0, 416, 375, is_tile=True),
        _cands([[0, 250, 120, 375], [150, 20, 200, 60]], [0.4, 0.5], [2, 2]),
    )
    # When pooled
    pooled = pool([whole, tile], 1242, 375)
    # Then tile boxes are in frame pixels, the one at the tile's inner left edge is flagged cut
    np.testing.assert_allclose(pooled.boxes[1:], [[400, 250, 520, 375], [550, 20, 600, 60]])
    assert pooled.cut.tolist() == [False, True, False]
    assert pooled.origin.tolist() == [[0, 0], [1, 0], [1, 1]]


def test_fragment_inside_a_larger_box_of_its_class_is_dropped() -> None:
    # Given a whole car box, a cut tile box lying inside it, and a cut tile box of another class
    boxes = np.array([[0, 200, 390, 375], [280, 250, 400, 375], [280, 250, 400, 375]], np.float32)
    classes = np.array([2, 2, 7])
    cut = np.array([False, True, True])
    # When fragments are dropped
    scores = np.array([0.6, 0.5, 0.5], np.float32)
    kept = drop_fragments(boxes, scores, classes, cut, np.array([0, 1, 2]))
    # Then the car fragment goes, the truck box (another class) stays
    assert kept.tolist() == [0, 2]


def test_fragment_scoring_higher_than_the_larger_box_is_kept() -> None:
    # Given a confident pedestrian (0.72) cut by a tile edge, inside a large, doubtful (0.06)
    # pedestrian box from the whole frame (a crowd or a false box at a low threshold)
    boxes = np.array([[100, 100, 420, 375], [380, 200, 416, 330]], np.float32)
    scores = np.array([0.06, 0.72], np.float32)
    classes = np.array([0, 0])
    cut = np.array([False, True])
    # When fragments are dropped
    kept = drop_fragments(boxes, scores, classes, cut, np.array([1, 0]))
    # Then the confident tile box stays: a lower-scoring box never deletes a better one
    assert kept.tolist() == [1, 0]


def test_cut_box_of_a_real_object_is_kept() -> None:
    # Given a cut tile box that overlaps the neighbour car only a little (a different car)
    boxes = np.array([[0, 203, 387, 375], [304, 180, 611, 375]], np.float32)
    scores = np.array([0.6, 0.5], np.float32)
    kept = drop_fragments(boxes, scores, np.array([2, 2]), np.array([False, True]), np.array([0, 1]))
    # Then it stays
    assert kept.tolist() == [0, 1]


def test_select_applies_nms_fragments_and_the_cap() -> None:
    # Given duplicates of one car from two views, plus two separate cars
    whole = (View(0, 0, 1000, 300), _cands([[10, 10, 110, 110], [500, 10, 600, 110]], [0.9, 0.5], [2, 2]))
    mirror = (
        View(0, 0, 1000, 300, flipped=True),
        _cands([[890, 10, 990, 110], [100, 100, 150, 150]], [0.8, 0.7], [2, 2]),
    )
    pooled = pool([whole, mirror], 1000, 300)
    # When selected with at most 2 detections
    kept = select(pooled, iou_threshold=0.6, max_keep=2)
    # Then the duplicate (the mirror's copy of the first car) is gone and the best two remain
    assert kept.tolist() == [0, 3]
