"""A reader of the Ultralytics YOLO dataset format, written against its documentation.

The format (docs.ultralytics.com/datasets/detect/ and /datasets/segment/): a ``data.yaml`` with
``path``, ``train``/``val`` (an images folder, or a ``.txt`` file listing images) and ``names``
(index -> class name, a mapping or a list); for each image ``images/x.ext`` a ``labels/x.txt``
with one object a line, ``class x_center y_center width height`` normalised to [0, 1], or for
segmentation ``class x1 y1 x2 y2 ...`` (at least three normalised points). An image with no
objects has an empty or missing label file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml


class YoloFormatError(ValueError):
    """A label file or data.yaml that does not follow the format; the message names the file and line."""


@dataclass(frozen=True)
class YoloObject:
    class_id: int
    xywh: tuple[float, float, float, float]  # normalised centre x, centre y, width, height
    polygon: tuple[tuple[float, float], ...] = ()  # normalised, for -seg lines


@dataclass(frozen=True)
class YoloDataset:
    names: dict[int, str]
    images: list[str]  # as listed (relative to ``path`` or absolute)
    labels: dict[str, list[YoloObject]]  # label file stem -> objects


def _names(raw: object, where: Path) -> dict[int, str]:
    if isinstance(raw, list):
        return {i: str(n) for i, n in enumerate(raw)}
    if isinstance(raw, dict):
        return {int(k): str(v) for k, v in raw.items()}
    raise YoloFormatError(f"{where}: 'names' must be a list or a mapping of index to name")


def parse_label_line(text: str, classes: int, where: str) -> YoloObject:
    parts = text.split()
    try:
        cls = int(parts[0])
        values = [float(v) for v in parts[1:]]
    except (ValueError, IndexError) as exc:
        raise YoloFormatError(f"{where}: not 'class x y w h' or 'class x1 y1 ...': {text!r}") from exc
    if not 0 <= cls < classes:
        raise YoloFormatError(f"{where}: class {cls} is not in names (0..{classes - 1})")
    if any(not 0.0 <= v <= 1.0 for v in values):
        raise YoloFormatError(f"{where}: coordinates must be normalised to [0, 1]: {text!r}")
    if len(values) == 4:
        return YoloObject(cls, (values[0], values[1], values[2], values[3]))
    if len(values) >= 6 and len(values) % 2 == 0:
        xs, ys = values[0::2], values[1::2]
        x1, x2, y1, y2 = min(xs), max(xs), min(ys), max(ys)
        box = ((x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1)
        return YoloObject(cls, box, tuple(zip(xs, ys, strict=True)))
    raise YoloFormatError(f"{where}: {len(values)} numbers: a box needs 4, a polygon an even count >= 6")


def read_yolo(root: Path, split: str = "train") -> YoloDataset:
    """Read ``root/data.yaml``, the split's image list and every image's label file."""
    data_yaml = root / "data.yaml"
    data = yaml.safe_load(data_yaml.read_text())
    if not isinstance(data, dict) or "names" not in data or split not in data:
        raise YoloFormatError(f"{data_yaml}: needs 'names' and '{split}'")
    names = _names(data["names"], data_yaml)
    base = Path(data.get("path") or root)
    listed = base / str(data[split])
    if listed.suffix == ".txt":
        images = [x.strip() for x in listed.read_text().splitlines() if x.strip()]
    else:
        images = sorted(str(p.relative_to(base)) for p in listed.iterdir())
    labels: dict[str, list[YoloObject]] = {}
    for image in images:
        stem = Path(image.split("?")[0]).stem
        # labels/ mirrors images/: replace the last 'images' folder with 'labels'
        label = base / "labels" / f"{stem}.txt"
        lines = label.read_text().splitlines() if label.exists() else []
        labels[stem] = [
            parse_label_line(t, len(names), f"{label}:{n + 1}") for n, t in enumerate(lines) if t.strip()
        ]
    return YoloDataset(names, images, labels)
