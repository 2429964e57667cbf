"""``autolabel calibrate PRED GT --precision 0.95 --out profile.yaml``: per-class accept thresholds
that reach a target precision on a labeled sample, written into a profile with routing switched on.

See ``workflow.evaluation.calibration`` for how boxes are judged and thresholds chosen.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from workflow.domain.errors import ConfigurationError
from workflow.domain.profile import (
    Calibration,
    ClassCalibration,
    LabelingProfile,
    default_profile,
    load_profile,
)
from workflow.evaluation import parse_class_map
from workflow.evaluation.calibration import (
    NEVER,
    FrameJudgement,
    FrameRule,
    apply_rule,
    judge_frame,
    threshold_for,
)
from workflow.evaluation.records import PredFrame, PredObject
from workflow.evaluation.run import EvalInputs, read_eval_inputs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``autolabel calibrate``."""
    parser.add_argument(
        "pred",
        type=Path,
        help="predictions (as for `autolabel eval`): a folder of Detections "
        "JSON, a COCO results/dataset json or KITTI-format .txt files",
    )
    parser.add_argument("gt", type=Path, help="labels: a COCO json, or a KITTI label_2 folder or .txt file")
    parser.add_argument("--precision", type=float, default=0.95, help="target precision (default 0.95)")
    parser.add_argument("--out", type=Path, required=True, help="the calibrated profile (YAML) to write")
    parser.add_argument("--profile", type=Path, default=None, help="profile to calibrate (default: built-in)")
    parser.add_argument(
        "--model",
        default=None,
        help="profile model whose class map names the predictions (default: its first model)",
    )
    parser.add_argument("--gt-format", choices=("coco", "kitti"), help="default: coco for .json, else kitti")
    parser.add_argument(
        "--class-map",
        type=parse_class_map,
        metavar="PRED=GT,...",
        help="predicted class -> labeled class (as for `autolabel eval`)",
    )


def _taxonomy_names(profile: LabelingProfile, model: str | None, names: set[str]) -> dict[str, str]:
    """Predicted class name -> taxonomy class (the profile drops the others)."""
    chosen = model or (profile.models[0].name if profile.models else "")
    mapping = profile.mapping(chosen).class_map if (profile.model(chosen) or profile.other_models) else {}
    out = {}
    for name in names:
        if name in profile.taxonomy:
            out[name] = name
        elif name in mapping:
            out[name] = mapping[name]
    return out


def _shown(
    inputs: EvalInputs, profile: LabelingProfile, model: str | None, taxonomy_of: dict[str, str]
) -> dict[str, PredFrame]:
    """What people would see: predictions of taxonomy classes over the profile's thresholds."""
    chosen = model or (profile.models[0].name if profile.models else "")
    mapping = profile.mapping(chosen) if (profile.model(chosen) or profile.other_models) else None
    out = {}
    for stem, frame in inputs.predictions.frames.items():
        kept = [
            o
            for o in frame.objects
            if o.class_name in taxonomy_of
            and (mapping is None or o.score >= mapping.threshold(taxonomy_of[o.class_name]))
        ]
        out[stem] = PredFrame(stem, [PredObject(o.class_name, o.box, o.score, o.mask) for o in kept])
    return out


def calibrate(
    inputs: EvalInputs, profile: LabelingProfile, target: float, model: str | None, source: str
) -> tuple[LabelingProfile, list[FrameJudgement], FrameRule, FrameRule]:
    """The profile with its calibration block and routing, the judged frames and both rules' outcome."""
    names = {o.class_name for f in inputs.predictions.frames.values() for o in f.objects}
    taxonomy_of = _taxonomy_names(profile, model, names)
    shown = _shown(inputs, profile, model, taxonomy_of)
    frames = [
        judge_frame(gt, shown.get(stem), inputs.plan, inputs.ignore_as, taxonomy_of)
        for stem, gt in sorted(inputs.gt.items())
    ]
    per_class: dict[str, list[Any]] = defaultdict(list)
    for f in frames:
        for box in f.boxes:
            per_class[box.class_name].append(box)
    labeled = _labeled_per_taxonomy_class(inputs, taxonomy_of)
    classes = {}
    for name in sorted(per_class):
        score, precision, count = threshold_for(per_class[name], target)
        classes[name] = ClassCalibration(
            accept_score=min(score, 1.0) if score < NEVER else 1.0,
            precision=precision,
            boxes=count,
            labeled=labeled.get(name, 0),
        )
    accept = {n: (c.accept_score if c.precision is not None else NEVER) for n, c in classes.items()}
    per_class_rule = apply_rule(frames, accept)
    reached = [v for v in accept.values() if v < NEVER]
    global_score = max(reached) if reached else 1.0
    global_rule = apply_rule(
        frames, dict.fromkeys(profile.taxonomy.names, global_score if reached else NEVER)
    )
    calibration = Calibration(
        target_precision=target,
        classes=classes,
        expected_precision=per_class_rule.precision,
        sample_frames=len(frames),
        sample_boxes=sum(len(f.boxes) for f in frames),
        auto_accepted_frames=per_class_rule.auto_frames,
        source=source,
    )
    routing = profile.routing.model_copy(
        update={
            "enabled": True,
            "accept_score": global_score,
            "verify_score": None
            if (profile.routing.verify_score or 0) > global_score
            else profile.routing.verify_score,
        }
    )
    calibrated = profile.model_copy(update={"calibration": calibration, "routing": routing})
    return calibrated, frames, per_class_rule, global_rule


def _labeled_per_taxonomy_class(inputs: EvalInputs, taxonomy_of: dict[str, str]) -> dict[str, int]:
    """Labeled objects per taxonomy class (through the evaluation's class plan)."""
    gt_to_taxonomy = {inputs.plan.mapping[p]: t for p, t in taxonomy_of.items() if p in inputs.plan.mapping}
    counts: dict[str, int] = defaultdict(int)
    for frame in inputs.gt.values():
        for obj in frame.objects:
            if obj.class_name in gt_to_taxonomy and not obj.ignore:
                counts[gt_to_taxonomy[obj.class_name]] += 1
    return dict(counts)


def _describe(rule: FrameRule, frames: int, label: str) -> str:
    share = f"{100 * rule.auto_frames / frames:.0f} %" if frames else "-"
    precision = "-" if rule.precision is None else f"{rule.precision:.3f}"
    return (
        f"{label}: {rule.auto_frames} of {frames} frames auto-accepted ({share}); precision of their "
        f"boxes {precision} over {rule.boxes} boxes; {rule.missed} labeled objects missed in them"
    )


def run(args: argparse.Namespace) -> int:
    """Calibrate, print the table, write the profile; 2 on unreadable input."""
    if not 0.0 < args.precision <= 1.0:
        print("autolabel calibrate: --precision must lie in (0, 1]", file=sys.stderr)
        return 2
    try:
        profile = load_profile(args.profile) if args.profile else default_profile()
        inputs = read_eval_inputs(args.pred, args.gt, args.gt_format, args.class_map)
        calibrated, frames, per_class, global_rule = calibrate(
            inputs, profile, args.precision, args.model, f"{args.pred} vs {args.gt}"
        )
    except (ConfigurationError, ValueError, KeyError, OSError) as exc:
        print(f"autolabel calibrate: {exc}", file=sys.stderr)
        return 2
    assert calibrated.calibration is not None
    print(f"{'class':<14} {'labeled':>7} {'accept from':>11} {'precision':>9} {'boxes':>6}")
    for name, c in calibrated.calibration.classes.items():
        reached = "never" if c.precision is None else f"{c.accept_score:.3f}"
        precision = "-" if c.precision is None else f"{c.precision:.3f}"
        print(f"{name:<14} {c.labeled:>7} {reached:>11} {precision:>9} {c.boxes:>6}")
    print(
        f"target precision {args.precision}; {len(frames)} labeled frames, "
        f"{calibrated.calibration.sample_boxes} shown pre-labels judged"
    )
    print(_describe(per_class, len(frames), "per-class thresholds"))
    print(
        _describe(
            global_rule, len(frames), f"one threshold ({calibrated.routing.accept_score:.3f}, routing today)"
        )
    )
    _write(calibrated, args.out)
    print(
        f"wrote {args.out} (routing on, accept_score {calibrated.routing.accept_score:.3f}, "
        "calibration block)"
    )
    return 0


def _write(profile: LabelingProfile, path: Path) -> None:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    source = profile.calibration.source if profile.calibration else ""
    header = f"# Calibrated by `autolabel calibrate` ({source})\n"
    path.write_text(header + yaml.safe_dump(profile.to_dict(), sort_keys=False, allow_unicode=True), "utf-8")
