"""Human review in local mode: the workflow waits at the labeling job until a person saves the review.

The local labeling service runs in ``wait`` mode: it writes ``<review_dir>/<job>.draft.manifest``
and waits for the reviewed output manifest ``<review_dir>/<job>.manifest`` (Ground Truth output
format, label attribute ``reviewed``).
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
from published import joined

from workflow.domain.groundtruth import parse_output_line
from workflow.local.cloud import LocalCloud
from workflow.local.endpoint import Predictor

pytestmark = pytest.mark.slow

DEFAULT_ENDPOINT = "autolabel-nanodet-coco"  # template.yaml's EndpointName default
LOGS = "drive-logs"
PRELABEL, REVIEWED = "prelabel", "reviewed"  # Settings' default label attributes
MOVED_BY = 25


def read(cloud: LocalCloud, uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bytes(cloud.s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def read_lines(cloud: LocalCloud, uri: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in read(cloud, uri).decode().splitlines() if line.strip()]


def wait_for_draft(review_dir: Path, timeout: float = 60) -> Path:
    deadline = time.monotonic() + timeout
    while not (drafts := list(review_dir.glob("*.draft.manifest"))):
        assert time.monotonic() < deadline, "the labeling job never wrote its draft manifest"
        time.sleep(0.1)
    (draft,) = drafts
    return draft


def review(input_lines: list[dict[str, Any]], job_name: str, adjust: str) -> list[dict[str, Any]]:
    """What a reviewer saves: each pre-label accepted, except that on ``adjust`` one box is moved
    right by MOVED_BY pixels and the last box is deleted."""
    reviewed = []
    for line in input_lines:
        out = copy.deepcopy(line)
        label, meta = copy.deepcopy(line[PRELABEL]), copy.deepcopy(line[f"{PRELABEL}-metadata"])
        meta |= {"human-annotated": "yes", "job-name": f"labeling-job/{job_name}"}
        if line["source-ref"] == adjust:
            label["annotations"][0]["left"] += MOVED_BY
            del label["annotations"][-1], meta["objects"][-1]
        out |= {REVIEWED: label, f"{REVIEWED}-metadata": meta}
        reviewed.append(out)
    return reviewed


def save_atomically(path: Path, lines: list[dict[str, Any]]) -> None:
    partial = path.with_suffix(".partial")
    partial.write_text("".join(json.dumps(line) + "\n" for line in lines))
    os.replace(partial, path)


def test_run_waits_for_the_review_and_publishes_the_adjusted_labels(
    local_cloud: Callable[..., LocalCloud],
    detector_factory: Callable[[], Predictor],
    shared_dir: Path,
    tmp_path: Path,
) -> None:
    # Given a local cloud whose labeling service waits for a person, and two KITTI frames
    cloud = local_cloud({DEFAULT_ENDPOINT: detector_factory}, review_mode="wait", review_dir=tmp_path)
    cloud.s3.create_bucket(Bucket=LOGS)
    image_dir = shared_dir / "data" / "kitti_object" / "image_2"
    for name in ("000000.png", "000008.png"):
        cloud.s3.put_object(Bucket=LOGS, Key=f"review1/{name}", Body=(image_dir / name).read_bytes())
    adjusted, unchanged = f"s3://{LOGS}/review1/000008.png", f"s3://{LOGS}/review1/000000.png"
    # When a run with human review starts
    arn = cloud.start_run({"sources": [f"s3://{LOGS}/review1/"], "batch_size": 1, "review": "human"})
    # Then it waits at the labeling job, which has written its draft for the reviewer
    job_name = wait_for_draft(tmp_path).name.removesuffix(".draft.manifest")
    job = cloud.sagemaker.describe_labeling_job(LabelingJobName=job_name)
    assert job["LabelingJobStatus"] == "InProgress"
    assert cloud.sfn.describe_execution(executionArn=arn)["status"] == "RUNNING"
    input_lines = read_lines(cloud, job["InputConfig"]["DataSource"]["S3DataSource"]["ManifestS3Uri"])
    assert {line["source-ref"] for line in input_lines} == {adjusted, unchanged}
    # When the reviewer moves one box of KITTI 000008, deletes another, and saves the output manifest
    reviewed = review(input_lines, job_name, adjust=adjusted)
    save_atomically(tmp_path / f"{job_name}.manifest", reviewed)
    # Then the execution resumes and succeeds with the reviewed labels
    described = cloud.wait(arn, timeout=120)
    assert described["status"] == "SUCCEEDED", (described.get("error"), described.get("cause"))
    _, summary = joined(cloud.s3, json.loads(described["output"]))
    assert summary["review"] == "reviewed" and summary["labeled"] == 2
    # And the statistics count one adjusted frame, one unadjusted, and one object fewer
    before = {line["source-ref"]: len(line[PRELABEL]["annotations"]) for line in input_lines}
    stats = json.loads(read(cloud, summary["outputs"]["stats"]))["review"]
    assert (stats["frames_adjusted"], stats["frames_unadjusted"], stats["frames_failed_in_review"]) == (
        1,
        1,
        0,
    )
    assert stats["objects_after_review"] == sum(before.values()) - 1
    assert stats["objects_before_review"] == sum(before.values())
    # And the published manifest holds the moved box and not the deleted one
    published = {
        line["source-ref"]: line for line in read_lines(cloud, summary["outputs"]["output_manifest"])
    }
    frame = parse_output_line(published[adjusted], REVIEWED)
    assert frame.adjustment_status == "adjusted" and len(frame.boxes) == before[adjusted] - 1
    first = input_lines[[line["source-ref"] for line in input_lines].index(adjusted)][PRELABEL][
        "annotations"
    ][0]
    assert frame.boxes[0].left == first["left"] + MOVED_BY and frame.boxes[0].top == first["top"]
    assert parse_output_line(published[unchanged], REVIEWED).adjustment_status == "unadjusted"
