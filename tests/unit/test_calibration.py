"""Per-class accept thresholds from a labeled sample, written into a profile (``autolabel calibrate``)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest

from workflow.cli import calibrate as calibrate_cli
from workflow.domain.detections import Detections, Provenance
from workflow.domain.profile import load_profile
from workflow.evaluation.calibration import NEVER, FrameJudgement, JudgedBox, apply_rule, threshold_for


def _boxes(rows: list[tuple[float, bool]], name: str = "car") -> list[JudgedBox]:
    return [JudgedBox("f", name, score, ok) for score, ok in rows]


def test_threshold_is_the_lowest_score_reaching_the_target() -> None:
    # Given car boxes judged right or wrong: 0.9 ok, 0.8 ok, 0.7 wrong, 0.6 ok, 0.5 wrong, 0.4 wrong
    boxes = _boxes([(0.9, True), (0.8, True), (0.7, False), (0.6, True), (0.5, False), (0.4, False)])
    # When thresholds are chosen for precision 0.75 and 1.0
    # Then 0.6 keeps 3 of 4 right (0.75); precision 1.0 needs 0.8
    assert threshold_for(boxes, 0.75) == (0.6, 0.75, 4)
    assert threshold_for(boxes, 1.0) == (0.8, 1.0, 2)


def test_a_class_that_never_reaches_the_target_is_never_accepted() -> None:
    assert threshold_for(_boxes([(0.9, False), (0.5, True)]), 0.95) == (NEVER, None, 0)


def test_frames_are_auto_accepted_only_when_every_box_passes() -> None:
    # Given a frame of two confident right cars, one with a doubtful box, one with an unjudged class
    good = FrameJudgement("a", _boxes([(0.9, True), (0.8, True)]))
    doubtful = FrameJudgement("b", _boxes([(0.9, True), (0.3, False)]), missed=1)
    unjudged = FrameJudgement("c", _boxes([(0.9, True)]), unjudged=[("traffic light", 0.9)])
    # When the per-class rule is applied
    rule = apply_rule([good, doubtful, unjudged], {"car": 0.7})
    # Then only the first frame goes straight to the dataset, with both its boxes right
    assert (rule.auto_frames, rule.boxes, rule.correct, rule.missed) == (1, 2, 2, 0)
    assert rule.precision == 1.0


def _write(folder: Path, stem: str, rows: list[tuple[str, list[float], float]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    det = Detections(
        boxes=np.array([r[1] for r in rows], np.float32).reshape(-1, 4),
        scores=np.array([r[2] for r in rows], np.float32),
        class_ids=np.zeros(len(rows), np.int64),
        class_names=tuple(r[0] for r in rows),
        image_width=1000,
        image_height=400,
        provenance=Provenance(model="nanodet-coco"),
        frame=f"{stem}.png",
    )
    (folder / f"{stem}.json").write_text(json.dumps(det.to_dict()))


def test_calibrate_writes_thresholds_expected_precision_and_routing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given COCO labels of two frames and COCO-named predictions: frame a has two right cars (0.9,
    # 0.8); frame b a right car (0.85) and a false one (0.4)
    gt = {
        "images": [{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"}],
        "categories": [{"id": 1, "name": "car"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 100]},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [200, 0, 100, 100]},
            {"id": 3, "image_id": 2, "category_id": 1, "bbox": [0, 0, 100, 100]},
        ],
    }
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    _write(tmp_path / "pred", "a", [("car", [0, 0, 100, 100], 0.9), ("car", [200, 0, 300, 100], 0.8)])
    _write(tmp_path / "pred", "b", [("car", [0, 0, 100, 100], 0.85), ("car", [600, 0, 700, 100], 0.4)])
    out = tmp_path / "calibrated.yaml"
    args = argparse.Namespace(
        pred=tmp_path / "pred",
        gt=tmp_path / "gt.json",
        precision=0.95,
        out=out,
        profile=None,
        model=None,
        gt_format=None,
        class_map=None,
    )
    # When calibrated for precision 0.95
    assert calibrate_cli.run(args) == 0
    # Then car is accepted from 0.8, frame a is auto-accepted (b has the 0.4 box) with precision 1.0
    profile = load_profile(out)
    assert profile.calibration is not None
    car = profile.calibration.classes["car"]
    assert car.accept_score == pytest.approx(0.8) and car.precision == 1.0 and car.labeled == 3
    assert profile.calibration.auto_accepted_frames == 1 and profile.calibration.expected_precision == 1.0
    assert (profile.calibration.sample_frames, profile.calibration.sample_boxes) == (2, 4)
    assert profile.routing.enabled and profile.routing.accept_score == pytest.approx(0.8)
    assert "1 of 2 frames auto-accepted (50 %)" in capsys.readouterr().out
