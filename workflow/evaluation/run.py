"""Evaluate prediction files against ground-truth files: the whole of ``autolabel eval``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from workflow.evaluation.classes import COCO_TO_KITTI, ClassPlan, plan_classes
from workflow.evaluation.coco_eval import EvalReport, evaluate
from workflow.evaluation.effort import ActionSeconds, EffortReport, effort
from workflow.evaluation.kitti import KITTI_NEIGHBOURS
from workflow.evaluation.readers import PredictionSet, read_ground_truth, read_predictions
from workflow.evaluation.records import GtFrame


@dataclass(frozen=True)
class EvalInputs:
    """Both sides read, and the classes decided."""

    gt: dict[str, GtFrame]
    predictions: PredictionSet
    plan: ClassPlan
    ignore_as: dict[str, str]
    is_kitti: bool


def read_eval_inputs(
    pred_path: Path, gt_path: Path, gt_format: str | None = None, class_map: Mapping[str, str] | None = None
) -> EvalInputs:
    """Read predictions and labels and plan the classes.

    With KITTI labels and no class map, COCO detector names are mapped onto KITTI types
    (car->Car, person->Pedestrian, bicycle->Cyclist, truck->Truck, train->Tram), and Van /
    Person_sitting labels are ignored in Car / Pedestrian as the KITTI devkit does. With COCO
    labels and no class map, every labeled category is evaluated.
    """
    gt, index = read_ground_truth(gt_path, gt_format)
    is_kitti = index is None
    predictions = read_predictions(pred_path, index, set(gt))
    pred_names = {o.class_name for f in predictions.frames.values() for o in f.objects}
    gt_names = {o.class_name for f in gt.values() for o in f.objects}
    plan = plan_classes(
        pred_names,
        gt_names,
        class_map=class_map,
        default_map=COCO_TO_KITTI if is_kitti else None,
        all_gt_classes=not is_kitti and not class_map,
    )
    return EvalInputs(gt, predictions, plan, dict(KITTI_NEIGHBOURS) if is_kitti else {}, is_kitti)


def evaluate_files(
    pred_path: Path,
    gt_path: Path,
    gt_format: str | None = None,
    class_map: Mapping[str, str] | None = None,
    iou_type: str = "bbox",
    max_dets: int = 100,
) -> EvalReport:
    """Read both sides, decide the classes (see :func:`read_eval_inputs`), and compute COCO-style AP."""
    inputs = read_eval_inputs(pred_path, gt_path, gt_format, class_map)
    if inputs.is_kitti and iou_type != "bbox":
        raise ValueError("KITTI labels have boxes only; use --iou-type bbox")
    return evaluate(
        inputs.gt,
        inputs.predictions.frames,
        inputs.plan,
        ignore_as=inputs.ignore_as or None,
        iou_type=iou_type,
        max_dets=max_dets,
        failed_frames=tuple(inputs.predictions.failed),
    )


def effort_files(
    pred_path: Path,
    gt_path: Path,
    gt_format: str | None = None,
    class_map: Mapping[str, str] | None = None,
    min_score: float = 0.0,
    thresholds: Mapping[str, float] | None = None,
    seconds: ActionSeconds | None = None,
) -> EffortReport:
    """Reviewer effort of the pre-labels scoring at least ``min_score`` (or their class threshold)."""
    inputs = read_eval_inputs(pred_path, gt_path, gt_format, class_map)
    return effort(
        inputs.gt,
        inputs.predictions.frames,
        inputs.plan,
        inputs.ignore_as,
        min_score=min_score,
        thresholds=thresholds,
        seconds=seconds or ActionSeconds(),
    )
