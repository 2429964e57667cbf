"""Faults injected into local mode, on the real ASL: every frame ends labeled, skipped or failed.

Each scenario uploads its own frames (tiny real JPEGs; the model is a stand-in that never decodes
them), breaks one thing, runs the workflow to its end (resuming a failed run by its run id where a
person would), and checks the same invariants: every input frame ends labeled, skipped with a
reason or failed with a reason; none is labeled twice; no task token is left waiting in the
TokenTable. The rows go to the table printed after the run and to ``bench-out/faults.json``.

Run with ``make faults`` (``pytest -m faults tests/faults``).
"""

from __future__ import annotations

import io
import json
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import boto3
import numpy as np
import pytest
from moto.core.exceptions import JsonRESTError
from moto.s3.responses import S3Response
from PIL import Image

from workflow.domain.detections import Detections, Provenance
from workflow.local.cloud import LocalCloud

pytestmark = pytest.mark.faults

LOGS = "fault-logs"
FIRST = "autolabel-nanodet-coco"
SECOND = "autolabel-second-model"
TWO_MODELS = [
    {"name": "nanodet-coco", "endpoint_name": FIRST},
    {"name": "second-coco", "endpoint_name": SECOND},
]
Handler = Callable[[dict[str, Any], Any], Any]


class StandIn:
    """A stand-in model: fixed COCO boxes, image never decoded. Frames under a ``review`` prefix get
    middling scores (routed to people); ``delay`` slows every call (a run to interrupt)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.calls = 0
        self.delay = 0.0

    def predict_bytes(self, data: bytes, frame: str) -> Detections:
        self.calls += 1
        if self.delay:
            time.sleep(self.delay)
        scores = [0.5, 0.45] if "/review" in frame else [0.95, 0.9]
        return Detections(
            boxes=np.array([[10, 10, 60, 50], [100, 20, 140, 120]], np.float32),
            scores=np.array(scores, np.float32),
            class_ids=np.array([2, 0], np.int64),
            class_names=("car", "person"),
            image_width=320,
            image_height=240,
            provenance=Provenance(model=self.name, version="stand-in"),
            frame=frame,
        )


@pytest.fixture(scope="module")
def models() -> dict[str, StandIn]:
    return {FIRST: StandIn("nanodet-coco"), SECOND: StandIn("second-coco")}


@pytest.fixture(scope="module")
def cloud(local_cloud: Callable[..., LocalCloud], models: dict[str, StandIn]) -> Iterator[LocalCloud]:
    cloud = local_cloud({name: (lambda m=m: m) for name, m in models.items()}, max_concurrent_invocations=4)
    cloud.s3.create_bucket(Bucket=LOGS)
    yield cloud


# --- helpers ----------------------------------------------------------------------------------------
def tiny_jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (320, 240), (90, 90, 90)).save(buf, "JPEG")
    return buf.getvalue()


def upload(cloud: LocalCloud, prefix: str, count: int) -> list[str]:
    body = tiny_jpeg()
    for i in range(count):
        cloud.s3.put_object(Bucket=LOGS, Key=f"{prefix}/{i:03d}.jpg", Body=body)
    return [f"s3://{LOGS}/{prefix}/{i:03d}.jpg" for i in range(count)]


def request(prefix: str, **extra: Any) -> dict[str, Any]:
    return {"sources": [f"s3://{LOGS}/{prefix}/"], "batch_size": 3, "review": "skip", **extra}


def get_json(cloud: LocalCloud, uri: str) -> Any:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return json.loads(cloud.s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def lines(cloud: LocalCloud, uri: str) -> list[dict[str, Any]]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    body = cloud.s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def frame_lines(cloud: LocalCloud, described: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """A succeeded execution's frame report lines (skipped included) and its published source-refs."""
    assert described["status"] == "SUCCEEDED", (described.get("error"), described.get("cause"))
    summary = json.loads(described["output"])
    index = get_json(cloud, summary["outputs"]["index"])
    frames: list[dict[str, Any]] = []
    published: list[str] = []
    for shard in index["shards"]:
        frames += lines(cloud, shard["frame_report"])
        published += [m["source-ref"] for m in lines(cloud, shard["output_manifest"])]
    for uri in index["skipped"]:
        frames += [{**s, "status": "skipped"} for s in get_json(cloud, uri)]
    return frames, published


def waiting_tokens(cloud: LocalCloud) -> set[str]:
    """Keys of task tokens still parked (a batch or a review job nobody resumed)."""
    client = boto3.client("dynamodb", region_name="us-east-1")
    keys: set[str] = set()
    for page in client.get_paginator("scan").paginate(TableName="TokenTable"):
        for item in page["Items"]:
            status = item.get("status", {}).get("S")
            if "token" in item and status in ("waiting", "sending"):
                keys.add(item["pk"]["S"])
    return keys


def start(cloud: LocalCloud, req: dict[str, Any], name: str | None = None) -> str:
    return cloud.start_run(req, name=name)


def finish(cloud: LocalCloud, arn: str, timeout: float = 120) -> dict[str, Any]:
    described = cloud.wait(arn, timeout=timeout, poll=0.1)
    for endpoint in cloud.endpoints.values():
        endpoint.drain(timeout=30)
    return described


def failed_report(cloud: LocalCloud, run_id: str) -> dict[str, Any]:
    report = get_json(cloud, f"s3://{cloud.data_bucket}/runs/{run_id}/report.json")
    assert report["status"] in ("FAILED", "TIMED_OUT", "ABORTED"), report
    return dict(report)


@contextmanager
def replaced(cloud: LocalCloud, name: str, make: Callable[[Handler], Handler]) -> Iterator[None]:
    """Bind the Lambda ``name`` to ``make(original)`` for the block."""
    original = cloud.handlers[name]
    cloud.handlers[name] = make(original)
    try:
        yield
    finally:
        cloud.handlers[name] = original


def raising(times: int | None, message: str = "injected failure") -> Callable[[Handler], Handler]:
    """A handler that raises on its first ``times`` calls (every call when None), then works."""

    def make(original: Handler) -> Handler:
        calls = Counter[str]()

        def handler(event: dict[str, Any], context: Any) -> Any:
            calls["n"] += 1
            if times is None or calls["n"] <= times:
                raise RuntimeError(f"{message} ({context.function_name} call {calls['n']})")
            return original(event, context)

        return handler

    return make


@contextmanager
def publishing(
    cloud: LocalCloud, endpoint: str, publish: Callable[[Any, str, dict[str, Any]], None]
) -> Iterator[None]:
    """Route the endpoint's SNS notifications through ``publish(original, topic, message)``."""
    ep = cloud.endpoints[endpoint]
    original = ep._publish
    ep._publish = lambda topic, message: publish(original, topic, message)  # type: ignore[method-assign]
    try:
        yield
    finally:
        del ep._publish


def record(
    fault_table: list[dict[str, Any]],
    cloud: LocalCloud,
    scenario: str,
    uris: list[str],
    outcomes: list[tuple[list[dict[str, Any]], list[str]]],
    tokens_before: set[str],
) -> dict[str, Any]:
    """Tally the frames of one scenario over its final executions, add its row, assert the invariants."""
    by_frame: dict[str, list[dict[str, Any]]] = {u: [] for u in uris}
    published: Counter[str] = Counter()
    for frames, refs in outcomes:
        for line in frames:
            if line["frame"] in by_frame:
                by_frame[line["frame"]].append(line)
        published.update(r for r in refs if r in by_frame)
    final: dict[str, str] = {}
    unexplained = []
    for uri, seen in by_frame.items():
        statuses = {line["status"] for line in seen}
        if "labeled" in statuses:
            final[uri] = "labeled"
        elif "failed" in statuses:
            final[uri] = "failed"
        elif "skipped" in statuses:
            final[uri] = "skipped"
        for line in seen:
            if line["status"] in ("failed", "skipped") and not str(line.get("reason") or "").strip():
                unexplained.append(uri)
    labeled_lines = Counter(
        line["frame"] for seen in by_frame.values() for line in seen if line["status"] == "labeled"
    )
    duplicated = sum(1 for u in uris if labeled_lines[u] > 1 or published[u] > 1)
    dangling = sorted(waiting_tokens(cloud) - tokens_before)
    counts = Counter(final.values())
    row = {
        "scenario": scenario,
        "frames_in": len(uris),
        "labeled": counts["labeled"],
        "skipped": counts["skipped"],
        "failed": counts["failed"],
        "lost": len(uris) - len(final),
        "duplicated": duplicated,
        "dangling_tokens": len(dangling),
    }
    fault_table.append(row)
    assert row["lost"] == 0, [u for u in uris if u not in final]
    assert row["duplicated"] == 0
    assert not unexplained, unexplained
    assert not dangling, dangling
    return row


def reasons(outcome: tuple[list[dict[str, Any]], list[str]], status: str) -> dict[str, str]:
    return {f["frame"]: str(f.get("reason")) for f in outcome[0] if f["status"] == status}


# --- the endpoint ------------------------------------------------------------------------------------
def test_endpoint_error_notifications(cloud: LocalCloud, fault_table: list[dict[str, Any]]) -> None:
    # Given an endpoint whose every other inference ends with an error notification
    uris = upload(cloud, "ep-errors", 12)
    before = waiting_tokens(cloud)
    ep = cloud.endpoints[FIRST]
    original = ep._process
    count = Counter[str]()

    def process(invocation: Any) -> tuple[str, Any]:
        count["n"] += 1
        if count["n"] % 2 == 0:  # the failure record is written; its notice goes out as any other
            return "failed", ep._fail(invocation, "ModelError", "the container answered 500 (injected)")
        return original(invocation)

    ep._process = process  # type: ignore[method-assign]
    try:
        outcome = frame_lines(cloud, finish(cloud, start(cloud, request("ep-errors"))))
    finally:
        del ep._process
    row = record(fault_table, cloud, "endpoint_error_notifications", uris, [outcome], before)
    # Then the failed batches' frames carry the endpoint's reason, the others are labeled
    assert row["failed"] == 6 and row["labeled"] == 6
    assert all("ModelError" in r for r in reasons(outcome, "failed").values())


def short_timeout(seconds: int) -> Callable[[Handler], Handler]:
    """PrepareRun's output with a batch timeout under the request's 60 s floor (a test-only shortcut)."""

    def make(original: Handler) -> Handler:
        def handler(event: dict[str, Any], context: Any) -> Any:
            run = original(event, context)
            return {**run, "batch_timeout_seconds": seconds}

        return handler

    return make


def test_endpoint_that_never_answers(cloud: LocalCloud, fault_table: list[dict[str, Any]]) -> None:
    # Given an endpoint that accepts requests and never publishes a notification
    uris = upload(cloud, "ep-silent", 6)
    before = waiting_tokens(cloud)
    with (
        replaced(cloud, "PrepareRunFunction", short_timeout(3)),
        publishing(cloud, FIRST, lambda original, topic, message: None),
    ):
        outcome = frame_lines(cloud, finish(cloud, start(cloud, request("ep-silent"))))
    row = record(fault_table, cloud, "endpoint_never_answers", uris, [outcome], before)
    # Then every frame fails with a reason that says the batch timed out waiting for the endpoint
    assert row["failed"] == 6
    assert all(
        "States.Timeout" in r and "batch_timeout_seconds" in r for r in reasons(outcome, "failed").values()
    )


def test_one_of_two_models_notifications_lost(cloud: LocalCloud, fault_table: list[dict[str, Any]]) -> None:
    # Given two models, and the second endpoint's notifications lost
    uris = upload(cloud, "ep-half", 6)
    before = waiting_tokens(cloud)
    with (
        replaced(cloud, "PrepareRunFunction", short_timeout(3)),
        publishing(cloud, SECOND, lambda original, topic, message: None),
    ):
        outcome = frame_lines(cloud, finish(cloud, start(cloud, request("ep-half", models=TWO_MODELS))))
    row = record(fault_table, cloud, "one_of_two_models_lost", uris, [outcome], before)
    # Then the batch times out, and the first model's results are kept: every frame is labeled by it
    assert row["labeled"] == 6


def test_duplicate_sns_notifications(cloud: LocalCloud, fault_table: list[dict[str, Any]]) -> None:
    # Given SNS delivering every notification three times (at-least-once delivery)
    uris = upload(cloud, "sns-dup", 9)
    before = waiting_tokens(cloud)

    def thrice(original: Any, topic: str, message: dict[str, Any]) -> None:
        for _ in range(3):
            original(topic, message)

    with publishing(cloud, FIRST, thrice):
        outcome = frame_lines(cloud, finish(cloud, start(cloud, request("sns-dup"))))
    row = record(fault_table, cloud, "duplicate_sns", uris, [outcome], before)
    assert row["labeled"] == 9


def test_out_of_order_sns_notifications(cloud: LocalCloud, fault_table: list[dict[str, Any]]) -> None:
    # Given two models whose notifications are held and delivered newest first, duplicates between
    uris = upload(cloud, "sns-order", 9)
    before = waiting_tokens(cloud)
    held: list[tuple[Any, str, dict[str, Any]]] = []
    lock = threading.Lock()

    def hold(original: Any, topic: str, message: dict[str, Any]) -> None:
        with lock:
            held.append((original, topic, message))
            if len(held) < 6:  # 3 batches x 2 models
                return
            batch = list(reversed(held))
            held.clear()
        for orig, top, msg in batch + batch[::2]:
            orig(top, msg)

    with publishing(cloud, FIRST, hold), publishing(cloud, SECOND, hold):
        outcome = frame_lines(cloud, finish(cloud, start(cloud, request("sns-order", models=TWO_MODELS))))
    row = record(fault_table, cloud, "out_of_order_sns", uris, [outcome], before)
    assert row["labeled"] == 9


def test_send_task_success_before_the_invoking_lambda_returns(
    cloud: LocalCloud, fault_table: list[dict[str, Any]]
) -> None:
    # Given InvokeModels that returns only after its batch's callback has resumed the task
    uris = upload(cloud, "early-success", 6)
    before = waiting_tokens(cloud)
    client = boto3.client("dynamodb", region_name="us-east-1")

    def make(original: Handler) -> Handler:
        def handler(event: dict[str, Any], context: Any) -> Any:
            result = original(event, context)
            key = result.get("batch_key")
            deadline = time.monotonic() + 20
            while key and time.monotonic() < deadline:
                item = client.get_item(TableName="TokenTable", Key={"pk": {"S": key}}).get("Item", {})
                if item.get("status", {}).get("S") == "sent":
                    break
                time.sleep(0.05)
            else:
                if key:
                    raise AssertionError(f"the callback never resumed {key}")
            return result

        return handler

    with replaced(cloud, "InvokeModelsFunction", make):
        outcome = frame_lines(cloud, finish(cloud, start(cloud, request("early-success"))))
    row = record(fault_table, cloud, "send_task_success_before_invoke_returns", uris, [outcome], before)
    assert row["labeled"] == 6


# --- Lambda exceptions in every step -----------------------------------------------------------------
STEPS = [
    "PrepareRunFunction",
    "ListPageFunction",
    "InvokeModelsFunction",
    "MergeBatchFunction",
    "RecordBatchFailureFunction",
    "PlanReviewFunction",
    "AssembleManifestFunction",
    "StartReviewFunction",
    "CollectReviewFunction",
    "PublishShardFunction",
    "FinishRunFunction",
]


@pytest.mark.parametrize("step", STEPS)
def test_lambda_exception_in_step(
    cloud: LocalCloud, fault_table: list[dict[str, Any]], step: str, models: dict[str, StandIn]
) -> None:
    # Given a step whose Lambda raises on every call (RecordBatchFailure: with InvokeModels failing too)
    slug = step.removesuffix("Function").lower()
    prefix = f"review-exc-{slug}"
    uris = upload(cloud, prefix, 6)
    before = waiting_tokens(cloud)
    run_id = f"exc-{slug}"
    req = request(prefix, run_id=run_id, review="human")
    with replaced(cloud, step, raising(None)):
        if step == "RecordBatchFailureFunction":
            with replaced(cloud, "InvokeModelsFunction", raising(None)):
                first = finish(cloud, start(cloud, req, name=f"{run_id}-1"))
        else:
            first = finish(cloud, start(cloud, req, name=f"{run_id}-1"))
    outcomes = []
    if first["status"] == "SUCCEEDED":
        # the fault was absorbed: the frames it hit are failed with its reason
        outcomes.append(frame_lines(cloud, first))
        assert any(
            "injected failure" in r or "BatchLost" in r for r in reasons(outcomes[0], "failed").values()
        )
    else:
        # Then the failed execution still reports, with the injected cause
        report = failed_report(cloud, run_id)
        assert "injected failure" in (report.get("cause") or "") + (report.get("error") or ""), report
        # And resuming the run (same run id) finishes it
        outcomes.append(frame_lines(cloud, finish(cloud, start(cloud, req, name=f"{run_id}-2"))))
    record(fault_table, cloud, f"lambda_exception_{slug}", uris, outcomes, before)


def test_lambda_exception_in_the_inference_callback(
    cloud: LocalCloud, fault_table: list[dict[str, Any]]
) -> None:
    # Given the SNS callback Lambda failing on every delivery (no retry left in local mode)
    uris = upload(cloud, "exc-callback", 6)
    before = waiting_tokens(cloud)
    with (
        replaced(cloud, "PrepareRunFunction", short_timeout(3)),
        replaced(cloud, "InferenceCallbackFunction", raising(None)),
    ):
        outcome = frame_lines(cloud, finish(cloud, start(cloud, request("exc-callback"))))
    row = record(fault_table, cloud, "lambda_exception_inference_callback", uris, [outcome], before)
    assert row["failed"] == 6


def test_lambda_throttling_is_retried(cloud: LocalCloud, fault_table: list[dict[str, Any]]) -> None:
    # Given the Lambda service refusing the first two invocations of InvokeModels, MergeBatch and
    # PublishShard with TooManyRequestsException (the Invoke API's throttle, not a function error)
    uris = upload(cloud, "throttled", 6)
    before = waiting_tokens(cloud)
    throttled = Counter[str]()
    invoke = cloud._invoke

    def throttle(function_name: str, event: Any) -> tuple[str, bool, str]:
        if function_name in ("InvokeModelsFunction", "MergeBatchFunction", "PublishShardFunction"):
            throttled[function_name] += 1
            if throttled[function_name] <= 2:
                raise JsonRESTError("TooManyRequestsException", "Rate Exceeded.")
        return invoke(function_name, event)

    cloud._invoke = throttle  # type: ignore[method-assign]
    try:
        outcome = frame_lines(cloud, finish(cloud, start(cloud, request("throttled")), timeout=180))
    finally:
        del cloud._invoke
    row = record(fault_table, cloud, "lambda_throttling", uris, [outcome], before)
    # Then the state machine retried each throttled call and every frame is labeled
    assert row["labeled"] == 6
    assert all(n > 2 for n in throttled.values()), throttled


# --- S3 SlowDown -------------------------------------------------------------------------------------
SLOW_DOWN_BODY = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message><RequestId>fault-suite</RequestId></Error>"
)


@contextmanager
def slow_down(
    operation: str, every: int, limit: int | None = None, where: str | None = None
) -> Iterator[Counter[str]]:
    """S3 answers every ``every``-th call of ``operation`` (up to ``limit`` times) with 503 SlowDown;
    with ``where``, only calls made from a module whose path holds it (moto's Map ItemReader or
    ResultWriter, which Step Functions itself makes, not a Lambda)."""
    original = getattr(S3Response, operation)
    counts = Counter[str]()
    lock = threading.Lock()

    def patched(self: S3Response) -> Any:
        if where is not None and not any(where in f.filename for f in traceback.extract_stack()):
            return original(self)
        with lock:
            counts["calls"] += 1
            hit = counts["calls"] % every == 0 and (limit is None or counts["slowdowns"] < limit)
            if hit:
                counts["slowdowns"] += 1
        if hit:  # what S3 answers: HTTP 503 with the error code SlowDown (botocore retries it)
            return 503, {"Content-Type": "application/xml"}, SLOW_DOWN_BODY
        return original(self)

    setattr(S3Response, operation, patched)
    try:
        yield counts
    finally:
        setattr(S3Response, operation, original)


@pytest.mark.parametrize(
    ("scenario", "operation", "every", "limit", "where"),
    [
        ("s3_slowdown_reads", "get_object", 10, None, None),
        ("s3_slowdown_writes", "put_object", 10, None, None),
        # ListPage's list: six in a row outlast the SDK's 5 attempts; the state machine retries the page
        ("s3_slowdown_listing", "list_objects_v2", 1, 6, None),
        # the Distributed Maps' own S3 calls (LabelBatches' listObjectsV2 ItemReader, the ResultWriters)
        ("s3_slowdown_item_reader", "list_objects_v2", 1, 3, "item_reader"),
        ("s3_slowdown_result_writer", "put_object", 1, 3, "result_writer"),
    ],
)
def test_s3_slowdown(
    cloud: LocalCloud,
    fault_table: list[dict[str, Any]],
    scenario: str,
    operation: str,
    every: int,
    limit: int | None,
    where: str | None,
) -> None:
    uris = upload(cloud, scenario.replace("_", "-"), 6)
    before = waiting_tokens(cloud)
    with slow_down(operation, every, limit, where) as counts:
        described = finish(cloud, start(cloud, request(scenario.replace("_", "-"))), timeout=180)
    assert counts["slowdowns"] > 0
    outcome = frame_lines(cloud, described)
    row = record(fault_table, cloud, scenario, uris, [outcome], before)
    # Then the SDK's and the state machine's retries absorbed the throttling: every frame is labeled
    assert row["labeled"] == 6


# --- DynamoDB ----------------------------------------------------------------------------------------
def test_dynamodb_conditional_check_race_between_callbacks(
    cloud: LocalCloud, fault_table: list[dict[str, Any]]
) -> None:
    # Given two models, and each notification delivered by four callbacks racing in parallel threads
    uris = upload(cloud, "ddb-race", 9)
    before = waiting_tokens(cloud)

    def racing(original: Any, topic: str, message: dict[str, Any]) -> None:
        gate = threading.Barrier(4)

        def deliver() -> None:
            gate.wait()
            original(topic, message)

        threads = [threading.Thread(target=deliver) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    with publishing(cloud, FIRST, racing), publishing(cloud, SECOND, racing):
        outcome = frame_lines(cloud, finish(cloud, start(cloud, request("ddb-race", models=TWO_MODELS))))
    row = record(fault_table, cloud, "dynamodb_conditional_race", uris, [outcome], before)
    assert row["labeled"] == 9


# --- review jobs -------------------------------------------------------------------------------------
@pytest.mark.parametrize("ending", ["Failed", "Stopped"])
def test_labeling_job_that_fails_or_is_stopped(
    cloud: LocalCloud, fault_table: list[dict[str, Any]], ending: str
) -> None:
    # Given frames routed to people, and their Ground Truth job ending Failed or Stopped
    from workflow.local.labeling import JobFailed

    labeling = cloud.labeling
    assert labeling is not None
    prefix = f"review-job-{ending.lower()}"
    uris = upload(cloud, prefix, 6)
    before = waiting_tokens(cloud)
    if ending == "Failed":

        def broken(job: Any) -> Any:
            raise JobFailed("ClientError: the workforce was deleted (injected)")

        labeling._read_manifest = broken  # type: ignore[method-assign]
    else:
        create = labeling.create_labeling_job

        def create_and_stop(**params: Any) -> dict[str, Any]:
            answer = create(**params)
            labeling.stop_labeling_job(LabelingJobName=params["LabelingJobName"])
            return answer

        labeling.create_labeling_job = create_and_stop  # type: ignore[method-assign]
    try:
        described = finish(cloud, start(cloud, request(prefix, review="human")))
    finally:
        labeling.__dict__.pop("_read_manifest", None)
        labeling.__dict__.pop("create_labeling_job", None)
    outcome = frame_lines(cloud, described) if described["status"] == "SUCCEEDED" else ([], [])
    if described["status"] != "SUCCEEDED":
        pytest.fail(f"the run ended {described['status']}: {described.get('cause')}")
    row = record(fault_table, cloud, f"labeling_job_{ending.lower()}", uris, [outcome], before)
    # Then the frames routed to people are failed with the job's end, never published as labeled
    assert row["failed"] == 6 and not outcome[1]
    assert all(ending in r for r in reasons(outcome, "failed").values()), reasons(outcome, "failed")


# --- processes and runs ------------------------------------------------------------------------------
def test_killed_mid_run_then_resumed(
    cloud: LocalCloud, fault_table: list[dict[str, Any]], models: dict[str, StandIn]
) -> None:
    # Given a run of 12 frames in 4 batches, one at a time, with a slow model
    uris = upload(cloud, "killed", 12)
    before = waiting_tokens(cloud)
    req = request("killed", run_id="killed-once", max_concurrency=1)
    models[FIRST].delay = 0.4
    try:
        arn = start(cloud, req, name="killed-once-1")
        deadline = time.monotonic() + 60
        while models[FIRST].calls == 0 or time.monotonic() < deadline - 58:
            time.sleep(0.1)
            assert time.monotonic() < deadline
        # When the process running it goes away (the execution is stopped, nobody waits any more)
        cloud.sfn.stop_execution(executionArn=arn, error="Killed", cause="the CLI was killed (injected)")
        first = finish(cloud, arn)
    finally:
        models[FIRST].delay = 0.0
    assert first["status"] == "ABORTED"
    report = failed_report(cloud, "killed-once")
    assert report["labeled"] < 12
    # And it is started again with the same run id
    outcome = frame_lines(cloud, finish(cloud, start(cloud, req, name="killed-once-2")))
    row = record(fault_table, cloud, "killed_mid_run_resumed", uris, [outcome], before)
    assert row["labeled"] == 12


def test_two_overlapping_runs(
    cloud: LocalCloud, fault_table: list[dict[str, Any]], models: dict[str, StandIn]
) -> None:
    # Given two runs started together over the same frames
    uris = upload(cloud, "overlap", 12)
    before = waiting_tokens(cloud)
    models[FIRST].delay = 0.05
    try:
        arns = [start(cloud, request("overlap")), start(cloud, request("overlap"))]
        outcomes = [frame_lines(cloud, finish(cloud, arn)) for arn in arns]
    finally:
        models[FIRST].delay = 0.0
    row = record(fault_table, cloud, "two_overlapping_runs", uris, outcomes, before)
    # Then each frame is labeled by one run and skipped by the other, with the reason
    assert row["labeled"] == 12
    skipped = {**reasons(outcomes[0], "skipped"), **reasons(outcomes[1], "skipped")}
    assert all("run" in r or "labeled" in r for r in skipped.values()), skipped
