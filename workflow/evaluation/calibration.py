"""Per-class accept thresholds that reach a target precision on a labeled sample (``autolabel calibrate``).

Each pre-label people would see (score >= the profile's threshold for its class) is judged against
the human labels: correct when it overlaps an unmatched labeled object of its class with IoU >= 0.5
(boxes taken best score first, as COCO evaluation does); pre-labels on ignored objects or regions
(KITTI DontCare, a Van for Car) are left out. Per class, the accept threshold is the lowest score
from which the boxes' precision reaches the target; a class that never reaches it gets 1.01 (never
accepted unseen), and so does a class the labels cannot judge.

A frame is auto-accepted when it has a box and every box passes its class threshold. The expected
precision of auto-accepted frames is measured on the sample itself, with its size, under two rules:
per class (the calibration block) and one global score (``routing.accept_score``, the highest class
threshold, which is what routing applies today).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from workflow.domain.boxes import box_iou
from workflow.evaluation.classes import ClassPlan
from workflow.evaluation.effort import MATCH_IOU, _ignored
from workflow.evaluation.records import GtFrame, PredFrame

NEVER = 1.01  # an accept threshold no score reaches


@dataclass(frozen=True)
class JudgedBox:
    """One shown pre-label: its class (taxonomy name), score and whether the labels confirm it."""

    frame: str
    class_name: str
    score: float
    correct: bool


@dataclass
class FrameJudgement:
    """The judged pre-labels of one frame and how many labeled objects none of them found."""

    stem: str
    boxes: list[JudgedBox] = field(default_factory=list)
    missed: int = 0
    unjudged: list[tuple[str, float]] = field(default_factory=list)  # classes the labels cannot judge


def judge_frame(
    gt: GtFrame,
    pred: PredFrame | None,
    plan: ClassPlan,
    ignore_as: Mapping[str, str],
    taxonomy_of: Mapping[str, str],
) -> FrameJudgement:
    """Judge one frame's shown pre-labels (already filtered to what people see)."""
    evaluated = set(plan.classes)
    out = FrameJudgement(gt.stem)
    objects, ignored = [], []
    for obj in gt.objects:
        name = obj.class_name if obj.class_name in evaluated else ignore_as.get(obj.class_name)
        if name in evaluated:
            (ignored if obj.ignore or name != obj.class_name else objects).append((name, obj.box))
    judged = []
    for o in pred.objects if pred else []:
        target = plan.mapping.get(o.class_name)
        if target in evaluated:
            judged.append((target, o))
        else:
            out.unjudged.append((taxonomy_of.get(o.class_name, o.class_name), o.score))
    judged.sort(key=lambda item: -item[1].score)
    used: set[int] = set()
    g_boxes = np.asarray([b for _, b in objects], np.float64).reshape(-1, 4)
    p_boxes = np.asarray([o.box for _, o in judged], np.float64).reshape(-1, 4)
    p_cls = np.asarray([t for t, _ in judged])
    skip = _ignored(p_boxes, p_cls, ignored, gt.ignore_regions) if judged else np.zeros(0, bool)
    iou = box_iou(p_boxes, g_boxes) if len(judged) and len(objects) else np.zeros((len(judged), len(objects)))
    for i, (target, o) in enumerate(judged):
        candidates = [
            j for j, (n, _) in enumerate(objects) if n == target and j not in used and iou[i, j] >= MATCH_IOU
        ]
        if candidates:
            used.add(max(candidates, key=lambda j: iou[i, j]))
        elif skip[i]:
            continue
        name = taxonomy_of.get(o.class_name, o.class_name)
        out.boxes.append(JudgedBox(gt.stem, name, float(o.score), bool(candidates)))
    out.missed = len(objects) - len(used)
    return out


def threshold_for(boxes: Sequence[JudgedBox], target: float) -> tuple[float, float | None, int]:
    """The lowest score from which the boxes reach ``target`` precision: (score, precision, boxes)."""
    ordered = sorted(boxes, key=lambda b: -b.score)
    best: tuple[float, float | None, int] = (NEVER, None, 0)
    correct = 0
    for count, box in enumerate(ordered, 1):
        correct += box.correct
        is_last_of_score = count == len(ordered) or ordered[count].score < box.score
        if is_last_of_score and correct / count >= target:
            best = (box.score, correct / count, count)
    return best


@dataclass(frozen=True)
class FrameRule:
    """Auto-accepted frames under one rule, and what they were measured to hold."""

    auto_frames: int
    boxes: int
    correct: int
    missed: int

    @property
    def precision(self) -> float | None:
        return self.correct / self.boxes if self.boxes else None


def apply_rule(frames: Sequence[FrameJudgement], accept: Mapping[str, float]) -> FrameRule:
    """Frames whose every box (judged or not) passes its class threshold (classes not listed: never)."""
    auto = boxes = correct = missed = 0
    for f in frames:
        scores = [(b.class_name, b.score) for b in f.boxes] + f.unjudged
        if scores and all(s >= accept.get(name, NEVER) for name, s in scores):
            auto += 1
            boxes += len(f.boxes)
            correct += sum(b.correct for b in f.boxes)
            missed += f.missed
    return FrameRule(auto, boxes, correct, missed)
