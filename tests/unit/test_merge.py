"""Merging several models' detections of a frame: IoU, class-wise NMS, merge_models."""

from __future__ import annotations

import numpy as np
import pytest

from workflow.domain.detections import Detections, Provenance
from workflow.domain.merge import class_nms, concat, iou_matrix, merge_models

FRAME = "s3://drive-logs/log1/000008.png"


def dets(
    rows: list[tuple[float, float, float, float, float, str]], model: str = "m", masks: bool = False
) -> Detections:
    """Detections from (x1, y1, x2, y2, score, class name) rows on a 1242x375 frame."""
    rle = {"size": [375, 1242], "counts": "abc"}
    return Detections(
        boxes=np.array([r[:4] for r in rows], np.float32).reshape(-1, 4),
        scores=np.array([r[4] for r in rows], np.float32),
        class_ids=np.array([hash(r[5]) % 7 for r in rows], np.int64),
        class_names=tuple(r[5] for r in rows),
        image_width=1242,
        image_height=375,
        provenance=Provenance(model=model, version="1"),
        frame=FRAME,
        masks=tuple(rle for _ in rows) if masks else None,
    )


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
def test_iou_of_two_boxes(a: tuple[float, ...], b: tuple[float, ...], iou: float) -> None:
    got = iou_matrix(np.array([a], np.float32), np.array([b], np.float32))
    assert got.shape == (1, 1) and got.dtype == np.float32
    assert got[0, 0] == pytest.approx(iou, abs=1e-6)
    assert iou_matrix(np.array([b], np.float32), np.array([a], np.float32))[0, 0] == pytest.approx(got[0, 0])


def random_boxes(rng: np.random.Generator, n: int) -> np.ndarray:
    corner = rng.uniform(0, 100, (n, 2))
    return np.concatenate([corner, corner + rng.uniform(1, 50, (n, 2))], axis=1).astype(np.float32)


@pytest.mark.parametrize(("n", "m"), [(3, 2), (0, 4), (2, 0)])
def test_iou_matrix_is_pairwise(n: int, m: int) -> None:
    rng = np.random.default_rng(7)
    a, b = random_boxes(rng, n), random_boxes(rng, m)
    got = iou_matrix(a, b)
    assert got.shape == (n, m)
    for i in range(n):
        for j in range(m):
            assert got[i, j] == pytest.approx(iou_matrix(a[i : i + 1], b[j : j + 1])[0, 0])


@pytest.mark.parametrize(
    ("rows", "kept"),
    [
        # two overlapping cars: the better one stays
        ([(0, 0, 10, 10, 0.6, "car"), (1, 0, 11, 10, 0.9, "car")], [1]),
        # a car and a truck on the same spot: NMS is per class, both stay
        ([(0, 0, 10, 10, 0.6, "car"), (1, 0, 11, 10, 0.9, "truck")], [0, 1]),
        # IoU 1/3, under the 0.55 threshold: both stay
        ([(0, 0, 10, 10, 0.6, "car"), (5, 0, 15, 10, 0.9, "car")], [0, 1]),
        # a chain: the best suppresses its neighbour, which then cannot suppress the third
        ([(0, 0, 10, 10, 0.9, "car"), (1, 0, 11, 10, 0.8, "car"), (2, 0, 12, 10, 0.7, "car")], [0]),
        ([(0, 0, 10, 10, 0.9, "car"), (2, 0, 12, 10, 0.8, "car"), (4, 0, 14, 10, 0.7, "car")], [0, 2]),
        ([], []),
    ],
    ids=["same-class-overlap", "other-class", "below-threshold", "chain-all-close", "chain-skip", "empty"],
)
def test_class_nms_keeps_the_best_box_of_each_overlapping_group_per_class(
    rows: list[tuple[float, float, float, float, float, str]], kept: list[int]
) -> None:
    keep = class_nms(dets(rows))
    assert keep.dtype == np.int64 and keep.tolist() == kept


@pytest.mark.parametrize(("threshold", "kept"), [(0.3, [1]), (0.34, [0, 1])])
def test_class_nms_threshold_decides_which_overlaps_are_duplicates(threshold: float, kept: list[int]) -> None:
    # Given two cars overlapping with IoU 1/3
    rows = [(0, 0, 10, 10, 0.6, "car"), (5, 0, 15, 10, 0.9, "car")]
    assert class_nms(dets(rows), iou_threshold=threshold).tolist() == kept


def test_one_models_detections_pass_through_unchanged() -> None:
    only = dets([(0, 0, 10, 10, 0.9, "car"), (1, 0, 11, 10, 0.8, "car")], model="nanodet")
    assert merge_models([only]) is only


def test_two_models_boxes_are_merged_without_duplicates_and_with_both_provenances() -> None:
    # Given two models that both found the same car, and each found one object the other missed
    a = dets([(100, 50, 200, 150, 0.9, "car"), (400, 60, 420, 120, 0.7, "pedestrian")], model="nanodet")
    b = dets([(102, 52, 198, 149, 0.8, "car"), (600, 80, 700, 160, 0.6, "truck")], model="yolo")
    # When they are merged
    merged = merge_models([a, b])
    # Then the shared car appears once (the better-scored box), the others stay
    found = sorted(zip(merged.class_names, merged.scores.tolist(), strict=True))
    assert [name for name, _ in found] == ["car", "pedestrian", "truck"]
    assert [score for _, score in found] == pytest.approx([0.9, 0.7, 0.6])
    assert merged.frame == FRAME and (merged.image_width, merged.image_height) == (1242, 375)
    assert merged.provenance.model == "nanodet+yolo" and merged.provenance.version == "1+1"
    assert [p["model"] for p in merged.provenance.settings["models"]] == ["nanodet", "yolo"]
    assert merged.masks is None


@pytest.mark.parametrize(("masks_a", "masks_b", "has_masks"), [(True, True, True), (True, False, False)])
def test_masks_survive_a_merge_only_when_every_model_has_them(
    masks_a: bool, masks_b: bool, has_masks: bool
) -> None:
    a = dets([(0, 0, 10, 10, 0.9, "car")], masks=masks_a)
    b = dets([(50, 0, 60, 10, 0.9, "car")], masks=masks_b)
    merged = merge_models([a, b])
    assert len(merged) == 2 and (merged.masks is not None) is has_masks


def test_concat_of_nothing_is_refused() -> None:
    with pytest.raises(ValueError, match="nothing"):
        concat([], Provenance(model="none"))
