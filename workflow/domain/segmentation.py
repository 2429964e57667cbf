"""Instance masks as a Ground Truth semantic-segmentation label: a label-map PNG and its manifest line.

Ground Truth identifies a segmentation class by the COLOUR of a pixel: the ``hex-color`` of an
entry of ``internal-color-map`` (its own output PNGs are read back by colour, and the adjustment
UI shows the PNG as an overlay). We write an 8-bit palette PNG whose palette index is also the
``internal-color-map`` key, so one file serves both readers: colour readers see the hex colours,
index readers (e.g. the SageMaker semantic-segmentation algorithm) see 0 = BACKGROUND and
``i + 1`` = taxonomy class ``i``. Colours must therefore be unique within the taxonomy and differ
from the white background.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image
from pycocotools import mask as mask_utils

from workflow.domain.detections import Detections, Rle
from workflow.domain.errors import AutolabelError
from workflow.domain.groundtruth import semantic_segmentation_metadata, validate_label_attribute_name
from workflow.domain.taxonomy import Taxonomy

BACKGROUND = "BACKGROUND"
BACKGROUND_COLOR = "#ffffff"
MAX_CLASSES = 255  # palette indices 1..255; 0 is the background
LabelMap = npt.NDArray[np.uint8]


class SegmentationError(AutolabelError):
    """Masks or a taxonomy that cannot become a semantic-segmentation label."""


def _rgb(hex_color: str) -> tuple[int, int, int]:
    value = hex_color.lstrip("#")
    return int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16)


def palette(taxonomy: Taxonomy) -> list[tuple[int, int, int]]:
    """RGB colour of each label-map index: BACKGROUND white, then the taxonomy's classes in order.

    Raises :class:`SegmentationError` when two entries share a colour, since Ground Truth could
    not tell them apart.
    """
    if len(taxonomy) > MAX_CLASSES:
        raise SegmentationError(f"{len(taxonomy)} classes; a palette label map holds at most {MAX_CLASSES}")
    colours = [BACKGROUND_COLOR] + [c.color.lower() for c in taxonomy.classes]
    owners: dict[str, str] = {}
    for name, colour in zip((BACKGROUND, *taxonomy.names), colours, strict=True):
        if colour in owners:
            raise SegmentationError(
                f"classes {owners[colour]!r} and {name!r} share the colour {colour}: a segmentation "
                "label needs one colour per class (set hex colours in the taxonomy)"
            )
        owners[colour] = name
    return [_rgb(c) for c in colours]


def _decode(rle: Rle) -> npt.NDArray[np.bool_]:
    counts = rle["counts"]
    coded = {
        "size": list(rle["size"]),
        "counts": counts.encode("ascii") if isinstance(counts, str) else counts,
    }
    return np.asarray(mask_utils.decode(coded), dtype=bool)


def label_map(detections: Detections, taxonomy: Taxonomy) -> LabelMap:
    """(H, W) uint8 class index per pixel: 0 background, ``taxonomy.index(name) + 1`` elsewhere.

    Where masks overlap the higher score wins (on equal scores, the earlier detection).
    Detections must carry masks of the frame's size and use taxonomy names.
    """
    h, w = detections.image_height, detections.image_width
    out = np.zeros((h, w), np.uint8)
    if len(detections) == 0:
        return out
    if detections.masks is None:
        raise SegmentationError(f"{detections.frame or 'frame'}: detections carry no masks")
    unknown = sorted({n for n in detections.class_names if n not in taxonomy})
    if unknown:
        raise SegmentationError(f"classes {unknown} are not in the taxonomy; apply a ClassMap first")
    order = np.argsort(-detections.scores, kind="stable")
    for i in order[::-1]:  # lowest score first, so higher scores paint over it
        mask = _decode(detections.masks[i])
        if mask.shape != (h, w):
            raise SegmentationError(
                f"{detections.frame or 'frame'}: mask {i} is {mask.shape[1]}x{mask.shape[0]}, "
                f"the frame {w}x{h}"
            )
        out[mask] = taxonomy.index(detections.class_names[i]) + 1
    return out


def encode_label_map(indices: LabelMap, taxonomy: Taxonomy) -> bytes:
    """An 8-bit palette PNG of a label map, the palette holding each index's class colour."""
    colours = palette(taxonomy)
    if indices.size and int(indices.max()) >= len(colours):
        raise SegmentationError(f"label map index {int(indices.max())} is beyond the {len(colours)} classes")
    image = Image.fromarray(np.ascontiguousarray(indices, dtype=np.uint8))
    # A full 256-entry palette makes Pillow write 8-bit indices, the form every reader takes.
    flat = [v for rgb in colours for v in rgb] + [0, 0, 0] * (256 - len(colours))
    image.putpalette(flat)  # turns the "L" image into a "P" one
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def label_map_png(detections: Detections, taxonomy: Taxonomy) -> bytes:
    """The frame's semantic-segmentation label as PNG bytes, the size of the frame.

    Each pixel has its class's taxonomy ``hex-color`` (white for BACKGROUND); see the module
    docstring for the palette form.
    """
    return encode_label_map(label_map(detections, taxonomy), taxonomy)


def read_label_map(png: bytes, color_map: Mapping[str, Mapping[str, Any]]) -> LabelMap:
    """Class index per pixel of a label-map PNG, read by COLOUR as Ground Truth does.

    ``color_map`` is an ``internal-color-map``; the result holds its keys as integers. Works for
    palette and RGB(A) PNGs alike; a colour the map does not name raises :class:`SegmentationError`.
    """
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.uint32)
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    by_colour = {}
    for key, entry in color_map.items():
        r, g, b = _rgb(str(entry["hex-color"]))
        by_colour[(r << 16) | (g << 8) | b] = int(key)
    out = np.zeros(packed.shape, np.uint8)
    seen = np.zeros(packed.shape, bool)
    for colour, index in by_colour.items():
        hit = packed == colour
        out[hit] = index
        seen |= hit
    if not seen.all():
        stray = sorted({f"#{int(v):06x}" for v in np.unique(packed[~seen])[:5]})
        raise SegmentationError(f"label map has colours outside the internal-color-map: {stray}")
    return out


def class_confidences(detections: Detections) -> dict[str, float]:
    """The best score of each class among the detections (a per-class ``confidence``)."""
    best: dict[str, float] = {}
    for name, score in zip(detections.class_names, detections.scores.tolist(), strict=True):
        best[name] = max(best.get(name, 0.0), round(float(score), 4))
    return best


def segmentation_manifest_line(
    source_ref: str,
    png_s3_uri: str,
    taxonomy: Taxonomy,
    attribute: str = "prelabel-ref",
    job_name: str = "labeling-job/prelabel",
    created: datetime | None = None,
    *,
    confidence: float | Mapping[str, float] = 0.0,
) -> dict[str, Any]:
    """One manifest line carrying a label-map PNG as a machine semantic-segmentation label.

    ``attribute`` must end in ``-ref``. ``confidence`` is one value for every entry, or a value
    per class name (e.g. :func:`class_confidences`; classes it lacks get 0.0).
    """
    validate_label_attribute_name(attribute, "semantic-segmentation")
    palette(taxonomy)  # refuse colours Ground Truth could not tell apart
    single = confidence if isinstance(confidence, int | float) else None
    meta = semantic_segmentation_metadata(taxonomy, job_name, confidence=single, created=created)
    if single is None and isinstance(confidence, Mapping):
        for entry in meta["internal-color-map"].values():
            entry["confidence"] = float(confidence.get(entry["class-name"], 0.0))
    return {"source-ref": source_ref, attribute: png_s3_uri, f"{attribute}-metadata": meta}
