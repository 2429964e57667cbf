"""How many frames routing auto-accepts, against how right the auto-accepted labels are.

Frames: the three human-labeled KITTI frames (see ``bench.fusion_quality``) and frames DERIVED
from them: five 414-pixel-wide crops of each (three side by side, two straddling), each run
through the models as a frame of its own, with the labels clipped to the crop (an object less
than half inside becomes an ignore region, as KITTI DontCare regions are). That is 18 frames but
only 10 distinct labeled objects: correlated samples, enough to show the shape of the trade-off,
not to set thresholds for production. No other labeled road frames are available here.

Labels are made as a run with ``profiles/two-models.yaml`` makes them (each model's class map and
score threshold, WBF), then routed with several policies (audit off). For the auto-accepted
frames: precision and recall of their boxes at IoU 0.5 against the human labels, over the classes
KITTI labels (car, truck, pedestrian, bicycle as Car, Truck, Pedestrian, Cyclist).

    .venv/bin/python -m bench.routing_tradeoff      # table on stdout, bench-out/routing_tradeoff.json
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from bench.fusion_quality import OUT, PROFILE, LabeledFrame, labeled_frames
from workflow.domain.boxes import box_iou
from workflow.domain.detections import Detections
from workflow.domain.fusion import fuse
from workflow.domain.profile import LabelingProfile, load_profile
from workflow.domain.routing import RoutingPolicy, route_frame
from workflow.evaluation.records import Box, GtFrame, GtObject
from workflow.steps.merge import model_output

EVALUATED = {"car": "Car", "truck": "Truck", "pedestrian": "Pedestrian", "bicycle": "Cyclist"}
CROP_WIDTH = 414
ACCEPT_SCORES = (0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
# (label set, min_support): both models fused, with and without requiring agreement; NanoDet alone
LABEL_SETS = (("two models (WBF)", 1.0), ("two models (WBF)", 0.5), ("nanodet alone", 1.0))


@dataclass(frozen=True)
class Sample:
    """One frame (whole or a crop): its image bytes and its human labels."""

    name: str
    image: bytes
    truth: GtFrame


def _clip(box: Box, x0: int, width: int) -> tuple[Box, float]:
    x1, y1, x2, y2 = box
    cx1, cx2 = max(x1, x0) - x0, min(x2, x0 + width) - x0
    inside = max(cx2 - cx1, 0.0) * max(y2 - y1, 0.0)
    whole = max(x2 - x1, 0.0) * max(y2 - y1, 0.0)
    return (cx1, y1, cx2, y2), inside / whole if whole else 0.0


def crop_sample(frame: LabeledFrame, image: Image.Image, x0: int) -> Sample:
    """A crop of a labeled frame, with labels clipped to it (see the module docstring)."""
    truth = GtFrame(f"{frame.truth.stem}-x{x0}", width=CROP_WIDTH, height=image.height)
    for obj in frame.truth.objects:
        box, share = _clip(obj.box, x0, CROP_WIDTH)
        if share >= 0.5:
            truth.objects.append(GtObject(obj.class_name, box, obj.ignore))
        elif share > 0:
            truth.ignore_regions.append(box)
    for region in frame.truth.ignore_regions:
        box, share = _clip(region, x0, CROP_WIDTH)
        if share > 0:
            truth.ignore_regions.append(box)
    buffer = io.BytesIO()
    image.crop((x0, 0, x0 + CROP_WIDTH, image.height)).save(buffer, "PNG")
    return Sample(truth.stem, buffer.getvalue(), truth)


def samples() -> list[Sample]:
    """The labeled frames and their crops."""
    found = []
    for frame in labeled_frames():
        data = frame.path.read_bytes()
        found.append(Sample(frame.truth.stem, data, frame.truth))
        image = Image.open(io.BytesIO(data)).convert("RGB")
        step = (image.width - CROP_WIDTH) // 4
        found.extend(crop_sample(frame, image, x0) for x0 in range(0, 5 * step, step))
    return found


def fused_labels(profile: LabelingProfile, frames: list[Sample]) -> list[tuple[Sample, Detections, dict]]:  # type: ignore[type-arg]
    """Each frame labeled as a run with the profile labels it: per-model maps and thresholds, fusion."""
    from workflow.inference.runner import load_detector
    from workflow.inference.settings import InferenceSettings

    detectors = {
        m.name: load_detector(m.local_model or m.name, InferenceSettings(**m.local_inference))
        for m in profile.models
    }
    labeled = []
    for sample in frames:
        outputs = []
        for name, detector in detectors.items():
            output, _ = model_output(
                detector.predict_bytes(sample.image, f"{sample.name}.png"), name, profile
            )
            outputs.append(output)
        fused = fuse(outputs, profile.fusion.method, profile.fusion.iou, profile.fusion.skip_score)
        labeled.append((sample, fused, {o.model: o.covers for o in outputs}))
    return labeled


def match(detections: Detections, truth: GtFrame, iou: float = 0.5) -> tuple[int, int, int]:
    """(true positives, false positives, labeled objects) over the evaluated classes."""
    tp = fp = 0
    objects = [o for o in truth.objects if not o.ignore]
    used: set[int] = set()
    order = np.argsort(-detections.scores, kind="stable")
    ignore = np.array(truth.ignore_regions + [o.box for o in truth.objects if o.ignore], np.float32).reshape(
        -1, 4
    )
    for i in order:
        kitti = EVALUATED.get(detections.class_names[i])
        if kitti is None:
            continue
        box = detections.boxes[i : i + 1]
        candidates = [j for j, o in enumerate(objects) if o.class_name == kitti and j not in used]
        ious = box_iou(box, np.array([objects[j].box for j in candidates], np.float32).reshape(-1, 4))[0]
        if len(candidates) and ious.max() >= iou:
            used.add(candidates[int(ious.argmax())])
            tp += 1
        elif not _in_ignored(box[0], ignore):
            fp += 1
    return tp, fp, sum(1 for o in objects if o.class_name in EVALUATED.values())


def _in_ignored(box: np.ndarray, regions: np.ndarray) -> bool:
    if not len(regions):
        return False
    lt, rb = np.maximum(box[:2], regions[:, :2]), np.minimum(box[2:], regions[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    area = max(float(np.prod(box[2:] - box[:2])), 1e-9)
    return bool((inter / area >= 0.5).any())


def run() -> dict[str, Any]:
    """Every policy's share of auto-accepted frames and the precision/recall of their labels."""
    profile = load_profile(PROFILE)
    frames = samples()
    label_sets = {
        "two models (WBF)": fused_labels(profile, frames),
        "nanodet alone": fused_labels(profile.model_copy(update={"models": profile.models[:1]}), frames),
    }
    rows = []
    for (label_set, support), accept in ((ls, a) for ls in LABEL_SETS for a in ACCEPT_SCORES):
        labeled = label_sets[label_set]
        change = {"accept_score": accept, "min_support": support, "audit_rate": 0.0}
        policy = RoutingPolicy.model_validate({**profile.routing.model_dump(), **change})
        auto = [(s, d) for s, d, able in labeled if route_frame(d, able, policy).route == "auto"]
        counts = np.array([match(d, s.truth) for s, d in auto], np.int64).reshape(-1, 3).sum(axis=0)
        tp, fp, objects = (int(v) for v in counts)
        rows.append(
            {
                "labels": label_set,
                "min_support": support,
                "accept_score": accept,
                "auto_frames": len(auto),
                "auto_share": len(auto) / len(labeled),
                "boxes": tp + fp,
                "precision": tp / (tp + fp) if tp + fp else None,
                "recall": tp / objects if objects else None,
                "labeled_objects": objects,
            }
        )
    return {"frames": len(frames), "rows": rows}


def main() -> None:
    result = run()
    print(f"{result['frames']} frames (3 KITTI frames + 15 crops of them; 10 distinct labeled objects)")
    head = f"{'labels':<18} {'support':>7} {'accept':>6} {'auto frames':>12} {'boxes':>6}"
    print(f"{head} {'precision':>9} {'recall':>7}")
    for r in result["rows"]:
        p = "-" if r["precision"] is None else f"{r['precision']:.2f}"
        rc = "-" if r["recall"] is None else f"{r['recall']:.2f}"
        share = f"{r['auto_frames']} ({r['auto_share']:.0%})"
        print(
            f"{r['labels']:<18} {r['min_support']:>7} {r['accept_score']:>6} {share:>12} {r['boxes']:>6} "
            f"{p:>9} {rc:>7}"
        )
    OUT.mkdir(exist_ok=True)
    (OUT / "routing_tradeoff.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
