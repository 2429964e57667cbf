"""FinishRun refuses to report success while a listing page or a planned shard left no record."""

from __future__ import annotations

import json
from collections.abc import Iterator

import boto3
import pytest
from fan_in_steps import run_context
from moto import mock_aws

from workflow.adapters.run_store import RunStore
from workflow.adapters.s3 import S3Store
from workflow.domain.errors import RunIncomplete
from workflow.domain.records import PageCounts
from workflow.settings import Settings
from workflow.steps.finish import finish_run

RUN = run_context(["m"], profile_key=None, source_count=2, review="skip")
SETTINGS = Settings(data_bucket="data", token_table="t", ledger_table="l")


@pytest.fixture
def s3() -> Iterator[S3Store]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="data")
        yield S3Store(client)


def page(source: int, number: int, more: bool) -> PageCounts:
    uri = ["s3://a/", "s3://b/"][source]
    return PageCounts(
        source=uri, source_index=source, page=number, listed=0, frames=0, batches=0, skipped=0, more=more
    )


def test_every_gap_is_named_with_the_cause_its_branch_wrote(s3: S3Store) -> None:
    # Given two sources: a's first page says more follow but its second never came; b was never
    # listed, its branch wrote ListPage's error; and a planned shard of 5 frames never published
    store = RunStore(s3, RUN.bucket, RUN.run_prefix)
    s3.put_json(store.uri("sources.json"), [{"index": 0, "uri": "s3://a/"}, {"index": 1, "uri": "s3://b/"}])
    store.put_page(page(0, 0, more=True), [])
    lambda_error = {"errorType": "RuntimeError", "errorMessage": "boom (ListPage)", "stackTrace": []}
    s3.put_json(
        store.uri("failures/listing/1-0.json"), {"Error": "RuntimeError", "Cause": json.dumps(lambda_error)}
    )
    s3.put_json(
        store.uri("plan/shards.json"), [{"index": 0, "frames": 5, "batches": ["s0000-p000000-b0000"]}]
    )
    # When FinishRun runs, Then it fails naming each gap, and says how to finish the run
    with pytest.raises(RunIncomplete) as raised:
        finish_run({"run": RUN.model_dump(mode="json")}, SETTINGS, s3, None)  # type: ignore[arg-type]
    message = str(raised.value)
    assert "3 part(s) of run run-1 left no record" in message
    assert "source s3://a/ page 1 was never listed (its branch failed and left no failure record)" in message
    assert "source s3://b/ page 0 was never listed (RuntimeError: boom (ListPage))" in message
    assert "shard 0 (5 frames) was never published" in message
    assert "Resume the run" in message
    # And no report claims success
    assert not s3.exists(store.uri("report.json"))


def test_a_run_whose_pages_and_shards_all_left_records_finishes(s3: S3Store) -> None:
    store = RunStore(s3, RUN.bucket, RUN.run_prefix)
    s3.put_json(store.uri("sources.json"), [{"index": 0, "uri": "s3://a/"}, {"index": 1, "uri": "s3://b/"}])
    for p in (page(0, 0, more=True), page(0, 1, more=False), page(1, 0, more=False)):
        store.put_page(p, [])
    s3.put_json(store.uri("plan/shards.json"), [])

    class Ledger:
        def mark_run(self, run_id: str, status: str) -> None:
            self.marked = (run_id, status)

    ledger = Ledger()
    summary = finish_run({"run": RUN.model_dump(mode="json")}, SETTINGS, s3, ledger)  # type: ignore[arg-type]
    assert (
        summary["status"] == "SUCCEEDED" and summary["lost"] == 0 and ledger.marked == ("run-1", "succeeded")
    )


def test_the_report_lists_each_damaged_lineage_chunk_once_with_the_frames_it_cost(s3: S3Store) -> None:
    # Given two pages of one source that both read a damaged lineage chunk, and one a missing chunk
    from workflow.domain.records import LineageProblem

    store = RunStore(s3, RUN.bucket, RUN.run_prefix)
    s3.put_json(store.uri("sources.json"), [{"index": 0, "uri": "s3://a/"}])
    s3.put_json(store.uri("plan/shards.json"), [])
    damaged = "s3://a/frames/drive/cam/lineage-000000.jsonl"
    gone = "s3://a/frames/drive/cam/lineage-000001.jsonl"
    first = page(0, 0, more=True).model_copy(
        update={"lineage_problems": [LineageProblem(chunk=damaged, reason="line 7 is not JSON", frames=1)]}
    )
    second = page(0, 1, more=False).model_copy(
        update={
            "lineage_problems": [
                LineageProblem(chunk=damaged, reason="line 7 is not JSON", frames=2),
                LineageProblem(chunk=gone, reason="the chunk is missing", frames=4),
            ]
        }
    )
    for p in (first, second):
        store.put_page(p, [])

    class Ledger:
        def mark_run(self, run_id: str, status: str) -> None:
            pass

    run = RUN.model_copy(update={"source_count": 1})
    # When FinishRun runs
    finish_run({"run": run.model_dump(mode="json")}, SETTINGS, s3, Ledger())  # type: ignore[arg-type]
    # Then report.json names each chunk once, with why and the frames labeled without their lineage
    report = s3.get_json(store.uri("report.json"))
    assert report["drive_log_lineage"] == {
        "frames_without_lineage": 7,
        "chunks": 2,
        "problems": [
            {"chunk": damaged, "reason": "line 7 is not JSON", "frames": 3},
            {"chunk": gone, "reason": "the chunk is missing", "frames": 4},
        ],
    }
