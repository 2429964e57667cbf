"""TokenStore against moto's DynamoDB (the table as template.yaml defines it): at-least-once delivery
of async-inference notifications resumes each batch exactly once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import count
from typing import Any

import boto3
import pytest
from moto import mock_aws

from workflow.adapters.callbacks import TaskCallbacks
from workflow.adapters.s3 import S3Store
from workflow.adapters.tokens import PendingInference, TokenStore
from workflow.domain.notifications import AsyncInferenceNotification
from workflow.local.cloud import DEFAULT_TEMPLATE
from workflow.local.template import Template
from workflow.settings import Settings
from workflow.steps.inference import on_inference_result

REGION = "us-east-1"
TABLE = "TokenTable"
TOKEN = "AQCEAAAAKgAAAAMAAAAAAAAAA" + "x" * 900  # task tokens run up to 1,024 characters
_batches = count()


@dataclass
class RecordingCallbacks:
    """Stands in for TaskCallbacks (the Step Functions port) and records what would be sent."""

    succeeded: list[tuple[str, Any]] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)
    refuse_next: int = 0  # how many next calls fail as a throttled SendTask* would

    def _maybe_refuse(self) -> None:
        if self.refuse_next:
            self.refuse_next -= 1
            raise ConnectionError("SendTaskSuccess throttled")

    def succeed(self, token: str, output: Any) -> bool:
        self._maybe_refuse()
        self.succeeded.append((token, output))
        return True

    def fail(self, token: str, error: str, cause: str) -> bool:
        self._maybe_refuse()
        self.failed.append((token, error, cause))
        return True


@pytest.fixture(scope="module")
def dynamodb() -> Iterator[Any]:
    # One moto account for the module, with Step Functions' interpreter (it knows which tokens wait).
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        client = boto3.client("dynamodb", region_name=REGION)
        client.create_table(**Template(DEFAULT_TEMPLATE).create_table_request(TABLE))
        yield client


@pytest.fixture
def store(dynamodb: Any) -> TokenStore:
    return TokenStore(dynamodb, TABLE)


@pytest.fixture(scope="module")
def records(dynamodb: Any) -> S3Store:
    """The data bucket, where the callback leaves a resumed batch's inference records (or failures)."""
    client = boto3.client("s3", region_name=REGION)
    client.create_bucket(Bucket=DATA)
    return S3Store(client)


SETTINGS = Settings(data_bucket="data", token_table=TABLE, ledger_table="LedgerTable")
DATA = SETTINGS.data_bucket


def handle(note: AsyncInferenceNotification, store: TokenStore, callbacks: Any, records: S3Store) -> str:
    return on_inference_result(note, store, callbacks, records, SETTINGS)


@dataclass
class Batch:
    """A batch parked in the store: its key and the ids of the inferences it waits for."""

    run_id: str
    batch_id: str
    key: str
    inference_ids: list[str]


def park(store: TokenStore, models: tuple[str, ...] = ("nanodet", "yolo")) -> Batch:
    run_id, batch_id = "run-1", f"b{next(_batches):06d}"
    pending = [
        PendingInference(f"{batch_id}-{m}", m, [f"s3://logs/{batch_id}/{i}.jpg" for i in range(2)])
        for m in models
    ]
    key = store.park_batch(run_id, batch_id, TOKEN, pending)
    return Batch(run_id, batch_id, key, [p.inference_id for p in pending])


def notification(inference_id: str, status: str = "Completed") -> AsyncInferenceNotification:
    """The SNS message SageMaker publishes when an asynchronous inference ends."""
    message: dict[str, Any] = {
        "awsRegion": REGION,
        "eventTime": "2024-05-02T10:00:01.250Z",
        "receivedTime": "2024-05-02T10:00:00.100Z",
        "invocationStatus": status,
        "requestParameters": {
            "contentType": "application/json",
            "endpointName": "autolabel-nanodet-coco",
            "inputLocation": "s3://data/runs/run-1/requests/b.json",
        },
        "inferenceId": inference_id,
        "eventVersion": "1.0",
        "eventSource": "aws:sagemaker",
        "eventName": "InferenceResult",
    }
    if status == "Completed":
        message["responseParameters"] = {
            "contentType": "application/json",
            "outputLocation": f"s3://data/async/output/{inference_id}.out",
        }
    else:
        message["failureReason"] = "ModelError: CUDA error: an illegal memory access was encountered"
    return AsyncInferenceNotification.model_validate(message)


def item(dynamodb: Any, pk: str) -> dict[str, Any]:
    got: dict[str, Any] = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": pk}}, ConsistentRead=True)[
        "Item"
    ]
    return got


def record(store: TokenStore, inference_id: str, status: str = "Completed") -> str | None:
    note = notification(inference_id, status)
    return store.record_inference(
        note.inference_id, note.invocation_status, note.output_location, note.failure_reason
    )


def test_parked_batch_keeps_the_full_token_and_expires(store: TokenStore, dynamodb: Any) -> None:
    # When a batch waiting for two inferences is parked
    batch = park(store)
    # Then the batch item holds the whole token, the count to wait for, and a TTL a month ahead
    stored = item(dynamodb, batch.key)
    assert (
        stored["token"]["S"] == TOKEN
        and stored["remaining"]["N"] == "2"
        and stored["status"]["S"] == "waiting"
    )
    assert abs(int(stored["expires_at"]["N"]) - (time.time() + store.ttl_seconds)) < 60
    # And one pending item per inference points back at the batch
    for inference_id in batch.inference_ids:
        pending = item(dynamodb, f"inference#{inference_id}")
        assert pending["batch_key"]["S"] == batch.key and pending["status"]["S"] == "pending"


def test_same_notification_twice_counts_down_once(store: TokenStore, dynamodb: Any) -> None:
    # Given a batch waiting for two inferences
    batch = park(store)
    # When the first inference's notification is delivered twice
    assert record(store, batch.inference_ids[0]) == batch.key
    assert record(store, batch.inference_ids[0]) == batch.key
    # Then the batch still waits for exactly one inference, and cannot be claimed yet
    assert item(dynamodb, batch.key)["remaining"]["N"] == "1"
    assert store.claim_completed_batch(batch.key) is None


def test_batch_is_claimed_exactly_once_when_its_last_inference_reports(store: TokenStore) -> None:
    # Given a batch whose two inferences have both reported
    batch = park(store)
    record(store, batch.inference_ids[0])
    record(store, batch.inference_ids[1], status="Failed")
    # When it is claimed, then claimed again (a redelivered last notification)
    first = store.claim_completed_batch(batch.key)
    second = store.claim_completed_batch(batch.key)
    # Then the first claim carries the token and every inference's outcome; the second gets nothing
    assert first is not None and second is None
    assert first.token == TOKEN and first.batch_id == batch.batch_id
    outcomes = {r.inference_id: (r.status, r.output_location, r.failure_reason) for r in first.inferences}
    assert outcomes == {
        batch.inference_ids[0]: ("Completed", f"s3://data/async/output/{batch.inference_ids[0]}.out", None),
        batch.inference_ids[1]: (
            "Failed",
            None,
            "ModelError: CUDA error: an illegal memory access was encountered",
        ),
    }
    assert all(len(r.frames) == 2 for r in first.inferences)


def test_unknown_inference_is_reported_as_unknown(store: TokenStore, records: S3Store) -> None:
    # Given a notification of an inference no batch waits for
    callbacks = RecordingCallbacks()
    # When it is handled
    outcome = handle(notification("someone-elses-inference"), store, callbacks, records)
    # Then nothing is resumed
    assert outcome == "unknown" and not callbacks.succeeded and not callbacks.failed


@pytest.mark.parametrize(
    ("deliveries", "outcomes"),
    [
        ([0, 1], ["waiting", "resumed"]),
        ([0, 0, 1, 1, 0], ["waiting", "waiting", "resumed", "waiting", "waiting"]),
        ([1, 0, 0, 1], ["waiting", "resumed", "waiting", "waiting"]),
    ],
    ids=["once-each", "duplicates-around-the-last", "out-of-order"],
)
def test_at_least_once_delivery_resumes_the_batch_exactly_once(
    store: TokenStore, records: S3Store, deliveries: list[int], outcomes: list[str]
) -> None:
    # Given a batch waiting for two inferences
    batch = park(store)
    callbacks = RecordingCallbacks()
    # When their success notifications arrive, some of them more than once
    seen = [handle(notification(batch.inference_ids[i]), store, callbacks, records) for i in deliveries]
    # Then the batch's task is resumed once, with both inference records, and never failed
    assert seen == outcomes
    assert not callbacks.failed
    ((token, output),) = callbacks.succeeded
    assert token == TOKEN and output["batch_id"] == batch.batch_id
    # (the records ride in S3, so the payload stays small whatever the batch)
    assert output["records_uri"] == f"s3://{DATA}/runs/{batch.run_id}/inferences/{batch.batch_id}.json"
    stored = records.get_json(output["records_uri"])
    assert sorted(r["inference_id"] for r in stored) == sorted(batch.inference_ids)


def test_batch_whose_every_inference_failed_fails_its_task_with_each_frames_reason(
    store: TokenStore, records: S3Store
) -> None:
    # Given a batch waiting for one inference of two frames
    batch = park(store, models=("nanodet",))
    callbacks = RecordingCallbacks()
    # When the endpoint's error notification arrives, twice
    outcomes = [
        handle(notification(batch.inference_ids[0], "Failed"), store, callbacks, records) for _ in range(2)
    ]
    # Then the task fails once, the cause naming every frame and the endpoint's reason
    assert outcomes == ["failed", "waiting"]
    ((token, error, cause),) = callbacks.failed
    assert token == TOKEN and error == "InferenceFailed"
    detail = json.loads(cause)
    assert detail["batch_id"] == batch.batch_id
    failures = records.get_json(detail["failures_uri"])
    assert [f["frame"] for f in failures] == [f"s3://logs/{batch.batch_id}/{i}.jpg" for i in range(2)]
    assert {f["reason"] for f in failures} == {
        "nanodet: ModelError: CUDA error: an illegal memory access was encountered"
    }


def test_failed_resume_is_handed_back_so_a_redelivery_resumes_the_batch(
    store: TokenStore, dynamodb: Any, records: S3Store
) -> None:
    # Given a batch waiting for one inference, and Step Functions throttling the first SendTaskSuccess
    batch = park(store, models=("nanodet",))
    callbacks = RecordingCallbacks(refuse_next=1)
    # When the notification is handled, the send fails and the error propagates (SNS retries)
    with pytest.raises(ConnectionError):
        handle(notification(batch.inference_ids[0]), store, callbacks, records)
    # Then the batch is waiting again, and the redelivered notification resumes it
    assert item(dynamodb, batch.key)["status"]["S"] == "waiting"
    assert handle(notification(batch.inference_ids[0]), store, callbacks, records) == "resumed"
    assert len(callbacks.succeeded) == 1
    assert item(dynamodb, batch.key)["status"]["S"] == "sent"


def test_labeling_job_token_is_claimed_once(store: TokenStore) -> None:
    # Given a token parked under a labeling job's name
    store.park_job("run-1-p000", TOKEN)
    # When the job's state change is handled twice, and an unknown job's once
    claims = [store.claim_job("run-1-p000"), store.claim_job("run-1-p000"), store.claim_job("no-such-job")]
    # Then only the first claim gets the token
    assert claims == [TOKEN, None, None]


def test_answering_a_token_step_functions_no_longer_knows_is_not_an_error(dynamodb: Any) -> None:
    # Given Step Functions (moto's interpreter) with no task waiting on the token
    callbacks = TaskCallbacks(boto3.client("stepfunctions", region_name=REGION))
    # When the token is answered (a redelivered message after the task ended)
    # Then the callbacks say it was already closed instead of raising
    assert callbacks.succeed(TOKEN, {"batch_id": "b000000"}) is False
    assert callbacks.fail(TOKEN, "InferenceFailed", "{}") is False
