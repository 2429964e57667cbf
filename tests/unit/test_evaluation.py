"""COCO-style AP of predictions against real KITTI and COCO labels."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from workflow.cli import evaluate as eval_cli
from workflow.domain.detections import Detections, Provenance
from workflow.evaluation import evaluate_files, format_report, parse_class_map, plan_classes
from workflow.evaluation.kitti import kitti_ground_truth, parse_kitti_line, read_kitti_labels
from workflow.evaluation.readers import read_coco_ground_truth

KITTI = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "kitti_object"
LABELS = KITTI / "label_2"
COCO_GT = KITTI / "000007_mmdet3d_mono3d.coco.json"


@pytest.fixture
def kitti_labels() -> Path:
    if not (LABELS / "000008.txt").exists():
        pytest.skip(f"KITTI labels not found at {LABELS} (shared data absent)")
    return LABELS


@pytest.fixture
def coco_gt() -> Path:
    if not COCO_GT.exists():
        pytest.skip(f"COCO labels not found at {COCO_GT} (shared data absent)")
    return COCO_GT


def write_detections(folder: Path, stem: str, rows: list[tuple[str, list[float], float]]) -> None:
    """One Detections JSON file (the local runner's format) for frame ``stem``."""
    folder.mkdir(parents=True, exist_ok=True)
    detections = Detections(
        boxes=np.array([r[1] for r in rows], np.float32).reshape(-1, 4),
        scores=np.array([r[2] for r in rows], np.float32),
        class_ids=np.zeros(len(rows), np.int64),
        class_names=tuple(r[0] for r in rows),
        image_width=1242,
        image_height=375,
        provenance=Provenance(model="test"),
        frame=f"s3://frames/drive/{stem}.png",
    )
    (folder / f"{stem}.json").write_text(json.dumps(detections.to_dict()))


def labels_as_predictions(labels: Path, folder: Path, score: float = 0.9) -> None:
    """Every labeled (non-DontCare) KITTI object as a prediction with the given score."""
    for stem, objects in read_kitti_labels(labels).items():
        rows = [(o.type, list(o.box), score) for o in objects if o.type != "DontCare"]
        write_detections(folder, stem, rows)


def ap_of(report_classes: tuple, name: str) -> tuple[float | None, float | None]:
    [row] = [c for c in report_classes if c.name == name]
    return row.ap50, row.ap


def test_real_kitti_labels_parse_into_cars_and_dontcare(kitti_labels: Path) -> None:
    # Given the real KITTI label file of frame 000008
    # When it is read as ground truth
    frame = kitti_ground_truth(kitti_labels / "000008.txt")["000008"]
    # Then it has 6 cars and 4 DontCare regions, with the file's coordinates
    assert [o.class_name for o in frame.objects] == ["Car"] * 6
    assert len(frame.ignore_regions) == 4
    assert frame.objects[0].box == pytest.approx((0.0, 192.37, 402.31, 374.0))
    assert frame.ignore_regions[0] == pytest.approx((800.38, 163.67, 825.45, 184.07))


def test_real_mmdet3d_coco_labels_parse(coco_gt: Path) -> None:
    # Given the real COCO-format labels of KITTI frame 000007 (category id 0 included)
    # When they are read
    frames, index = read_coco_ground_truth(coco_gt)
    # Then the frame is keyed by stem and holds 3 cars and 1 cyclist as xyxy boxes
    assert list(frames) == ["000007"]
    names = sorted(o.class_name for o in frames["000007"].objects)
    assert names == ["Car", "Car", "Car", "Cyclist"]
    assert frames["000007"].objects[0].box == pytest.approx((565.48, 175.01, 616.66, 224.96), abs=0.01)
    assert (frames["000007"].width, frames["000007"].height) == (1242, 375)
    assert index.category_names[0] == "Pedestrian"


def test_perfect_predictions_score_ap_one(kitti_labels: Path, tmp_path: Path) -> None:
    # Given predictions that are exactly the labels
    labels_as_predictions(kitti_labels, tmp_path / "pred")
    # When they are evaluated against the labels
    report = evaluate_files(tmp_path / "pred", kitti_labels)
    # Then every labeled class scores AP 1.0 and unlabeled classes are left out of the mean
    assert ap_of(report.classes, "Car") == (pytest.approx(1.0), pytest.approx(1.0))
    assert ap_of(report.classes, "Pedestrian") == (pytest.approx(1.0), pytest.approx(1.0))
    assert ap_of(report.classes, "Truck") == (None, None)
    assert report.map == pytest.approx(1.0)
    assert report.labeled_frames == report.predicted_frames == 2


@pytest.mark.parametrize(
    ("shift", "expect_ap50_drop"),
    [(0.2, False), (0.5, True)],  # IoU 0.67: matched at 0.50-0.65 only; IoU 0.33: never matched
)
def test_a_shifted_box_lowers_ap(
    kitti_labels: Path, tmp_path: Path, shift: float, expect_ap50_drop: bool
) -> None:
    # Given perfect predictions except one car box shifted sideways by a fraction of its width
    objects = [o for o in read_kitti_labels(kitti_labels)["000008"] if o.type == "Car"]
    rows = [("car", list(o.box), 0.9) for o in objects]
    x1, y1, x2, y2 = rows[4][1]
    rows[4] = ("car", [x1 + (x2 - x1) * shift, y1, x2 + (x2 - x1) * shift, y2], 0.95)
    write_detections(tmp_path / "pred", "000008", rows)
    # When evaluated (COCO names mapped onto KITTI types by default)
    report = evaluate_files(tmp_path / "pred" / "000008.json", kitti_labels / "000008.txt")
    # Then AP50:95 drops below 1, and AP50 too once the IoU falls under 0.5
    ap50, ap = ap_of(report.classes, "Car")
    assert ap50 is not None and ap is not None
    assert ap < 0.95
    if expect_ap50_drop:
        assert ap50 < 0.95
    else:
        assert ap50 == pytest.approx(1.0) and ap < ap50


def test_detections_in_dontcare_regions_are_not_false_positives(kitti_labels: Path, tmp_path: Path) -> None:
    # Given perfect predictions plus a confident car detection inside a DontCare region
    dontcare = kitti_ground_truth(kitti_labels / "000008.txt")["000008"].ignore_regions[1]
    objects = [o for o in read_kitti_labels(kitti_labels)["000008"] if o.type == "Car"]
    rows = [("Car", list(o.box), 0.5) for o in objects]
    write_detections(tmp_path / "in", "000008", [*rows, ("Car", list(dontcare), 0.99)])
    # And the same detection moved to where nothing is labeled
    write_detections(tmp_path / "out", "000008", [*rows, ("Car", [1000.0, 10.0, 1030.0, 40.0], 0.99)])
    # When both are evaluated
    inside = evaluate_files(tmp_path / "in", kitti_labels / "000008.txt")
    outside = evaluate_files(tmp_path / "out", kitti_labels / "000008.txt")
    # Then the one in DontCare costs nothing and the other lowers AP
    assert ap_of(inside.classes, "Car")[0] == pytest.approx(1.0)
    assert ap_of(outside.classes, "Car")[0] < 0.99


def test_a_car_detection_on_a_van_is_ignored_as_in_the_kitti_devkit(tmp_path: Path) -> None:
    # Given a label file with a Car and a Van, and car detections on both
    labels = tmp_path / "label_2"
    labels.mkdir()
    (labels / "000001.txt").write_text(
        "Car 0.00 0 0.0 10.00 10.00 60.00 50.00 1.5 1.6 3.9 0 1 10 0\n"
        "Van 0.00 0 0.0 100.00 10.00 180.00 70.00 2.0 1.9 4.5 2 1 12 0\n"
    )
    write_detections(
        tmp_path / "pred", "000001", [("car", [100, 10, 180, 70], 0.9), ("car", [10, 10, 60, 50], 0.8)]
    )
    # When evaluated with the default COCO->KITTI mapping
    report = evaluate_files(tmp_path / "pred", labels)
    # Then the Van neither counts as a miss nor makes the detection on it a false positive
    assert ap_of(report.classes, "Car") == (pytest.approx(1.0), pytest.approx(1.0))
    assert [c.gt_count for c in report.classes if c.name == "Car"] == [1]


def test_class_map_and_coco_results_against_coco_labels(coco_gt: Path, tmp_path: Path) -> None:
    # Given COCO results (image_id and category_id of the label file) and a differently-named class
    data = json.loads(coco_gt.read_text())
    results = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.8}
        for a in data["annotations"]
        if a["category_name"] == "Car"
    ]
    cyclist = next(a for a in data["annotations"] if a["category_name"] == "Cyclist")
    results.append({"image_id": 7, "category_name": "bicycle", "bbox": cyclist["bbox"], "score": 0.7})
    (tmp_path / "results.json").write_text(json.dumps(results))
    # When evaluated with a class map for the odd name
    report = evaluate_files(tmp_path / "results.json", coco_gt, class_map=parse_class_map("bicycle=cyclist"))
    # Then both classes score 1.0 and the map resolved to the labels' spelling
    assert [(c.name, c.gt_count, c.det_count) for c in report.classes] == [("Car", 3, 3), ("Cyclist", 1, 1)]
    assert report.map50 == pytest.approx(1.0)


def test_no_predictions_give_zero_ap_and_failed_frames_are_reported(
    kitti_labels: Path, tmp_path: Path
) -> None:
    # Given a batch output (the local endpoint's format) whose only frame failed
    folder = tmp_path / "pred"
    folder.mkdir()
    failed = {"frame": "s3://frames/000008.png", "error": {"type": "InvalidImage", "reason": "truncated"}}
    (folder / "b000001.out").write_text(json.dumps({"results": [failed]}))
    # When evaluated
    report = evaluate_files(folder, kitti_labels / "000008.txt")
    # Then Car scores 0 and the failed frame is listed
    assert ap_of(report.classes, "Car") == (0.0, 0.0)
    assert report.failed_frames == ("s3://frames/000008.png",)
    assert "1 failed" in format_report(report)


def test_plan_classes_maps_case_insensitively_and_lists_the_rest() -> None:
    # Given predicted COCO names and KITTI label names
    # When a class map is given
    plan = plan_classes({"person", "car", "dog"}, {"Pedestrian", "Car"}, class_map={"person": "pedestrian"})
    # Then mapped and same-named classes resolve to the labels' spelling, others are unmapped
    assert plan.mapping == {"person": "Pedestrian", "car": "Car"}
    assert plan.classes == ("Car", "Pedestrian")
    assert plan.unmapped == ("dog",)
    with pytest.raises(ValueError, match="PRED=GT"):
        parse_class_map("person")


def test_a_malformed_kitti_line_names_the_problem(tmp_path: Path) -> None:
    # Given a KITTI file with a truncated line
    path = tmp_path / "000002.txt"
    path.write_text("Car 0.00 0 0.0 10 10 60\n")
    # When read, Then the error names the file and line
    with pytest.raises(ValueError, match=r"000002.txt:1: a KITTI label line has 15 or 16 fields"):
        read_kitti_labels(path)
    assert parse_kitti_line("Car 0 0 0 1 2 3 4 1 1 1 0 0 0 0 0.75").score == 0.75


def test_cli_prints_a_table_and_writes_json(
    kitti_labels: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given perfect predictions
    labels_as_predictions(kitti_labels, tmp_path / "pred")
    parser = argparse.ArgumentParser()
    eval_cli.add_arguments(parser)
    out = tmp_path / "report.json"
    # When `autolabel eval PRED GT --json FILE` runs
    args = parser.parse_args(
        [str(tmp_path / "pred"), str(kitti_labels), "--gt-format", "kitti", "--json", str(out)]
    )
    code = eval_cli.run(args)
    # Then it prints the table and writes the same numbers as JSON
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].split() == ["class", "GT", "dets", "AP50", "AP50:95"]
    assert "Car" in printed and "1.000" in printed
    written = json.loads(out.read_text())
    assert written["map50"] == 1.0
    assert {c["name"]: c["gt_count"] for c in written["classes"]}["Car"] == 6
    # And a missing input is an error, not a crash
    assert eval_cli.run(parser.parse_args([str(tmp_path / "nope"), str(kitti_labels)])) == 2
