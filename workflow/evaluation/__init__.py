"""Evaluation of predictions against human labels (COCO json or KITTI label_2): COCO-style AP."""

from workflow.evaluation.classes import COCO_TO_KITTI, ClassPlan, parse_class_map, plan_classes
from workflow.evaluation.coco_eval import ClassResult, EvalReport, evaluate, format_report
from workflow.evaluation.run import evaluate_files

__all__ = [
    "COCO_TO_KITTI",
    "ClassPlan",
    "ClassResult",
    "EvalReport",
    "evaluate",
    "evaluate_files",
    "format_report",
    "parse_class_map",
    "plan_classes",
]
