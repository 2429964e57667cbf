"""``autolabel detect IMAGE... --model NAME_OR_PATH --out DIR``: run a detector on image files
and write, per image, an overlay picture and the detections as JSON."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

from pydantic import ValidationError

from workflow.domain.errors import AutolabelError, FrameError
from workflow.inference.images import decode_image
from workflow.inference.overlay import save_overlay
from workflow.inference.runner import OnnxDetector, load_detector
from workflow.inference.settings import InferenceSettings

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of the ``detect`` sub-command."""
    parser.add_argument("images", nargs="+", type=Path, help="image files or folders of images")
    parser.add_argument("--model", default="nanodet-coco", help="known model name or .onnx path")
    parser.add_argument("--out", type=Path, required=True, help="folder for overlays and JSON")
    parser.add_argument(
        "--overlay-min-score",
        type=float,
        default=0.25,
        help="draw boxes from this score (default 0.25, what the default profile shows); JSON has all",
    )
    add_inference_arguments(parser)


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags that choose how a model runs (shared by ``detect`` and ``run``)."""
    parser.add_argument(
        "--inference-config",
        type=Path,
        default=None,
        metavar="FILE",
        help="YAML/JSON of inference settings (score_threshold, per_class_thresholds, classes, tiling, ...); "
        "flags override it",
    )
    parser.add_argument(
        "--score-threshold",
        type=float,
        default=None,
        help="minimum score (default 0.05: candidates; profiles decide what people see)",
    )
    parser.add_argument("--classes", nargs="+", default=None, metavar="NAME", help="keep only these classes")
    parser.add_argument("--tiling", action="store_true", help="also run overlapping tiles (small objects)")
    parser.add_argument(
        "--tile-size", type=int, default=None, help="tile side in pixels (default: model input)"
    )
    parser.add_argument(
        "--flip-tta", action="store_true", help="also run the mirrored image and pool both views"
    )
    parser.add_argument("--no-letterbox", action="store_true", help="squash to the input size (comparison)")
    parser.add_argument("--threads", type=int, default=None, help="onnxruntime intra-op threads")


def settings_from_args(args: argparse.Namespace) -> InferenceSettings:
    """The inference settings the config file and the flags ask for (flags win)."""
    values: dict[str, object] = {}
    if args.inference_config is not None:
        import yaml

        values.update(yaml.safe_load(args.inference_config.read_text(encoding="utf-8")) or {})
    flags: dict[str, object] = {
        "letterbox": False if args.no_letterbox else None,
        "tiling": True if args.tiling else None,
        "flip_tta": True if args.flip_tta else None,
        "tile_size": args.tile_size,
        "classes": args.classes,
        "intra_op_num_threads": args.threads,
        "score_threshold": args.score_threshold,
    }
    values.update({k: v for k, v in flags.items() if v is not None})
    return InferenceSettings.model_validate(values)


def run(args: argparse.Namespace) -> int:
    """Detect on every image; one line per image; exit 1 if any image failed, 2 on bad setup."""
    try:
        detector = load_detector(args.model, settings_from_args(args))
    except (AutolabelError, ValidationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_licence_notices([args.model])
    images = list(_expand(args.images))
    if not images:
        print("error: no images found", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    floor = getattr(args, "overlay_min_score", 0.0)
    failures = sum(not _detect_one(detector, path, args.out, floor) for path in images)
    print(f"{len(images) - failures} of {len(images)} images done, overlays and JSON in {args.out}")
    return 1 if failures else 0


def print_licence_notices(models: list[str]) -> None:
    """The licence status of each known model that has one worth saying (stderr)."""
    from workflow.models.registry import licence_notice

    for model in dict.fromkeys(models):
        notice = licence_notice(model)
        if notice:
            print(notice, file=sys.stderr)


def _detect_one(detector: OnnxDetector, path: Path, out: Path, overlay_floor: float = 0.0) -> bool:
    try:
        started = time.perf_counter()
        image = decode_image(path.read_bytes(), str(path))
        detections = detector.predict(image, str(path))
        elapsed_ms = (time.perf_counter() - started) * 1000
    except (FrameError, OSError) as exc:
        print(f"{path}: FAILED {exc}")
        return False
    shown = detections.select(detections.scores >= overlay_floor)
    overlay = save_overlay(image, shown, out / f"{path.stem}.overlay.png")
    (out / f"{path.stem}.json").write_text(json.dumps(detections.to_dict(), indent=1))
    counts = Counter(detections.class_names)
    summary = ", ".join(f"{name} {n}" for name, n in counts.most_common()) or "nothing"
    print(f"{path}: {len(detections)} detections ({summary}) in {elapsed_ms:.0f} ms -> {overlay}")
    return True


def _expand(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            found.append(path)
    return found
