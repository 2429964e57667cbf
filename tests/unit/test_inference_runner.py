"""The runner end to end on a tiny ONNX model whose answer is known: exact frame coordinates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from workflow.domain.errors import ConfigurationError, InferenceFailed, ModelNotProvisioned
from workflow.inference.runner import OnnxDetector, load_detector
from workflow.inference.settings import InferenceSettings


def _fixed_answer_yolo(
    path: Path, head: np.ndarray, names: str | None, input_hw: tuple[object, object]
) -> Path:
    """A YOLO-format model that answers ``head`` [1, 4 + nc, N] whatever the image (plus 0 * mean)."""
    nodes = [
        helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["answer", "nothing"], ["output0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "fixed",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, *input_hw])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(head.shape))],
        [numpy_helper.from_array(head, "answer"), numpy_helper.from_array(np.zeros((), np.float32), "zero")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    if names is not None:
        helper.set_model_props(model, {"names": names, "task": "detect", "stride": "32"})
    onnx.save(model, path)
    return path


def _head(rows: list[list[float]], nc: int) -> np.ndarray:
    """[1, 4 + nc, N] from rows of cx, cy, w, h, class scores..."""
    return np.asarray(rows, np.float32).T.reshape(1, 4 + nc, len(rows))


def test_letterboxed_box_maps_exactly_to_a_wide_frame(tmp_path: Path) -> None:
    # Given a dynamic-input model run at 320x320 that always answers one box centred at (160, 160),
    # 100x50 in input pixels, class "car" at 0.9
    path = _fixed_answer_yolo(
        tmp_path / "m.onnx", _head([[160, 160, 100, 50, 0.0, 0.9]], 2), "{0: 'person', 1: 'car'}", ("h", "w")
    )
    detector = OnnxDetector.from_path(path, InferenceSettings(input_size=320, tiling=False))
    # When it sees a 640x200 frame (letterboxed at scale 0.5, 110 pixels of padding above)
    det = detector.predict(np.zeros((200, 640, 3), np.uint8), "wide.png")
    # Then the box is (110..210, 135..185) in the input, i.e. (220..420, 50..150) in the frame
    np.testing.assert_allclose(det.boxes, [[220, 50, 420, 150]], atol=1e-3)
    assert det.class_names == ("car",) and det.masks is None
    assert det.provenance.settings["input_size"] == [320, 320]


def test_squashed_box_maps_with_two_scales(tmp_path: Path) -> None:
    # Given the same model run without letterboxing
    path = _fixed_answer_yolo(
        tmp_path / "m.onnx", _head([[160, 160, 100, 50, 0.9]], 1), "{0: 'car'}", ("h", "w")
    )
    detector = OnnxDetector.from_path(path, InferenceSettings(input_size=320, letterbox=False, tiling=False))
    # When it sees the 640x200 frame (x scale 0.5, y scale 1.6)
    det = detector.predict(np.zeros((200, 640, 3), np.uint8))
    # Then each axis is unscaled by its own factor
    np.testing.assert_allclose(det.boxes, [[220, 135 / 1.6, 420, 185 / 1.6]], atol=1e-3)


def test_boxes_past_the_frame_are_clipped_and_nameless_models_get_numbered_classes(tmp_path: Path) -> None:
    # Given a fixed 64x64 model without names metadata whose box sticks out of the image
    path = _fixed_answer_yolo(
        tmp_path / "m.onnx", _head([[60, 32, 20, 20, 0.1, 0.2, 0.7]], 3), None, (64, 64)
    )
    det = OnnxDetector.from_path(path).predict(np.zeros((64, 64, 3), np.uint8))
    # Then the box ends at the frame edge and the class is named by its index
    np.testing.assert_allclose(det.boxes, [[50, 22, 64, 42]], atol=1e-3)
    assert det.class_names == ("class_2",) and det.class_ids.tolist() == [2]


def test_wrong_images_and_missing_models_raise_typed_errors(tmp_path: Path) -> None:
    # Given a working model
    path = _fixed_answer_yolo(tmp_path / "m.onnx", _head([[8, 8, 4, 4, 0.9]], 1), "{0: 'car'}", (64, 64))
    detector = OnnxDetector.from_path(path)
    # Then a grayscale array is refused for its frame, and missing or broken model files are named
    with pytest.raises(InferenceFailed, match="uint8 RGB"):
        detector.predict(np.zeros((64, 64), np.uint8), "gray.png")
    with pytest.raises(ModelNotProvisioned):
        OnnxDetector.from_path(tmp_path / "absent.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf")
    with pytest.raises(ConfigurationError, match="cannot load ONNX model"):
        OnnxDetector.from_path(broken)


def test_load_detector_accepts_an_onnx_path(tmp_path: Path) -> None:
    # Given an .onnx path, Then load_detector loads it, named after the file
    path = _fixed_answer_yolo(tmp_path / "fixed.onnx", _head([[8, 8, 4, 4, 0.9]], 1), "{0: 'car'}", (64, 64))
    assert load_detector(path).name == "fixed"
    # and an unknown name is a configuration error
    with pytest.raises(ConfigurationError):
        load_detector("no-such-model")
