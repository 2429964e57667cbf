"""MergeBatch on a SageMaker JumpStart endpoint's answers (one image per request, no image size in them)."""

from __future__ import annotations

import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from workflow.adapters.s3 import S3Store
from workflow.domain.run import Batch, BatchInference, InferenceRecord, ModelEndpoint, RunContext
from workflow.steps.merge import merge_batch

FRAME = "s3://drive-logs/log1/000008.png"
RUN = RunContext(
    run_id="run-js",
    bucket="autolabel-data",
    run_prefix="runs/run-js",
    batches_key="runs/run-js/batches.json",
    batch_count=1,
    frame_count=1,
    skipped_count=0,
    max_concurrency=1,
    batch_timeout_seconds=3600,
    review="skip",
    review_timeout_seconds=86400,
    models=[
        ModelEndpoint(
            name="mask-rcnn", endpoint_name="js-endpoint", response_format="jumpstart", batch_requests=False
        )
    ],
    sources=["s3://drive-logs/log1/"],
)


@pytest.fixture
def s3() -> S3Store:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        for bucket in ("drive-logs", "autolabel-data"):
            client.create_bucket(Bucket=bucket)
        yield S3Store(client)


def test_jumpstart_boxes_are_sized_by_the_frame_itself(s3: S3Store, shared_dir: Path) -> None:
    # Given a real KITTI frame (1242x375) and a JumpStart instance-segmentation answer for it, whose
    # bboxes are pixels of the frame, with the large image_with_masks the format also carries
    png = (shared_dir / "data" / "kitti_object" / "image_2" / "000008.png").read_bytes()
    s3.put_bytes(FRAME, png, "image/png")
    answer = {
        "labels": ["car", "person", "kite"],
        "scores": [0.92, 0.81, 0.70],
        "bboxes": [[597.0, 169.0, 721.0, 258.0], [10.0, 150.0, 40.0, 260.0], [5.0, 5.0, 30.0, 30.0]],
        "image_with_masks": [[[0, 0, 0]]],
    }
    out = s3.put_json("s3://autolabel-data/async/js/output/inf-1.out", answer)
    inference = BatchInference(
        batch_id="b000000",
        inferences=[
            InferenceRecord(
                model="mask-rcnn",
                inference_id="inf-1",
                status="Completed",
                output_location=out,
                frames=[FRAME],
            )
        ],
    )
    # When MergeBatch reads it
    result = merge_batch(Batch(batch_id="b000000", frames=[FRAME]), RUN, inference, s3)
    # Then the frame is labeled at its real size, classes mapped into the taxonomy, the kite dropped
    labels = json.loads(s3.get_bytes(f"s3://autolabel-data/{result.labels_key}"))
    assert (result.labeled, result.failed) == (1, 0)
    (frame,) = labels["frames"]
    assert frame["image_size"] == {"width": 1242, "height": 375}
    assert sorted(d["class_name"] for d in frame["detections"]) == ["car", "pedestrian"]
    car = next(d for d in frame["detections"] if d["class_name"] == "car")
    assert car["box"] == [597.0, 169.0, 721.0, 258.0]
