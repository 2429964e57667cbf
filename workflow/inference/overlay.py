"""Draw detections over their frame: boxes, placed labels (class and score), translucent masks in the
taxonomy colours, and a legend band under the frame."""

from __future__ import annotations

import json
from collections.abc import Mapping
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
    """The palette colour of a class id (stable across images): for classes with no taxonomy colour."""
    return PALETTE[int(class_id) % len(PALETTE)]


def _hex(color: str) -> tuple[int, int, int]:
    value = color.lstrip("#")
    return (int(value[0:2], 16), int(value[2:4], 16), int(value[4:6], 16))


def default_colors() -> dict[str, str]:
    """The built-in taxonomy's colours by class name."""
    from workflow.domain.taxonomy import DEFAULT_ADAS_TAXONOMY

    return {c.name: c.color for c in DEFAULT_ADAS_TAXONOMY.classes}


def profile_colors(profile_json: str | Path) -> dict[str, str]:
    """The taxonomy colours of a run's ``profile.json`` (the built-in ones when it is missing)."""
    path = Path(profile_json)
    if not path.is_file():
        return default_colors()
    taxonomy = json.loads(path.read_text()).get("taxonomy", [])
    return {str(c["name"]): str(c["color"]) for c in taxonomy if isinstance(c, dict) and c.get("color")}


def color_of(name: str, class_id: int, colors: Mapping[str, str] | None = None) -> tuple[int, int, int]:
    """A class's overlay colour: its taxonomy colour (``colors``, else the built-in taxonomy's), else
    the palette colour of its id."""
    table = default_colors() if colors is None else colors
    return _hex(table[name]) if name in table else class_color(class_id)


def draw_overlay(
    image: RgbImage,
    detections: Detections,
    mask_alpha: float = 0.45,
    colors: Mapping[str, str] | None = None,
    legend: bool = True,
) -> Image.Image:
    """An RGB picture of ``image`` with the detections drawn on it (the input is not modified).

    Masks are blended translucent in the class colour; box labels (class and score) are placed
    where they overlap no other label and stay inside the image (above the box, inside its top, below
    it, then further down inside it); a label that fits nowhere is left out (the box keeps its
    colour, named in the legend). ``legend`` adds a band under the frame: each class drawn, its
    colour and count.
    """
    if (image.shape[1], image.shape[0]) != (detections.image_width, detections.image_height):
        raise ValueError(
            f"detections are for {detections.image_width}x{detections.image_height}, "
            f"image is {image.shape[1]}x{image.shape[0]}"
        )
    table = default_colors() if colors is None else colors
    palette = [
        color_of(n, int(c), table) for n, c in zip(detections.class_names, detections.class_ids, strict=True)
    ]
    canvas = _blend_masks(image, detections, mask_alpha, palette)
    frame = Image.fromarray(canvas)
    draw = ImageDraw.Draw(frame)
    line = max(1, round(min(frame.size) / 250))
    font = _font(max(11, round(min(frame.size) / 30)))
    for box, color in zip(detections.boxes, palette, strict=True):
        draw.rectangle(tuple(float(v) for v in box), outline=color, width=line)
    texts = [f"{n} {float(v):.2f}" for n, v in zip(detections.class_names, detections.scores, strict=True)]
    spots = place_labels(draw, texts, detections.boxes.tolist(), detections.scores.tolist(), frame.size, font)
    for text, spot, color in zip(texts, spots, palette, strict=True):
        if spot is not None:
            _label(draw, text, spot, color, font)
    if not legend or not len(detections):
        return frame
    return _with_legend(frame, detections, palette, font)


def save_overlay(
    image: RgbImage, detections: Detections, path: str | Path, colors: Mapping[str, str] | None = None
) -> Path:
    """Draw the overlay and write it (format from the file suffix); returns the path."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    draw_overlay(image, detections, colors=colors).save(out)
    return out


def _blend_masks(
    image: RgbImage, detections: Detections, alpha: float, palette: list[tuple[int, int, int]]
) -> RgbImage:
    canvas = image.astype(np.float32)
    if detections.masks is not None:
        for rle, rgb in zip(detections.masks, palette, strict=True):
            inside = decode_rle(rle)
            color = np.asarray(rgb, np.float32)
            canvas[inside] = canvas[inside] * (1.0 - alpha) + color * alpha
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


Font = ImageFont.ImageFont | ImageFont.FreeTypeFont
Rect = tuple[float, float, float, float]


def _size(draw: ImageDraw.ImageDraw, text: str, font: Font) -> tuple[float, float]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left + 4, bottom - top + 4


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _place(
    draw: ImageDraw.ImageDraw, text: str, font: Font, box: Rect, image: tuple[int, int], placed: list[Rect]
) -> Rect | None:
    """Where the box's label goes: the first candidate inside the image that overlaps no placed label."""
    w, h = _size(draw, text, font)
    width, height = image
    if w > width or h > height:
        return None
    x1, y1, x2, y2 = box
    ys = [y1 - h, y1, y2, y2 - h]
    ys += [y1 + k * h for k in range(1, int(max(0.0, y2 - y1 - h) // h) + 1)]  # down the box's inside
    xs = [x1, x2 - w]
    for y in ys:
        for x in xs:
            cx = min(max(0.0, x), width - w)
            cy = min(max(0.0, y), height - h)
            rect = (cx, cy, cx + w, cy + h)
            if not any(_overlaps(rect, p) for p in placed):
                return rect
    return None


def place_labels(
    draw: ImageDraw.ImageDraw,
    texts: list[str],
    boxes: list[list[float]],
    scores: list[float],
    image: tuple[int, int],
    font: Font,
) -> list[Rect | None]:
    """Each box's label rectangle (None: it fits nowhere free), the surest boxes placed first."""
    spots: list[Rect | None] = [None] * len(texts)
    placed: list[Rect] = []
    for i in sorted(range(len(texts)), key=lambda k: -scores[k]):
        x1, y1, x2, y2 = boxes[i]
        spot = _place(draw, texts[i], font, (x1, y1, x2, y2), image, placed)
        if spot is not None:
            placed.append(spot)
            spots[i] = spot
    return spots


def _ink(color: tuple[int, int, int]) -> tuple[int, int, int]:
    luminance = 0.299 * color[0] + 0.587 * color[1] + 0.114 * color[2]
    return (0, 0, 0) if luminance > 150 else (255, 255, 255)


def _label(draw: ImageDraw.ImageDraw, text: str, rect: Rect, color: tuple[int, int, int], font: Font) -> None:
    left, top, _, _ = draw.textbbox((0, 0), text, font=font)
    draw.rectangle(rect, fill=color)
    draw.text((rect[0] + 2 - left, rect[1] + 2 - top), text, fill=_ink(color), font=font)


def _with_legend(
    frame: Image.Image, detections: Detections, palette: list[tuple[int, int, int]], font: Font
) -> Image.Image:
    """The frame with a band under it: a swatch, the class name and its count, per class drawn."""
    counts: dict[str, tuple[int, tuple[int, int, int]]] = {}
    for name, color in zip(detections.class_names, palette, strict=True):
        n, _ = counts.get(name, (0, color))
        counts[name] = (n + 1, color)
    probe = ImageDraw.Draw(frame)
    _, h = _size(probe, "Ag", font)
    rows: list[list[tuple[str, tuple[int, int, int], float]]] = [[]]
    x, gap = 6.0, 14.0
    for name, (n, color) in sorted(counts.items(), key=lambda t: -t[1][0]):
        text = f"{name} ({n})"
        w = _size(probe, text, font)[0] + h + 4
        if rows[-1] and x + w > frame.width - 6:
            rows.append([])
            x = 6.0
        rows[-1].append((text, color, w))
        x += w + gap
    band = int(len(rows) * (h + 6) + 6)
    picture = Image.new("RGB", (frame.width, frame.height + band), (24, 28, 36))
    picture.paste(frame, (0, 0))
    draw = ImageDraw.Draw(picture)
    for r, row in enumerate(rows):
        x, y = 6.0, frame.height + 6 + r * (h + 6)
        for text, color, w in row:
            draw.rectangle((x, y + 2, x + h - 4, y + h - 2), fill=color)
            left, top, _, _ = draw.textbbox((0, 0), text, font=font)
            draw.text((x + h - left, y + 2 - top), text, fill=(240, 240, 240), font=font)
            x += w + gap
    return picture


def _font(size: int) -> Font:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow built without FreeType: fixed bitmap font
        return ImageFont.load_default()
