"""A local SageMaker asynchronous inference endpoint that honours its endpoint config.

moto accepts ``invoke_endpoint_async`` but ignores ``S3OutputPath`` and publishes no SNS
notification. :class:`LocalAsyncEndpoint` is the real thing on one machine: it takes the same
keyword arguments as boto3's ``sagemaker-runtime.invoke_endpoint_async`` (validated as the
service does), answers at once with ``InferenceId``/``OutputLocation``/``FailureLocation``,
queues the work, and a pool of ``MaxConcurrentInvocationsPerInstance`` workers reads the input
from S3, runs a real model, writes ``S3OutputPath[/S3OutputPathExtension]/<id>.out`` (or
``<Filename>``), or on failure ``S3FailurePath/<id>-error.out``, and publishes the service's
``InferenceResult`` notification to the success or error SNS topic.
"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from queue import SimpleQueue
from typing import Any

from botocore.exceptions import ClientError

from workflow.domain.errors import ConfigurationError, InvalidS3Uri
from workflow.domain.frames import S3Uri
from workflow.local.endpoint_container import (
    FrameUnreadable,
    Predictor,
    RequestFailed,
    describe_error,
)
from workflow.local.endpoint_validation import (
    AsyncRequest,
    check_client_side,
    operation_model,
    validate_request,
    validation_error,
)
from workflow.serving.toolkit import ArchiveServer, in_process_server

log = logging.getLogger(__name__)
_Notice = tuple[str | None, dict[str, Any]]  # (topic, notification) an ended invocation publishes

SUCCESS_TOPIC = "SUCCESS_NOTIFICATION_TOPIC"
ERROR_TOPIC = "ERROR_NOTIFICATION_TOPIC"
MAX_RESPONSE_IN_NOTIFICATION = 128 * 1024
RESPONSE_CONTENT_TYPE = "application/json"
# What an endpoint's factory may return: a served model archive (workflow.serving.toolkit), or a bare
# predictor, which is then served in process through the same toolkit functions.
Model = Predictor | ArchiveServer

__all__ = [
    "AsyncEndpointConfig",
    "EndpointStats",
    "LocalAsyncEndpoint",
    "LocalSageMakerRuntime",
    "Predictor",
]


@dataclass(frozen=True)
class AsyncEndpointConfig:
    """The endpoint config's ``AsyncInferenceConfig``, flattened."""

    s3_output_path: str
    s3_failure_path: str | None = None
    success_topic: str | None = None
    error_topic: str | None = None
    max_concurrent_invocations: int = 4
    include_inference_response_in: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.max_concurrent_invocations <= 1000:
            raise ConfigurationError(
                f"MaxConcurrentInvocationsPerInstance must be 1-1000, got {self.max_concurrent_invocations}"
            )
        for path in (self.s3_output_path, self.s3_failure_path):
            if path is not None:
                try:
                    S3Uri.parse(path)
                except InvalidS3Uri as exc:
                    raise ConfigurationError(f"local endpoint needs s3:// output paths: {exc}") from exc

    @classmethod
    def from_endpoint_config(cls, response: Mapping[str, Any]) -> AsyncEndpointConfig:
        """Build from a ``sagemaker.describe_endpoint_config`` response (real or moto)."""
        config = response.get("AsyncInferenceConfig")
        if not config:
            name = response.get("EndpointConfigName", "?")
            raise ConfigurationError(f"endpoint config {name} has no AsyncInferenceConfig")
        output = config.get("OutputConfig", {})
        notify = output.get("NotificationConfig", {})
        if not output.get("S3OutputPath"):
            raise ConfigurationError("AsyncInferenceConfig.OutputConfig.S3OutputPath is required")
        return cls(
            s3_output_path=output["S3OutputPath"],
            s3_failure_path=output.get("S3FailurePath") or None,
            success_topic=notify.get("SuccessTopic") or None,
            error_topic=notify.get("ErrorTopic") or None,
            max_concurrent_invocations=int(
                config.get("ClientConfig", {}).get("MaxConcurrentInvocationsPerInstance", 4)
            ),
            include_inference_response_in=tuple(notify.get("IncludeInferenceResponseIn", ())),
        )


@dataclass(frozen=True)
class EndpointStats:
    """Counters of the endpoint since it started."""

    submitted: int
    completed: int
    failed: int
    in_flight: int
    queued: int
    max_concurrency: int
    publish_errors: int


@dataclass
class _Invocation:
    request: AsyncRequest
    inference_id: str
    output_location: str
    failure_location: str | None
    received: datetime = field(default_factory=lambda: datetime.now(UTC))


def event_time(moment: datetime) -> str:
    """The notification's timestamp format: ``2023-05-23T03:23:21.814Z``."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def build_notification(
    invocation: _Invocation,
    region: str,
    failure_reason: str | None = None,
    response_body: str | None = None,
) -> dict[str, Any]:
    """The SNS message SageMaker publishes when an asynchronous inference ends."""
    req = invocation.request
    request_parameters = {
        key: value
        for key, value in (
            ("accept", req.accept),
            ("contentType", req.content_type),
            ("endpointName", req.endpoint_name),
            ("inputLocation", req.input_location),
        )
        if value is not None
    }
    message: dict[str, Any] = {
        "awsRegion": region,
        "eventTime": event_time(datetime.now(UTC)),
        "receivedTime": event_time(invocation.received),
        "invocationStatus": "Failed" if failure_reason is not None else "Completed",
        "requestParameters": request_parameters,
    }
    if failure_reason is None:
        message["responseParameters"] = {
            "contentType": RESPONSE_CONTENT_TYPE,
            "outputLocation": invocation.output_location,
        }
    else:
        message["failureReason"] = failure_reason
    if response_body is not None:
        # Assumed shape: the docs say the response rides in the message but show no example.
        message["responseBody"] = {"content": response_body, "encoding": "JSON"}
    message.update(
        inferenceId=invocation.inference_id,
        eventVersion="1.0",
        eventSource="aws:sagemaker",
        eventName="InferenceResult",
    )
    return message


def _join(base: str, *parts: str | None) -> str:
    return str(S3Uri.parse(base).join(*(p for p in parts if p)))


class LocalAsyncEndpoint:
    """An asynchronous endpoint served by worker threads on this machine."""

    def __init__(
        self,
        name: str,
        s3_client: Any,
        sns_client: Any,
        config: AsyncEndpointConfig,
        predictor_factory: Callable[[], Model],
        read_object: Callable[[str, str], bytes] | None = None,
    ) -> None:
        """Start ``config.max_concurrent_invocations`` workers; the model loads on first use.

        The factory returns an :class:`ArchiveServer` (an unpacked model archive's
        ``code/inference.py``, as SageMaker runs it) or a predictor, served through the same
        inference-toolkit functions (:mod:`workflow.serving.handler`).
        """
        self.name = name
        self.config = config
        operation_model()
        self._s3 = s3_client
        self._sns = sns_client
        self._factory = predictor_factory
        # How the endpoint's container reads its inputs (bucket, key): the S3 client's GetObject,
        # or what the local S3 service reads for it (same bytes, same ClientError on a missing one).
        self._read_object = read_object
        self._server: ArchiveServer | None = None
        self._predictor_lock = threading.Lock()
        self._queue: SimpleQueue[_Invocation | None] = SimpleQueue()
        self._state = threading.Condition()
        self._counts = dict.fromkeys(
            (
                "submitted",
                "completed",
                "failed",
                "in_flight",
                "notifying",
                "pending",
                "max",
                "publish_errors",
            ),
            0,
        )
        self._closed = False
        self._workers = [
            threading.Thread(target=self._work, name=f"{name}-worker-{i}", daemon=True)
            for i in range(config.max_concurrent_invocations)
        ]
        # SNS delivers an endpoint's notifications on its own: a worker takes its next request as
        # soon as the output is written, while the notice (and whatever it sets off: a subscribed
        # Lambda runs inside moto's Publish) goes out from this thread, in the order they ended.
        self._notices: SimpleQueue[tuple[str, _Notice | None] | None] = SimpleQueue()
        self._notifier = threading.Thread(target=self._notify, name=f"{name}-notifier", daemon=True)
        for worker in [*self._workers, self._notifier]:
            worker.start()

    @classmethod
    def from_sagemaker(
        cls,
        name: str,
        sagemaker_client: Any,
        s3_client: Any,
        sns_client: Any,
        predictor_factory: Callable[[], Model],
        read_object: Callable[[str, str], bytes] | None = None,
    ) -> LocalAsyncEndpoint:
        """Serve the endpoint ``name`` as created in (moto's) SageMaker control plane."""
        endpoint = sagemaker_client.describe_endpoint(EndpointName=name)
        described = sagemaker_client.describe_endpoint_config(
            EndpointConfigName=endpoint["EndpointConfigName"]
        )
        config = AsyncEndpointConfig.from_endpoint_config(described)
        return cls(name, s3_client, sns_client, config, predictor_factory, read_object)

    # -- the API ------------------------------------------------------------------------------

    def invoke_endpoint_async(self, **kwargs: Any) -> dict[str, Any]:
        """Same keyword arguments and answer as boto3 ``sagemaker-runtime.invoke_endpoint_async``."""
        request = validate_request(kwargs, self.name)
        inference_id = request.inference_id or str(uuid.uuid4())
        output_name = request.filename or f"{inference_id}.out"
        invocation = _Invocation(
            request=request,
            inference_id=inference_id,
            output_location=_join(self.config.s3_output_path, request.output_path_extension, output_name),
            failure_location=(
                _join(self.config.s3_failure_path, f"{inference_id}-error.out")
                if self.config.s3_failure_path
                else None
            ),
        )
        with self._state:
            if self._closed:
                raise ClientError(
                    {
                        "Error": {"Code": "ServiceUnavailable", "Message": f"endpoint {self.name} is closed"},
                        "ResponseMetadata": {"HTTPStatusCode": 503},
                    },
                    "InvokeEndpointAsync",
                )
            self._counts["submitted"] += 1
            self._counts["pending"] += 1
        self._queue.put(invocation)
        answer: dict[str, Any] = {
            "ResponseMetadata": {"RequestId": str(uuid.uuid4()), "HTTPStatusCode": 202},
            "InferenceId": inference_id,
            "OutputLocation": invocation.output_location,
        }
        if invocation.failure_location:
            answer["FailureLocation"] = invocation.failure_location
        return answer

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every queued invocation has ended; False if ``timeout`` passed first."""
        with self._state:
            return self._state.wait_for(lambda: self._counts["pending"] == 0, timeout)

    def close(self, timeout: float | None = None) -> None:
        """Refuse new work, finish what is queued, and stop the workers."""
        with self._state:
            if self._closed:
                return
            self._closed = True
        for _ in self._workers:
            self._queue.put(None)
        for worker in self._workers:
            worker.join(timeout)
        self._notices.put(None)
        self._notifier.join(timeout)
        with self._predictor_lock:
            server, self._server = self._server, None
        if server is not None:
            try:
                server.close()
            except Exception:  # stopping a model must not keep the rest from stopping
                log.exception("could not stop the model of %s", self.name)

    def warm(self) -> None:
        """Load the model now (worker processes start loading while the run starts); an error is
        kept for the first invocation, which tries again and reports it."""
        try:
            self._get_server()
        except Exception:
            log.debug("warming %s failed; the first invocation will say why", self.name, exc_info=True)

    def __enter__(self) -> LocalAsyncEndpoint:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def stats(self) -> EndpointStats:
        """A snapshot of the counters (completed, failed, max observed concurrency...)."""
        with self._state:
            c = self._counts
            return EndpointStats(
                submitted=c["submitted"],
                completed=c["completed"],
                failed=c["failed"],
                in_flight=c["in_flight"],
                queued=c["pending"] - c["in_flight"] - c["notifying"],
                max_concurrency=c["max"],
                publish_errors=c["publish_errors"],
            )

    # -- the workers --------------------------------------------------------------------------

    def _work(self) -> None:
        while (invocation := self._queue.get()) is not None:
            with self._state:
                self._counts["in_flight"] += 1
                self._counts["max"] = max(self._counts["max"], self._counts["in_flight"])
            notice: _Notice | None = None
            try:
                outcome, notice = self._process(invocation)
            except Exception:  # a bug here must not kill the worker and hang drain()
                log.exception("invocation %s crashed the worker", invocation.inference_id)
                outcome = "failed"
            with self._state:
                self._counts["in_flight"] -= 1
                self._counts["notifying"] += 1
            self._notices.put((outcome, notice))

    def _notify(self) -> None:
        """Publish each ended invocation's notice; it counts as ended (drain) once published."""
        while (item := self._notices.get()) is not None:
            outcome, notice = item
            try:
                if notice is not None:
                    self._publish(*notice)
            finally:
                with self._state:
                    self._counts["notifying"] -= 1
                    self._counts["pending"] -= 1
                    self._counts[outcome] += 1
                    self._state.notify_all()

    def _process(self, invocation: _Invocation) -> tuple[str, _Notice | None]:
        started = datetime.now(UTC)
        request = invocation.request
        waited = (started - invocation.received).total_seconds()
        try:
            if waited > request.ttl_seconds:
                raise RequestFailed(
                    "RequestExpired",
                    f"waited {waited:.0f}s in the queue (RequestTTLSeconds={request.ttl_seconds})",
                )
            payload = self._read_input(request)
            answer, _ = self._get_server().invoke(payload, request.content_type, request.accept)
            body = answer.decode()
            ran = (datetime.now(UTC) - started).total_seconds()
            if ran > request.invocation_timeout_seconds:
                raise RequestFailed(
                    "InvocationTimeout",
                    f"ran {ran:.0f}s (InvocationTimeoutSeconds={request.invocation_timeout_seconds})",
                )
            self._put(invocation.output_location, body)
        except Exception as exc:
            kind, reason = (exc.kind, exc.reason) if isinstance(exc, RequestFailed) else describe_error(exc)
            return "failed", self._fail(invocation, kind, reason)
        include = SUCCESS_TOPIC in self.config.include_inference_response_in
        message = build_notification(invocation, self._region, response_body=self._inline(include, body))
        return "completed", (self.config.success_topic, message)

    def _fail(self, invocation: _Invocation, kind: str, reason: str) -> _Notice:
        """Write the failure record; answer the error notice to publish."""
        error_body = json.dumps(
            {"inferenceId": invocation.inference_id, "error": {"type": kind, "reason": reason}},
            separators=(",", ":"),
        )
        if invocation.failure_location:
            try:
                self._put(invocation.failure_location, error_body)
            except Exception:
                log.exception("could not write %s", invocation.failure_location)
        include = ERROR_TOPIC in self.config.include_inference_response_in
        message = build_notification(
            invocation,
            self._region,
            failure_reason=f"{kind}: {reason}",
            response_body=self._inline(include, error_body),
        )
        return self.config.error_topic, message

    @staticmethod
    def _inline(include: bool, body: str) -> str | None:
        return body if include and len(body.encode()) <= MAX_RESPONSE_IN_NOTIFICATION else None

    # -- the outside world --------------------------------------------------------------------

    @property
    def _region(self) -> str:
        return str(self._sns.meta.region_name)

    def _get_server(self) -> ArchiveServer:
        with self._predictor_lock:
            if self._server is None:
                try:
                    made = self._factory()
                except Exception as exc:
                    raise RequestFailed("ModelError", f"the model could not be loaded: {exc}") from exc
                self._server = (
                    made if isinstance(made, ArchiveServer) else in_process_server(made, self._read_frame)
                )
            return self._server

    def _get_object(self, uri: str) -> bytes:
        location = S3Uri.parse(uri)
        if self._read_object is not None:
            return self._read_object(location.bucket, location.key)
        body: bytes = self._s3.get_object(Bucket=location.bucket, Key=location.key)["Body"].read()
        return body

    def _read_input(self, request: AsyncRequest) -> bytes:
        if request.body is not None:
            return request.body
        location = request.input_location or ""
        if not location.startswith("s3://"):
            raise RequestFailed("InvalidInputLocation", f"only s3:// input is served locally, not {location}")
        try:
            return self._get_object(location)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise RequestFailed(
                str(error.get("Code", "ClientError")),
                f"could not read {location}: {error.get('Message', exc)}",
            ) from exc

    def _read_frame(self, uri: str) -> bytes:
        try:
            return self._get_object(uri)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise FrameUnreadable(
                uri,
                f"could not read {uri}: {error.get('Message', exc)}",
                str(error.get("Code", "ClientError")),
            ) from exc

    def _put(self, uri: str, body: str) -> None:
        location = S3Uri.parse(uri)
        self._s3.put_object(
            Bucket=location.bucket, Key=location.key, Body=body.encode(), ContentType=RESPONSE_CONTENT_TYPE
        )

    def _publish(self, topic: str | None, message: dict[str, Any]) -> None:
        if not topic:
            return
        try:
            self._sns.publish(TopicArn=topic, Message=json.dumps(message, separators=(",", ":")))
        except Exception:  # the output is in S3 already; a lost notice is logged and counted
            log.exception("could not publish %s to %s", message["inferenceId"], topic)
            with self._state:
                self._counts["publish_errors"] += 1


class LocalSageMakerRuntime:
    """Stands in for a boto3 ``sagemaker-runtime`` client in process: routes each call to the
    local endpoint its ``EndpointName`` names, as the service does."""

    def __init__(self, endpoints: Mapping[str, LocalAsyncEndpoint]) -> None:
        self.endpoints = dict(endpoints)

    def invoke_endpoint_async(self, **kwargs: Any) -> dict[str, Any]:
        """Same keyword arguments and answer as boto3 ``invoke_endpoint_async``."""
        check_client_side(kwargs)
        endpoint = self.endpoints.get(kwargs["EndpointName"])
        if endpoint is None:
            raise validation_error(f"Endpoint {kwargs['EndpointName']} not found.")
        return endpoint.invoke_endpoint_async(**kwargs)
