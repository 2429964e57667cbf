"""ReportFailedRun against moto's S3 and the ledger table of template.yaml: an execution that ended
FAILED still writes the run's report and lets go of its frames; a redriven one runs again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws

from workflow.adapters.ledger import Claim, FrameLedger
from workflow.adapters.run_store import RunStore
from workflow.adapters.s3 import S3Store
from workflow.domain.detections import Detections, Provenance
from workflow.domain.records import BatchLabels, LabeledFrame, batch_id
from workflow.domain.routing import RouteDecision
from workflow.domain.run import ListCursor, ModelEndpoint, RunContext, RunRequest, SourceItem
from workflow.local.cloud import DEFAULT_TEMPLATE
from workflow.local.template import Template
from workflow.settings import Settings
from workflow.steps.batch_failure import record_batch_failure
from workflow.steps.failure import ExecutionStatusChange, on_execution_change
from workflow.steps.listing import list_page
from workflow.steps.prepare import prepare_run

DATA, LOGS, LEDGER = "autolabel-data", "drive-logs", "LedgerTable"
SETTINGS = Settings(
    data_bucket=DATA,
    token_table="TokenTable",
    ledger_table=LEDGER,
    default_models=[ModelEndpoint(name="m", endpoint_name="e")],
)
REQUEST = {"sources": [f"s3://{LOGS}/day1/"], "batch_size": 1}
FRAMES = [f"s3://{LOGS}/day1/{i:03d}.png" for i in range(3)]


@dataclass
class World:
    s3: S3Store
    dynamodb: Any

    @property
    def ledger(self) -> FrameLedger:
        """A ledger of its own per use, as each Lambda has (no cached run status carried over)."""
        return FrameLedger(self.dynamodb, LEDGER)

    def run_status(self, run_id: str) -> str | None:
        return self.ledger.run_status(run_id)


@pytest.fixture
def world() -> Iterator[World]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        for bucket in (DATA, LOGS):
            client.create_bucket(Bucket=bucket)
        for frame in FRAMES:
            client.put_object(Bucket=LOGS, Key=frame.split("/", 3)[3], Body=b"x")
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(**Template(DEFAULT_TEMPLATE).create_table_request(LEDGER))
        yield World(S3Store(client), dynamodb)


def change(status: str, redrives: int = 0, request: dict[str, Any] | None = None) -> ExecutionStatusChange:
    """The detail of Step Functions' "Execution Status Change" event for execution ``run-1``."""
    return ExecutionStatusChange.model_validate(
        {
            "executionArn": "arn:aws:states:us-east-1:123456789012:execution:autolabel-autolabel:run-1",
            "stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:autolabel-autolabel",
            "name": "run-1",
            "status": status,
            "input": json.dumps(REQUEST if request is None else request),
            "error": "States.TaskFailed" if status == "FAILED" else None,
            "cause": "PlanReview: Runtime.OutOfMemory" if status == "FAILED" else None,
            "redriveCount": redrives,
        }
    )


def half_labeled_run(world: World) -> RunContext:
    """Run-1 over three frames in three batches: the first labeled, the second failed, the third never
    reached (its branch had not ended when the execution failed)."""
    run = prepare_run(RunRequest.model_validate(REQUEST), "run-1", SETTINGS, world.s3, world.ledger)
    list_page(
        run, SourceItem(index=0, uri=REQUEST["sources"][0]), ListCursor(), SETTINGS, world.s3, world.ledger
    )
    store = RunStore(world.s3, run.bucket, run.run_prefix)
    dets = Detections.empty(640, 480, Provenance("m"), FRAMES[0])
    frame = LabeledFrame(frame=FRAMES[0], labels=dets.to_dict(), route=RouteDecision(route="auto"))
    store.put_labels(BatchLabels(batch_id=batch_id(0, 0, 0), frames=[frame]), 1, {})
    error = {"Error": "InferenceFailed", "Cause": "the model container crashed"}
    record_batch_failure(f"{run.batches_prefix}{batch_id(0, 0, 1)}.json", run, error, world.s3)
    return run


def test_a_failed_execution_writes_the_report_with_what_was_never_reached(world: World) -> None:
    # Given a run that labeled one frame, failed one and never reached the third
    run = half_labeled_run(world)
    assert world.run_status("run-1") == "running"
    # When its execution ends FAILED and ReportFailedRun handles the status change
    result = on_execution_change(change("FAILED"), SETTINGS, world.s3, world.ledger)
    # Then report.json says what was found, labeled, failed and why, and never reached
    assert result == {
        "status": "reported",
        "run_id": "run-1",
        "report": f"s3://{DATA}/{run.run_prefix}/report.json",
    }
    report = world.s3.get_json(result["report"])
    assert (report["status"], report["error"]) == ("FAILED", "States.TaskFailed")
    assert report["cause"] == "PlanReview: Runtime.OutOfMemory"
    assert (report["frames_found"], report["labeled"], report["failed"], report["never_reached"]) == (
        3,
        1,
        1,
        1,
    )
    assert (report["published"], report["labeled_not_published"]) == (0, 1)
    assert report["failures"] == [{"reason": "InferenceFailed: the model container crashed", "frames": 1}]
    # And report.html beside it shows the status and the failure's reason
    page = world.s3.get_bytes(f"s3://{DATA}/{run.run_prefix}/report.html").decode()
    assert "status FAILED" in page and "InferenceFailed: the model container crashed" in page
    # And the run is marked failed, so the next run takes over the frames it still holds
    assert world.run_status("run-1") == "failed"
    never_reached = world.ledger.claim(FRAMES[2], "run-2", page="s0000-p000000")
    assert never_reached == Claim(FRAMES[2], True)


def test_a_redriven_execution_marks_its_run_running_again(world: World) -> None:
    # Given a run whose failed execution was reported
    half_labeled_run(world)
    on_execution_change(change("FAILED"), SETTINGS, world.s3, world.ledger)
    # When the execution is redriven (Step Functions emits RUNNING with redriveCount 1)
    result = on_execution_change(change("RUNNING", redrives=1), SETTINGS, world.s3, world.ledger)
    # Then the run is running again, and its frames are no longer free for another run
    assert result == {"status": "resumed", "run_id": "run-1"}
    assert world.run_status("run-1") == "running"
    assert world.ledger.claim(FRAMES[2], "run-2") == Claim(FRAMES[2], False, "being labeled by run run-1")


@pytest.mark.parametrize(
    ("status", "redrives", "request_body"),
    [("RUNNING", 0, None), ("SUCCEEDED", 0, None), ("FAILED", 0, {"not": "a run request"})],
    ids=["first-start", "succeeded", "not-a-run"],
)
def test_other_status_changes_leave_the_run_as_it_is(
    world: World, status: str, redrives: int, request_body: dict[str, Any] | None
) -> None:
    # Given a running run
    run = half_labeled_run(world)
    # When a first start, a success or an execution that is not a run is reported
    result = on_execution_change(change(status, redrives, request_body), SETTINGS, world.s3, world.ledger)
    # Then it is ignored: no report, the run record unchanged
    assert result["status"] == "ignored"
    assert world.run_status("run-1") == "running"
    assert not world.s3.exists(f"s3://{DATA}/{run.run_prefix}/report.json")
