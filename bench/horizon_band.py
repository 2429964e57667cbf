"""Where small road users are in forward-camera frames: the evidence for the default tile band.

NanoDet runs with 320 px tiles over the WHOLE frame (no band) on every 4th nuScenes front-camera
frame (800x450, upscaled to 1600x900, the size of the held-out road frames) and on the BDD100K
samples (1280x720) of ../shared; for each road-user box under 100 px tall (score >= 0.3) it counts
whether the box lies wholly inside candidate bands (shares of the frame height). Unlabeled frames:
this locates detections, it does not judge them.

    .venv/bin/python -m bench.horizon_band     # table on stdout, bench-out/horizon_band.json
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
ROAD_USERS = {"person", "car", "bicycle", "motorcycle", "bus", "truck"}
BANDS = ((0.25, 0.8), (0.3, 0.75), (0.35, 0.7), (0.4, 0.65))


def main() -> None:
    from PIL import Image

    from workflow.inference.runner import load_detector
    from workflow.inference.settings import InferenceSettings

    files = sorted((DATA / "nuscenes_cam_front_sequence" / "frames").glob("*.jpg"))[::4]
    files += sorted((DATA / "bdd100k_yolop_samples").glob("*.jpg"))
    if not files:
        raise SystemExit(f"no frames under {DATA.resolve()}")
    detector = load_detector(
        "nanodet-coco", InferenceSettings(tiling=True, tile_band=None, score_threshold=0.3)
    )
    spans = []
    for path in files:
        image = Image.open(path).convert("RGB")
        if image.width == 800:
            image = image.resize((1600, 900), Image.Resampling.BILINEAR)
        pixels = np.asarray(image)
        det = detector.predict(pixels, str(path))
        height = pixels.shape[0]
        for name, box in zip(det.class_names, det.boxes, strict=True):
            if name in ROAD_USERS and box[3] - box[1] < 100:
                spans.append((float(box[1]) / height, float(box[3]) / height))
    tops, bottoms = np.array([s[0] for s in spans]), np.array([s[1] for s in spans])
    result = {"frames": len(files), "small_road_user_boxes": len(spans), "inside": {}}
    print(f"{len(files)} frames, {len(spans)} road-user boxes under 100 px tall (score >= 0.3)")
    for top, bottom in BANDS:
        inside = int(((tops >= top) & (bottoms <= bottom)).sum())
        result["inside"][f"{top}-{bottom}"] = inside
        print(f"band {top:.2f}-{bottom:.2f} ({100 * (bottom - top):.0f} % of the height): "
              f"{inside} boxes wholly inside ({100 * inside / max(len(spans), 1):.1f} %)")  # fmt: skip
    (ROOT / "bench-out").mkdir(exist_ok=True)
    (ROOT / "bench-out" / "horizon_band.json").write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
