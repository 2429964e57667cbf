"""The review fan-in against moto's S3: PlanReview fails batches that left no record, AssembleManifest
writes exactly the planned lines, CollectReview splits a job's output back by batch."""

from __future__ import annotations

from collections.abc import Iterator

import boto3
import pytest
from fan_in_steps import merged_batch, planned, run_context
from moto import mock_aws

from workflow.adapters.run_store import RunStore
from workflow.adapters.s3 import S3Store
from workflow.domain.detections import Detections, Provenance
from workflow.domain.profile import default_profile
from workflow.domain.records import BatchItem, batch_id, parts_of
from workflow.domain.routing import RouteDecision
from workflow.domain.run import ReviewResult
from workflow.settings import Settings
from workflow.steps.collect import collect_review
from workflow.steps.plan import ManifestMismatch, assemble_manifest, plan_review

RUN = run_context(["m"])
SETTINGS = Settings(data_bucket="data", token_table="t", ledger_table="l")
B0, B1 = batch_id(0, 0, 0), batch_id(0, 0, 1)


@pytest.fixture
def s3() -> Iterator[S3Store]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="data")
        yield S3Store(client)


@pytest.fixture
def store(s3: S3Store) -> RunStore:
    return RunStore(s3, RUN.bucket, RUN.run_prefix)


def to_adjust(*names: str) -> list[tuple[Detections, RouteDecision]]:
    """Frames without boxes, routed to adjustment (people look for what the models missed)."""
    return [
        (
            Detections.empty(640, 480, Provenance("m"), f"s3://logs/day1/{n}.png"),
            RouteDecision(route="adjust"),
        )
        for n in names
    ]


def two_batches(s3: S3Store) -> None:
    merged_batch(s3, RUN, default_profile(), SETTINGS, to_adjust("a", "b"), B0)
    merged_batch(s3, RUN, default_profile(), SETTINGS, to_adjust("c"), B1)


def test_collect_review_splits_the_job_output_by_batch_and_keeps_stray_lines(
    s3: S3Store, store: RunStore
) -> None:
    # Given one job over two batches (frames a, b and c), assembled from their review lines
    two_batches(s3)
    (part,) = planned(s3, RUN, SETTINGS).parts
    inputs = {line["source-ref"]: line for line in s3.get_lines(part.manifest_uri)}
    assert {k: v["autolabel-batch"] for k, v in inputs.items()} == {
        "s3://logs/day1/a.png": B0,
        "s3://logs/day1/b.png": B0,
        "s3://logs/day1/c.png": B1,
    }
    # And its output: c's line, a's line, a line naming no batch of the job; b's line is missing
    stray = {"source-ref": "s3://logs/day1/z.png", "autolabel-batch": "s9999-p000000-b000"}
    lines = [inputs["s3://logs/day1/c.png"], inputs["s3://logs/day1/a.png"], stray]
    output = s3.put_lines("s3://data/out/p0.manifest", lines)
    review = ReviewResult(
        job_name="run-1-p000", status="Completed", output_manifest_uri=output, label_attribute="r"
    )
    # When CollectReview runs
    collected = collect_review(RUN, part, review, s3)
    # Then each batch gets the lines of its own frames, and the review is tied to its part
    assert collected.part == part.index == 0
    assert [line["source-ref"] for _, line in store.reviewed(B0, [0])] == ["s3://logs/day1/a.png"]
    assert [line["source-ref"] for _, line in store.reviewed(B1, [0])] == ["s3://logs/day1/c.png"]
    # And the line of no batch is kept aside, not given to any batch
    assert s3.get_lines("s3://data/runs/run-1/reviewed/unattributed/000.jsonl") == [stray]


def test_assemble_manifest_refuses_a_part_whose_lines_changed(s3: S3Store, store: RunStore) -> None:
    # Given a planned job of three frames, one of whose batches then lost a review line
    two_batches(s3)
    (part,) = plan_review(RUN, SETTINGS, s3).parts
    key = f"s3://data/runs/run-1/review-lines/{part.stream}/{B0}.jsonl"
    s3.put_lines(key, s3.get_lines(key)[:1])
    # When AssembleManifest runs, Then it fails and says how many lines it wrote against the plan
    with pytest.raises(ManifestMismatch, match="part 0: 2 lines written, 3 planned"):
        assemble_manifest(RUN, part, s3)


def test_plan_review_fails_a_batch_that_left_no_record(s3: S3Store, store: RunStore) -> None:
    # Given two merged batches and a third that ListPage wrote but whose branch left no record
    two_batches(s3)
    lost = batch_id(0, 0, 2)
    store.put_batch(BatchItem(batch_id=lost, frames=["s3://logs/day1/d.png"]))
    # When PlanReview runs
    result = plan_review(RUN, SETTINGS, s3)
    # Then the lost batch is failed with the reason, counted, and put in the dataset's shards
    assert (result.lost_batches, result.frames, result.labeled, result.failed) == (1, 4, 3, 1)
    labels = store.get_labels(lost)
    assert labels is not None and [f.frame for f in labels.failed] == ["s3://logs/day1/d.png"]
    assert labels.failed[0].reason.startswith("BatchLost: the batch's branch ended without a result")
    (shard,) = s3.get_json(f"s3://data/{result.shards_key}")
    assert shard["batches"] == [B0, B1, lost]
    # And the jobs' batch ranges are planned for PublishShard: the lost batch is in none of them
    ranges = store.part_ranges()
    assert [parts_of(b, ranges) for b in shard["batches"]] == [[0], [0], []]
