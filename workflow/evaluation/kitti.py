"""KITTI object ``label_2`` files: one object per line, 15 fields (+ a score in predictions).

``type truncated occluded alpha x1 y1 x2 y2 h w l x y z ry [score]``; types are Car, Van, Truck,
Pedestrian, Person_sitting, Cyclist, Tram, Misc and DontCare (regions left unlabeled, in which
detections are neither right nor wrong).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workflow.evaluation.records import Box, GtFrame, GtObject, PredFrame, PredObject

KITTI_CLASSES = ("Car", "Van", "Truck", "Pedestrian", "Person_sitting", "Cyclist", "Tram", "Misc")
DONT_CARE = "DontCare"
# The KITTI devkit neither rewards nor punishes a Car detection on a Van (or a Pedestrian
# detection on a Person_sitting): those labels are ignored in that class's evaluation.
KITTI_NEIGHBOURS = {"Van": "Car", "Person_sitting": "Pedestrian"}


@dataclass(frozen=True)
class KittiObject:
    """One line of a KITTI label file."""

    type: str
    truncated: float
    occluded: int
    alpha: float
    box: Box
    dimensions: tuple[float, float, float]  # height, width, length (m)
    location: tuple[float, float, float]  # x, y, z in camera coordinates (m)
    rotation_y: float
    score: float | None = None


def parse_kitti_line(line: str) -> KittiObject:
    """Parse one label line; raise ValueError naming what is wrong."""
    fields = line.split()
    if len(fields) not in (15, 16):
        raise ValueError(f"a KITTI label line has 15 or 16 fields, this one has {len(fields)}: {line!r}")
    try:
        v = [float(f) for f in fields[1:]]
    except ValueError as exc:
        raise ValueError(f"non-numeric KITTI field in {line!r}") from exc
    return KittiObject(
        type=fields[0],
        truncated=v[0],
        occluded=int(v[1]),
        alpha=v[2],
        box=(v[3], v[4], v[5], v[6]),
        dimensions=(v[7], v[8], v[9]),
        location=(v[10], v[11], v[12]),
        rotation_y=v[13],
        score=v[14] if len(v) == 15 else None,
    )


def read_kitti_file(path: Path) -> list[KittiObject]:
    """All objects of one label file (blank lines skipped)."""
    objects = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                objects.append(parse_kitti_line(line))
            except ValueError as exc:
                raise ValueError(f"{path}:{number}: {exc}") from exc
    return objects


def read_kitti_labels(path: Path) -> dict[str, list[KittiObject]]:
    """Label files of a ``label_2`` folder (or one file), keyed by file stem."""
    files = sorted(path.glob("*.txt")) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"no KITTI .txt label files in {path}")
    return {f.stem: read_kitti_file(f) for f in files}


def kitti_ground_truth(path: Path) -> dict[str, GtFrame]:
    """Ground truth frames from KITTI labels: DontCare lines become ignore regions."""
    frames = {}
    for stem, objects in read_kitti_labels(path).items():
        frame = GtFrame(stem)
        for obj in objects:
            if obj.type == DONT_CARE:
                frame.ignore_regions.append(obj.box)
            else:
                frame.objects.append(GtObject(obj.type, obj.box))
        frames[stem] = frame
    return frames


def kitti_predictions(path: Path) -> dict[str, PredFrame]:
    """Predictions written in KITTI format (16th field = score; missing score = 1)."""
    return {
        stem: PredFrame(
            stem,
            [
                PredObject(o.type, o.box, 1.0 if o.score is None else o.score)
                for o in objects
                if o.type != DONT_CARE
            ],
        )
        for stem, objects in read_kitti_labels(path).items()
    }
