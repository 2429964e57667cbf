"""The labeling-job callback, driven with the EventBridge state-change events the labeling service emits.

A LocalCloud in review ``wait`` mode runs the real state machine up to its labeling job. The
EventBridge rule that template.yaml defines delivers to an SQS queue instead of the Lambda
function, so the test hands each captured event to the handler (loaded by file path) itself.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from workflow.local.cloud import ACCOUNT, REGION, LocalCloud, LocalContext
from workflow.local.endpoint import Predictor

pytestmark = pytest.mark.slow

DEFAULT_ENDPOINT = "autolabel-nanodet-coco"  # template.yaml's EndpointName default
RULE = "LabelingCallbackFunction-rule"  # the rule LocalCloud makes from the function's EventBridgeRule
DETAIL_TYPE = "SageMaker Ground Truth Labeling Job State Change"


@dataclass
class World:
    cloud: LocalCloud
    handler: Callable[..., Any]
    review_dir: Path
    frame: bytes
    sqs: Any
    queue_url: str

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.handler(copy.deepcopy(event), LocalContext("LabelingCallbackFunction"))
        return result

    def start_waiting_run(self, name: str) -> tuple[str, str]:
        """Start a run with human review over a new KITTI frame; return (execution ARN, job name)
        once its labeling job waits for the reviewer."""
        self.cloud.s3.put_object(Bucket="drive-logs", Key=f"{name}/000007.png", Body=self.frame)
        arn = self.cloud.start_run({"sources": [f"s3://drive-logs/{name}/"], "review": "human"}, name=name)
        job = f"{name}-p000"
        draft = self.review_dir / f"{job}.draft.manifest"
        deadline = time.monotonic() + 60
        while not draft.exists():
            status = self.cloud.sfn.describe_execution(executionArn=arn)["status"]
            assert status == "RUNNING" and time.monotonic() < deadline, f"labeling job {job} never started"
            time.sleep(0.1)
        return arn, job

    def events_of(self, job: str, timeout: float = 30) -> dict[str, Any]:
        """The one state-change event about ``job`` that EventBridge delivered to the queue."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            messages = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get(
                "Messages", []
            )
            for message in messages:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
                event: dict[str, Any] = json.loads(message["Body"])
                if event["resources"][0].endswith(f"/{job.lower()}"):
                    return event
            time.sleep(0.1)
        raise AssertionError(f"no state-change event for {job}")

    def summary(self, arn: str) -> dict[str, Any]:
        described = self.cloud.wait(arn, timeout=60)
        assert described["status"] == "SUCCEEDED", (described.get("error"), described.get("cause"))
        summary: dict[str, Any] = json.loads(described["output"])
        return summary

    def report(self, summary: dict[str, Any]) -> dict[str, Any]:
        bucket, _, key = summary["outputs"]["report"].removeprefix("s3://").partition("/")
        report: dict[str, Any] = json.loads(self.cloud.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        return report


@pytest.fixture(scope="module")
def world(
    local_cloud: Callable[..., LocalCloud],
    detector_factory: Callable[[], Predictor],
    load_function: Callable[[str], Any],
    shared_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> World:
    review_dir = tmp_path_factory.mktemp("review")
    cloud = local_cloud({DEFAULT_ENDPOINT: detector_factory}, review_mode="wait", review_dir=review_dir)
    cloud.s3.create_bucket(Bucket="drive-logs")
    # Capture the rule's events in SQS instead of invoking the function, to deliver them by hand.
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = sqs.create_queue(QueueName="labeling-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    (target,) = cloud.events.list_targets_by_rule(Rule=RULE)["Targets"]
    cloud.events.remove_targets(Rule=RULE, Ids=[target["Id"]])
    cloud.events.put_targets(Rule=RULE, Targets=[{"Id": "capture", "Arn": queue_arn}])
    frame = (shared_dir / "data" / "kitti_object" / "image_2" / "000007.png").read_bytes()
    return World(cloud, load_function("labeling_callback"), review_dir, frame, sqs, queue_url)


def test_completed_job_event_resumes_the_run_once(world: World) -> None:
    # Given a run waiting at its labeling job
    arn, job = world.start_waiting_run("review-completed")
    # When the reviewer accepts the pre-labels and the job completes
    draft = world.review_dir / f"{job}.draft.manifest"
    (world.review_dir / f"{job}.manifest").write_text(draft.read_text())
    event = world.events_of(job)
    assert event["detail-type"] == DETAIL_TYPE and event["detail"]["LabelingJobStatus"] == "Completed"
    # And EventBridge delivers the state change to the callback
    result = world.handle(event)
    # Then the review task resumes and the run publishes the reviewed dataset
    assert result == {"job": job, "outcome": "resumed"}
    summary = world.summary(arn)
    assert summary["review"] == "reviewed" and summary["labeled"] == 1
    # When EventBridge delivers the same event again
    again = world.handle(event)
    # Then nothing is resumed a second time and the run's result stands
    assert again == {"job": job, "outcome": "unknown-or-done"}
    assert json.loads(world.cloud.sfn.describe_execution(executionArn=arn)["output"]) == summary


def test_stopped_job_event_fails_the_review_and_the_run_still_publishes(world: World) -> None:
    # Given a run waiting at its labeling job
    arn, job = world.start_waiting_run("review-stopped")
    # When the job is stopped and EventBridge delivers its state change
    assert world.cloud.labeling is not None
    world.cloud.labeling.stop_labeling_job(LabelingJobName=job)
    event = world.events_of(job)
    assert event["detail"]["LabelingJobStatus"] == "Stopped"
    result = world.handle(event)
    # Then the review fails, and the run still publishes: its report holds the review error, and the
    # frame people were to review is failed with that reason (not published as machine-labeled)
    assert result == {"job": job, "outcome": "failed"}
    summary = world.summary(arn)
    assert summary["review"] == "failed" and (summary["labeled"], summary["failed"]) == (0, 1)
    report = world.report(summary)
    error = report["review"]["error"]
    assert error.startswith("review did not finish: LabelingJobStopped") and job in error
    (failure,) = report["failures"]
    assert failure["reason"].startswith("review did not finish: LabelingJobStopped")
    assert failure["examples"] == ["s3://drive-logs/review-stopped/000007.png"]
    # And the ledger holds the frame as failed, so the next run claims it and sends it to people again
    ledger = boto3.client("dynamodb", region_name=REGION)
    item = ledger.get_item(TableName="LedgerTable", Key={"pk": {"S": failure["examples"][0]}})["Item"]
    assert item["status"] == {"S": "failed"} and item["run_id"] == {"S": "review-stopped"}


@pytest.mark.parametrize(
    ("job", "status", "outcome"),
    [("never-started-p000", "Completed", "unknown-or-done"), ("any-job-p000", "InProgress", "ignored")],
)
def test_events_about_unknown_jobs_or_unfinished_jobs_change_nothing(
    world: World, job: str, status: str, outcome: str
) -> None:
    # Given a state-change event in EventBridge's envelope for a job no run waits on, or still running
    event = {
        "version": "0",
        "id": "3b8f1c56-4c51-4a52-8d7e-1f5a2c3d4e5f",
        "detail-type": DETAIL_TYPE,
        "source": "aws.sagemaker",
        "account": ACCOUNT,
        "time": "2024-05-02T10:00:00Z",
        "region": REGION,
        "resources": [f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:labeling-job/{job}"],
        "detail": {"LabelingJobStatus": status},
    }
    # When the callback handles it
    result = world.handle(event)
    # Then it resumes nothing and raises nothing
    assert result == {"job": job, "outcome": outcome}
