"""Parsing what AWS sends: async-inference SNS notifications and Ground Truth state-change events."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from workflow.domain.notifications import (
    AsyncInferenceNotification,
    LabelingJobStateChange,
    notifications_from_sns_event,
)

REAL_EVENT = Path("data") / "sagemaker" / "async_success_sns_lambda_event.json"
JOB_ARN = "arn:aws:sagemaker:us-east-1:123456789012:labeling-job/run-7-p000"


@pytest.fixture
def real_event(shared_dir: Path) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((shared_dir / REAL_EVENT).read_text())
    return event


def sns_event(*messages: dict[str, Any]) -> dict[str, Any]:
    """An SNS->Lambda event carrying the messages."""
    return {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": json.dumps(m)}} for m in messages]}


def failure_message() -> dict[str, Any]:
    """A failure notification (shape of the AWS guide): no responseParameters, a failureReason."""
    return {
        "awsRegion": "us-east-1",
        "eventTime": "2024-05-02T10:00:01.250Z",
        "receivedTime": "2024-05-02T10:00:00.100Z",
        "invocationStatus": "Failed",
        "failureReason": "ClientError: Received server error (500) from model",
        "requestParameters": {
            "endpointName": "autolabel-nanodet-coco",
            "inputLocation": "s3://data/runs/r/requests/b000000.json",
        },
        "inferenceId": "b000000-4f1c",
        "eventVersion": "1.0",
        "eventSource": "aws:sagemaker",
        "eventName": "InferenceResult",
    }


def test_real_success_event_parses(real_event: dict[str, Any]) -> None:
    # When the real SNS->Lambda event of a completed async inference is parsed
    (note,) = notifications_from_sns_event(real_event)
    # Then every field the workflow reads is there
    assert note.invocation_status == "Completed"
    assert note.inference_id == "8a80ed4e-1ff9-4c2b-bf16-31bdd5d17835"
    assert note.request_parameters.endpoint_name == "EEndpoint1CBD216E-N0iXvhsBov7n"
    assert note.request_parameters.input_location.startswith("s3://")
    assert note.request_parameters.accept == "application/json;jpeg"
    assert note.output_location == (
        "s3://sdx4upscaler-b08e7c7af-vc56motqrwj5/inferences/output/2f4dcf85-01b8-418c-8c93-2b30fcdd1ab8.out"
    )
    assert note.failure_reason is None and note.event_name == "InferenceResult"


def test_failure_notification_has_a_reason_and_no_output() -> None:
    (note,) = notifications_from_sns_event(sns_event(failure_message()))
    assert note.invocation_status == "Failed"
    assert note.output_location is None
    assert note.failure_reason == "ClientError: Received server error (500) from model"


def test_fields_aws_adds_later_are_ignored(real_event: dict[str, Any]) -> None:
    # Given the real message with fields this code does not know
    message = json.loads(real_event["Records"][0]["Sns"]["Message"])
    message |= {"responseBody": {"content": "{}", "encoding": "JSON"}, "someFutureField": 1}
    message["requestParameters"]["customAttributes"] = "x"
    # When it is parsed, then it still parses the same
    (note,) = notifications_from_sns_event(sns_event(message))
    assert note.inference_id == message["inferenceId"]


def test_every_record_of_an_event_is_read_in_order(real_event: dict[str, Any]) -> None:
    second = copy.deepcopy(real_event["Records"][0])
    second["Sns"]["Message"] = json.dumps(failure_message())
    event = {"Records": [real_event["Records"][0], second]}
    assert [n.invocation_status for n in notifications_from_sns_event(event)] == ["Completed", "Failed"]
    assert notifications_from_sns_event({"Records": []}) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("invocationStatus", "Pending"), ("inferenceId", None), ("requestParameters", {"endpointName": "e"})],
    ids=["unknown-status", "no-inference-id", "no-input-location"],
)
def test_malformed_notification_is_refused(field: str, value: Any) -> None:
    # Given a failure notification with one field wrong (None: missing)
    message = failure_message()
    if value is None:
        del message[field]
    else:
        message[field] = value
    # When it is parsed, then it is refused
    with pytest.raises(ValidationError):
        AsyncInferenceNotification.model_validate(message)


def state_change(status: str, **detail: Any) -> dict[str, Any]:
    """An EventBridge 'SageMaker Ground Truth Labeling Job State Change' event."""
    return {
        "version": "0",
        "id": "3b8f1c56-4c51-4a52-8d7e-1f5a2c3d4e5f",
        "detail-type": "SageMaker Ground Truth Labeling Job State Change",
        "source": "aws.sagemaker",
        "account": "123456789012",
        "time": "2024-05-02T10:00:00Z",
        "region": "us-east-1",
        "resources": [JOB_ARN],
        "detail": {"LabelingJobStatus": status, **detail},
    }


@pytest.mark.parametrize("status", ["Completed", "Failed", "Stopped", "InProgress"])
def test_state_change_names_the_job_and_status(status: str) -> None:
    change = LabelingJobStateChange.from_event(state_change(status))
    assert (change.status, change.job_arn, change.job_name) == (status, JOB_ARN, "run-7-p000")
    assert change.failure_reason is None


def test_state_change_carries_the_failure_reason() -> None:
    change = LabelingJobStateChange.from_event(state_change("Failed", FailureReason="ClientError: manifest"))
    assert change.failure_reason == "ClientError: manifest"


def test_state_change_without_resources_reads_the_job_arn_from_the_detail() -> None:
    event = state_change("Completed", LabelingJobArn=JOB_ARN)
    event["resources"] = []
    assert LabelingJobStateChange.from_event(event).job_name == "run-7-p000"


@pytest.mark.parametrize(
    "event",
    [state_change("Exploded"), {"detail": {}, "resources": [JOB_ARN]}],
    ids=["unknown-status", "no-status"],
)
def test_malformed_state_change_is_refused(event: dict[str, Any]) -> None:
    with pytest.raises((ValidationError, KeyError)):
        LabelingJobStateChange.from_event(event)
