"""Every AWS call the workflow steps make: valid for botocore's service models, allowed by template.yaml.

The steps run as their handlers run them, with real boto3 clients. S3 and DynamoDB are answered by
moto (which also checks DynamoDB expressions); SageMaker, SageMaker runtime and Step Functions by
botocore's Stubber with the exact parameters expected. For every call botocore validates the
parameters against the service model; the tests add what botocore does not check (patterns such
as ARNs, maximum lengths, enums) and that the function's IAM policy in template.yaml allows the
call's action on the exact resource it touched.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from aws_contract_helpers import ANY, RecordingClient, StubbedClient, TemplateIam, model_violations
from moto import mock_aws

from workflow.adapters.callbacks import TaskCallbacks
from workflow.adapters.endpoints import SageMakerRuntime
from workflow.adapters.labeling import BUILT_IN_LAMBDA_ACCOUNTS, GroundTruthJobs, built_in_lambdas, job_name
from workflow.adapters.ledger import FrameLedger
from workflow.adapters.s3 import S3Store
from workflow.adapters.tokens import PendingInference, TokenStore
from workflow.domain.detections import Detections, Provenance
from workflow.domain.errors import EndpointThrottled
from workflow.domain.frames import inference_id
from workflow.domain.notifications import AsyncInferenceNotification, LabelingJobStateChange
from workflow.domain.profile import default_profile
from workflow.domain.records import ShardPlan, batch_id
from workflow.domain.run import (
    Batch,
    BatchInference,
    InferenceRecord,
    ListCursor,
    ManifestPart,
    ManifestResult,
    ModelEndpoint,
    ReviewResult,
    RunContext,
    RunRequest,
    SourceItem,
)
from workflow.settings import Settings
from workflow.steps.batch_failure import record_batch_failure
from workflow.steps.collect import collect_review
from workflow.steps.failure import ExecutionStatusChange, on_execution_change
from workflow.steps.finish import finish_run
from workflow.steps.inference import invoke_models, on_inference_result
from workflow.steps.listing import list_page
from workflow.steps.merge import merge_batch
from workflow.steps.plan import assemble_manifest, plan_review
from workflow.steps.prepare import prepare_run
from workflow.steps.publish import publish_shard
from workflow.steps.review import on_labeling_job_change, start_labeling_job

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"
DATA, TOKENS, LEDGER = "autolabel-data", "autolabel-tokens", "autolabel-ledger"  # the stack's names
LOGS = "drive-logs"
ENDPOINT = "autolabel-nanodet-coco"
LABELING_ROLE = f"arn:aws:iam::{ACCOUNT}:role/autolabel-labeling-role"
TOKEN = "AQCEAAAAKgAAAAMAAAAAAAAAAf+task+token"
# Ground Truth's built-in task Lambdas are owned by these AWS accounts (Ground Truth developer guide).
GROUND_TRUTH_ACCOUNTS = {
    "us-east-1": "432418664414",
    "us-east-2": "266458841044",
    "us-west-2": "081040173940",
    "ca-central-1": "918755190332",
    "eu-west-1": "568282634449",
    "eu-west-2": "487402164563",
    "eu-central-1": "203001061592",
    "ap-northeast-1": "477331159723",
    "ap-northeast-2": "845288260483",
    "ap-south-1": "565803892007",
    "ap-southeast-1": "377565633583",
    "ap-southeast-2": "454466003867",
}


@dataclass
class Cloud:
    s3: RecordingClient
    dynamodb: RecordingClient
    settings: Settings
    iam: TemplateIam

    @property
    def store(self) -> S3Store:
        return S3Store(self.s3.client)

    def peek(self, uri: str) -> Any:
        """An object's JSON, read by the test (not recorded as the step's call)."""
        bucket, key = uri.removeprefix("s3://").split("/", 1)
        return json.loads(
            boto3.client("s3", region_name="us-east-1").get_object(Bucket=bucket, Key=key)["Body"].read()
        )

    @property
    def tokens(self) -> TokenStore:
        return TokenStore(self.dynamodb.client, TOKENS)

    @property
    def ledger(self) -> FrameLedger:
        return FrameLedger(self.dynamodb.client, LEDGER)

    def forget_calls(self) -> None:
        self.s3.calls.clear()
        self.dynamodb.calls.clear()

    def assert_contract(self, function: str, *others: RecordingClient) -> None:
        """The recorded calls keep to the service models and the function's IAM policy allows them."""
        clients = (self.s3, self.dynamodb, *others)
        assert [v for c in clients for v in c.violations()] == []
        assert self.iam.denied(function, [call for c in clients for call in c.calls]) == []


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    """moto S3 and DynamoDB with the stack's bucket and tables (as template.yaml defines them)."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    iam = TemplateIam(ROOT / "template.yaml", {"SourceBucketNames": [LOGS], "WorkteamArn": "x"})
    with mock_aws():
        s3, dynamodb = RecordingClient("s3"), RecordingClient("dynamodb")
        for bucket in (DATA, LOGS):
            s3.client.create_bucket(Bucket=bucket)
        for logical, name in (("TokenTable", TOKENS), ("LedgerTable", LEDGER)):
            props = iam.template["Resources"][logical]["Properties"]
            dynamodb.client.create_table(
                TableName=name,
                BillingMode=props["BillingMode"],
                KeySchema=props["KeySchema"],
                AttributeDefinitions=props["AttributeDefinitions"],
            )
        settings = Settings(
            data_bucket=DATA,
            token_table=TOKENS,
            ledger_table=LEDGER,
            default_models=[ModelEndpoint(name="nanodet-coco", endpoint_name=ENDPOINT)],
            labeling_role_arn=LABELING_ROLE,
            workteam_arn=f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:workteam/private-crowd/reviewers",
        )
        world = Cloud(s3, dynamodb, settings, iam)
        world.forget_calls()
        yield world


def put_frames(cloud: Cloud, names: list[str]) -> list[str]:
    for name in names:
        cloud.s3.client.put_object(Bucket=LOGS, Key=f"day1/{name}", Body=b"frame bytes")
    cloud.forget_calls()
    return [f"s3://{LOGS}/day1/{n}" for n in names if n.endswith(".png")]


def prepared_run(cloud: Cloud, frames: int = 2, review: str = "human") -> RunContext:
    """A run PrepareRun started and ListPage listed (its one page of one source)."""
    put_frames(cloud, [f"{i:03d}.png" for i in range(frames)])
    request = RunRequest(sources=[f"s3://{LOGS}/day1/"], batch_size=8, review=review)  # type: ignore[arg-type]
    run = prepare_run(request, "run-1", cloud.settings, cloud.store, cloud.ledger)
    list_page(run, first_source(run), ListCursor(), cloud.settings, cloud.store, cloud.ledger)
    cloud.forget_calls()
    return run


def first_source(run: RunContext) -> SourceItem:
    return SourceItem(index=0, uri=f"s3://{LOGS}/day1/")


def car(frame: str) -> Detections:
    return Detections(
        boxes=np.array([[10.0, 20.0, 110.0, 90.0]]),
        scores=np.array([0.9]),
        class_ids=np.array([2]),
        class_names=("car",),
        image_width=1242,
        image_height=375,
        provenance=Provenance(model="nanodet-coco"),
        frame=frame,
    )


def completed_inference(cloud: Cloud, run: Any, batch: Batch) -> BatchInference:
    """The endpoint's output for the batch in s3://<data>/async/, as the SNS callback reports it."""
    output = f"s3://{DATA}/async/{ENDPOINT}/output/{batch.batch_id}.out"
    results = {"results": [car(f).to_dict() for f in batch.frames]}
    cloud.s3.client.put_object(Bucket=DATA, Key=output.split("/", 3)[3], Body=json.dumps(results).encode())
    cloud.forget_calls()
    inf = inference_id(run.run_id, batch.batch_id, "nanodet-coco")
    record = InferenceRecord(
        model="nanodet-coco",
        inference_id=inf,
        status="Completed",
        output_location=output,
        frames=batch.frames,
    )
    return BatchInference(batch_id=batch.batch_id, inferences=[record])


def first_batch_key(run: RunContext) -> str:
    """The LabelBatches Map's item for the run's first batch: the key of its object."""
    return f"{run.batches_prefix}{batch_id(0, 0, 0)}.json"


def first_batch(cloud: Cloud, run: RunContext) -> Batch:
    return Batch.model_validate(cloud.peek(f"s3://{DATA}/{first_batch_key(run)}"))


def merged_run(cloud: Cloud, review: str = "human") -> RunContext:
    """A prepared run whose one batch MergeBatch labeled (two cars, routed to adjustment)."""
    run = prepared_run(cloud, review=review)
    batch = first_batch(cloud, run)
    merge_batch(
        first_batch_key(run), run, completed_inference(cloud, run, batch), cloud.settings, cloud.store
    )
    cloud.forget_calls()
    return run


def put_keys(cloud: Cloud) -> list[str]:
    """The keys the step wrote, in the order it wrote them."""
    return [p["Key"] for p in cloud.s3.params("PutObject")]


# --- PrepareRun ------------------------------------------------------------------------------------
def test_prepare_run_writes_the_run_files_and_marks_the_run_running_without_listing(cloud):
    # Given two frames and a text file under a drive-log prefix in a source bucket
    put_frames(cloud, ["000.png", "001.png", "notes.txt"])
    request = RunRequest(sources=[f"s3://{LOGS}/day1/", f"s3://{LOGS}/day1/"], batch_size=8)
    # When PrepareRun runs
    run = prepare_run(request, "exec-1", cloud.settings, cloud.store, cloud.ledger)
    # Then it writes the run's profile, sources (deduplicated) and request, and lists nothing
    prefix = "runs/exec-1"
    assert sorted(put_keys(cloud)) == [f"{prefix}/{n}.json" for n in ("profile", "request", "sources")]
    assert cloud.peek(f"s3://{DATA}/{run.sources_key}") == [{"index": 0, "uri": f"s3://{LOGS}/day1/"}]
    assert (run.source_count, run.batches_prefix, run.batch_size) == (1, f"{prefix}/batches/", 8)
    assert cloud.s3.params("ListObjectsV2") == []
    # And the run record says running; no frame is claimed yet (ListPage claims, page by page)
    (record,) = cloud.dynamodb.params("PutItem")
    assert record["Item"]["pk"] == {"S": "run#exec-1"} and record["Item"]["status"] == {"S": "running"}
    assert cloud.dynamodb.params("UpdateItem") == []
    # And every call keeps to the models and to PrepareRunFunction's policy
    cloud.assert_contract("PrepareRunFunction")


def test_prepare_run_reads_a_profile_from_the_data_bucket(cloud):
    # Given a labeling profile uploaded to the stack's bucket
    put_frames(cloud, ["000.png"])
    profile = json.dumps(default_profile().to_dict()).encode()
    cloud.s3.client.put_object(Bucket=DATA, Key="profiles/adas.json", Body=profile)
    cloud.forget_calls()
    request = RunRequest(sources=[f"s3://{LOGS}/day1/"], profile=f"s3://{DATA}/profiles/adas.json")
    # When PrepareRun runs with it
    prepare_run(request, "exec-1", cloud.settings, cloud.store, cloud.ledger)
    # Then it read the profile, within its policy
    assert [(p["Bucket"], p["Key"]) for p in cloud.s3.params("GetObject")] == [(DATA, "profiles/adas.json")]
    cloud.assert_contract("PrepareRunFunction")


# --- ListPage --------------------------------------------------------------------------------------
def test_list_page_lists_one_page_claims_its_frames_and_writes_the_batches(cloud):
    # Given a prepared run over two frames and a text file under a drive-log prefix
    frames = put_frames(cloud, ["000.png", "001.png", "notes.txt"])
    request = RunRequest(sources=[f"s3://{LOGS}/day1/"], batch_size=8)
    run = prepare_run(request, "exec-1", cloud.settings, cloud.store, cloud.ledger)
    cloud.forget_calls()
    # When ListPage lists the source's first page
    cursor = list_page(run, first_source(run), ListCursor(), cloud.settings, cloud.store, cloud.ledger)
    # Then one page of at most 1,000 keys was listed, and it was the last
    assert cloud.s3.params("ListObjectsV2") == [
        {"Bucket": LOGS, "Prefix": "day1/", "MaxKeys": 1000, "EncodingType": "url"}
    ]
    assert cursor == ListCursor(page=1, token=None, more=False)
    # And one batch holds both frames, the text file is skipped with its reason, the page is counted
    batch = cloud.peek(f"s3://{DATA}/{first_batch_key(run)}")
    assert batch == {"batch_id": batch_id(0, 0, 0), "frames": frames, "adjust": [], "lineage": {}}
    (skipped,) = cloud.peek(f"s3://{DATA}/{run.run_prefix}/skipped/0000-000000.json")
    assert skipped["frame"] == f"s3://{LOGS}/day1/notes.txt" and skipped["reason"].startswith("not a frame")
    page = cloud.peek(f"s3://{DATA}/{run.run_prefix}/pages/0000-000000.json")
    assert (page["listed"], page["frames"], page["batches"], page["skipped"]) == (3, 2, 1, 1)
    # And both frames are claimed in the ledger, each by a put conditioned on its absence
    claims = cloud.dynamodb.params("PutItem")
    assert sorted(c["Item"]["pk"]["S"] for c in claims) == frames
    assert all(
        c["TableName"] == LEDGER and c["ConditionExpression"] == "attribute_not_exists(pk)" for c in claims
    )
    assert all(
        c["Item"]["status"]["S"] == "claimed" and c["Item"]["run_id"]["S"] == run.run_id for c in claims
    )
    # And every call keeps to the models and to ListPageFunction's policy (source bucket listed by name)
    cloud.assert_contract("ListPageFunction")


def test_list_page_may_not_list_a_bucket_missing_from_source_bucket_names(cloud):
    # Given the same stack deployed without SourceBucketNames
    put_frames(cloud, ["000.png"])
    run = prepare_run(
        RunRequest(sources=[f"s3://{LOGS}/day1/"]), "exec-1", cloud.settings, cloud.store, cloud.ledger
    )
    cloud.forget_calls()
    list_page(run, first_source(run), ListCursor(), cloud.settings, cloud.store, cloud.ledger)
    bare = TemplateIam(ROOT / "template.yaml")
    # When its policy is asked about the calls ListPage made
    denied = bare.denied("ListPageFunction", cloud.s3.calls + cloud.dynamodb.calls)
    # Then only listing the source bucket is refused
    assert denied == [f"s3:ListBucket on arn:aws:s3:::{LOGS}"]


# --- InvokeModels ----------------------------------------------------------------------------------
def test_invoke_models_parks_the_token_then_sends_one_request_per_batch(cloud):
    # Given a prepared run's first batch and the endpoint's runtime API
    run = prepared_run(cloud)
    batch = first_batch(cloud, run)
    cloud.forget_calls()
    runtime, sfn = StubbedClient("sagemaker-runtime"), StubbedClient("stepfunctions")
    inf = inference_id(run.run_id, batch.batch_id, "nanodet-coco")
    request_uri = f"s3://{DATA}/{run.run_prefix}/requests/{batch.batch_id}.json"
    runtime.expect(
        "invoke_endpoint_async",
        {
            "EndpointName": ENDPOINT,
            # the profile keeps NanoDet's boxes from 0.25: our container answers only those
            "ContentType": "application/json; min-score=0.25",
            "InputLocation": request_uri,
            "Accept": "application/json",
            "InferenceId": inf,
        },
        {"InferenceId": inf, "OutputLocation": f"s3://{DATA}/async/{ENDPOINT}/output/{inf}.out"},
    )
    # When InvokeModels runs on the batch's key
    result = invoke_models(
        TOKEN,
        first_batch_key(run),
        run,
        cloud.store,
        cloud.tokens,
        SageMakerRuntime(runtime.client),
        TaskCallbacks(sfn.client),
    )
    # Then the request file lists the frames, the token waits under the batch key, one request went out
    assert cloud.peek(request_uri) == batch.frames
    items = {c["Item"]["pk"]["S"]: c["Item"] for c in cloud.dynamodb.params("PutItem")}
    assert items[result["batch_key"]]["token"] == {"S": TOKEN}
    assert items[f"inference#{inf}"]["frames"] == {"L": [{"S": f} for f in batch.frames]}
    runtime.verify()
    sfn.verify()  # nothing resumed: the batch is not done
    cloud.assert_contract("InvokeModelsFunction", runtime, sfn)


def test_invoke_models_resumes_a_batch_an_earlier_attempt_finished_at_once(cloud):
    # Given a batch whose records an earlier attempt wrote (a retried or redriven child)
    run = merged_run(cloud)
    runtime, sfn = StubbedClient("sagemaker-runtime"), StubbedClient("stepfunctions")
    sfn.expect("send_task_success", {"taskToken": TOKEN, "output": ANY})
    # When InvokeModels runs on it again
    result = invoke_models(
        TOKEN,
        first_batch_key(run),
        run,
        cloud.store,
        cloud.tokens,
        SageMakerRuntime(runtime.client),
        TaskCallbacks(sfn.client),
    )
    # Then no model is asked again and the task resumes with "done"
    assert result == {"batch_key": "", "inferences": 0, "done": True}
    (sent,) = sfn.params("SendTaskSuccess")
    assert json.loads(sent["output"]) == {
        "batch_id": batch_id(0, 0, 0),
        "inferences": [],
        "records_uri": None,
        "done": True,
    }
    runtime.verify()
    sfn.verify()
    cloud.assert_contract("InvokeModelsFunction", runtime, sfn)


def test_invoke_models_sends_each_frame_to_a_jumpstart_endpoint(cloud):
    # Given a run whose model takes one image per request
    run = prepared_run(cloud).model_copy(
        update={
            "models": [
                ModelEndpoint(
                    name="js", endpoint_name=ENDPOINT, response_format="jumpstart", batch_requests=False
                )
            ]
        }
    )
    batch = first_batch(cloud, run)
    cloud.forget_calls()
    runtime = StubbedClient("sagemaker-runtime")
    for frame in batch.frames:
        inf = inference_id(run.run_id, batch.batch_id, "js", frame)
        params = {
            "EndpointName": ENDPOINT,
            "ContentType": "application/x-image",
            "InputLocation": frame,
            "Accept": "application/json;verbose",
            "InferenceId": inf,
        }
        runtime.expect(
            "invoke_endpoint_async", params, {"InferenceId": inf, "OutputLocation": f"s3://{DATA}/o"}
        )
    sfn = StubbedClient("stepfunctions")
    # When InvokeModels runs
    result = invoke_models(
        TOKEN,
        first_batch_key(run),
        run,
        cloud.store,
        cloud.tokens,
        SageMakerRuntime(runtime.client),
        TaskCallbacks(sfn.client),
    )
    # Then each frame went as its own request, from the source bucket, and nothing was written to S3
    assert result["inferences"] == len(batch.frames) == 2
    assert cloud.s3.params("PutObject") == []
    runtime.verify()
    cloud.assert_contract("InvokeModelsFunction", runtime)


def test_invoke_models_turns_endpoint_throttling_into_a_retryable_error(cloud):
    # Given an endpoint that throttles
    run = prepared_run(cloud)
    runtime = StubbedClient("sagemaker-runtime")
    runtime.expect_error(
        "invoke_endpoint_async",
        {
            "EndpointName": ENDPOINT,
            "ContentType": ANY,
            "InputLocation": ANY,
            "Accept": ANY,
            "InferenceId": ANY,
        },
        "ThrottlingException",
    )
    sfn = StubbedClient("stepfunctions")
    # When InvokeModels runs, Then it raises the error the ASL retries with backoff
    with pytest.raises(EndpointThrottled):
        invoke_models(
            TOKEN,
            first_batch_key(run),
            run,
            cloud.store,
            cloud.tokens,
            SageMakerRuntime(runtime.client),
            TaskCallbacks(sfn.client),
        )
    runtime.verify()


# --- the inference callback -------------------------------------------------------------------------
def notification(inf: str, status: str, output: str | None = None) -> AsyncInferenceNotification:
    message: dict[str, Any] = {
        "invocationStatus": status,
        "inferenceId": inf,
        "requestParameters": {"endpointName": ENDPOINT, "inputLocation": f"s3://{DATA}/in.json"},
        "eventName": "InferenceResult",
    }
    if output:
        message["responseParameters"] = {"contentType": "application/json", "outputLocation": output}
    else:
        message["failureReason"] = "ClientError: the model container crashed"
    return AsyncInferenceNotification.model_validate(message)


def test_the_last_notification_of_a_batch_resumes_its_task(cloud):
    # Given a batch waiting for one inference
    cloud.tokens.park_batch(
        "run-1", batch_id(0, 0, 0), TOKEN, [PendingInference("inf-1", "nanodet-coco", ["s3://f/1.png"])]
    )
    cloud.forget_calls()
    sfn = StubbedClient("stepfunctions")
    sfn.expect("send_task_success", {"taskToken": TOKEN, "output": ANY})
    # When its success notification arrives
    outcome = on_inference_result(
        notification("inf-1", "Completed", "s3://x/o.out"),
        cloud.tokens,
        TaskCallbacks(sfn.client),
        cloud.store,
        cloud.settings,
    )
    # Then the task resumes with the URI of the batch's inference records, written to the data bucket
    assert outcome == "resumed"
    (sent,) = sfn.params("SendTaskSuccess")
    records = cloud.peek(json.loads(sent["output"])["records_uri"])
    assert records[0]["output_location"] == "s3://x/o.out"
    sfn.verify()
    cloud.assert_contract("InferenceCallbackFunction", sfn)


def test_a_batch_whose_inferences_all_failed_fails_its_task_with_every_frame(cloud):
    # Given a batch of two frames waiting for one inference
    frames = ["s3://f/1.png", "s3://f/2.png"]
    cloud.tokens.park_batch(
        "run-1", batch_id(0, 0, 0), TOKEN, [PendingInference("inf-1", "nanodet-coco", frames)]
    )
    cloud.forget_calls()
    sfn = StubbedClient("stepfunctions")
    sfn.expect("send_task_failure", {"taskToken": TOKEN, "error": "InferenceFailed", "cause": ANY})
    # When its error notification arrives
    outcome = on_inference_result(
        notification("inf-1", "Failed"), cloud.tokens, TaskCallbacks(sfn.client), cloud.store, cloud.settings
    )
    # Then the task fails with a cause that points at every frame's reason
    assert outcome == "failed"
    (sent,) = sfn.params("SendTaskFailure")
    assert [f["frame"] for f in cloud.peek(json.loads(sent["cause"])["failures_uri"])] == frames
    sfn.verify()
    cloud.assert_contract("InferenceCallbackFunction", sfn)


# --- MergeBatch, RecordBatchFailure ------------------------------------------------------------------
def test_merge_batch_reads_the_endpoint_output_and_writes_the_batch_records(cloud):
    # Given a batch whose inference completed
    run = prepared_run(cloud)
    batch = first_batch(cloud, run)
    inference = completed_inference(cloud, run, batch)
    # When MergeBatch runs on the batch's key
    result = merge_batch(first_batch_key(run), run, inference, cloud.settings, cloud.store)
    # Then both frames are labeled, read from the endpoint's output
    assert (result.batch_id, result.labeled, result.failed) == (batch.batch_id, 2, 0)
    gets = [p["Key"] for p in cloud.s3.params("GetObject")]
    assert f"async/{ENDPOINT}/output/{batch.batch_id}.out" in gets
    # And the batch's review lines, labels and counts are written under the run, the counts last
    b = batch.batch_id
    assert put_keys(cloud) == [
        f"{run.run_prefix}/review-lines/adjust-g0/{b}.jsonl",
        f"{run.run_prefix}/labels/{b}.json",
        f"{run.run_prefix}/counts/{b}.json",
    ]
    counts = cloud.peek(f"s3://{DATA}/{run.run_prefix}/counts/{b}.json")
    assert (counts["frames"], counts["labeled"], counts["streams"]) == (2, 2, {"adjust-g0": 2})
    cloud.assert_contract("MergeBatchFunction")


def test_merge_batch_keeps_the_records_of_a_batch_already_merged(cloud):
    # Given a batch MergeBatch finished once
    run = merged_run(cloud)
    inference = completed_inference(cloud, run, first_batch(cloud, run))
    # When it runs again (a Lambda retry, a redriven run)
    result = merge_batch(first_batch_key(run), run, inference, cloud.settings, cloud.store)
    # Then it answers from the batch's counts and writes nothing
    assert (result.labeled, result.failed) == (2, 0)
    assert put_keys(cloud) == []
    cloud.assert_contract("MergeBatchFunction")


def test_record_batch_failure_writes_every_frame_with_the_reason(cloud):
    # Given a batch whose branch failed
    run = prepared_run(cloud)
    batch = first_batch(cloud, run)
    cloud.forget_calls()
    error = {"Error": "States.Timeout", "Cause": "no notification within 3600 s"}
    # When RecordBatchFailure runs on the batch's key
    result = record_batch_failure(first_batch_key(run), run, error, cloud.store)
    # Then both frames are recorded as failed with the reason, in the batch's labels and counts
    assert result.failed == 2
    labels = cloud.peek(f"s3://{DATA}/{run.run_prefix}/labels/{batch.batch_id}.json")
    assert [f["frame"] for f in labels["failed"]] == batch.frames
    assert all(f["reason"] == "States.Timeout: no notification within 3600 s" for f in labels["failed"])
    counts = cloud.peek(f"s3://{DATA}/{run.run_prefix}/counts/{batch.batch_id}.json")
    assert (counts["labeled"], counts["failed"], counts["streams"]) == (0, 2, {})
    # And every call (the counts of a batch not yet done answer 404) stays within its policy
    cloud.assert_contract("RecordBatchFailureFunction")


# --- PlanReview, AssembleManifest -------------------------------------------------------------------
def test_plan_review_reads_only_the_counts_and_writes_the_plan_and_ground_truth_inputs(cloud):
    # Given a run whose batch was merged
    run = merged_run(cloud)
    # When PlanReview runs
    manifest = plan_review(run, cloud.settings, cloud.store)
    # Then it plans one adjustment job of two frames and one shard, and reads no batch's labels
    ((part,),) = [manifest.parts]
    assert (part.index, part.task, part.frames) == (0, "adjust", 2)
    assert part.manifest_uri == f"s3://{DATA}/{run.run_prefix}/review/input-000.manifest"
    assert (manifest.frames_to_review, manifest.shard_count) == (2, 1)
    assert manifest.shards_key == f"{run.run_prefix}/plan/shards.json"
    gets = [p["Key"] for p in cloud.s3.params("GetObject")]
    assert not any("/labels/" in k or "/review-lines/" in k for k in gets)
    # And it writes the plan, label categories and worker template under the run
    keys = put_keys(cloud)
    assert {f"{run.run_prefix}/plan/parts/000.json", manifest.shards_key} <= set(keys)
    assert all(k.startswith(f"{run.run_prefix}/") for k in keys)
    cloud.assert_contract("PlanReviewFunction")


def test_assemble_manifest_streams_the_parts_lines_into_its_input_manifest(cloud):
    # Given a planned run
    run = merged_run(cloud)
    manifest = plan_review(run, cloud.settings, cloud.store)
    cloud.forget_calls()
    # When AssembleManifest runs on its part
    part = assemble_manifest(run, manifest.parts[0], cloud.store)
    # Then the manifest holds the batch's review lines, each naming its batch
    lines = [json.loads(line) for line in cloud.store.get_bytes(part.manifest_uri).decode().splitlines()]
    assert [line["source-ref"] for line in lines] == first_batch(cloud, run).frames
    assert {line["autolabel-batch"] for line in lines} == {batch_id(0, 0, 0)}
    cloud.assert_contract("AssembleManifestFunction")


# --- Ground Truth ------------------------------------------------------------------------------------
def labeling_request(region: str, name: str, task: str = "AdjustmentBoundingBox") -> dict[str, Any]:
    """CreateLabelingJob as Ground Truth documents it for a private work team, written out in full."""
    lambdas = f"arn:aws:lambda:{region}:{GROUND_TRUTH_ACCOUNTS[region]}:function"
    review = f"s3://{DATA}/runs/run-1/review"
    return {
        "LabelingJobName": name,
        "LabelAttributeName": "reviewed",
        "InputConfig": {
            "DataSource": {"S3DataSource": {"ManifestS3Uri": f"{review}/input-000.manifest"}},
            "DataAttributes": {"ContentClassifiers": ["FreeOfAdultContent"]},
        },
        "OutputConfig": {"S3OutputPath": f"{review}/output/"},
        "RoleArn": LABELING_ROLE,
        "LabelCategoryConfigS3Uri": f"{review}/label-categories.json",
        "HumanTaskConfig": {
            "WorkteamArn": f"arn:aws:sagemaker:{region}:{ACCOUNT}:workteam/private-crowd/reviewers",
            "UiConfig": {"UiTemplateS3Uri": f"{review}/worker-template.liquid.html"},
            "PreHumanTaskLambdaArn": f"{lambdas}:PRE-{task}",
            "TaskTitle": Settings.model_fields["task_title"].default,
            "TaskDescription": Settings.model_fields["task_description"].default,
            "NumberOfHumanWorkersPerDataObject": 1,
            "TaskTimeLimitInSeconds": 600,
            "TaskAvailabilityLifetimeInSeconds": 864_000,
            "MaxConcurrentTaskCount": 1000,
            "AnnotationConsolidationConfig": {"AnnotationConsolidationLambdaArn": f"{lambdas}:ACS-{task}"},
        },
        "Tags": [{"Key": "autolabel:run", "Value": "run-1"}],
    }


def review_inputs(review: str = f"s3://{DATA}/runs/run-1/review") -> ManifestResult:
    return ManifestResult(
        parts=[ManifestPart(index=0, manifest_uri=f"{review}/input-000.manifest", frames=2)],
        frames_to_review=2,
        label_categories_uri=f"{review}/label-categories.json",
        ui_template_uri=f"{review}/worker-template.liquid.html",
        prelabel_attribute="prelabel",
        categories=["car"],
    )


def test_ground_truth_is_known_in_the_same_regions_as_its_developer_guide():
    # Given the adapter's table of built-in task Lambda owners
    # When it is compared with the guide's
    # Then they agree region by region
    assert BUILT_IN_LAMBDA_ACCOUNTS == GROUND_TRUTH_ACCOUNTS


@pytest.mark.parametrize("region", sorted(GROUND_TRUTH_ACCOUNTS))
def test_start_labeling_job_creates_a_valid_job_in_every_supported_region(cloud, region):
    # Given a run reviewed in this region
    run = prepared_run(cloud)
    settings = cloud.settings.model_copy(
        update={
            "region": region,
            "workteam_arn": f"arn:aws:sagemaker:{region}:{ACCOUNT}:workteam/private-crowd/reviewers",
        }
    )
    sagemaker = StubbedClient("sagemaker", region)
    name = job_name(run.run_id, 0)
    arn = f"arn:aws:sagemaker:{region}:{ACCOUNT}:labeling-job/{name}"
    sagemaker.expect("create_labeling_job", labeling_request(region, name), {"LabelingJobArn": arn})
    manifest = review_inputs()
    # When StartLabelingJob runs
    result = start_labeling_job(
        TOKEN, manifest.parts[0], run, manifest, settings, cloud.tokens, GroundTruthJobs(sagemaker.client)
    )
    # Then the job is the documented request with the region's built-in Lambdas, and the token waits by name
    assert result == {"job_name": name, "job_arn": arn}
    (parked,) = cloud.dynamodb.params("PutItem")
    assert parked["Item"]["pk"] == {"S": f"job#{name}"} and parked["Item"]["token"] == {"S": TOKEN}
    sagemaker.verify()
    cloud.iam = TemplateIam(ROOT / "template.yaml", {"SourceBucketNames": [LOGS]}, region)
    cloud.assert_contract("StartReviewFunction", sagemaker)


def test_a_verification_part_becomes_a_verification_job(cloud):
    # Given a manifest part routed to verification
    run = prepared_run(cloud)
    manifest = review_inputs()
    part = manifest.parts[0].model_copy(update={"task": "verify"})
    sagemaker = StubbedClient("sagemaker")
    name = job_name(run.run_id, 0)
    sagemaker.expect(
        "create_labeling_job",
        labeling_request("us-east-1", name, "VerificationBoundingBox"),
        {"LabelingJobArn": f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:labeling-job/{name}"},
    )
    # When StartLabelingJob runs, Then it asks for the verification task's built-in Lambdas
    start_labeling_job(
        TOKEN, part, run, manifest, cloud.settings, cloud.tokens, GroundTruthJobs(sagemaker.client)
    )
    sagemaker.verify()
    cloud.assert_contract("StartReviewFunction", sagemaker)


@pytest.mark.parametrize(
    "task", ["AdjustmentBoundingBox", "VerificationBoundingBox", "AdjustmentSemanticSegmentation"]
)
def test_built_in_lambda_arns_match_the_service_model_in_every_region(task):
    # Given SageMaker's model of CreateLabelingJob's HumanTaskConfig
    sagemaker = RecordingClient("sagemaker")
    shape = sagemaker.client.meta.service_model.operation_model("CreateLabelingJob").input_shape
    config = shape.members["HumanTaskConfig"]
    for region, account in GROUND_TRUTH_ACCOUNTS.items():
        # When the adapter names the task's Lambdas in that region
        pre, acs = built_in_lambdas(region, task)  # type: ignore[arg-type]
        value = {
            "PreHumanTaskLambdaArn": pre,
            "AnnotationConsolidationConfig": {"AnnotationConsolidationLambdaArn": acs},
        }
        # Then they are the documented names and fit the model's ARN patterns
        assert (pre, acs) == (
            f"arn:aws:lambda:{region}:{account}:function:PRE-{task}",
            f"arn:aws:lambda:{region}:{account}:function:ACS-{task}",
        )
        assert model_violations(config, value, "HumanTaskConfig") == []


def test_a_retried_start_finds_the_job_it_already_created(cloud):
    # Given a job that exists already (the Lambda was retried after creating it)
    run = prepared_run(cloud)
    sagemaker = StubbedClient("sagemaker")
    name = job_name(run.run_id, 0)
    sagemaker.expect_error("create_labeling_job", labeling_request("us-east-1", name), "ResourceInUse")
    sagemaker.expect("describe_labeling_job", {"LabelingJobName": name}, described_job(name, "InProgress"))
    manifest = review_inputs()
    # When StartLabelingJob runs again
    result = start_labeling_job(
        TOKEN,
        manifest.parts[0],
        run,
        manifest,
        cloud.settings,
        cloud.tokens,
        GroundTruthJobs(sagemaker.client),
    )
    # Then it answers with the existing job
    assert result["job_arn"].endswith(f"labeling-job/{name}")
    sagemaker.verify()
    cloud.assert_contract("StartReviewFunction", sagemaker)


def described_job(name: str, status: str, failure: str | None = None) -> dict[str, Any]:
    """A DescribeLabelingJob answer (the Stubber checks it against the output shape)."""
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    request = labeling_request("us-east-1", name)
    answer: dict[str, Any] = {
        "LabelingJobStatus": status,
        "LabelCounters": {
            "TotalLabeled": 2,
            "HumanLabeled": 2,
            "MachineLabeled": 0,
            "FailedNonRetryableError": 0,
            "Unlabeled": 0,
        },
        "CreationTime": now,
        "LastModifiedTime": now,
        "JobReferenceCode": "abc123",
        "LabelingJobName": name,
        "LabelingJobArn": f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:labeling-job/{name}",
        "LabelAttributeName": "reviewed",
        "InputConfig": request["InputConfig"],
        "OutputConfig": request["OutputConfig"],
        "RoleArn": LABELING_ROLE,
        "HumanTaskConfig": request["HumanTaskConfig"],
    }
    if status == "Completed":
        answer["LabelingJobOutput"] = {
            "OutputDatasetS3Uri": f"s3://{DATA}/runs/run-1/review/output/{name}/manifests/output/output.manifest"
        }
    if failure:
        answer["FailureReason"] = failure
    return answer


@pytest.mark.parametrize("status", ["Completed", "Failed"])
def test_the_labeling_job_state_change_resumes_or_fails_the_review_task(cloud, status):
    # Given a review task waiting for its job
    name = "run-1-p000"
    cloud.tokens.park_job(name, TOKEN)
    cloud.forget_calls()
    sagemaker, sfn = StubbedClient("sagemaker"), StubbedClient("stepfunctions")
    failure = None if status == "Completed" else "Workers could not load the manifest"
    sagemaker.expect("describe_labeling_job", {"LabelingJobName": name}, described_job(name, status, failure))
    if status == "Completed":
        sfn.expect("send_task_success", {"taskToken": TOKEN, "output": ANY})
    else:
        sfn.expect(
            "send_task_failure",
            {"taskToken": TOKEN, "error": "LabelingJobFailed", "cause": f"{name}: {failure}"},
        )
    change = LabelingJobStateChange(
        status=status, job_arn=f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:labeling-job/{name}"
    )
    # When the state-change event arrives
    outcome = on_labeling_job_change(
        change, cloud.settings, cloud.tokens, TaskCallbacks(sfn.client), GroundTruthJobs(sagemaker.client)
    )
    # Then the task resumes with the output manifest, or fails with the job's reason
    assert outcome == ("resumed" if status == "Completed" else "failed")
    if status == "Completed":
        (sent,) = sfn.params("SendTaskSuccess")
        assert json.loads(sent["output"])["output_manifest_uri"].endswith("/manifests/output/output.manifest")
    sagemaker.verify()
    sfn.verify()
    cloud.assert_contract("LabelingCallbackFunction", sagemaker, sfn)


def test_a_closed_token_is_not_an_error_for_a_redelivered_event(cloud):
    # Given a token Step Functions already closed (the task timed out)
    sfn = StubbedClient("stepfunctions")
    sfn.expect_error("send_task_success", {"taskToken": TOKEN, "output": "{}"}, "TaskTimedOut")
    # When the callback resumes it
    sent = TaskCallbacks(sfn.client).succeed(TOKEN, {})
    # Then nothing is raised and the caller learns it was not sent
    assert sent is False
    sfn.verify()


# --- CollectReview, PublishShard, FinishRun ---------------------------------------------------------
def reviewed_run(cloud: Cloud) -> tuple[RunContext, ManifestResult, ReviewResult]:
    """A run whose one Ground Truth job returned its output manifest (people left the boxes as they were)."""
    run = merged_run(cloud)
    manifest = plan_review(run, cloud.settings, cloud.store)
    part = assemble_manifest(run, manifest.parts[0], cloud.store)
    lines = cloud.store.get_lines(part.manifest_uri)
    for line in lines:
        line["reviewed"] = line["prelabel"]
        line["reviewed-metadata"] = {
            **line["prelabel-metadata"],
            "human-annotated": "yes",
            "adjustment-status": "unadjusted",
            "job-name": "labeling-job/run-1-p000",
        }
    output = f"s3://{DATA}/{run.run_prefix}/review/output/run-1-p000/manifests/output/output.manifest"
    cloud.store.put_lines(output, lines)
    cloud.forget_calls()
    review = ReviewResult(
        job_name="run-1-p000", status="Completed", output_manifest_uri=output, label_attribute="reviewed"
    )
    return run, manifest, review


def test_collect_review_splits_the_job_output_by_batch(cloud):
    # Given a run whose labeling job finished
    run, manifest, review = reviewed_run(cloud)
    # When CollectReview runs on the job's part
    collected = collect_review(run, manifest.parts[0], review, cloud.store)
    # Then the batch's reviewed lines are written under it, and the review knows its part
    assert collected.part == 0
    assert put_keys(cloud) == [f"{run.run_prefix}/reviewed/{batch_id(0, 0, 0)}/000.jsonl"]
    cloud.assert_contract("CollectReviewFunction")


def test_publish_shard_and_finish_run_read_the_review_and_write_the_dataset(cloud):
    # Given a run whose review was collected
    run, manifest, review = reviewed_run(cloud)
    collected = collect_review(run, manifest.parts[0], review, cloud.store)
    state = {"run": run.model_dump(mode="json"), "reviews": [collected.model_dump(mode="json")]}
    (shard,) = [ShardPlan.model_validate(s) for s in cloud.peek(f"s3://{DATA}/{manifest.shards_key}")]
    cloud.forget_calls()
    # When PublishShard runs on the run's one shard
    counts = publish_shard(shard, state, cloud.settings, cloud.store, cloud.ledger)
    # Then both frames are labeled by people, settled in the ledger, within PublishShard's policy
    assert (counts.labeled, counts.failed) == (2, 0)
    assert counts.labeled_by == {"people (adjusted)": 2}
    settles = cloud.dynamodb.params("PutItem")  # each frame's whole item, while this run holds it
    assert [(c["Item"]["status"]["S"], c["ConditionExpression"]) for c in settles] == [
        ("labeled", "run_id = :run")
    ] * 2
    assert all(c["Item"]["claim_page"]["S"] == "s0000-p000000" for c in settles)
    cloud.assert_contract("PublishShardFunction")
    # When FinishRun adds the shards up
    cloud.forget_calls()
    summary = finish_run(state, cloud.settings, cloud.store, cloud.ledger)
    # Then the run is reported, marked succeeded in the ledger, within FinishRun's policy
    assert (summary["labeled"], summary["failed"], summary["review"]) == (2, 0, "reviewed")
    (record,) = cloud.dynamodb.params("PutItem")
    assert record["Item"]["pk"] == {"S": "run#run-1"} and record["Item"]["status"] == {"S": "succeeded"}
    cloud.assert_contract("FinishRunFunction")


def test_publish_shard_fails_the_frames_a_job_returned_no_line_for(cloud):
    # Given a run whose labeling job finished with an empty output manifest
    run, manifest, review = reviewed_run(cloud)
    cloud.store.put_lines(review.output_manifest_uri, [])
    collected = collect_review(run, manifest.parts[0], review, cloud.store)
    state = {"run": run.model_dump(mode="json"), "reviews": [collected.model_dump(mode="json")]}
    (shard,) = [ShardPlan.model_validate(s) for s in cloud.peek(f"s3://{DATA}/{manifest.shards_key}")]
    cloud.forget_calls()
    # When PublishShard runs (the batch's reviewed lines are missing: S3 answers 404)
    counts = publish_shard(shard, state, cloud.settings, cloud.store, cloud.ledger)
    # Then both frames fail with the reason, and the 404 read is one its policy lets S3 answer as 404
    assert (counts.labeled, counts.failed) == (0, 2)
    assert counts.failure_reasons == {"review: the frame is missing from the job output": 2}
    assert any(c.error == "NoSuchKey" for c in cloud.s3.calls if c.operation == "GetObject")
    cloud.assert_contract("PublishShardFunction")


# --- ReportFailedRun ---------------------------------------------------------------------------------
def test_report_failed_run_writes_the_report_and_releases_the_run(cloud):
    # Given a run whose batch was merged, then whose execution failed
    run = merged_run(cloud)
    change = ExecutionStatusChange.model_validate(
        {
            "executionArn": f"arn:aws:states:us-east-1:{ACCOUNT}:execution:autolabel-autolabel:run-1",
            "name": "run-1",
            "status": "FAILED",
            "input": json.dumps({"sources": [f"s3://{LOGS}/day1/"]}),
            "error": "States.TaskFailed",
            "cause": "PlanReview ran out of memory",
        }
    )
    # When ReportFailedRun handles the status change
    result = on_execution_change(change, cloud.settings, cloud.store, cloud.ledger)
    # Then the report says what was labeled, and the run record says failed, within its policy
    assert result["status"] == "reported"
    report = cloud.peek(result["report"])
    assert (report["labeled"], report["never_reached"], report["status"]) == (2, 0, "FAILED")
    (record,) = cloud.dynamodb.params("PutItem")
    assert record["Item"]["pk"] == {"S": f"run#{run.run_id}"} and record["Item"]["status"] == {"S": "failed"}
    cloud.assert_contract("ReportFailedRunFunction")


# --- the service roles -------------------------------------------------------------------------------
def test_the_endpoint_role_reaches_exactly_the_models_frames_outputs_and_topics():
    # Given a stack that creates the endpoint from an ECR image and a model artefact, with two source buckets
    iam = TemplateIam(
        ROOT / "template.yaml",
        {
            "ModelImageUri": "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.3-cpu-py311",
            "ModelDataUrl": "s3://my-models/nanodet/model.tar.gz",
            "SourceBucketNames": [LOGS, "fleet-cams"],
        },
    )
    topic = f"arn:aws:sns:us-east-1:{ACCOUNT}:autolabel-InferenceSuccessTopic"
    # When its policy is asked about what an asynchronous endpoint does
    allowed = {
        "model artefact": iam.allows(
            "EndpointRole", "s3:GetObject", "arn:aws:s3:::my-models/nanodet/model.tar.gz"
        ),
        "request file": iam.allows(
            "EndpointRole", "s3:GetObject", f"arn:aws:s3:::{DATA}/runs/r/requests/b.json"
        ),
        "frame, 1st bucket": iam.allows("EndpointRole", "s3:GetObject", f"arn:aws:s3:::{LOGS}/day1/000.png"),
        "frame, 2nd bucket": iam.allows("EndpointRole", "s3:GetObject", "arn:aws:s3:::fleet-cams/x/1.jpg"),
        "output": iam.allows(
            "EndpointRole", "s3:PutObject", f"arn:aws:s3:::{DATA}/async/{ENDPOINT}/output/1.out"
        ),
        "notification": iam.allows("EndpointRole", "sns:Publish", topic),
        "image layers": iam.allows(
            "EndpointRole",
            "ecr:BatchGetImage",
            "arn:aws:ecr:us-east-1:763104351884:repository/pytorch-inference",
        ),
    }
    refused = {
        "other bucket": iam.allows("EndpointRole", "s3:GetObject", "arn:aws:s3:::someone-elses/x.png"),
        "other model": iam.allows(
            "EndpointRole", "s3:GetObject", "arn:aws:s3:::my-models/other/model.tar.gz"
        ),
        "write a run": iam.allows("EndpointRole", "s3:PutObject", f"arn:aws:s3:::{DATA}/runs/r/report.json"),
        "other registry": iam.allows(
            "EndpointRole", "ecr:BatchGetImage", f"arn:aws:ecr:us-east-1:{ACCOUNT}:repository/x"
        ),
    }
    # Then it reaches all of those and nothing beside them
    assert all(allowed.values()), allowed
    assert not any(refused.values()), refused


def test_ground_truth_reads_the_original_frames_and_writes_only_to_the_data_bucket():
    # Given the labeling role with one source bucket
    iam = TemplateIam(ROOT / "template.yaml", {"SourceBucketNames": [LOGS]})
    # When it is asked about a labeling job's reads and writes
    # Then workers see source frames, the job reads its inputs and writes its outputs in the data bucket only
    assert iam.allows("LabelingRole", "s3:GetObject", f"arn:aws:s3:::{LOGS}/day1/000.png")
    assert iam.allows("LabelingRole", "s3:PutObject", f"arn:aws:s3:::{DATA}/runs/r/review/output/x")
    assert not iam.allows("LabelingRole", "s3:PutObject", f"arn:aws:s3:::{LOGS}/day1/000.png")
