"""The cost model's counts against what local mode's Step Functions really runs.

The run is small but has every loop and fan-out of the real shape: two sources of four frames,
listing pages of three keys (so each source's child execution lists two pages), batches of two
(a short batch at the end of each page), labeling jobs of at most four frames and dataset shards of
at most three (so PlanReview cuts two jobs and three shards). Every state entry of every execution
(parent and Distributed Map children), every child execution, every function invocation and every
S3 and DynamoDB request the workflow's code makes is counted and compared with the model.
"""

from __future__ import annotations

import io
import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (
    distributed_item_processor_worker as worker_module,
)
from moto.stepfunctions.parser.asl.eval.event.event_manager import EventManager
from PIL import Image

from workflow.adapters import aws as aws_adapters
from workflow.cost import (
    RunShape,
    child_executions,
    dynamodb_usage,
    lambda_invocations,
    s3_requests,
    state_entries,
)
from workflow.domain.detections import Detections, Provenance
from workflow.local.cloud import LocalCloud

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ENDPOINT = "autolabel-nanodet-coco"  # template.yaml's EndpointName default
S3_PUT_CLASS = {
    "PutObject",
    "CopyObject",
    "ListObjectsV2",
    "CreateMultipartUpload",
    "UploadPart",
    "CompleteMultipartUpload",
}
S3_GET_CLASS = {"GetObject", "HeadObject"}
DYNAMO_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"}
DYNAMO_READS = {"GetItem", "Query"}


class NothingFound:
    """A model that sees no object: the counts do not depend on what a model finds."""

    def predict_bytes(self, data: bytes, frame: str) -> Detections:
        return Detections.empty(64, 48, Provenance(model="nothing-found"), frame)


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (90, 120, 150)).save(buffer, format="PNG")
    return buffer.getvalue()


class Recorder:
    """State entries (every execution's history events), child starts and API calls, by name."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.entered: Counter[str] = Counter()
        self.children: Counter[str] = Counter()  # by the StartAt state of the child's program
        self.calls: Counter[str] = Counter()

    def add(self, counter: Counter[str], key: str) -> None:
        with self.lock:
            counter[key] += 1

    def patches(self) -> list[Any]:
        add_event = EventManager.add_event
        eval_job = worker_module.DistributedItemProcessorWorker._eval_job
        recorder = self

        def counted_event(manager: Any, context: Any, event_type: Any, event_details: Any = None, **kw: Any):
            if str(event_type.value if hasattr(event_type, "value") else event_type).endswith("StateEntered"):
                recorder.add(recorder.entered, event_details["stateEnteredEventDetails"]["name"])
            return add_event(manager, context, event_type, event_details, **kw)

        def counted_job(worker: Any, env: Any, job: Any) -> None:
            recorder.add(recorder.children, job.job_program.start_at.start_at_name)
            return eval_job(worker, env, job)

        return [
            mock.patch.object(EventManager, "add_event", counted_event),
            mock.patch.object(worker_module.DistributedItemProcessorWorker, "_eval_job", counted_job),
        ]

    def count_calls(self, client: Any, service: str) -> None:
        def on_call(model: Any, **_: Any) -> None:
            self.add(self.calls, f"{service}:{model.name}")

        client.meta.events.register(f"before-call.{service}", on_call)

    def requests(self, service: str, classes: tuple[set[str], set[str]]) -> tuple[int, int]:
        ops = {k.split(":", 1)[1]: n for k, n in self.calls.items() if k.startswith(f"{service}:")}
        unknown = set(ops) - classes[0] - classes[1]
        assert not unknown, f"{service} operations the test does not classify: {unknown}"
        return sum(ops.get(o, 0) for o in classes[0]), sum(ops.get(o, 0) for o in classes[1])


def map_of_processor(definition: dict[str, Any]) -> dict[str, str]:
    """Distributed Map name by the StartAt state of its item processor."""
    return {
        state["ItemProcessor"]["StartAt"]: name
        for name, state in definition["States"].items()
        if state["Type"] == "Map" and "ItemProcessor" in state
    }


@pytest.mark.parametrize("review", ["human", "skip"])
def test_local_run_enters_the_states_and_makes_the_requests_the_cost_model_counts(review):
    # Given 2 sources of 4 frames, pages of 3 keys, batches of 2, jobs of <= 4 and shards of <= 3 frames
    shape = RunShape(
        frames=8, batch_size=2, sources=2, page_size=3, shard_frames=3, job_frames=4, review=review
    )
    definition = json.loads((ROOT / "statemachine" / "autolabel.asl.json").read_text(encoding="utf-8"))
    recorder = Recorder()
    small = [
        mock.patch("workflow.steps.listing.PAGE_SIZE", shape.page_size),
        mock.patch("workflow.steps.plan.SHARD_FRAMES", shape.shard_frames),
        mock.patch("workflow.steps.plan.MAX_FRAMES_PER_JOB", shape.job_frames),
    ]
    with LocalCloud({ENDPOINT: NothingFound}) as cloud:
        # The model prices a stack on AWS, whose ledger writes frame by frame (local mode's own
        # choice is transactions of 100: LEDGER_TRANSACTIONS)
        cloud.set_environment({"LEDGER_TRANSACTIONS": "false"})
        cloud.s3.create_bucket(Bucket="drive-logs")
        for day in ("day1", "day2"):
            for i in range(shape.frames // shape.sources):
                cloud.s3.put_object(Bucket="drive-logs", Key=f"{day}/{i:03d}.png", Body=png())
        workflow_aws = aws_adapters.aws()
        recorder.count_calls(workflow_aws.s3.client, "s3")
        recorder.count_calls(workflow_aws.dynamodb, "dynamodb")
        patchers = [*small, *recorder.patches()]
        for patcher in patchers:
            patcher.start()
        try:
            # When the real state machine runs it in local mode
            arn = cloud.start_run(
                {
                    "sources": ["s3://drive-logs/day1/", "s3://drive-logs/day2/"],
                    "batch_size": shape.batch_size,
                    "review": review,
                    "models": [{"name": "nothing-found", "endpoint_name": ENDPOINT}],
                }
            )
            described = cloud.wait(arn, timeout=180)
        finally:
            for patcher in reversed(patchers):
                patcher.stop()
        calls = dict(cloud.invocations)
    assert described["status"] == "SUCCEEDED", described.get("cause")
    # Then every state of every execution was entered as often as the model says
    assert recorder.entered == state_entries(definition, shape)
    # And each Distributed Map started as many children as the model bills
    started = {map_of_processor(definition)[start]: n for start, n in recorder.children.items()}
    assert started == child_executions(definition, shape)
    assert started == {"ListSources": 2, "LabelBatches": 6, "PublishShards": 3}
    # And every function ran as often as the model says (callbacks included)
    assert calls == {f: n for f, n in lambda_invocations(definition, shape).items() if n}
    # And the workflow's code made the S3 and DynamoDB requests the model prices
    puts, gets = s3_requests(shape)["workflow"]
    if review == "human":
        # (local mode's stand-in reviewer is no person: the run writes no reviewer scorecard, which
        # the model, pricing people's review, counts)
        puts -= 1
    assert recorder.requests("s3", (S3_PUT_CLASS, S3_GET_CLASS)) == (puts, gets)
    usage = dynamodb_usage(shape)
    assert recorder.requests("dynamodb", (DYNAMO_WRITES, DYNAMO_READS)) == (
        usage.write_requests,
        usage.read_requests,
    )
