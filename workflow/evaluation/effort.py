"""Reviewer effort: what people would do to the pre-labels to reach the human labels, and how long
that takes against drawing every box from scratch.

Each pre-label (of an evaluated class) is matched to at most one labeled object, greedily by IoU:

- **kept**: same class, IoU >= ``keep_iou`` (people only look at it and accept it);
- **moved**: same class, ``match_iou`` <= IoU < ``keep_iou`` (people drag its edges);
- **relabeled**: another class, IoU >= ``match_iou`` (people change its class, costed as a move);
- **ignored**: on an ignored object or region (KITTI DontCare, a Van for Car): no cost either way;
- **deleted**: anything else (people delete a false box);

and each labeled object left unmatched is **added** (people draw it). Estimated time:
``kept * verify + (moved + relabeled) * adjust + deleted * delete + added * draw``, against
``labeled objects * draw`` from scratch.

The per-action seconds (:data:`DEFAULT_SECONDS`), and where they come from:

- ``draw`` 34.5 s: drawing one box with the standard crowd-sourcing protocol, including the
  quality and coverage checks it needs, as reported by Papadopoulos et al., "Extreme clicking for
  efficient object annotation", ICCV 2017 (after Su et al., 2012).
- ``adjust`` 7.0 s: the time of extreme clicking per box in the same paper (four extreme points).
  Correcting a roughly right box means placing its sides again, so we take that time. This is our
  assumption; nobody measured "adjust a pre-label" in that paper.
- ``verify`` 1.6 s: a yes/no verification of one box, Papadopoulos et al., "We don't need no
  bounding-boxes", CVPR 2016.
- ``delete`` 2.0 s: verify (1.6 s) plus a key press; our assumption.

``keep_iou`` is 0.7, the IoU KITTI asks of a correct car: a pre-label that close is accepted as
it is. (Two careful people boxing one object agree to roughly IoU 0.8-0.9, so a stricter value
would count boxes as moved that no reviewer would touch.)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from workflow.domain.boxes import box_iou
from workflow.domain.scorecard import greedy_matches
from workflow.evaluation.classes import ClassPlan
from workflow.evaluation.records import Box, GtFrame, PredFrame

MATCH_IOU = 0.5
KEEP_IOU = 0.7
IGNORE_INSIDE = 0.5  # share of a pre-label's area inside an ignore region that makes it ignored


@dataclass(frozen=True)
class ActionSeconds:
    """Seconds per reviewer action (see the module docstring for the sources)."""

    draw: float = 34.5
    adjust: float = 7.0
    verify: float = 1.6
    delete: float = 2.0


DEFAULT_SECONDS = ActionSeconds()


@dataclass
class EffortCounts:
    """What review does to the pre-labels of some frames (or one class)."""

    labeled: int = 0
    prelabels: int = 0
    kept: int = 0
    moved: int = 0
    relabeled: int = 0
    deleted: int = 0
    added: int = 0
    ignored: int = 0

    def add(self, other: EffortCounts) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def seconds(self, s: ActionSeconds) -> float:
        """Estimated reviewer time with these pre-labels."""
        return (
            self.kept * s.verify
            + (self.moved + self.relabeled) * s.adjust
            + self.deleted * s.delete
            + self.added * s.draw
        )


@dataclass(frozen=True)
class EffortReport:
    """Effort over all frames and per labeled class; ``saved`` is 1 - with / from scratch."""

    total: EffortCounts
    per_class: dict[str, EffortCounts]
    frames: int
    seconds: ActionSeconds = DEFAULT_SECONDS
    min_score: float = 0.0
    thresholds: dict[str, float] = field(default_factory=dict)

    @property
    def seconds_with(self) -> float:
        return self.total.seconds(self.seconds)

    @property
    def seconds_scratch(self) -> float:
        return self.total.labeled * self.seconds.draw

    @property
    def saved(self) -> float | None:
        scratch = self.seconds_scratch
        return None if scratch == 0 else 1.0 - self.seconds_with / scratch

    def to_dict(self) -> dict[str, Any]:
        return {
            "frames": self.frames,
            "min_score": self.min_score,
            "thresholds": dict(self.thresholds),
            "seconds_per_action": asdict(self.seconds),
            "total": asdict(self.total),
            "per_class": {k: asdict(v) for k, v in self.per_class.items()},
            "seconds_with_prelabels": round(self.seconds_with, 1),
            "seconds_from_scratch": round(self.seconds_scratch, 1),
            "effort_saved": None if self.saved is None else round(self.saved, 4),
        }


def _inside(boxes: np.ndarray, regions: list[Box]) -> np.ndarray:
    """Per box, the largest share of its area inside one of the regions."""
    if not regions or len(boxes) == 0:
        return np.zeros(len(boxes))
    r = np.asarray(regions, np.float64)
    lt = np.maximum(boxes[:, None, :2], r[None, :, :2])
    rb = np.minimum(boxes[:, None, 2:], r[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0, None), axis=1)
    return (inter / np.maximum(area[:, None], 1e-9)).max(axis=1)


def frame_effort(
    gt: GtFrame,
    pred: PredFrame | None,
    plan: ClassPlan,
    ignore_as: Mapping[str, str],
    keep_iou: float = KEEP_IOU,
) -> dict[str, EffortCounts]:
    """Per evaluated class, what review does to one frame's pre-labels (already filtered by score)."""
    evaluated = set(plan.classes)
    objects, ignored_objects = [], []
    for obj in gt.objects:
        name = obj.class_name if obj.class_name in evaluated else ignore_as.get(obj.class_name)
        if name not in evaluated:
            continue
        (ignored_objects if obj.ignore or name != obj.class_name else objects).append((name, obj.box))
    preds = [(plan.mapping[o.class_name], o.box) for o in (pred.objects if pred else [])
             if plan.mapping.get(o.class_name) in evaluated]  # fmt: skip
    counts = {name: EffortCounts() for name in plan.classes}
    for name, _ in objects:
        counts[name].labeled += 1
    for name, _ in preds:
        counts[name].prelabels += 1
    p_boxes = np.asarray([b for _, b in preds], np.float64).reshape(-1, 4)
    g_boxes = np.asarray([b for _, b in objects], np.float64).reshape(-1, 4)
    p_cls, g_cls = np.asarray([n for n, _ in preds]), np.asarray([n for n, _ in objects])
    iou = box_iou(p_boxes, g_boxes) if len(preds) and len(objects) else np.zeros((len(preds), len(objects)))
    same = p_cls[:, None] == g_cls[None, :] if len(preds) and len(objects) else np.zeros(iou.shape, bool)
    matched = greedy_matches(iou, same, MATCH_IOU)
    for m in matched:
        row = counts[preds[m.prelabel][0]]
        if m.iou >= keep_iou:
            row.kept += 1
        else:
            row.moved += 1
    free_p = np.ones(len(preds), bool)
    free_g = np.ones(len(objects), bool)
    for m in matched:
        free_p[m.prelabel], free_g[m.reviewed] = False, False
    relabel = greedy_matches(iou, ~same & free_p[:, None] & free_g[None, :], MATCH_IOU)
    for m in relabel:
        counts[objects[m.reviewed][0]].relabeled += 1
        free_p[m.prelabel], free_g[m.reviewed] = False, False
    ignored = _ignored(p_boxes, p_cls, ignored_objects, gt.ignore_regions) & free_p
    for i in np.flatnonzero(ignored):
        counts[preds[i][0]].ignored += 1
    for i in np.flatnonzero(free_p & ~ignored):
        counts[preds[i][0]].deleted += 1
    for j in np.flatnonzero(free_g):
        counts[objects[j][0]].added += 1
    return counts


def _ignored(p_boxes: np.ndarray, p_cls: np.ndarray, ignored_objects: list[tuple[str, Box]],
             regions: list[Box]) -> np.ndarray:  # fmt: skip
    out = _inside(p_boxes, regions) >= IGNORE_INSIDE
    if ignored_objects and len(p_boxes):
        boxes = np.asarray([b for _, b in ignored_objects], np.float64)
        names = np.asarray([n for n, _ in ignored_objects])
        out |= ((box_iou(p_boxes, boxes) >= MATCH_IOU) & (p_cls[:, None] == names[None, :])).any(axis=1)
    return out


def filter_scores(
    preds: Mapping[str, PredFrame], plan: ClassPlan, min_score: float, thresholds: Mapping[str, float]
) -> dict[str, PredFrame]:
    """The pre-labels people would see: score >= the threshold of their evaluated class."""
    out = {}
    for stem, frame in preds.items():
        objects = [o for o in frame.objects
                   if o.score >= thresholds.get(plan.mapping.get(o.class_name, ""), min_score)]  # fmt: skip
        out[stem] = PredFrame(stem, objects)
    return out


def effort(
    gt: Mapping[str, GtFrame],
    preds: Mapping[str, PredFrame],
    plan: ClassPlan,
    ignore_as: Mapping[str, str] | None = None,
    min_score: float = 0.0,
    thresholds: Mapping[str, float] | None = None,
    seconds: ActionSeconds = DEFAULT_SECONDS,
) -> EffortReport:
    """Reviewer effort over the labeled frames (predictions of unlabeled frames are not counted)."""
    shown = filter_scores(preds, plan, min_score, thresholds or {})
    total, per_class = EffortCounts(), {name: EffortCounts() for name in plan.classes}
    for stem, frame in gt.items():
        for name, counts in frame_effort(frame, shown.get(stem), plan, ignore_as or {}).items():
            per_class[name].add(counts)
            total.add(counts)
    return EffortReport(total, per_class, len(gt), seconds, min_score, dict(thresholds or {}))


def format_effort(report: EffortReport) -> str:
    """A plain-text table of the effort report."""
    cols = ("labeled", "prelabels", "kept", "moved", "relabeled", "deleted", "added", "ignored")
    width = max([5, *(len(n) for n in report.per_class)])
    lines = [f"{'class':<{width}}  " + "  ".join(f"{c:>9}" for c in cols)]
    rows = [*report.per_class.items(), ("all", report.total)]
    for name, counts in rows:
        lines.append(f"{name:<{width}}  " + "  ".join(f"{getattr(counts, c):>9}" for c in cols))
    s = report.seconds
    saved = "-" if report.saved is None else f"{100 * report.saved:.1f} %"
    lines.append(
        f"reviewer time: {report.seconds_with:.0f} s with pre-labels vs {report.seconds_scratch:.0f} s "
        f"from scratch: effort saved {saved}"
    )
    lines.append(
        f"(seconds per action: draw {s.draw}, adjust {s.adjust}, verify {s.verify}, delete {s.delete}; "
        f"kept = IoU >= {KEEP_IOU}; pre-labels with score >= {report.min_score})"
    )
    return "\n".join(lines)
