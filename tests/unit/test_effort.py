"""Reviewer effort: pre-labels matched to human labels, and the time they save."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from workflow.cli import evaluate as eval_cli
from workflow.domain.detections import Detections, Provenance
from workflow.evaluation.classes import ClassPlan, plan_classes
from workflow.evaluation.effort import DEFAULT_SECONDS, effort, frame_effort
from workflow.evaluation.records import GtFrame, GtObject, PredFrame, PredObject

LABELS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "kitti_object" / "label_2"


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


def _plan() -> ClassPlan:
    return plan_classes(
        ["car", "person"], ["Car", "Pedestrian"], default_map={"car": "Car", "person": "Pedestrian"}
    )


def test_each_kind_of_review_action_is_counted() -> None:
    # Given three labeled cars, a labeled pedestrian, a Van (ignored in Car) and a DontCare region
    gt = GtFrame(
        "f",
        objects=[
            GtObject("Car", (0, 0, 100, 100)),
            GtObject("Car", (200, 0, 300, 100)),
            GtObject("Car", (400, 0, 500, 100)),
            GtObject("Pedestrian", (600, 0, 630, 80)),
            GtObject("Van", (800, 0, 900, 100)),
        ],
        ignore_regions=[(1000, 0, 1100, 100)],
    )
    # and pre-labels: exact, shifted, wrong class, on the van, inside DontCare, and a false one
    pred = PredFrame(
        "f",
        [
            PredObject("car", (0, 0, 100, 100), 0.9),  # kept
            PredObject("car", (220, 0, 320, 100), 0.8),  # IoU 0.67: moved
            PredObject("person", (600, 0, 630, 80), 0.7),  # the pedestrian: kept
            PredObject("person", (400, 0, 500, 100), 0.6),  # on a car: relabeled
            PredObject("car", (800, 0, 900, 100), 0.5),  # on the van: ignored
            PredObject("car", (1010, 10, 1090, 90), 0.5),  # in DontCare: ignored
            PredObject("car", (1300, 0, 1400, 100), 0.4),  # nothing there: deleted
            PredObject("bench", (0, 0, 50, 50), 0.9),  # not an evaluated class: not shown
        ],
    )
    # When the frame's effort is counted
    counts = frame_effort(gt, pred, _plan(), {"Van": "Car"})
    # Then every action lands where it belongs
    car, ped = counts["Car"], counts["Pedestrian"]
    assert (car.labeled, car.kept, car.moved, car.relabeled, car.deleted, car.added, car.ignored) == (
        3, 1, 1, 1, 1, 0, 2,
    )  # fmt: skip
    assert (ped.labeled, ped.kept, ped.deleted, ped.added) == (1, 1, 0, 0)


def test_effort_saved_uses_the_documented_seconds_and_the_score_floor() -> None:
    # Given two labeled cars, one found (0.9) and one missed, plus a false box scoring 0.2
    gt = {"f": GtFrame("f", objects=[GtObject("Car", (0, 0, 100, 100)), GtObject("Car", (300, 0, 400, 100))])}
    preds = {
        "f": PredFrame(
            "f", [PredObject("car", (0, 0, 100, 100), 0.9), PredObject("car", (600, 0, 700, 90), 0.2)]
        )
    }
    s = DEFAULT_SECONDS
    # When effort is estimated with every box shown, and with boxes under 0.3 hidden
    every = effort(gt, preds, _plan())
    floor = effort(gt, preds, _plan(), min_score=0.3)
    # Then the reviewer verifies one, draws one and (without the floor) deletes one
    assert every.seconds_with == pytest.approx(s.verify + s.draw + s.delete)
    assert floor.seconds_with == pytest.approx(s.verify + s.draw)
    assert every.seconds_scratch == pytest.approx(2 * s.draw)
    assert floor.saved == pytest.approx(1 - (s.verify + s.draw) / (2 * s.draw))
    assert (s.draw, s.adjust) == (34.5, 7.0)


def test_no_prelabels_saves_nothing_and_costs_nothing_more() -> None:
    gt = {"f": GtFrame("f", objects=[GtObject("Car", (0, 0, 100, 100))])}
    report = effort(gt, {}, _plan())
    assert report.total.added == 1 and report.saved == pytest.approx(0.0)


def test_eval_cli_prints_and_writes_the_effort(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given the real KITTI labels and predictions: 000008's six cars, one 20 px off, and a false box
    if not (LABELS / "000008.txt").exists():
        pytest.skip(f"KITTI labels not found at {LABELS} (shared data absent)")
    from workflow.evaluation.kitti import read_kitti_file

    cars = [list(o.box) for o in read_kitti_file(LABELS / "000008.txt") if o.type == "Car"]
    cars[0] = [cars[0][0] + 20, cars[0][1], cars[0][2] + 20, cars[0][3]]
    rows = [("car", box, 0.8) for box in cars] + [("car", [10.0, 10.0, 60.0, 60.0], 0.3)]
    write_detections(tmp_path / "pred", "000008", rows)
    out = tmp_path / "report.json"
    args = argparse.Namespace(
        pred=tmp_path / "pred", gt=LABELS / "000008.txt", gt_format=None, class_map=None, iou_type="bbox",
        max_dets=100, json=out, effort=True, min_score=0.0,
    )  # fmt: skip
    # When `autolabel eval --effort` runs
    assert eval_cli.run(args) == 0
    # Then the table and the JSON show the kept, moved and deleted boxes and the time saved
    printed = capsys.readouterr().out
    assert "effort saved" in printed
    effort_json = json.loads(out.read_text())["effort"]
    car = effort_json["per_class"]["Car"]
    assert (car["labeled"], car["kept"] + car["moved"], car["deleted"], car["added"]) == (6, 6, 1, 0)
    assert 0.8 < effort_json["effort_saved"] < 1.0
