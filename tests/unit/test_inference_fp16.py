"""FP16 exports are upcast to FP32 for the CPU and give the same outputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from workflow.inference.fp16 import has_fp16_weights, load_for_cpu, upcast_fp16


def _fp16_model() -> onnx.ModelProto:
    """float32 in -> Cast fp16 -> Conv (fp16 weights) -> Mul by an fp16 Constant -> Cast float32."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(size=(2, 3, 3, 3)).astype(np.float16), "w")
    nodes = [
        helper.make_node("Cast", ["x"], ["x16"], to=TensorProto.FLOAT16),
        helper.make_node("Conv", ["x16", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Constant", [], ["k"], value=numpy_helper.from_array(np.array(0.5, np.float16))),
        helper.make_node("Mul", ["c", "k"], ["m"]),
        helper.make_node("Cast", ["m"], ["y"], to=TensorProto.FLOAT),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 8, 8])],
        [weight],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def test_upcast_model_gives_the_same_outputs(tmp_path: Path) -> None:
    # Given a small FP16 model saved to disk
    model = _fp16_model()
    path = tmp_path / "tiny_fp16.onnx"
    onnx.save(model, path)
    x = np.random.default_rng(1).normal(size=(1, 3, 8, 8)).astype(np.float32)
    # When it is loaded for the CPU
    source = load_for_cpu(str(path))
    # Then it is an upcast graph with no FP16 weights, and the outputs agree with the FP16 run
    assert has_fp16_weights(model) and isinstance(source, bytes)
    assert not has_fp16_weights(onnx.load_from_string(source))
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = ort.InferenceSession(source, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=2e-2, atol=2e-2)


def test_models_with_dtype_attributes_are_left_alone() -> None:
    # Given an FP16 model that also draws random numbers of a given dtype
    model = _fp16_model()
    model.graph.node.append(helper.make_node("RandomNormal", [], ["r"], dtype=TensorProto.FLOAT16, shape=[1]))
    # Then it is not rewritten
    assert upcast_fp16(model) is None


def test_fp32_model_is_loaded_from_its_path(shared_dir: Path) -> None:
    # Given the FP32 NanoDet reference, Then onnxruntime gets the file path itself
    path = shared_dir / "models/nanodet-coco/nanodet-tf2onnx-reference.onnx"
    assert load_for_cpu(str(path)) == str(path)
