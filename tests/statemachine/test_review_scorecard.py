"""The reviewer scorecard of a run: what a person did to the pre-labels, counted per class and model.

The local labeling service waits for a person (``wait`` mode); the person moves one box of KITTI
000008 and deletes another; Publish compares the review with the pre-labels and writes
``dataset/scorecard.json`` and the report's ``scorecard``.
"""

from __future__ import annotations

import copy
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from workflow.local.cloud import LocalCloud
from workflow.local.endpoint import Predictor

pytestmark = pytest.mark.slow

ENDPOINT = "autolabel-nanodet-coco"  # the built-in default profile's model
LOGS = "drive-logs"
PRELABEL, REVIEWED = "prelabel", "reviewed"


def read(cloud: LocalCloud, uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bytes(cloud.s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def wait_for_draft(review_dir: Path, timeout: float = 60) -> str:
    """The job name, once the waiting labeling job has written its draft."""
    deadline = time.monotonic() + timeout
    while not (drafts := list(review_dir.glob("*.draft.manifest"))):
        assert time.monotonic() < deadline, "the labeling job never wrote its draft manifest"
        time.sleep(0.1)
    return drafts[0].name.removesuffix(".draft.manifest")


def iou(a: dict[str, float], b: dict[str, float]) -> float:
    """IoU of two Ground Truth boxes (left, top, width, height)."""
    w = min(a["left"] + a["width"], b["left"] + b["width"]) - max(a["left"], b["left"])
    h = min(a["top"] + a["height"], b["top"] + b["height"]) - max(a["top"], b["top"])
    inter = max(w, 0) * max(h, 0)
    return inter / (a["width"] * a["height"] + b["width"] * b["height"] - inter)


def reviewed_line(
    line: dict[str, Any], job: str, move_by: int = 0, delete_last: bool = False
) -> dict[str, Any]:
    """The line a person saves: the pre-labels, the first box moved right, the last one deleted."""
    label, meta = copy.deepcopy(line[PRELABEL]), copy.deepcopy(line[f"{PRELABEL}-metadata"])
    meta |= {"human-annotated": "yes", "job-name": f"labeling-job/{job}"}
    label["annotations"][0]["left"] += move_by
    if delete_last:
        del label["annotations"][-1], meta["objects"][-1]
    return {**copy.deepcopy(line), REVIEWED: label, f"{REVIEWED}-metadata": meta}


def test_the_scorecard_counts_the_box_a_person_moved_and_the_one_deleted(
    local_cloud: Callable[..., LocalCloud],
    detector_factory: Callable[[], Predictor],
    shared_dir: Path,
    tmp_path: Path,
) -> None:
    # Given a run with human review over two KITTI frames, waiting at its labeling job
    cloud = local_cloud({ENDPOINT: detector_factory}, review_mode="wait", review_dir=tmp_path)
    cloud.s3.create_bucket(Bucket=LOGS)
    for name in ("000000.png", "000008.png"):
        body = (shared_dir / "data" / "kitti_object" / "image_2" / name).read_bytes()
        cloud.s3.put_object(Bucket=LOGS, Key=f"card/{name}", Body=body)
    arn = cloud.start_run({"sources": [f"s3://{LOGS}/card/"], "batch_size": 1, "review": "human"})
    job = wait_for_draft(tmp_path)
    described = cloud.sagemaker.describe_labeling_job(LabelingJobName=job)
    manifest = described["InputConfig"]["DataSource"]["S3DataSource"]["ManifestS3Uri"]
    parsed = [json.loads(raw) for raw in read(cloud, manifest).decode().splitlines()]
    lines = {line["source-ref"]: line for line in parsed}
    edited = f"s3://{LOGS}/card/000008.png"
    boxes = lines[edited][PRELABEL]["annotations"]
    assert len(boxes) >= 3, "KITTI 000008 has several cars"
    # When the person moves the first car of 000008 right by a fifth of its width, deletes the last
    # one, leaves the other frame as it is, and saves the output manifest
    move_by = round(boxes[0]["width"] / 5)
    saved = [
        reviewed_line(line, job, move_by, delete_last=True) if uri == edited else reviewed_line(line, job)
        for uri, line in lines.items()
    ]
    partial = tmp_path / f"{job}.partial"
    partial.write_text("".join(json.dumps(line) + "\n" for line in saved))
    os.replace(partial, tmp_path / f"{job}.manifest")
    done = cloud.wait(arn, timeout=120)
    assert done["status"] == "SUCCEEDED", (done.get("error"), done.get("cause"))
    summary = json.loads(done["output"])
    # Then the scorecard counts one box moved (with its IoU), one deleted, none added, the rest kept
    card = json.loads(read(cloud, summary["outputs"]["scorecard"]))
    shown = sum(len(line[PRELABEL]["annotations"]) for line in lines.values())
    moved = dict(boxes[0], left=boxes[0]["left"] + move_by)
    expected = {"prelabels": shown, "kept": shown - 2, "moved": 1, "deleted": 1, "added": 0, "relabeled": 0}
    assert {k: card["total"][k] for k in expected} == expected
    assert card["total"]["moved_mean_iou"] == pytest.approx(iou(boxes[0], moved), abs=1e-4)
    assert card["frames"] == 2 and card["failed_frames"] == []
    # And per class: the moved and deleted boxes are cars; per model: NanoDet proposed every box
    assert (card["by_class"]["car"]["moved"], card["by_class"]["car"]["deleted"]) == (1, 1)
    assert {k: card["by_model"]["nanodet-coco"][k] for k in expected} == expected
    # And the report carries the same scorecard
    report = json.loads(read(cloud, summary["outputs"]["report"]))
    assert report["scorecard"] == card
    # And the job asked for the deployment's workers per frame (the run has the built-in profile)
    assert described["HumanTaskConfig"]["NumberOfHumanWorkersPerDataObject"] == 1
