"""The SNS callback of asynchronous inference, driven with the REAL SageMaker notification.

The handler (``functions/inference_callback/app.py``, loaded by file path) runs against moto's
DynamoDB and Step Functions inside a LocalCloud, whose tables come from template.yaml. A real
execution of the real state machine waits at InvokeModels: its endpoint holds the inference until
the test lets it go.
"""

from __future__ import annotations

import copy
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import TypeDeserializer

from workflow.adapters.tokens import PendingInference, TokenStore
from workflow.domain.detections import Detections
from workflow.domain.records import batch_id
from workflow.local.cloud import LocalCloud, LocalContext
from workflow.local.endpoint import Predictor

pytestmark = pytest.mark.slow

REGION = "us-east-1"
GATED = "autolabel-gated"
TOKENS = "TokenTable"
FRAME_KEY = "gated/000007.png"
BATCH = batch_id(0, 0, 0)  # the first batch of the first page of the first source
PARKED = f"batch#waiting-run#{BATCH}"
_de = TypeDeserializer()


class HeldModel:
    """The real detector, but each inference waits until the test releases it."""

    def __init__(self, detector: Predictor, release: threading.Event) -> None:
        self.detector = detector
        self.release = release

    def predict_bytes(self, data: bytes, frame: str) -> Detections:
        assert self.release.wait(120), "the test never released the held inference"
        return self.detector.predict_bytes(data, frame)


class World:
    def __init__(self, cloud: LocalCloud, release: threading.Event, handler: Callable[..., Any]) -> None:
        self.cloud = cloud
        self.release = release
        self.handler = handler
        self.dynamodb = boto3.client("dynamodb", region_name=REGION)
        self.tokens = TokenStore(self.dynamodb, TOKENS)

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.handler(copy.deepcopy(event), LocalContext("InferenceCallbackFunction"))
        return result

    def items(self) -> dict[str, dict[str, Any]]:
        found = self.dynamodb.scan(TableName=TOKENS, ConsistentRead=True)["Items"]
        return {item["pk"]["S"]: {k: _de.deserialize(v) for k, v in item.items()} for item in found}

    def wait_for_item(self, pk: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (item := self.items().get(pk)) is None:
            assert time.monotonic() < deadline, f"{pk} never appeared in the token table"
            time.sleep(0.1)
        return item


@pytest.fixture(scope="module")
def real_event(shared_dir: Path) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(
        (shared_dir / "data" / "sagemaker" / "async_success_sns_lambda_event.json").read_text()
    )
    return event


def real_message(event: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(event["Records"][0]["Sns"]["Message"])
    return message


@pytest.fixture(scope="module")
def world(
    local_cloud: Callable[..., LocalCloud],
    detector: Predictor,
    load_function: Callable[[str], Any],
    shared_dir: Path,
) -> Iterator[World]:
    release = threading.Event()
    cloud = local_cloud({GATED: lambda: HeldModel(detector, release)})
    cloud.s3.create_bucket(Bucket="drive-logs")
    frame = shared_dir / "data" / "kitti_object" / "image_2" / "000007.png"
    cloud.s3.put_object(Bucket="drive-logs", Key=FRAME_KEY, Body=frame.read_bytes())
    yield World(cloud, release, load_function("inference_callback"))
    release.set()  # let the endpoint's workers finish before the cloud stops


def test_notification_of_an_unknown_inference_changes_nothing(
    world: World, real_event: dict[str, Any]
) -> None:
    # Given the real notification of an inference this deployment never started
    before = world.items()
    # When the callback handles it
    result = world.handle(real_event)
    # Then it reports the inference as unknown, raises nothing, and writes nothing
    assert result == {"outcomes": ["unknown"]}
    assert world.items() == before


def test_real_notification_resumes_the_batch_that_waits_for_it(
    world: World, real_event: dict[str, Any]
) -> None:
    # Given a run whose only batch waits at InvokeModels (its endpoint holds the inference)
    cloud = world.cloud
    request = {
        "sources": [f"s3://drive-logs/{FRAME_KEY}"],
        "review": "skip",
        "models": [{"name": "gated", "endpoint_name": GATED, "batch_requests": True}],
    }
    arn = cloud.start_run(request, name="waiting-run")
    parked = world.wait_for_item(PARKED)
    assert parked["status"] == "waiting"
    # And the real notification's inferenceId parked as what that batch waits for
    message = real_message(real_event)
    world.tokens.park_batch(
        "waiting-run",
        BATCH,
        parked["token"],
        [PendingInference(message["inferenceId"], "gated", [f"s3://drive-logs/{FRAME_KEY}"])],
    )
    # When the callback handles the real notification
    result = world.handle(real_event)
    # Then it resumes the task, and the run goes on with the notification's output location:
    # MergeBatch cannot read it (the real output lives in another account's bucket), so the
    # run still succeeds and reports the frame failed with that reason
    assert result == {"outcomes": ["resumed"]}
    described = cloud.wait(arn, timeout=60)
    assert described["status"] == "SUCCEEDED", (described.get("error"), described.get("cause"))
    summary = json.loads(described["output"])
    bucket, _, key = summary["outputs"]["report"].removeprefix("s3://").partition("/")
    report = json.loads(cloud.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    (frames_uri,) = report["frame_reports"]
    bucket, _, key = frames_uri.removeprefix("s3://").partition("/")
    (line,) = cloud.s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode().splitlines()
    frame = json.loads(line)
    assert frame["frame"] == f"s3://drive-logs/{FRAME_KEY}"
    assert frame["status"] == "failed" and "NoSuchBucket" in frame["reason"]
    assert (summary["labeled"], summary["failed"]) == (0, 1)
    assert world.items()[PARKED]["status"] == "sent"
    # When the held inference ends (its own notification arrives) and the real one is delivered again
    before = world.items()
    endpoint = cloud.endpoints[GATED]
    world.release.set()
    assert endpoint.drain(timeout=60)
    again = world.handle(real_event)
    # Then neither resumes anything again, nor raises, and the run's result stands
    assert again["outcomes"][0] not in ("resumed", "failed")
    batch = world.items()[PARKED]
    assert batch["status"] == "sent" and batch["token"] == before[PARKED]["token"]
    assert json.loads(cloud.sfn.describe_execution(executionArn=arn)["output"]) == summary
