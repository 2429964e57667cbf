"""The fleet-scale shape on the real ASL: listing pages, more than one page of batches, a run that
fails still reports and releases its frames, a resumed run finishes only what is missing.

The frames are tiny real-format JPEGs; the model is a stand-in that returns fixed detections
without decoding (these tests are about the workflow's shape, not the detector).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image
from published import joined

from workflow.adapters.ledger import FrameLedger
from workflow.domain.detections import Detections, Provenance
from workflow.local.cloud import LocalCloud

LOGS = "fleet-logs"
ENDPOINT = "autolabel-nanodet-coco"


class FixedDetections:
    """A stand-in model: two COCO boxes for every frame, image never decoded."""

    def __init__(self) -> None:
        self.calls = 0

    def predict_bytes(self, data: bytes, frame: str) -> Detections:
        self.calls += 1
        return Detections(
            boxes=np.array([[10, 10, 60, 50], [100, 20, 140, 120]], np.float32),
            scores=np.array([0.9, 0.8], np.float32),
            class_ids=np.array([2, 0], np.int64),
            class_names=("car", "person"),
            image_width=320,
            image_height=240,
            provenance=Provenance(model="nanodet-coco", version="stand-in"),
            frame=frame,
        )


def tiny_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (90, 90, 90)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def model() -> FixedDetections:
    return FixedDetections()


@pytest.fixture(scope="module")
def cloud(local_cloud: Callable[..., LocalCloud], model: FixedDetections) -> Iterator[LocalCloud]:
    cloud = local_cloud({ENDPOINT: lambda: model}, max_concurrent_invocations=4)
    cloud.s3.create_bucket(Bucket=LOGS)
    yield cloud


def upload(cloud: LocalCloud, prefix: str, count: int) -> list[str]:
    body = tiny_jpeg()
    for i in range(count):
        cloud.s3.put_object(Bucket=LOGS, Key=f"{prefix}/{i:05d}.jpg", Body=body)
    return [f"s3://{LOGS}/{prefix}/{i:05d}.jpg" for i in range(count)]


def run(
    cloud: LocalCloud, request: dict[str, Any], timeout: float = 300
) -> tuple[dict[str, Any], dict[str, Any]]:
    described = cloud.wait(cloud.start_run(request), timeout=timeout)
    assert described["status"] == "SUCCEEDED", (described.get("error"), described.get("cause"))
    report, summary = joined(cloud.s3, json.loads(described["output"]))
    return summary, report


def keys(cloud: LocalCloud, prefix: str) -> list[str]:
    pages = cloud.s3.get_paginator("list_objects_v2").paginate(Bucket=cloud.data_bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def test_a_prefix_of_many_pages_is_listed_page_by_page_and_every_frame_is_labeled(cloud: LocalCloud) -> None:
    # Given 2,300 frames under one prefix: three listing pages of at most 1,000 keys
    uris = upload(cloud, "many", 2300)
    # When a run without review labels them in batches of 500
    summary, report = run(cloud, {"sources": [f"s3://{LOGS}/many/"], "batch_size": 500, "review": "skip"})
    # Then every frame is labeled exactly once and nothing is lost
    assert (summary["frames_found"], summary["labeled"], summary["failed"], summary["lost"]) == (
        2300,
        2300,
        0,
        0,
    )
    labeled = [f["frame"] for f in report["frames"] if f["status"] == "labeled"]
    assert sorted(labeled) == uris
    # And the listing took three pages, none over 1,000 keys, each cut into its own batches
    run_id = summary["run_id"]
    pages = [
        json.loads(cloud.s3.get_object(Bucket=cloud.data_bucket, Key=k)["Body"].read())
        for k in keys(cloud, f"runs/{run_id}/pages/")
    ]
    assert [(p["listed"], p["batches"]) for p in pages] == [(1000, 2), (1000, 2), (300, 1)]
    assert report["sources"] == {"count": 1, "pages": 3, "listed": 2300}
    # And the dataset is one shard (<= 10,000 frames) listed in the index
    index_key = f"runs/{run_id}/dataset/index.json"
    index = json.loads(cloud.s3.get_object(Bucket=cloud.data_bucket, Key=index_key)["Body"].read())
    assert [s["frames"] for s in index["shards"]] == [2300]


def test_a_frame_under_two_sources_of_one_run_is_labeled_once(cloud: LocalCloud) -> None:
    # Given frames under a/ and a/sub/, and a run whose sources are both prefixes
    top = upload(cloud, "overlap", 3)
    sub = upload(cloud, "overlap/sub", 2)
    summary, report = run(
        cloud,
        {
            "sources": [f"s3://{LOGS}/overlap/", f"s3://{LOGS}/overlap/sub/"],
            "batch_size": 4,
            "review": "skip",
        },
    )
    # Then the five frames are labeled once each, and the second listing of sub/ is reported as such
    labeled = sorted(f["frame"] for f in report["frames"] if f["status"] == "labeled")
    assert labeled == sorted(top + sub)
    skipped = {f["frame"]: f["reason"] for f in report["frames"] if f["status"] == "skipped"}
    assert set(skipped) == set(sub)
    assert all("listed twice in this run" in r for r in skipped.values())


def test_a_failed_run_reports_and_releases_its_frames_and_resuming_it_finishes_only_what_is_missing(
    cloud: LocalCloud, model: FixedDetections
) -> None:
    # Given 20 frames, and PlanReview failing every time (after every batch was labeled)
    uris = upload(cloud, "fails", 20)
    request = {"sources": [f"s3://{LOGS}/fails/"], "batch_size": 5, "review": "skip", "run_id": "fails-once"}
    planner = cloud.handlers["PlanReviewFunction"]

    def broken(event: dict[str, Any], context: Any) -> Any:
        raise RuntimeError("PlanReview out of memory (injected)")

    cloud.handlers["PlanReviewFunction"] = broken
    try:
        described = cloud.wait(cloud.start_run(request, name="fails-once-1"), timeout=120)
    finally:
        cloud.handlers["PlanReviewFunction"] = planner
    # Then the execution fails, and its report says what was done and why it failed
    assert described["status"] == "FAILED"
    report = json.loads(
        cloud.s3.get_object(Bucket=cloud.data_bucket, Key="runs/fails-once/report.json")["Body"].read()
    )
    assert report["status"] == "FAILED" and "out of memory" in report["cause"]
    assert (report["frames_found"], report["labeled"], report["published"], report["never_reached"]) == (
        20,
        20,
        0,
        0,
    )
    # And the run is marked failed in the ledger, which releases its frames
    ledger = FrameLedger(boto3_dynamodb(cloud), "LedgerTable")
    assert ledger.run_status("fails-once") == "failed"
    # When the same run is resumed (a new execution with the same run id)
    calls_before = model.calls
    summary, report = run(cloud, request)
    # Then it labels nothing again (every batch was done) and publishes all 20 frames once
    assert model.calls == calls_before
    assert (summary["run_id"], summary["labeled"], summary["failed"], summary["lost"]) == (
        "fails-once",
        20,
        0,
        0,
    )
    assert sorted(f["frame"] for f in report["frames"] if f["status"] == "labeled") == uris
    assert FrameLedger(boto3_dynamodb(cloud), "LedgerTable").run_status("fails-once") == "succeeded"


def test_a_frame_held_by_a_failed_run_is_taken_over_by_the_next_run(cloud: LocalCloud) -> None:
    # Given three frames claimed by a run that then failed
    uris = upload(cloud, "takeover", 3)
    ledger = FrameLedger(boto3_dynamodb(cloud), "LedgerTable")
    for uri in uris:
        assert ledger.claim(uri, "crashed-run").claimed
    ledger.mark_run("crashed-run", "failed", "FAILED: States.Timeout")
    # And one more frame held by a run that is still running
    held = upload(cloud, "takeover-held", 1)[0]
    assert ledger.claim(held, "busy-run").claimed
    ledger.mark_run("busy-run", "running")
    # When a new run covers both prefixes
    summary, report = run(
        cloud,
        {"sources": [f"s3://{LOGS}/takeover/", f"s3://{LOGS}/takeover-held/"], "review": "skip"},
    )
    # Then it labels the failed run's frames and skips the running run's frame
    assert sorted(f["frame"] for f in report["frames"] if f["status"] == "labeled") == uris
    assert {f["frame"]: f["reason"] for f in report["frames"] if f["status"] == "skipped"} == {
        held: "being labeled by run busy-run"
    }


def test_a_batch_whose_failure_record_also_fails_is_still_accounted_for(cloud: LocalCloud) -> None:
    # Given an endpoint call and RecordBatchFailure that both fail on every attempt
    uris = upload(cloud, "lost", 4)
    saved = {n: cloud.handlers[n] for n in ("InvokeModelsFunction", "RecordBatchFailureFunction")}

    def broken(event: dict[str, Any], context: Any) -> Any:
        raise RuntimeError("injected failure")

    for name in saved:
        cloud.handlers[name] = broken
    try:
        summary, report = run(cloud, {"sources": [f"s3://{LOGS}/lost/"], "batch_size": 2, "review": "skip"})
    finally:
        cloud.handlers.update(saved)
    # Then (moto's Map drops a failed child as null) PlanReview finds the batches without a record and
    # fails their frames with that reason: every frame is found and failed, none lost
    assert (summary["frames_found"], summary["failed"], summary["lost"]) == (4, 4, 0)
    failed = {f["frame"]: f["reason"] for f in report["frames"] if f["status"] == "failed"}
    assert set(failed) == set(uris)
    assert all(r.startswith("BatchLost:") for r in failed.values())


def boto3_dynamodb(cloud: LocalCloud) -> Any:
    import boto3

    return boto3.client("dynamodb", region_name="us-east-1")
