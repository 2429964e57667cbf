"""Parsers from what models answer into the canonical :class:`Detections`.

- ``from_local``: our ONNX runner's JSON (``Detections.to_dict``).
- ``from_jumpstart``: SageMaker JumpStart detection / instance segmentation JSON
  (``Accept: application/json;verbose``); ``image_with_masks`` is ignored on purpose.
- ``from_ultralytics``: Ultralytics ``Results.summary()`` / ``Results.to_json()`` rows.

Pure functions: no model runtime, no AWS. Malformed input raises :class:`ModelOutputError`
naming the frame and what is wrong.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image
from pycocotools import mask as mask_utils

from workflow.domain.detections import Detections, Provenance, Rle
from workflow.domain.errors import InferenceFailed

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float32]


class ModelOutputError(InferenceFailed):
    """A model's answer for a frame cannot be read as detections."""


def from_local(data: Mapping[str, Any], frame: str = "") -> Detections:
    """Detections from the local runner's JSON (the inverse of ``Detections.to_dict``)."""
    name = str(data.get("frame", frame)) if isinstance(data, Mapping) else frame
    try:
        return Detections.from_dict(dict(data))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ModelOutputError(name, f"malformed local runner output: {type(exc).__name__}: {exc}") from exc


def from_jumpstart(
    payload: Mapping[str, Any],
    image_width: int,
    image_height: int,
    frame: str = "",
    model_name: str = "jumpstart",
    *,
    normalized: bool = False,
    class_names: Sequence[str] | None = None,
    version: str = "",
) -> Detections:
    """Detections from a JumpStart detection or instance-segmentation response.

    Boxes: ``bboxes`` ``[[xmin, ymin, xmax, ymax], ...]`` in pixels (fractions of the frame
    when ``normalized``), or ``normalized_boxes`` (always fractions). Classes: per-detection
    ``ids`` (or ``classes``) index ``labels`` when ``labels`` is the model's class list
    (its length differs from the detection count); otherwise ``labels`` names each detection.
    ``class_names`` (the model's class list) numbers detections that only carry names.
    ``masks``, when present, are per-detection 2-D arrays: frame-sized, or box-sized (resized
    into the box), thresholded at 0.5.
    """
    _check_size(frame, image_width, image_height)
    if not isinstance(payload, Mapping):
        raise ModelOutputError(frame, f"JumpStart output must be a JSON object, got {type(payload).__name__}")
    scores = _floats(payload, "scores", frame)
    n = len(scores)
    boxes = _jumpstart_boxes(payload, n, image_width, image_height, normalized, frame)
    ids, names = _jumpstart_classes(payload, n, class_names, frame)
    masks = None
    if payload.get("masks") is not None:
        masks = _jumpstart_masks(payload["masks"], boxes, image_width, image_height, frame)
    return _build(
        boxes,
        scores,
        ids,
        names,
        image_width,
        image_height,
        frame,
        masks,
        Provenance(model=model_name, version=version, settings={"source": "jumpstart"}),
    )


def from_ultralytics(
    results: Sequence[Mapping[str, Any]] | str,
    image_width: int,
    image_height: int,
    frame: str = "",
    model_name: str = "ultralytics",
    *,
    normalized: bool = False,
    version: str = "",
) -> Detections:
    """Detections from Ultralytics ``Results.summary()`` rows (or the ``to_json()`` string).

    Each row has ``name``, ``class``, ``confidence``, ``box: {x1, y1, x2, y2}`` and, for
    segmentation models, ``segments: {x: [...], y: [...]}`` (one polygon) which becomes a
    COCO RLE mask. ``normalized``: coordinates are fractions (``summary(normalize=True)``).
    """
    _check_size(frame, image_width, image_height)
    rows = _ultralytics_rows(results, frame)
    sx, sy = (image_width, image_height) if normalized else (1, 1)
    boxes, scores, ids, names = [], [], [], []
    for i, row in enumerate(rows):
        try:
            box = row["box"]
            boxes.append(
                [float(box["x1"]) * sx, float(box["y1"]) * sy, float(box["x2"]) * sx, float(box["y2"]) * sy]
            )
            scores.append(float(row["confidence"]))
            ids.append(_integer(row["class"]))
            names.append(str(row["name"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelOutputError(
                frame, f"Ultralytics result {i} is malformed: {type(exc).__name__}: {exc}"
            ) from exc
    masks = None
    if any("segments" in row for row in rows):
        masks = tuple(
            _segment_rle(row.get("segments"), sx, sy, image_width, image_height, frame, i)
            for i, row in enumerate(rows)
        )
    box_array = _clip(_box_array(boxes, len(rows), frame), image_width, image_height)
    return _build(
        box_array,
        np.asarray(scores, np.float32),
        ids,
        names,
        image_width,
        image_height,
        frame,
        masks,
        Provenance(model=model_name, version=version, settings={"source": "ultralytics"}),
    )


def _build(
    boxes: FloatArray,
    scores: FloatArray,
    ids: Sequence[int],
    names: Sequence[str],
    width: int,
    height: int,
    frame: str,
    masks: tuple[Rle, ...] | None,
    provenance: Provenance,
) -> Detections:
    if np.any((scores < 0) | (scores > 1) | ~np.isfinite(scores)):
        raise ModelOutputError(frame, "scores must be numbers in [0, 1]")
    return Detections(
        boxes=boxes,
        scores=scores,
        class_ids=np.asarray(ids, np.int64).reshape(-1),
        class_names=tuple(names),
        image_width=width,
        image_height=height,
        provenance=provenance,
        frame=frame,
        masks=masks,
    )


def _check_size(frame: str, width: int, height: int) -> None:
    if int(width) <= 0 or int(height) <= 0:
        raise ModelOutputError(frame, f"invalid image size {width}x{height}")


def _floats(payload: Mapping[str, Any], key: str, frame: str) -> FloatArray:
    if key not in payload:
        raise ModelOutputError(frame, f"JumpStart output has no {key!r} (keys: {sorted(payload)})")
    try:
        values = np.asarray(payload[key], dtype=np.float32).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise ModelOutputError(frame, f"JumpStart {key!r} is not a list of numbers") from exc
    return values


def _integer(value: Any) -> int:
    number = float(value)
    if not number.is_integer():
        raise ValueError(f"class id {value!r} is not an integer")
    return int(number)


def _box_array(rows: Any, n: int, frame: str) -> FloatArray:
    try:
        boxes = np.asarray(rows, dtype=np.float32).reshape(-1, 4) if n else np.zeros((0, 4), np.float32)
    except (TypeError, ValueError) as exc:
        raise ModelOutputError(frame, "boxes must be [xmin, ymin, xmax, ymax] number lists") from exc
    if len(boxes) != n:
        raise ModelOutputError(frame, f"{len(boxes)} boxes for {n} scores")
    if not np.all(np.isfinite(boxes)) or np.any(boxes[:, 2:] < boxes[:, :2]):
        raise ModelOutputError(frame, "boxes must be finite with xmax >= xmin and ymax >= ymin")
    return boxes


def _clip(boxes: FloatArray, width: int, height: int) -> FloatArray:
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, width)
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, height)
    return boxes


def _jumpstart_boxes(
    payload: Mapping[str, Any], n: int, width: int, height: int, normalized: bool, frame: str
) -> FloatArray:
    if "bboxes" in payload:
        raw, fractions = payload["bboxes"], normalized
    elif "normalized_boxes" in payload:
        raw, fractions = payload["normalized_boxes"], True
    else:
        raise ModelOutputError(frame, f"JumpStart output has no 'bboxes' (keys: {sorted(payload)})")
    boxes = _box_array(raw, n, frame)
    if fractions:
        if np.any(boxes > 1.0 + 1e-6):
            raise ModelOutputError(frame, "normalized boxes must lie in [0, 1]")
        boxes = boxes * np.asarray([width, height, width, height], np.float32)
    return _clip(boxes, width, height)


def _jumpstart_classes(
    payload: Mapping[str, Any], n: int, class_names: Sequence[str] | None, frame: str
) -> tuple[list[int], list[str]]:
    raw_ids = payload.get("ids", payload.get("classes"))
    labels = payload.get("labels")
    try:
        ids = None if raw_ids is None else [_integer(v) for v in np.asarray(raw_ids).reshape(-1)]
    except (TypeError, ValueError) as exc:
        raise ModelOutputError(frame, f"JumpStart class ids are not integers: {exc}") from exc
    if ids is not None and len(ids) != n:
        raise ModelOutputError(frame, f"{len(ids)} class ids for {n} scores")
    if labels is not None and not (isinstance(labels, list) and all(isinstance(s, str) for s in labels)):
        raise ModelOutputError(frame, "JumpStart 'labels' must be a list of class names")
    if ids is not None and labels is not None and len(labels) != n:
        return ids, [_class_name(labels, i, frame) for i in ids]  # labels = the model's class list
    if labels is not None:
        if len(labels) != n:
            raise ModelOutputError(frame, f"{len(labels)} labels for {n} scores")
        return ids if ids is not None else _number(labels, class_names, frame), list(labels)
    if ids is not None:
        return ids, [_class_name(class_names, i, frame) if class_names else f"class_{i}" for i in ids]
    raise ModelOutputError(frame, "JumpStart output has neither 'labels' nor 'ids'/'classes'")


def _class_name(names: Sequence[str] | None, class_id: int, frame: str) -> str:
    if names is None or not 0 <= class_id < len(names):
        raise ModelOutputError(frame, f"class id {class_id} is outside the class list")
    return str(names[class_id])


def _number(labels: Sequence[str], class_names: Sequence[str] | None, frame: str) -> list[int]:
    if class_names is None:
        order: dict[str, int] = {}
        return [order.setdefault(name, len(order)) for name in labels]
    index = {name: i for i, name in enumerate(class_names)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise ModelOutputError(frame, f"labels {unknown} are not in the model's class list")
    return [index[name] for name in labels]


def _jumpstart_masks(raw: Any, boxes: FloatArray, width: int, height: int, frame: str) -> tuple[Rle, ...]:
    if not isinstance(raw, list) or len(raw) != len(boxes):
        count = len(raw) if isinstance(raw, list) else type(raw).__name__
        raise ModelOutputError(frame, f"JumpStart 'masks' must be a list with one mask per box, got {count}")
    return tuple(
        _mask_rle(m, box, width, height, frame, i) for i, (m, box) in enumerate(zip(raw, boxes, strict=True))
    )


def _mask_rle(raw: Any, box: FloatArray, width: int, height: int, frame: str, i: int) -> Rle:
    try:
        mask = np.asarray(raw, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise ModelOutputError(frame, f"mask {i} is not a numeric 2-D array") from exc
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.ndim != 2 or mask.size == 0:
        raise ModelOutputError(frame, f"mask {i} must be 2-D, got shape {list(mask.shape)}")
    if mask.shape == (height, width):
        return _encode(mask >= 0.5)
    return _encode(_paste_into_box(mask, box, width, height))


def _paste_into_box(mask: FloatArray, box: FloatArray, width: int, height: int) -> BoolArray:
    full = np.zeros((height, width), dtype=bool)
    x0, y0 = max(0, math.floor(float(box[0]))), max(0, math.floor(float(box[1])))
    x1, y1 = min(width, math.ceil(float(box[2]))), min(height, math.ceil(float(box[3])))
    if x1 > x0 and y1 > y0:
        patch = Image.fromarray(mask.astype(np.float32)).resize((x1 - x0, y1 - y0), Image.Resampling.BILINEAR)
        full[y0:y1, x0:x1] = np.asarray(patch) >= 0.5
    return full


def _ultralytics_rows(results: Sequence[Mapping[str, Any]] | str, frame: str) -> list[Mapping[str, Any]]:
    if isinstance(results, str):
        try:
            results = json.loads(results)
        except json.JSONDecodeError as exc:
            raise ModelOutputError(frame, f"Ultralytics output is not JSON: {exc}") from exc
    if not isinstance(results, list) or not all(isinstance(r, Mapping) for r in results):
        raise ModelOutputError(frame, "Ultralytics output must be a list of result objects")
    return list(results)


def _segment_rle(segments: Any, sx: float, sy: float, width: int, height: int, frame: str, i: int) -> Rle:
    if not segments:
        return _encode(np.zeros((height, width), dtype=bool))
    try:
        xs = np.asarray(segments["x"], dtype=np.float64) * sx
        ys = np.asarray(segments["y"], dtype=np.float64) * sy
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelOutputError(frame, f"Ultralytics result {i} has malformed segments") from exc
    if xs.shape != ys.shape or xs.ndim != 1:
        raise ModelOutputError(frame, f"Ultralytics result {i}: segments x and y differ in length")
    if len(xs) < 3:
        return _encode(np.zeros((height, width), dtype=bool))
    polygon = np.stack([xs, ys], axis=1).reshape(-1).tolist()
    rles = mask_utils.frPyObjects([polygon], height, width)
    return _json_rle(mask_utils.merge(rles))


def _encode(mask: BoolArray) -> Rle:
    return _json_rle(mask_utils.encode(np.asfortranarray(mask.astype(np.uint8))))


def _json_rle(rle: Mapping[str, Any]) -> Rle:
    counts = rle["counts"]
    return {
        "size": [int(rle["size"][0]), int(rle["size"][1])],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else str(counts),
    }
