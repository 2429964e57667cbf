"""Draw detections over their frame: boxes, class name and score, semi-transparent masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from workflow.domain.detections import Detections
from workflow.inference.images import RgbImage
from workflow.inference.masks import decode_rle

# Distinct, saturated colours that stay readable on road scenes (grey asphalt, sky).
PALETTE: tuple[tuple[int, int, int], ...] = (
    (255, 56, 56), (56, 56, 255), (255, 157, 151), (255, 112, 31), (255, 178, 29), (207, 210, 49),
    (72, 249, 10), (146, 204, 23), (61, 219, 134), (26, 147, 52), (0, 212, 187), (44, 153, 168),
    (0, 194, 255), (52, 69, 147), (100, 115, 255), (0, 24, 236), (132, 56, 255), (82, 0, 133),
    (203, 56, 255), (255, 149, 200),
)  # fmt: skip


def class_color(class_id: int) -> tuple[int, int, int]:
    """The overlay colour of a class id (stable across images)."""
    return PALETTE[int(class_id) % len(PALETTE)]


def draw_overlay(image: RgbImage, detections: Detections, mask_alpha: float = 0.45) -> Image.Image:
    """An RGB picture of ``image`` with the detections drawn on it (the input is not modified)."""
    if (image.shape[1], image.shape[0]) != (detections.image_width, detections.image_height):
        raise ValueError(
            f"detections are for {detections.image_width}x{detections.image_height}, "
            f"image is {image.shape[1]}x{image.shape[0]}"
        )
    canvas = _blend_masks(image, detections, mask_alpha)
    picture = Image.fromarray(canvas)
    draw = ImageDraw.Draw(picture)
    line = max(1, round(min(picture.size) / 250))
    font = _font(max(11, round(min(picture.size) / 30)))
    for box, score, cid, name in zip(
        detections.boxes, detections.scores, detections.class_ids, detections.class_names, strict=True
    ):
        color = class_color(int(cid))
        x1, y1, x2, y2 = (float(v) for v in box)
        draw.rectangle((x1, y1, x2, y2), outline=color, width=line)
        _label(draw, f"{name} {score:.2f}", x1, y1, color, font)
    return picture


def save_overlay(image: RgbImage, detections: Detections, path: str | Path) -> Path:
    """Draw the overlay and write it (format from the file suffix); returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    draw_overlay(image, detections).save(out)
    return out


def _blend_masks(image: RgbImage, detections: Detections, alpha: float) -> RgbImage:
    canvas = image.astype(np.float32)
    if detections.masks is not None:
        for rle, cid in zip(detections.masks, detections.class_ids, strict=True):
            inside = decode_rle(rle)
            color = np.asarray(class_color(int(cid)), np.float32)
            canvas[inside] = canvas[inside] * (1.0 - alpha) + color * alpha
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


def _label(
    draw: ImageDraw.ImageDraw,
    text: str,
    x: float,
    y: float,
    color: tuple[int, int, int],
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
) -> None:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    width, height = right - left + 4, bottom - top + 4
    ty = y - height if y - height >= 0 else y  # above the box, or inside it at the top edge
    draw.rectangle((x, ty, x + width, ty + height), fill=color)
    luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    ink = (0, 0, 0) if luminance > 150 else (255, 255, 255)
    draw.text((x + 2 - left, ty + 2 - top), text, fill=ink, font=font)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow built without FreeType: fixed bitmap font
        return ImageFont.load_default()
