"""MergeBatch on a SageMaker JumpStart endpoint's answers (one image per request, no image size in them)."""

from __future__ import annotations

from pathlib import Path

import boto3
import pytest
from moto import mock_aws

from workflow.adapters.run_store import RunStore
from workflow.adapters.s3 import S3Store
from workflow.domain.records import BatchItem, batch_id
from workflow.domain.run import BatchInference, InferenceRecord, ModelEndpoint, RunContext
from workflow.settings import Settings
from workflow.steps.merge import merge_batch

FRAME = "s3://drive-logs/log1/000008.png"
BATCH = batch_id(0, 0, 0)
RUN = RunContext(
    run_id="run-js",
    bucket="autolabel-data",
    run_prefix="runs/run-js",
    sources_key="runs/run-js/sources.json",
    source_count=1,
    batches_prefix="runs/run-js/batches/",
    batch_size=8,
    max_concurrency=1,
    batch_timeout_seconds=3600,
    review="skip",
    review_timeout_seconds=86400,
    models=[
        ModelEndpoint(
            name="mask-rcnn", endpoint_name="js-endpoint", response_format="jumpstart", batch_requests=False
        )
    ],
)
SETTINGS = Settings(data_bucket="autolabel-data", token_table="tokens", ledger_table="ledger")


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
    store = RunStore(s3, RUN.bucket, RUN.run_prefix)
    batch_key = store.put_batch(BatchItem(batch_id=BATCH, frames=[FRAME])).removeprefix(
        "s3://autolabel-data/"
    )
    inference = BatchInference(
        batch_id=BATCH,
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
    result = merge_batch(batch_key, RUN, inference, SETTINGS, s3)
    # Then the frame is labeled at its real size, classes mapped into the taxonomy, the kite dropped
    assert (result.batch_id, result.labeled, result.failed) == (BATCH, 1, 0)
    labels = store.get_labels(BATCH)
    assert labels is not None and labels.failed == []
    (frame,) = labels.frames
    assert frame.frame == FRAME and frame.models == ["mask-rcnn"]
    assert frame.labels["image_size"] == {"width": 1242, "height": 375}
    assert sorted(d["class_name"] for d in frame.labels["detections"]) == ["car", "pedestrian"]
    car = next(d for d in frame.labels["detections"] if d["class_name"] == "car")
    assert car["box"] == [597.0, 169.0, 721.0, 258.0]
    assert labels.dropped == {"unmapped:kite": 1}
    # And the batch's counts (its commit record) say the same, with no review lines (review: skip)
    counts = store.batch_done(BATCH)
    assert counts is not None and (counts.frames, counts.labeled, counts.failed) == (1, 1, 0)
    assert counts.streams == {}
