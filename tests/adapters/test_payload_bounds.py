"""What the inference callback hands to Step Functions is bounded whatever the batch: at the largest
allowed batch (500 frames) with two one-image-per-request models (1,000 inferences), SendTaskSuccess
stays far under 256 KiB and SendTaskFailure's cause under 32,768 characters; MergeBatch and
RecordBatchFailure read the records back from S3."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from workflow.adapters.s3 import S3Store
from workflow.adapters.tokens import PendingInference, TokenStore
from workflow.domain.notifications import AsyncInferenceNotification
from workflow.domain.records import batch_failures, failures_uri
from workflow.domain.run import BatchInference, InferenceRecord, RunRequest
from workflow.local.cloud import DEFAULT_TEMPLATE
from workflow.local.template import Template
from workflow.settings import Settings
from workflow.steps.inference import on_inference_result

REGION = "us-east-1"
BUCKET = "autolabel-data"
TOKEN = "AQCEAAAAKgAAAAMAAAAAAAAAA" + "x" * 900
MAX_BATCH = RunRequest.model_fields["batch_size"].metadata[1].le  # the largest batch a run may ask for
STEP_FUNCTIONS_PAYLOAD = 256 * 1024
FAILURE_CAUSE = 32_768


class Callbacks:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []  # (kind, the JSON as Step Functions would receive it)

    def succeed(self, token: str, output: Any) -> bool:
        self.sent.append(("success", json.dumps(output)))
        return True

    def fail(self, token: str, error: str, cause: str) -> bool:
        self.sent.append(("failure", cause))
        return True


@pytest.fixture
def aws() -> Iterator[tuple[TokenStore, S3Store, Settings]]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(**Template(DEFAULT_TEMPLATE).create_table_request("TokenTable"))
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        settings = Settings(data_bucket=BUCKET, token_table="TokenTable", ledger_table="LedgerTable")
        yield TokenStore(dynamodb, "TokenTable"), S3Store(s3), settings


def notification(inference_id: str, status: str, output: str | None = None, reason: str | None = None) -> Any:
    """A notification as SageMaker publishes it (aws-formats.md: the SNS Message JSON)."""
    message: dict[str, Any] = {
        "invocationStatus": status,
        "inferenceId": inference_id,
        "requestParameters": {"endpointName": "jumpstart", "inputLocation": "s3://fleet-drive-logs/x.jpg"},
        "eventName": "InferenceResult",
    }
    if output:
        message["responseParameters"] = {"contentType": "application/json", "outputLocation": output}
    if reason:
        message["failureReason"] = reason
    return AsyncInferenceNotification.model_validate(message)


def frames() -> list[str]:
    return [f"s3://fleet-drive-logs/2026-12-01/vehicle-0042/cam_front/{i:06d}.jpg" for i in range(MAX_BATCH)]


def park_one_image_inferences(tokens: TokenStore) -> list[PendingInference]:
    pending = [
        PendingInference(f"s000-{model}-{i:06d}", model, [frame])
        for model in ("jumpstart-a", "jumpstart-b")
        for i, frame in enumerate(frames())
    ]
    tokens.park_batch("run-big", "s0000-p000000-b000", TOKEN, pending)
    return pending


def test_success_payload_is_bounded_at_the_largest_batch(aws: tuple[TokenStore, S3Store, Settings]) -> None:
    # Given the largest batch, with two one-image models: 1,000 inferences waiting
    tokens, s3, settings = aws
    pending = park_one_image_inferences(tokens)
    assert MAX_BATCH == 500 and len(pending) == 1000
    callbacks = Callbacks()
    # When every notification arrives
    for p in pending:
        note = notification(
            p.inference_id, "Completed", output=f"s3://{BUCKET}/async/out/{p.inference_id}.out"
        )
        on_inference_result(note, tokens, callbacks, s3, settings)
    # Then the batch resumes once, with a payload far under Step Functions' 256 KiB
    ((kind, payload),) = callbacks.sent
    assert kind == "success" and len(payload.encode()) < 1024 < STEP_FUNCTIONS_PAYLOAD
    # And the 1,000 records it stands for are in S3, where MergeBatch reads them
    result = BatchInference.model_validate_json(payload)
    records = [InferenceRecord.model_validate(r) for r in s3.get_json(result.records_uri or "")]
    assert len(records) == 1000 and {r.frames[0] for r in records} == set(frames())
    # (inline, they would not have fitted)
    inline = BatchInference(batch_id=result.batch_id, inferences=records).model_dump_json()
    assert len(inline.encode()) > STEP_FUNCTIONS_PAYLOAD


def test_failure_cause_is_bounded_and_keeps_every_frame_reason(
    aws: tuple[TokenStore, S3Store, Settings],
) -> None:
    # Given the same batch, and every inference failing with a long reason
    tokens, s3, settings = aws
    pending = park_one_image_inferences(tokens)
    callbacks = Callbacks()
    reason = "ModelError: Received server error (500) from primary with message: " + "x" * 200
    for p in pending:
        note = notification(p.inference_id, "Failed", reason=reason)
        on_inference_result(note, tokens, callbacks, s3, settings)
    # Then the task fails once, with a cause under SendTaskFailure's limit
    ((kind, cause),) = callbacks.sent
    assert kind == "failure" and len(cause) < FAILURE_CAUSE
    # And RecordBatchFailure's reader finds every frame's reason behind the cause's URI
    error = {"Error": "InferenceFailed", "Cause": cause}
    uri = failures_uri(error)
    assert uri is not None
    failed = batch_failures(frames(), error, s3.get_json(uri))
    assert len(failed) == MAX_BATCH
    assert all(f.reason.startswith("jumpstart-") and "server error (500)" in f.reason for f in failed)
