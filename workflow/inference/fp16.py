"""Run FP16 ONNX exports in FP32 on the CPU.

Half-precision exports (such as ``yolo11n_seg_fp16.onnx``) keep their weights in float16;
onnxruntime's CPU kernels mostly compute in float32, so an FP16 graph pays for casts and slow
paths (measured here: 886 ms against 574 ms per 640x640 YOLO11n-seg run on 2 cores). Upcasting
the weights once at load time gives the same detections faster.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import AttributeProto, GraphProto, ModelProto, TensorProto, numpy_helper

# Ops whose attributes name an output dtype we do not rewrite: leave such models alone.
_DTYPE_OPS = {"EyeLike", "RandomNormal", "RandomNormalLike", "RandomUniform", "RandomUniformLike",
              "Multinomial", "Bernoulli"}  # fmt: skip


def has_fp16_weights(model: ModelProto) -> bool:
    """Whether any initializer of the main graph is float16."""
    return any(t.data_type == TensorProto.FLOAT16 for t in model.graph.initializer)


def upcast_fp16(model: ModelProto) -> ModelProto | None:
    """A float32 copy of an FP16 model, or None when the graph has ops this does not handle."""
    out = ModelProto()
    out.CopyFrom(model)
    if not _upcast_graph(out.graph):
        return None
    return out


def _upcast_graph(graph: GraphProto) -> bool:
    for index, tensor in enumerate(graph.initializer):
        if tensor.data_type == TensorProto.FLOAT16:
            graph.initializer[index].CopyFrom(_to_float(tensor))
    for info in [*graph.input, *graph.output, *graph.value_info]:
        if info.type.tensor_type.elem_type == TensorProto.FLOAT16:
            info.type.tensor_type.elem_type = TensorProto.FLOAT
    for node in graph.node:
        if node.op_type in _DTYPE_OPS:
            return False
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT16:
                attr.i = TensorProto.FLOAT
            elif attr.type == AttributeProto.TENSOR and attr.t.data_type == TensorProto.FLOAT16:
                attr.t.CopyFrom(_to_float(attr.t))
            elif not all(_upcast_graph(g) for g in _subgraphs(attr)):
                return False
    return True


def _subgraphs(attr: AttributeProto) -> list[GraphProto]:
    if attr.type == AttributeProto.GRAPH:
        return [attr.g]
    return list(attr.graphs) if attr.type == AttributeProto.GRAPHS else []


def _to_float(tensor: TensorProto) -> TensorProto:
    array = numpy_helper.to_array(tensor).astype(np.float32)
    return numpy_helper.from_array(array, tensor.name)


def load_for_cpu(path: str) -> bytes | str:
    """What to hand onnxruntime: the upcast model's bytes for an FP16 model, else the path."""
    model = onnx.load(path)
    if not has_fp16_weights(model):
        return path
    upcast = upcast_fp16(model)
    return path if upcast is None else upcast.SerializeToString()
