"""Pre-label quality per inference mode, model, fusion and profile: AP50, AP50:95, reviewer effort
saved, and CPU per frame, on the human-labeled frames of ../shared.

Frames and labels (never copied into the repository): KITTI ``image_2`` 000000, 000007, 000008 with
``label_2`` (000000, 000008; DontCare ignored, Van ignored in Car) and the COCO json of 000007 (three
distant cars of 18-50 px and a cyclist). Evaluated: KITTI Car, Pedestrian, Cyclist (taxonomy car,
pedestrian, bicycle). Effort: ``workflow.evaluation.effort`` (kept / moved / deleted / added, seconds
per action documented there), for the pre-labels people would see: at a score floor for single
models (the best floor of a sweep is shown too), at the profile's own thresholds for profiles.
CPU: ``time.process_time`` per frame (one onnxruntime thread, so no spinning workers count) on the
labeled KITTI frames, and on a nuScenes front-camera frame upscaled to 1600x900 (the size of the
held-out road frames).

    .venv/bin/python -m bench.quality          # table on stdout, bench-out/quality.json

Eleven labeled objects in three frames: the figures show the direction of an effect, not its size.
``--shrink 0.6`` replays the same scenes at 0.6 of their size inside frames of the original size
(the held-out road frames have smaller, more distant road users than these KITTI frames).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.fusion_quality import TAXONOMY_TO_KITTI, LabeledFrame, labeled_frames, pred_frame
from workflow.domain.detections import Detections
from workflow.domain.fusion import FusionMethod, ModelOutput, fuse
from workflow.domain.profile import LabelingProfile, default_profile, load_profile
from workflow.evaluation.calibration import NEVER, apply_rule, judge_frame, threshold_for
from workflow.evaluation.classes import plan_classes
from workflow.evaluation.coco_eval import evaluate
from workflow.evaluation.effort import effort
from workflow.evaluation.kitti import KITTI_NEIGHBOURS
from workflow.evaluation.records import GtFrame, GtObject

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench-out"
NUSCENES = ROOT / ".." / "shared" / "data" / "nuscenes_cam_front_sequence" / "frames" / "000.jpg"
CLASSES = ("Car", "Pedestrian", "Cyclist")
# One onnxruntime thread: CPU time is then compute only (idle worker threads spin and would count)
THREADS = 1
TARGETS = (0.95, 0.9)  # calibration: target precisions of auto-accepted boxes
SWEEP = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
DISPLAY_FLOOR = 0.3  # the score floor shown in the single-model rows (the default profile's min_score)
# name -> inference settings (every one at score 0.05 unless it says otherwise)
MODES: dict[str, dict[str, Any]] = {
    "letterbox, threshold 0.3 (old default)": {"tiling": False, "score_threshold": 0.3},
    "letterbox": {"tiling": False},
    "tiles = input, whole frame": {
        "tiling": True,
        "tile_size": None,
        "tile_band": None,
        "_input_tiles": True,
    },
    "tiles 0.77 input, whole frame": {"tiling": True, "tile_band": None},
    "auto: tiles 0.77 input on the horizon band (default)": {},
    "auto + flip TTA": {"flip_tta": True},
}
MODELS = ("nanodet-coco", "centernet-coco")
FUSIONS: list[tuple[str, FusionMethod]] = [("wbf", "wbf"), ("nms", "nms")]


def _settings(model: str, mode: dict[str, Any]) -> Any:
    from workflow.inference.settings import InferenceSettings

    values = {k: v for k, v in mode.items() if not k.startswith("_")}
    if mode.get("_input_tiles"):
        values["tile_size"] = 512 if model.startswith("centernet") else 416
    return InferenceSettings(**values, intra_op_num_threads=THREADS)


SHRINK: float | None = None  # --shrink: objects made smaller (see shrunk())


def shrunk(frame: LabeledFrame, scale: float) -> tuple[np.ndarray, GtFrame]:
    """The frame scaled by ``scale`` and pasted in the middle of a grey canvas of its own size, with
    its labels moved along: the same scenes with smaller, more distant-looking objects."""
    from PIL import Image

    image = Image.open(frame.path).convert("RGB")
    small = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", image.size, (114, 114, 114))
    ox, oy = (image.width - small.width) // 2, (image.height - small.height) // 2
    canvas.paste(small, (ox, oy))

    def move(b: Any) -> Any:
        return (b[0] * scale + ox, b[1] * scale + oy, b[2] * scale + ox, b[3] * scale + oy)

    truth = frame.truth
    objects = [GtObject(o.class_name, move(o.box), o.ignore) for o in truth.objects]
    return np.asarray(canvas), GtFrame(truth.stem, objects, [move(r) for r in truth.ignore_regions])


def bench_frames() -> list[LabeledFrame]:
    """The labeled frames, their labels moved when --shrink is given."""
    frames = labeled_frames()
    if SHRINK is None:
        return frames
    return [LabeledFrame(f.path, shrunk(f, SHRINK)[1]) for f in frames]


def _pixels(frame: LabeledFrame) -> np.ndarray:
    from workflow.inference.images import decode_image

    if SHRINK is not None:
        return shrunk(frame, SHRINK)[0]
    return decode_image(frame.path.read_bytes(), str(frame.path))


def _timed_predict(detector: Any, frames: Sequence[LabeledFrame]) -> tuple[dict[str, Detections], float]:
    images = {f.truth.stem: _pixels(f) for f in frames}
    detector.predict(next(iter(images.values())))  # warm-up
    cpu = time.process_time()
    out = {stem: detector.predict(image, stem) for stem, image in images.items()}
    return out, (time.process_time() - cpu) * 1000 / len(images)


def _cpu_1600(detector: Any, repeats: int = 2) -> float | None:
    if not NUSCENES.is_file():
        return None
    from PIL import Image

    image = np.asarray(Image.open(NUSCENES).convert("RGB").resize((1600, 900), Image.Resampling.BILINEAR))
    detector.predict(image)
    cpu = time.process_time()
    for _ in range(repeats):
        detector.predict(image)
    return (time.process_time() - cpu) * 1000 / repeats


def _taxonomy(profile: LabelingProfile, model: str, dets: Detections, apply_thresholds: bool) -> ModelOutput:
    mapping = profile.mapping(model)
    mapped, _ = profile.class_map(model).apply(dets)
    if apply_thresholds:
        keep = np.array(
            [s >= mapping.threshold(n) for n, s in zip(mapped.class_names, mapped.scores, strict=True)]
        )
        mapped = mapped.select(keep.astype(np.bool_).reshape(-1))
    return ModelOutput(model, mapped, mapping.weight, dict(mapping.class_weights), mapping.covers())


def quality(
    frames: Sequence[LabeledFrame], preds: dict[str, Detections], floor: float | None
) -> dict[str, Any]:
    """AP over the frames, and the effort of the pre-labels scoring >= ``floor`` (None: all, plus a sweep)."""
    truth = {f.truth.stem: f.truth for f in frames}
    records = {s: pred_frame(s, d) for s, d in preds.items()}
    names = [TAXONOMY_TO_KITTI.get(n, n) for d in preds.values() for n in d.class_names]
    plan = plan_classes(names, CLASSES, class_map={k: k for k in CLASSES})
    report = evaluate(truth, records, plan, ignore_as=KITTI_NEIGHBOURS)
    row: dict[str, Any] = {"map50": report.map50, "map": report.map}
    shown = effort(truth, records, plan, KITTI_NEIGHBOURS, min_score=floor or 0.0)
    row["effort"] = shown.to_dict()
    row["effort_saved"] = shown.saved
    if floor is not None:
        sweep = {t: effort(truth, records, plan, KITTI_NEIGHBOURS, min_score=t).saved for t in SWEEP}
        best = max(sweep, key=lambda t: sweep[t] or -1.0)
        row["effort_sweep"] = sweep
        row["best_floor"], row["best_effort_saved"] = best, sweep[best]
    return row


def calibration(
    frames: Sequence[LabeledFrame], preds: dict[str, Detections], target: float
) -> dict[str, Any]:
    """Per-class accept thresholds at ``target`` precision on these frames, and the share of frames
    auto-accepted with them (measured on the same frames: in-sample, optimistic)."""
    records = {s: pred_frame(s, d) for s, d in preds.items()}
    names = {o.class_name for f in records.values() for o in f.objects}
    plan = plan_classes(names, CLASSES, class_map={k: k for k in CLASSES})
    taxonomy_of = {kitti: taxonomy for taxonomy, kitti in TAXONOMY_TO_KITTI.items()}
    judged = [
        judge_frame(f.truth, records.get(f.truth.stem), plan, KITTI_NEIGHBOURS, taxonomy_of) for f in frames
    ]
    per_class: dict[str, list[Any]] = {}
    for frame in judged:
        for box in frame.boxes:
            per_class.setdefault(box.class_name, []).append(box)
    accept = {name: threshold_for(boxes, target)[0] for name, boxes in per_class.items()}
    rule = apply_rule(judged, accept)
    return {
        "target": target,
        "accept_scores": {k: (None if v >= NEVER else round(v, 3)) for k, v in accept.items()},
        "auto_frames": rule.auto_frames,
        "frames": len(judged),
        "precision": rule.precision,
        "boxes": rule.boxes,
        "missed_in_auto": rule.missed,
    }


def run(models: Sequence[str] = MODELS, with_profiles: bool = True) -> dict[str, Any]:
    """Every mode of every model, their fusions, and every profile; the rows of the table."""
    from workflow.domain.errors import ModelNotProvisioned
    from workflow.inference.runner import load_detector

    frames = bench_frames()
    default = default_profile()
    rows: list[dict[str, Any]] = []
    outputs: dict[tuple[str, str], dict[str, ModelOutput]] = {}
    for model in models:
        for mode, values in MODES.items():
            try:
                detector = load_detector(model, _settings(model, values))
            except ModelNotProvisioned as exc:
                print(f"skipping {model}: {exc}")
                break
            raw, cpu = _timed_predict(detector, frames)
            # the default profile maps NanoDet by its own entry and any other COCO model by other_models
            mapped = {s: _taxonomy(default, model, d, False) for s, d in raw.items()}
            outputs[(model, mode)] = mapped
            row = quality(frames, {s: o.detections for s, o in mapped.items()}, DISPLAY_FLOOR)
            row.update(
                kind="model",
                name=f"{model} | {mode}",
                cpu_ms_per_frame=cpu,
                cpu_ms_1600x900=_cpu_1600(detector),
            )
            rows.append(row)
            _print_row(row)
    default_mode = "auto: tiles 0.77 input on the horizon band (default)"
    if all((m, default_mode) in outputs for m in ("nanodet-coco", "centernet-coco")):
        for label, method in FUSIONS:
            pair = ("nanodet-coco", "centernet-coco")
            fused = {
                f.truth.stem: fuse([outputs[(m, default_mode)][f.truth.stem] for m in pair], method, 0.55)
                for f in frames
            }
            row = quality(frames, fused, DISPLAY_FLOOR)
            row.update(kind="fusion", name=f"nanodet + centernet ({label}), both auto")
            rows.append(row)
            _print_row(row)
    if with_profiles:
        for path in sorted((ROOT / "profiles").glob("*.yaml")):
            row = profile_row(load_profile(path), frames)
            if row is not None:
                rows.append(row)
                _print_row(row)
    return {"frames": [f.truth.stem for f in frames], "display_floor": DISPLAY_FLOOR, "rows": rows}


def profile_row(profile: LabelingProfile, frames: Sequence[LabeledFrame]) -> dict[str, Any] | None:
    """A profile as a run applies it: each model with its local inference settings, mapped and
    thresholded by the profile, fused by its fusion settings."""
    from workflow.domain.errors import ModelNotProvisioned
    from workflow.inference.runner import load_detector
    from workflow.inference.settings import InferenceSettings

    per_model, cpu_total, cpu_1600 = [], 0.0, 0.0
    for m in profile.models:
        try:
            settings = InferenceSettings(**{**m.local_inference, "intra_op_num_threads": THREADS})
            detector = load_detector(m.local_model or m.name, settings)
        except ModelNotProvisioned as exc:
            print(f"skipping profile {profile.name}: {exc}")
            return None
        raw, cpu = _timed_predict(detector, frames)
        per_model.append({s: _taxonomy(profile, m.name, d, True) for s, d in raw.items()})
        cpu_total += cpu
        cpu_1600 += _cpu_1600(detector) or 0.0
    f = profile.fusion
    fused = {
        fr.truth.stem: fuse([o[fr.truth.stem] for o in per_model], f.method, f.iou, f.skip_score)
        for fr in frames
    }
    row = quality(frames, fused, None)
    row["calibration"] = [calibration(frames, fused, t) for t in TARGETS]
    row.update(
        kind="profile", name=f"profile {profile.name}", cpu_ms_per_frame=cpu_total, cpu_ms_1600x900=cpu_1600
    )
    return row


def _num(value: float | None, pct: bool = False) -> str:
    if value is None:
        return "  -  "
    return f"{100 * value:5.1f}%" if pct else f"{value:.3f}"


def _print_row(row: dict[str, Any]) -> None:
    cpu = row.get("cpu_ms_per_frame")
    cpu_text = f"{cpu:6.0f}" if cpu is not None else "     -"
    big = row.get("cpu_ms_1600x900")
    big_text = f"{big:6.0f}" if big else "     -"
    best = ""
    if "best_floor" in row:
        best = f"  best floor {row['best_floor']}: {_num(row['best_effort_saved'], True)}"
    total = row["effort"]["total"]
    counts = f"k{total['kept']} m{total['moved'] + total['relabeled']} d{total['deleted']} a{total['added']}"
    print(
        f"{row['name']:<66} {_num(row['map50'])} {_num(row['map'])} {_num(row['effort_saved'], True)} "
        f"{counts:<16} {cpu_text} {big_text}{best}",
        flush=True,
    )
    for cal in row.get("calibration", []):
        auto = f"{cal['auto_frames']} of {cal['frames']} frames auto-accepted"
        print(
            f"{'':<8}calibrated at precision {cal['target']}: accept from {cal['accept_scores']}; {auto}, "
            f"precision {_num(cal['precision'])} over {cal['boxes']} boxes, "
            f"{cal['missed_in_auto']} objects missed in them",
            flush=True,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS), help="none: profiles only")
    parser.add_argument("--no-profiles", action="store_true")
    parser.add_argument(
        "--shrink", type=float, default=None, metavar="S", help="scale the scenes by S (smaller objects)"
    )
    args = parser.parse_args(argv)
    global SHRINK
    SHRINK = args.shrink
    print(f"{'setting':<66} {'AP50':>5} {'AP50:95':>5} {'saved':>6} {'(kept/moved/del/added)':<16} "
          f"{'CPU ms':>6} {'@1600':>6}")  # fmt: skip
    print(f"{'':<66} {'':>5} {'':>5} (single models: boxes >= {DISPLAY_FLOOR}; profiles: their thresholds)")
    result = run(args.models, not args.no_profiles)
    OUT.mkdir(exist_ok=True)
    name = "quality.json" if SHRINK is None else f"quality-shrink{SHRINK}.json"
    result["shrink"] = SHRINK
    (OUT / name).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {OUT / name}")


if __name__ == "__main__":
    main()
