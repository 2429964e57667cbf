"""Instance masks: YOLO-seg prototype masks mapped to frame pixels, and COCO RLE encoding."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image
from pycocotools import mask as mask_utils

from workflow.inference.letterbox import Geometry
from workflow.inference.tiling import View

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float32]
Rle = dict[str, Any]


def encode_rle(mask: BoolArray) -> Rle:
    """COCO RLE of an (H, W) boolean mask, JSON-ready (``counts`` as str)."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: Rle) -> BoolArray:
    """(H, W) boolean mask of a COCO RLE (``counts`` as str or bytes)."""
    counts = rle["counts"]
    coded = {
        "size": list(rle["size"]),
        "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
    }
    return np.asarray(mask_utils.decode(coded), dtype=bool)


def yolo_frame_mask(
    coeffs: FloatArray,
    protos: FloatArray,
    box_in_view: FloatArray,
    geometry: Geometry,
    view: View,
    frame_w: int,
    frame_h: int,
) -> BoolArray:
    """The (frame_h, frame_w) mask of one YOLO-seg detection.

    ``sigmoid(coeffs @ protos)`` is sampled (bilinear) only over the detection's box: the box's
    pixels in the view are mapped through the letterbox geometry into prototype coordinates,
    so the result is cropped to the box and un-letterboxed in one resize; > 0.5 is inside.
    """
    patch, px0, py0 = _box_patch(coeffs, protos, box_in_view, geometry)
    full = np.zeros((frame_h, frame_w), dtype=bool)
    if patch.size == 0:
        return full
    height, width = patch.shape
    if view.flipped:
        patch = patch[:, ::-1]
        fx0 = view.x0 + view.w - (px0 + width)
    else:
        fx0 = view.x0 + px0
    fy0 = view.y0 + py0
    full[fy0 : fy0 + height, fx0 : fx0 + width] = patch
    return full


def _box_patch(
    coeffs: FloatArray, protos: FloatArray, box: FloatArray, geometry: Geometry
) -> tuple[BoolArray, int, int]:
    nm, mh, mw = protos.shape
    px0 = max(0, math.floor(float(box[0])))
    py0 = max(0, math.floor(float(box[1])))
    px1 = min(geometry.src_w, math.ceil(float(box[2])))
    py1 = min(geometry.src_h, math.ceil(float(box[3])))
    if px1 <= px0 or py1 <= py0:
        return np.zeros((0, 0), dtype=bool), px0, py0
    logits = (coeffs.astype(np.float32) @ protos.reshape(nm, -1)).reshape(mh, mw)
    prob = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    u0, v0 = geometry.to_input(px0, py0)
    u1, v1 = geometry.to_input(px1, py1)
    sx, sy = mw / geometry.in_w, mh / geometry.in_h
    sampled = Image.fromarray(prob).resize(
        (px1 - px0, py1 - py0), Image.Resampling.BILINEAR, box=(u0 * sx, v0 * sy, u1 * sx, v1 * sy)
    )
    return np.asarray(sampled) > 0.5, px0, py0
