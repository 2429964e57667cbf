"""The local asynchronous endpoint against moto's S3, SNS and SQS (SNS delivers to SQS),
in process and through its HTTP front with a real boto3 sagemaker-runtime client."""

from __future__ import annotations

import argparse
import io
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ParamValidationError
from moto import mock_aws
from PIL import Image, UnidentifiedImageError

from workflow.cli import serve as serve_cli
from workflow.domain.detections import Detections, Provenance
from workflow.domain.errors import InvalidImage
from workflow.local.endpoint import AsyncEndpointConfig, LocalAsyncEndpoint, LocalSageMakerRuntime
from workflow.local.endpoint_http import AsyncInvocationServer

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared"
REAL_EVENT = SHARED / "data" / "sagemaker" / "async_success_sns_lambda_event.json"
REGION = "us-east-1"
BUCKET = "frames-bucket"
ENDPOINT = "local-detector"


class BrightRegionDetector:
    """A tiny real model: decodes the image and boxes the pixels brighter than a threshold."""

    def predict_bytes(self, data: bytes, frame: str) -> Detections:
        try:
            image = np.asarray(Image.open(io.BytesIO(data)).convert("L"))
        except (UnidentifiedImageError, OSError) as exc:
            raise InvalidImage(frame, f"not a decodable image: {exc}") from exc
        height, width = image.shape
        provenance = Provenance(model="bright-region", version="1")
        ys, xs = np.nonzero(image > 128)
        if len(xs) == 0:
            return Detections.empty(width, height, provenance, frame)
        return Detections(
            boxes=np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float32),
            scores=np.array([0.9], np.float32),
            class_ids=np.array([0]),
            class_names=("bright",),
            image_width=width,
            image_height=height,
            provenance=provenance,
            frame=frame,
        )


class ExplodingModel:
    def predict_bytes(self, data: bytes, frame: str) -> Detections:
        raise RuntimeError("CUDA error: device-side assert triggered")


def png_with_square(x0: int, y0: int, x1: int, y1: int, size: tuple[int, int] = (64, 48)) -> bytes:
    pixels = np.zeros((size[1], size[0]), np.uint8)
    pixels[y0:y1, x0:x1] = 255
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


class World:
    """moto S3 + two SNS topics, each subscribed by an SQS queue we can read back."""

    def __init__(self) -> None:
        self.s3 = boto3.client("s3", region_name=REGION)
        self.sns = boto3.client("sns", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.s3.create_bucket(Bucket=BUCKET)
        self.success_topic, self.success_queue = self._topic_with_queue("async-success")
        self.error_topic, self.error_queue = self._topic_with_queue("async-error")

    def _topic_with_queue(self, name: str) -> tuple[str, str]:
        topic = self.sns.create_topic(Name=name)["TopicArn"]
        queue = self.sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        self.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn)
        return topic, queue

    def config(self, **overrides: Any) -> AsyncEndpointConfig:
        settings: dict[str, Any] = {
            "s3_output_path": f"s3://{BUCKET}/async/output",
            "s3_failure_path": f"s3://{BUCKET}/async/failure",
            "success_topic": self.success_topic,
            "error_topic": self.error_topic,
            "max_concurrent_invocations": 2,
        }
        return AsyncEndpointConfig(**{**settings, **overrides})

    def put(self, key: str, body: bytes) -> str:
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        return f"s3://{BUCKET}/{key}"

    def read_json(self, uri: str) -> Any:
        bucket, _, key = uri[5:].partition("/")
        return json.loads(self.s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    def notifications(self, queue: str) -> list[dict[str, Any]]:
        """The SageMaker messages that reached a queue, unwrapped from their SNS envelopes."""
        found = []
        while batch := self.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages"):
            for message in batch:
                envelope = json.loads(message["Body"])
                assert envelope["Type"] == "Notification"
                found.append(json.loads(envelope["Message"]))
                self.sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        return found


@pytest.fixture
def world() -> Iterator[World]:
    with mock_aws():
        yield World()


@pytest.fixture(scope="module")
def idle_endpoint() -> Iterator[LocalAsyncEndpoint]:
    """An endpoint that is only ever sent invalid requests; its clients point at a closed local
    port, so a request that wrongly passed validation could reach nothing."""
    nowhere = {"region_name": REGION, "endpoint_url": "http://127.0.0.1:9"}
    s3, sns = boto3.client("s3", **nowhere), boto3.client("sns", **nowhere)
    config = AsyncEndpointConfig(s3_output_path=f"s3://{BUCKET}/out", max_concurrent_invocations=1)
    with LocalAsyncEndpoint(ENDPOINT, s3, sns, config, BrightRegionDetector) as endpoint:
        yield endpoint


def start(world: World, model: Any = None, **config: Any) -> LocalAsyncEndpoint:
    return LocalAsyncEndpoint(
        ENDPOINT, world.s3, world.sns, world.config(**config), lambda: model or BrightRegionDetector()
    )


def shape_of(value: Any) -> Any:
    """Keys and value types of a JSON document, recursively."""
    if isinstance(value, dict):
        return {k: shape_of(v) for k, v in value.items()}
    return type(value).__name__


def test_success_notification_has_exactly_the_real_events_shape(world: World) -> None:
    # Given a frame in S3 and the real SageMaker notification captured from AWS
    if not REAL_EVENT.exists():
        pytest.skip(f"real SNS event not found at {REAL_EVENT} (shared data absent)")
    real = json.loads(json.loads(REAL_EVENT.read_text())["Records"][0]["Sns"]["Message"])
    frame = world.put("drive/000001.png", png_with_square(10, 5, 30, 25))
    # When the frame is invoked like the real request (Accept, no ContentType)
    with start(world) as endpoint:
        answer = endpoint.invoke_endpoint_async(
            EndpointName=ENDPOINT, InputLocation=frame, Accept="application/json", InferenceId="inf-1"
        )
        assert endpoint.drain(timeout=30)
    # Then the answer points under S3OutputPath/S3FailurePath, as AWS names them
    assert answer["InferenceId"] == "inf-1"
    assert answer["OutputLocation"] == f"s3://{BUCKET}/async/output/inf-1.out"
    assert answer["FailureLocation"] == f"s3://{BUCKET}/async/failure/inf-1-error.out"
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 202
    # And the notification has the same keys, key order and value types as the real one
    [message] = world.notifications(world.success_queue)
    assert shape_of(message) == shape_of(real)
    assert list(message) == list(real)
    assert message["invocationStatus"] == "Completed"
    assert message["requestParameters"] == {
        "accept": "application/json",
        "endpointName": ENDPOINT,
        "inputLocation": frame,
    }
    assert message["responseParameters"]["outputLocation"] == answer["OutputLocation"]
    assert message["eventTime"].endswith("Z") and len(message["eventTime"]) == len(real["eventTime"])
    assert world.notifications(world.error_queue) == []
    # And the output object is the model's detections of that frame
    detections = Detections.from_dict(world.read_json(answer["OutputLocation"]))
    assert detections.class_names == ("bright",)
    np.testing.assert_allclose(detections.boxes, [[10, 5, 30, 25]])
    # (the endpoint is not told where an image came from, as in SageMaker: the caller knows it)
    assert detections.frame == ""


def test_output_path_extension_and_filename_shape_the_output_location(world: World) -> None:
    # Given a frame
    frame = world.put("f.png", png_with_square(0, 0, 8, 8))
    # When it is invoked with an output path extension and a file name
    with start(world) as endpoint:
        answer = endpoint.invoke_endpoint_async(
            EndpointName=ENDPOINT,
            InputLocation=frame,
            ContentType="image/png",
            S3OutputPathExtension="run-7/batch-3",
            Filename="b3.json",
        )
        endpoint.drain(timeout=30)
    # Then the output lands there and the generated InferenceId is a UUID
    assert answer["OutputLocation"] == f"s3://{BUCKET}/async/output/run-7/batch-3/b3.json"
    assert len(answer["InferenceId"]) == 36
    assert world.read_json(answer["OutputLocation"])["detections"][0]["box"] == [0, 0, 8, 8]


@pytest.mark.parametrize(
    ("case", "expected_reason"),
    [("missing", "NoSuchKey: could not read"), ("corrupt", "InvalidImage:"), ("model", "RuntimeError: CUDA")],
)
def test_failures_write_the_error_object_and_notify_the_error_topic(
    world: World, case: str, expected_reason: str
) -> None:
    # Given a missing input object, a corrupt image, or a model that throws
    location = f"s3://{BUCKET}/nowhere.png"
    if case == "corrupt":
        location = world.put("broken.png", png_with_square(0, 0, 4, 4)[:40])
    elif case == "model":
        location = world.put("ok.png", png_with_square(0, 0, 4, 4))
    # When it is invoked
    with start(world, model=ExplodingModel() if case == "model" else None) as endpoint:
        answer = endpoint.invoke_endpoint_async(
            EndpointName=ENDPOINT,
            InputLocation=location,
            ContentType="application/x-image",
            InferenceId="bad",
        )
        endpoint.drain(timeout=30)
        stats = endpoint.stats
    # Then the error topic gets a Failed notification with the reason and no responseParameters
    [message] = world.notifications(world.error_queue)
    assert message["invocationStatus"] == "Failed"
    assert message["failureReason"].startswith(expected_reason)
    assert "responseParameters" not in message
    assert message["requestParameters"]["contentType"] == "application/x-image"
    assert world.notifications(world.success_queue) == []
    # And the error is written to the failure location, and nothing to the output location
    error = world.read_json(answer["FailureLocation"])
    assert error["inferenceId"] == "bad"
    assert message["failureReason"] == f"{error['error']['type']}: {error['error']['reason']}"
    with pytest.raises(ClientError):
        world.read_json(answer["OutputLocation"])
    assert (stats.completed, stats.failed) == (0, 1)


def test_a_batch_reports_bad_frames_without_failing(world: World) -> None:
    # Given a batch of a good frame, a missing frame, a corrupt frame and a non-S3 string
    good = world.put("b/1.png", png_with_square(2, 2, 6, 6))
    corrupt = world.put("b/2.png", b"\x89PNG not really")
    missing = f"s3://{BUCKET}/b/3.png"
    request = world.put("requests/batch.json", json.dumps([good, missing, corrupt, "/tmp/x.png"]).encode())
    # When the batch is invoked
    with start(world) as endpoint:
        answer = endpoint.invoke_endpoint_async(
            EndpointName=ENDPOINT, InputLocation=request, ContentType="application/json"
        )
        endpoint.drain(timeout=30)
    # Then the invocation completes and every frame has a result or a reason, in order
    [message] = world.notifications(world.success_queue)
    assert message["invocationStatus"] == "Completed"
    results = world.read_json(answer["OutputLocation"])["results"]
    assert [r["frame"] for r in results] == [good, missing, corrupt, "/tmp/x.png"]
    assert results[0]["detections"][0]["box"] == [2, 2, 6, 6]
    assert results[1]["error"]["type"] == "NoSuchKey"
    assert results[2]["error"]["type"] == "InvalidImage"
    assert results[3]["error"]["type"] == "InvalidS3Uri"


@pytest.mark.parametrize("body", [b"not json at all", b'{"frames": 3}', b"[1, 2]"])
def test_an_unusable_batch_request_fails_the_invocation(world: World, body: bytes) -> None:
    # Given a JSON request body that is not a list of frame URIs
    request = world.put("requests/bad.json", body)
    # When it is invoked
    with start(world) as endpoint:
        endpoint.invoke_endpoint_async(
            EndpointName=ENDPOINT, InputLocation=request, ContentType="application/json"
        )
        endpoint.drain(timeout=30)
    # Then the whole invocation fails with an InvalidRequest reason
    [message] = world.notifications(world.error_queue)
    assert message["failureReason"].startswith("InvalidRequest:")


def test_inline_body_and_response_in_notification(world: World) -> None:
    # Given an endpoint that includes responses in success notifications
    with start(world, include_inference_response_in=("SUCCESS_NOTIFICATION_TOPIC",)) as endpoint:
        # When an image is sent inline in Body
        endpoint.invoke_endpoint_async(
            EndpointName=ENDPOINT, Body=png_with_square(1, 1, 3, 3), ContentType="image/png"
        )
        endpoint.drain(timeout=30)
    # Then the notification carries the response, and no inputLocation
    [message] = world.notifications(world.success_queue)
    assert "inputLocation" not in message["requestParameters"]
    assert json.loads(message["responseBody"]["content"])["detections"][0]["box"] == [1, 1, 3, 3]


class MeetingModel(BrightRegionDetector):
    """Each call waits until ``parties`` calls run at once, and records the most ever running."""

    def __init__(self, parties: int) -> None:
        self.barrier = threading.Barrier(parties, timeout=20)
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0

    def predict_bytes(self, data: bytes, frame: str) -> Detections:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            self.barrier.wait()
            return super().predict_bytes(data, frame)
        finally:
            with self.lock:
                self.running -= 1


def test_concurrency_reaches_but_never_exceeds_the_configured_maximum(world: World) -> None:
    # Given an endpoint allowing 3 concurrent invocations and 12 queued frames
    model = MeetingModel(parties=3)
    frames = [world.put(f"c/{i}.png", png_with_square(0, 0, 4, 4)) for i in range(12)]
    with start(world, model=model, max_concurrent_invocations=3) as endpoint:
        # When all are invoked at once
        for frame in frames:
            endpoint.invoke_endpoint_async(EndpointName=ENDPOINT, InputLocation=frame)
        assert endpoint.drain(timeout=60)
        stats = endpoint.stats
    # Then exactly 3 ran at a time (each call met 2 others), never more, and all completed
    assert model.most == 3
    assert stats.max_concurrency == 3
    assert (stats.submitted, stats.completed, stats.failed, stats.in_flight) == (12, 12, 0, 0)
    assert len(world.notifications(world.success_queue)) == 12


def test_a_repeated_inference_id_is_accepted_and_overwrites(world: World) -> None:
    # Given two different frames
    first = world.put("d/1.png", png_with_square(0, 0, 4, 4))
    second = world.put("d/2.png", png_with_square(10, 10, 20, 20))
    with start(world, max_concurrent_invocations=1) as endpoint:
        # When both are invoked with the same InferenceId
        a = endpoint.invoke_endpoint_async(EndpointName=ENDPOINT, InputLocation=first, InferenceId="same")
        b = endpoint.invoke_endpoint_async(EndpointName=ENDPOINT, InputLocation=second, InferenceId="same")
        endpoint.drain(timeout=30)
    # Then both complete, at the same location, which holds the later result
    assert a["OutputLocation"] == b["OutputLocation"]
    assert len(world.notifications(world.success_queue)) == 2
    assert world.read_json(a["OutputLocation"])["detections"][0]["box"] == [10, 10, 20, 20]


@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"InferenceId": "x" * 65}, "at 'inferenceId' failed to satisfy constraint: Member must have length"),
        (
            {"InferenceId": " leading-space"},
            "at 'inferenceId' failed to satisfy constraint: Member must satisfy",
        ),
        ({"InputLocation": "ftp://bucket/key"}, "at 'inputLocation'"),
        ({"InputLocation": "s3://b/" + "k" * 1020}, "length less than or equal to 1024"),
        ({"RequestTTLSeconds": 21601}, "at 'requestTTLSeconds' failed to satisfy constraint"),
        ({"InvocationTimeoutSeconds": 3601}, "at 'invocationTimeoutSeconds'"),
        ({"Filename": "a.b.c"}, "at 'filename'"),
        ({"S3OutputPathExtension": "s3://elsewhere"}, "at 's3OutputPathExtension'"),
        ({"EndpointName": "other-endpoint"}, "Endpoint other-endpoint not found."),
        ({"InputLocation": None}, "Provide exactly one of InputLocation and Body."),
        ({"Body": b"both"}, "Provide exactly one of InputLocation and Body."),
    ],
)
def test_service_side_validation_errors_are_client_errors(
    idle_endpoint: LocalAsyncEndpoint, overrides: dict[str, Any], error: str
) -> None:
    # Given a valid request with one field made invalid
    params = {"EndpointName": ENDPOINT, "InputLocation": f"s3://{BUCKET}/f.png", **overrides}
    params = {k: v for k, v in params.items() if v is not None}
    # When it is sent, Then the service answers a 400 ValidationError and queues nothing
    with pytest.raises(ClientError) as raised:
        idle_endpoint.invoke_endpoint_async(**params)
    assert idle_endpoint.stats.submitted == 0
    assert raised.value.response["Error"]["Code"] == "ValidationError"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert error in raised.value.response["Error"]["Message"]


@pytest.mark.parametrize(
    "overrides",
    [
        {"InferenceId": ""},
        {"RequestTTLSeconds": 59},
        {"InvocationTimeoutSeconds": 0},
        {"Unknown": "x"},
        {"RequestTTLSeconds": "60"},
    ],
)
def test_client_side_validation_matches_a_real_boto3_client(
    idle_endpoint: LocalAsyncEndpoint, overrides: dict[str, Any]
) -> None:
    # Given a request that boto3 itself refuses before sending
    params = {"EndpointName": ENDPOINT, "InputLocation": f"s3://{BUCKET}/f.png", **overrides}
    runtime = boto3.client("sagemaker-runtime", region_name=REGION)
    with pytest.raises(ParamValidationError) as from_boto3:
        runtime.invoke_endpoint_async(**params)
    # When the local endpoint gets it, Then it raises the very same error
    with pytest.raises(ParamValidationError) as local:
        idle_endpoint.invoke_endpoint_async(**params)
    assert str(local.value) == str(from_boto3.value)


def create_endpoint_config(sagemaker: Any, name: str, async_config: dict[str, Any]) -> None:
    """A model and an endpoint config with the given AsyncInferenceConfig in (moto's) SageMaker."""
    sagemaker.create_model(
        ModelName=f"{name}-model",
        ExecutionRoleArn="arn:aws:iam::123456789012:role/r",
        PrimaryContainer={"Image": "img"},
    )
    sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "v",
                "ModelName": f"{name}-model",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
        AsyncInferenceConfig=async_config,
    )


def test_config_is_read_from_a_moto_endpoint_config(world: World) -> None:
    # Given an endpoint config with an AsyncInferenceConfig in (moto's) SageMaker
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    create_endpoint_config(
        sagemaker,
        "cfg",
        {
            "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 3},
            "OutputConfig": {
                "S3OutputPath": f"s3://{BUCKET}/out",
                "S3FailurePath": f"s3://{BUCKET}/fail",
                "NotificationConfig": {
                    "SuccessTopic": world.success_topic,
                    "ErrorTopic": world.error_topic,
                    "IncludeInferenceResponseIn": ["ERROR_NOTIFICATION_TOPIC"],
                },
            },
        },
    )
    sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName="cfg")
    # When the local endpoint is built from the control plane
    endpoint = LocalAsyncEndpoint.from_sagemaker(
        ENDPOINT, sagemaker, world.s3, world.sns, BrightRegionDetector
    )
    endpoint.close()
    # Then it honours every field
    assert endpoint.config == AsyncEndpointConfig(
        s3_output_path=f"s3://{BUCKET}/out",
        s3_failure_path=f"s3://{BUCKET}/fail",
        success_topic=world.success_topic,
        error_topic=world.error_topic,
        max_concurrent_invocations=3,
        include_inference_response_in=("ERROR_NOTIFICATION_TOPIC",),
    )


def test_a_closed_endpoint_refuses_new_work(world: World) -> None:
    # Given a closed endpoint
    endpoint = start(world)
    endpoint.close()
    # When it is invoked, Then it answers ServiceUnavailable
    with pytest.raises(ClientError) as raised:
        endpoint.invoke_endpoint_async(EndpointName=ENDPOINT, InputLocation=f"s3://{BUCKET}/f.png")
    assert raised.value.response["Error"]["Code"] == "ServiceUnavailable"


def test_real_onnx_model_labels_a_kitti_frame(world: World) -> None:
    # Given the real NanoDet ONNX model and a real KITTI frame
    runner = pytest.importorskip(
        "workflow.inference.runner", reason="workflow.inference.runner not written yet"
    )
    model_path = SHARED / "models" / "nanodet-coco" / "nanodet-tf2onnx-reference.onnx"
    image_path = SHARED / "data" / "kitti_object" / "image_2" / "000008.png"
    if not model_path.exists() or not image_path.exists():
        pytest.skip("shared NanoDet model or KITTI frame absent")
    frame = world.put("kitti/000008.png", image_path.read_bytes())
    request = world.put("kitti/batch.json", json.dumps([frame, f"s3://{BUCKET}/kitti/gone.png"]).encode())
    # When the frame is labeled as a batch through the endpoint
    with LocalAsyncEndpoint(
        ENDPOINT, world.s3, world.sns, world.config(), lambda: runner.OnnxDetector.from_path(model_path)
    ) as endpoint:
        answer = endpoint.invoke_endpoint_async(
            EndpointName=ENDPOINT, InputLocation=request, ContentType="application/json"
        )
        endpoint.drain(timeout=120)
    # Then cars are found in the original frame's pixels, and the missing frame is reported
    good, gone = world.read_json(answer["OutputLocation"])["results"]
    assert good["image_size"] == {"width": 1242, "height": 375}
    assert "car" in {d["class_name"] for d in good["detections"]}
    assert gone["error"]["type"] == "NoSuchKey"


def test_the_in_process_runtime_routes_by_endpoint_name(world: World) -> None:
    # Given two local endpoints writing to different output paths, behind one runtime
    frame = world.put("r/1.png", png_with_square(0, 0, 4, 4))
    cars = LocalAsyncEndpoint("cars", world.s3, world.sns, world.config(), BrightRegionDetector)
    signs = LocalAsyncEndpoint(
        "signs",
        world.s3,
        world.sns,
        world.config(s3_output_path=f"s3://{BUCKET}/signs"),
        BrightRegionDetector,
    )
    runtime = LocalSageMakerRuntime({"cars": cars, "signs": signs})
    with cars, signs:
        # When each is invoked by name, and an unknown name is invoked
        to_cars = runtime.invoke_endpoint_async(EndpointName="cars", InputLocation=frame, InferenceId="x")
        to_signs = runtime.invoke_endpoint_async(EndpointName="signs", InputLocation=frame, InferenceId="x")
        with pytest.raises(ClientError) as unknown:
            runtime.invoke_endpoint_async(EndpointName="lanes", InputLocation=frame)
        assert cars.drain(timeout=30) and signs.drain(timeout=30)
    # Then each call reached its own endpoint, and the unknown one is the service's ValidationError
    assert to_cars["OutputLocation"] == f"s3://{BUCKET}/async/output/x.out"
    assert to_signs["OutputLocation"] == f"s3://{BUCKET}/signs/x.out"
    assert (cars.stats.completed, signs.stats.completed) == (1, 1)
    assert unknown.value.response["Error"] == {
        "Code": "ValidationError",
        "Message": "Endpoint lanes not found.",
    }


# -- over HTTP, with a real boto3 client --------------------------------------------------------


@pytest.fixture
def served() -> Iterator[tuple[World, LocalAsyncEndpoint, object]]:
    with mock_aws():
        world = World()
        endpoint = LocalAsyncEndpoint(ENDPOINT, world.s3, world.sns, world.config(), BrightRegionDetector)
        with endpoint, AsyncInvocationServer({ENDPOINT: endpoint}) as server:
            runtime = boto3.client(
                "sagemaker-runtime",
                region_name=REGION,
                endpoint_url=server.url,
                config=Config(retries={"max_attempts": 1}),
            )
            yield world, endpoint, runtime


def test_boto3_invoke_endpoint_async_over_http(served: tuple[World, LocalAsyncEndpoint, object]) -> None:
    world, endpoint, runtime = served
    # Given a frame in S3
    frame = world.put("http/1.png", png_with_square(4, 4, 12, 12))
    # When a real boto3 client invokes the local endpoint with every header member
    answer = runtime.invoke_endpoint_async(  # type: ignore[attr-defined]
        EndpointName=ENDPOINT,
        InputLocation=frame,
        ContentType="image/png",
        Accept="application/json",
        InferenceId="http-1",
        RequestTTLSeconds=600,
        InvocationTimeoutSeconds=60,
        S3OutputPathExtension="run-1",
    )
    assert endpoint.drain(timeout=30)
    # Then boto3 parses the 202 answer, and the work happened as with the in-process call
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert answer["InferenceId"] == "http-1"
    assert answer["OutputLocation"] == "s3://frames-bucket/async/output/run-1/http-1.out"
    assert answer["FailureLocation"] == "s3://frames-bucket/async/failure/http-1-error.out"
    assert world.read_json(answer["OutputLocation"])["detections"][0]["box"] == [4, 4, 12, 12]
    [message] = world.notifications(world.success_queue)
    assert message["requestParameters"]["contentType"] == "image/png"


def test_inline_body_travels_as_the_http_payload(served: tuple[World, LocalAsyncEndpoint, object]) -> None:
    world, endpoint, runtime = served
    # When an image is sent inline
    answer = runtime.invoke_endpoint_async(  # type: ignore[attr-defined]
        EndpointName=ENDPOINT, Body=png_with_square(1, 2, 5, 6), ContentType="image/png"
    )
    endpoint.drain(timeout=30)
    # Then the model saw those bytes
    assert world.read_json(answer["OutputLocation"])["detections"][0]["box"] == [1, 2, 5, 6]


def test_service_errors_reach_boto3_as_client_errors(
    served: tuple[World, LocalAsyncEndpoint, object],
) -> None:
    _, endpoint, runtime = served
    # When boto3 sends requests the service refuses (too long an id, an unknown endpoint)
    with pytest.raises(ClientError) as too_long:
        runtime.invoke_endpoint_async(  # type: ignore[attr-defined]
            EndpointName=ENDPOINT, InputLocation="s3://frames-bucket/x.png", InferenceId="i" * 65
        )
    with pytest.raises(ClientError) as unknown:
        runtime.invoke_endpoint_async(  # type: ignore[attr-defined]
            EndpointName="nobody", InputLocation="s3://frames-bucket/x.png"
        )
    # Then they arrive as botocore ValidationErrors with the service's message, and nothing ran
    assert too_long.value.response["Error"]["Code"] == "ValidationError"
    assert "at 'inferenceId' failed to satisfy constraint" in too_long.value.response["Error"]["Message"]
    assert too_long.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert unknown.value.response["Error"]["Message"] == "Endpoint nobody not found."
    assert endpoint.stats.submitted == 0
    # And boto3's own validation still stops bad types before any request is sent
    with pytest.raises(ParamValidationError):
        runtime.invoke_endpoint_async(EndpointName=ENDPOINT, InputLocation=3)  # type: ignore[attr-defined]


def test_a_batch_over_http_labels_every_frame(served: tuple[World, LocalAsyncEndpoint, object]) -> None:
    world, endpoint, runtime = served
    # Given a batch request of two frames
    frames = [world.put(f"hb/{i}.png", png_with_square(i, i, i + 4, i + 4)) for i in range(2)]
    request = world.put("hb/request.json", json.dumps(frames).encode())
    # When it is invoked over HTTP
    answer = runtime.invoke_endpoint_async(  # type: ignore[attr-defined]
        EndpointName=ENDPOINT, InputLocation=request, ContentType="application/json"
    )
    endpoint.drain(timeout=30)
    # Then both frames have detections
    results = world.read_json(answer["OutputLocation"])["results"]
    assert [r["detections"][0]["box"] for r in results] == [[0, 0, 4, 4], [1, 1, 5, 5]]


def test_autolabel_serve_wires_a_real_model_behind_the_http_api(world: World) -> None:
    # Given an endpoint config in (moto's) SageMaker and the real NanoDet model
    model_path = SHARED / "models" / "nanodet-coco" / "nanodet-tf2onnx-reference.onnx"
    image_path = SHARED / "data" / "kitti_object" / "image_2" / "000008.png"
    pytest.importorskip("workflow.inference.runner", reason="workflow.inference.runner not written yet")
    if not model_path.exists() or not image_path.exists():
        pytest.skip("shared NanoDet model or KITTI frame absent")
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    create_endpoint_config(
        sagemaker,
        "serve-cfg",
        {
            "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 2},
            "OutputConfig": {
                "S3OutputPath": f"s3://{BUCKET}/served",
                "NotificationConfig": {"SuccessTopic": world.success_topic},
            },
        },
    )
    parser = argparse.ArgumentParser()
    serve_cli.add_arguments(parser)
    args = parser.parse_args(
        ["--model", str(model_path), "--endpoint-config", "serve-cfg", "--port", "0", "--region", REGION]
    )
    frame = world.put("served/000008.png", image_path.read_bytes())
    # When `autolabel serve` builds its service and a boto3 client invokes it
    endpoint, server = serve_cli.build_service(args)
    with endpoint, server:
        runtime = boto3.client("sagemaker-runtime", region_name=REGION, endpoint_url=server.url)
        answer = runtime.invoke_endpoint_async(
            EndpointName="autolabel-local", InputLocation=frame, ContentType="image/png"
        )
        assert endpoint.drain(timeout=120)
    # Then the config came from SageMaker and the real model labeled the frame
    assert endpoint.config.max_concurrent_invocations == 2
    assert answer["OutputLocation"].startswith(f"s3://{BUCKET}/served/")
    assert "car" in {d["class_name"] for d in world.read_json(answer["OutputLocation"])["detections"]}
    [message] = world.notifications(world.success_queue)
    assert message["responseParameters"]["outputLocation"] == answer["OutputLocation"]


class HeldPublisher:
    """An SNS client whose first Publish waits until the test lets it go: a slow subscriber (in
    local mode a Lambda runs inside moto's Publish)."""

    def __init__(self, sns: Any) -> None:
        self._sns = sns
        self.meta = sns.meta
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls = 0

    def publish(self, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == 1:
            self.entered.set()
            assert self.release.wait(30)
        return self._sns.publish(**kwargs)


def test_a_slow_notice_does_not_hold_the_worker_back(world: World) -> None:
    # Given a one-worker endpoint whose first notice is held up, and two frames
    sns = HeldPublisher(world.sns)
    config = world.config(max_concurrent_invocations=1)
    frames = [world.put(f"slow/{i}.png", png_with_square(0, 0, 4 + i, 4)) for i in range(2)]
    with LocalAsyncEndpoint(ENDPOINT, world.s3, sns, config, BrightRegionDetector) as endpoint:
        answers = [endpoint.invoke_endpoint_async(EndpointName=ENDPOINT, InputLocation=f) for f in frames]
        assert sns.entered.wait(30)
        # When the first notice is still on its way, the worker has already answered the second frame
        second = answers[1]["OutputLocation"]
        bucket, _, key = second[5:].partition("/")
        deadline = time.monotonic() + 30
        while "Contents" not in world.s3.list_objects_v2(Bucket=bucket, Prefix=key):
            assert time.monotonic() < deadline, "the second frame waited for the first frame's notice"
            time.sleep(0.02)
        # Then neither counts as ended before its notice is out, and drain waits for both notices
        assert not endpoint.drain(timeout=0.2)
        assert endpoint.stats.completed == 0
        sns.release.set()
        assert endpoint.drain(timeout=30)
        assert endpoint.stats.completed == 2
    notices = world.notifications(world.success_queue)
    # in the order they ended
    assert [n["inferenceId"] for n in notices] == [a["InferenceId"] for a in answers]
