"""Which predicted class counts as which labeled class, and which classes are evaluated.

Names match case-insensitively, so ``person=pedestrian`` maps onto KITTI's ``Pedestrian``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# COCO-80 detector names onto KITTI types; a COCO "bicycle" box is the nearest thing to a KITTI
# "Cyclist" (rider and bike) that a COCO model gives.
COCO_TO_KITTI = {
    "car": "Car",
    "person": "Pedestrian",
    "bicycle": "Cyclist",
    "truck": "Truck",
    "train": "Tram",
}


def parse_class_map(text: str) -> dict[str, str]:
    """``"person=Pedestrian,car=Car"`` -> ``{"person": "Pedestrian", "car": "Car"}``."""
    mapping = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        source, sep, target = (s.strip() for s in item.partition("="))
        if not sep or not source or not target:
            raise ValueError(f"class map entries are PRED=GT, got {item!r}")
        mapping[source] = target
    return mapping


@dataclass(frozen=True)
class ClassPlan:
    """Predicted name -> evaluated name, and the evaluated classes in report order."""

    mapping: dict[str, str]
    classes: tuple[str, ...]
    unmapped: tuple[str, ...]  # predicted names that count for nothing


def _canonical(name: str, gt_names: Iterable[str]) -> str:
    """The ground truth's spelling of ``name`` when it has one (case-insensitive)."""
    by_lower = {g.lower(): g for g in gt_names}
    return by_lower.get(name.lower(), name)


def plan_classes(
    pred_names: Iterable[str],
    gt_names: Iterable[str],
    class_map: Mapping[str, str] | None = None,
    default_map: Mapping[str, str] | None = None,
    all_gt_classes: bool = False,
) -> ClassPlan:
    """Resolve each predicted name: the given map, else the default map (only when no map is
    given), else the same name in the ground truth. The evaluated classes are the map's targets,
    the names matched as they are, and every ground truth class when ``all_gt_classes``."""
    gt = sorted(set(gt_names))
    active = {k.lower(): _canonical(v, gt) for k, v in (class_map or default_map or {}).items()}
    by_lower = {g.lower(): g for g in gt}
    mapping, unmapped = {}, []
    for name in sorted(set(pred_names)):
        target = active.get(name.lower()) or by_lower.get(name.lower())
        if target:
            mapping[name] = target
        else:
            unmapped.append(name)
    classes = set(active.values()) | set(mapping.values()) | (set(gt) if all_gt_classes else set())
    return ClassPlan(mapping, tuple(sorted(classes)), tuple(unmapped))
