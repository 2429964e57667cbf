"""The local labeling service against moto's S3 and EventBridge: Ground Truth's contract, end to end."""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.validate
import numpy as np
import pytest
from botocore.exceptions import ClientError, ParamValidationError
from moto import mock_aws
from PIL import Image

from workflow.domain.detections import Detections, Provenance
from workflow.domain.groundtruth import (
    dumps_manifest,
    input_manifest_line,
    label_category_config,
    loads_manifest,
    parse_output_line,
)
from workflow.domain.taxonomy import DEFAULT_ADAS_TAXONOMY
from workflow.domain.verification import (
    VERDICT_CORRECT,
    VERDICT_INCORRECT,
    verification_categories,
    verification_output_line,
    verification_verdict,
)
from workflow.domain.worker_templates import adjustment_ui_template, verification_ui_template
from workflow.local.labeling import EVENT_DETAIL_TYPE, EVENT_SOURCE, LocalLabelingService
from workflow.local.labeling_validation import sagemaker_model

REGION, ACCOUNT, BUCKET = "us-east-1", "123456789012", "labels"
BUILTIN = "arn:aws:lambda:us-east-1:432418664414:function:{}-AdjustmentBoundingBox"
VERIFY = "arn:aws:lambda:us-east-1:432418664414:function:{}-VerificationBoundingBox"


class Stack:
    """moto S3 + EventBridge with a rule on labeling-job events delivering to an SQS queue."""

    def __init__(self) -> None:
        self.s3 = boto3.client("s3", region_name=REGION)
        self.events = boto3.client("events", region_name=REGION)
        self.sqs = boto3.client("sqs", region_name=REGION)
        self.s3.create_bucket(Bucket=BUCKET)
        self.queue = self.sqs.create_queue(QueueName="gt-events")["QueueUrl"]
        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"]
        pattern = {
            "source": ["aws.sagemaker"],
            "detail-type": ["SageMaker Ground Truth Labeling Job State Change"],
        }
        self.events.put_rule(Name="gt-state", EventPattern=json.dumps(pattern))
        self.events.put_targets(Rule="gt-state", Targets=[{"Id": "q", "Arn": arn["QueueArn"]}])

    def put(self, key: str, body: str | bytes) -> str:
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=body.encode() if isinstance(body, str) else body)
        return f"s3://{BUCKET}/{key}"

    def read(self, uri: str) -> str:
        key = uri.removeprefix(f"s3://{BUCKET}/")
        return str(self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode())

    def received_events(self, job_name: str) -> list[dict[str, Any]]:
        """The events about one job that reached the queue (the queue is shared by the module's tests)."""
        arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:labeling-job/{job_name}"
        bodies: list[dict[str, Any]] = []
        while messages := self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get(
            "Messages"
        ):
            bodies += [json.loads(m["Body"]) for m in messages]
            for m in messages:
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=m["ReceiptHandle"])
        return [b for b in bodies if b["resources"] == [arn]]


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    # One moto account for the module: setting it up costs more than the tests themselves.
    with mock_aws():
        yield Stack()


def service(stack: Stack, **kwargs: Any) -> LocalLabelingService:
    return LocalLabelingService(
        stack.s3, stack.events, REGION, ACCOUNT, delay_s=0.01, poll_interval_s=0.02, **kwargs
    )


def frame_detections(frame: str, n: int) -> Detections:
    return Detections(
        boxes=np.array([[10 + 40 * i, 20, 40 + 40 * i, 60] for i in range(n)], np.float32).reshape(-1, 4),
        scores=np.full(n, 0.8, np.float32),
        class_ids=np.zeros(n, np.int64),
        class_names=("car", "pedestrian", "bus")[:n],
        image_width=320,
        image_height=240,
        provenance=Provenance(model="nanodet"),
        frame=frame,
    )


def png_bytes(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def job_params(stack: Stack, name: str, manifest_lines: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The parameters a workflow passes to sagemaker.create_labeling_job for a box adjustment job."""
    if manifest_lines is None:
        manifest_lines = [
            input_manifest_line(
                f"s3://{BUCKET}/frames/{i}.png", frame_detections(f"{i}.png", i), DEFAULT_ADAS_TAXONOMY
            )
            for i in range(3)
        ]
    labels = list(DEFAULT_ADAS_TAXONOMY.reviewed_names)
    return {
        "LabelingJobName": name,
        "LabelAttributeName": "reviewed",
        "InputConfig": {
            "DataSource": {
                "S3DataSource": {
                    "ManifestS3Uri": stack.put(f"in/{name}.manifest", dumps_manifest(manifest_lines))
                }
            }
        },
        "OutputConfig": {"S3OutputPath": f"s3://{BUCKET}/gt-output/"},
        "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/GroundTruthRole",
        "LabelCategoryConfigS3Uri": stack.put("cfg/labels.json", json.dumps(label_category_config(labels))),
        "HumanTaskConfig": {
            "WorkteamArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:workteam/private-crowd/adas",
            "UiConfig": {
                "UiTemplateS3Uri": stack.put(
                    "cfg/ui.liquid.html", adjustment_ui_template("prelabel", "Adjust", labels)
                )
            },
            "PreHumanTaskLambdaArn": BUILTIN.format("PRE"),
            "AnnotationConsolidationConfig": {"AnnotationConsolidationLambdaArn": BUILTIN.format("ACS")},
            "TaskTitle": "Adjust pre-labeled boxes",
            "TaskDescription": "Fix the machine boxes",
            "NumberOfHumanWorkersPerDataObject": 1,
            "TaskTimeLimitInSeconds": 600,
        },
    }


def wait_for_status(svc: LocalLabelingService, name: str, timeout_s: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        described = svc.describe_labeling_job(LabelingJobName=name)
        if described["LabelingJobStatus"] not in ("InProgress", "Stopping"):
            return described
        time.sleep(0.02)
    raise AssertionError(f"job {name} still running after {timeout_s}s")


def assert_real_describe_shape(described: dict[str, Any]) -> None:
    shape = sagemaker_model().operation_model("DescribeLabelingJob").output_shape
    body = {k: v for k, v in described.items() if k != "ResponseMetadata"}
    botocore.validate.validate_parameters(body, shape)  # raises on a wrong key, type or a missing member


def test_simulate_mode_completes_with_the_ground_truth_output_and_event(stack: Stack):
    # Given a pre-labeled input manifest (0, 1 and 2 boxes) and the service in simulate mode (no person)
    svc = service(stack)
    params = job_params(stack, "adas-0001")
    # When the job is created with the boto3 parameters
    arn = svc.create_labeling_job(**params)["LabelingJobArn"]
    described = wait_for_status(svc, "adas-0001")
    svc.stop()
    # Then it completes, described in the real response shape
    assert arn == f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:labeling-job/adas-0001"
    assert described["LabelingJobStatus"] == "Completed" and described["LabelingJobArn"] == arn
    assert_real_describe_shape(described)
    output_uri = described["LabelingJobOutput"]["OutputDatasetS3Uri"]
    assert output_uri == f"s3://{BUCKET}/gt-output/adas-0001/manifests/output/output.manifest"
    assert described["LabelCounters"] == {
        "TotalLabeled": 3,
        "HumanLabeled": 0,
        "MachineLabeled": 3,
        "FailedNonRetryableError": 0,
        "Unlabeled": 0,
    }
    assert described["InputConfig"] == params["InputConfig"] and described["LabelAttributeName"] == "reviewed"
    # And each output line is its input line plus the unadjusted label, readable by our parser
    inputs = loads_manifest(stack.read(params["InputConfig"]["DataSource"]["S3DataSource"]["ManifestS3Uri"]))
    outputs = loads_manifest(stack.read(output_uri))
    for before, after in zip(inputs, outputs, strict=True):
        assert {k: after[k] for k in before} == before
        reviewed = parse_output_line(after, "reviewed")
        assert reviewed.boxes == parse_output_line(before, "prelabel").boxes
        # the stand-in says it is no person
        assert reviewed.adjustment_status == "unadjusted" and not reviewed.human_annotated
        assert reviewed.job_name == "labeling-job/adas-0001"
    # And the state-change event reached the EventBridge rule's target
    events = stack.received_events("adas-0001")
    assert [(e["source"], e["detail-type"], e["detail"], e["resources"]) for e in events] == [
        (EVENT_SOURCE, EVENT_DETAIL_TYPE, {"LabelingJobStatus": "Completed"}, [arn])
    ]


def test_frames_without_prelabels_are_sized_from_the_image_or_fail_alone(stack: Stack):
    # Given a manifest with a plain frame (no pre-label) and a frame whose image is missing
    stack.put("frames/plain.png", png_bytes(64, 48))
    lines = [
        {"source-ref": f"s3://{BUCKET}/frames/plain.png"},
        {"source-ref": f"s3://{BUCKET}/frames/gone.png"},
    ]
    svc = service(stack)
    # When the job runs
    svc.create_labeling_job(**job_params(stack, "plain", lines))
    described = wait_for_status(svc, "plain")
    svc.stop()
    # Then the plain frame gets an empty label of the image's size and the missing one fails by itself
    outputs = [
        parse_output_line(line, "reviewed")
        for line in loads_manifest(stack.read(described["LabelingJobOutput"]["OutputDatasetS3Uri"]))
    ]
    assert outputs[0].image_size is not None and (
        outputs[0].image_size.width,
        outputs[0].image_size.height,
    ) == (64, 48)
    assert outputs[0].boxes == () and not outputs[0].failed
    assert outputs[1].failed and "gone.png" in (outputs[1].failure_reason or "")
    assert described["LabelCounters"]["FailedNonRetryableError"] == 1
    assert described["LabelCounters"]["TotalLabeled"] == 1


def _task(**change: Any) -> Any:
    return lambda params: params["HumanTaskConfig"].update(change)


@pytest.mark.parametrize(
    "breaks",
    [
        lambda params: params.update(LabelingJobName="x" * 64),
        lambda params: params.update(LabelingJobName="bad_name"),
        lambda params: params.update(LabelAttributeName="boxes-ref"),
        lambda params: params.update(LabelAttributeName="boxes-metadata"),
        lambda params: params.update(RoleArn="arn:aws:iam::123:role/short-account-id"),
        lambda params: params.update(OutputConfig={"S3OutputPath": "ftp://nowhere"}),
        _task(
            PreHumanTaskLambdaArn="arn:aws:lambda:us-east-1:432418664414:function:PRE-SemanticSegmentation",
            AnnotationConsolidationConfig={
                "AnnotationConsolidationLambdaArn": "arn:aws:lambda:us-east-1:432418664414:function:"
                "ACS-SemanticSegmentation"
            },
        ),
        _task(PreHumanTaskLambdaArn=VERIFY.format("PRE")),  # with ACS-AdjustmentBoundingBox
        lambda params: (
            params["HumanTaskConfig"].update(
                PreHumanTaskLambdaArn=VERIFY.format("PRE"),
                AnnotationConsolidationConfig={"AnnotationConsolidationLambdaArn": VERIFY.format("ACS")},
            ),
            params.pop("LabelCategoryConfigS3Uri"),
        ),
        _task(UiConfig={}),
        _task(TaskTitle="t" * 129),
    ],
    ids=[
        "name-64",
        "name-underscore",
        "attr-ref",
        "attr-metadata",
        "role",
        "s3",
        "segmentation",
        "verify-with-adjust-acs",
        "verify-without-verdicts",
        "no-ui",
        "title",
    ],
)
def test_requests_the_service_refuses(stack: Stack, breaks: Any):
    # Given parameters that break one service-side rule
    svc = service(stack)
    params = job_params(stack, "refused")
    breaks(params)
    # When the job is created / Then a ValidationException as from the real service, and no job exists
    with pytest.raises(ClientError) as caught:
        svc.create_labeling_job(**params)
    assert caught.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError):
        svc.describe_labeling_job(LabelingJobName=params["LabelingJobName"])


def test_client_side_validation_matches_boto3(stack: Stack):
    # Given parameters missing a required member
    params = job_params(stack, "no-role")
    del params["RoleArn"]
    # When sent to boto3's own sagemaker client and to the local service
    # Then both raise botocore's ParamValidationError before anything happens
    with pytest.raises(ParamValidationError):
        boto3.client("sagemaker", region_name=REGION).create_labeling_job(**params)
    with pytest.raises(ParamValidationError, match="RoleArn"):
        service(stack).create_labeling_job(**params)


def test_duplicate_names_and_unknown_jobs(stack: Stack):
    # Given a created job
    svc = service(stack)
    svc.create_labeling_job(**job_params(stack, "twice"))
    # When the same name is used again, or an unknown job described
    # Then ResourceInUse and ResourceNotFound, as from AWS
    with pytest.raises(ClientError) as again:
        svc.create_labeling_job(**job_params(stack, "twice"))
    assert again.value.response["Error"]["Code"] == "ResourceInUse"
    with pytest.raises(ClientError) as unknown:
        svc.describe_labeling_job(LabelingJobName="nobody")
    assert unknown.value.response["Error"]["Code"] == "ResourceNotFound"
    wait_for_status(svc, "twice")
    svc.stop()


@pytest.mark.parametrize(
    ("manifest", "reason"),
    [
        (None, "cannot read the input manifest"),
        ('{"source-ref": "s3://labels/a.png"}\n{not json\n', "line 2 is not valid JSON"),
        ('{"no-source": 1}\n', "no source-ref"),
        ("", "no data objects"),
    ],
)
def test_bad_input_fails_the_job_with_a_reason_and_the_failed_event(
    stack: Stack, manifest: str | None, reason: str
):
    # Given an input manifest that is missing, malformed or empty
    svc = service(stack)
    params = job_params(stack, "broken")
    uri = params["InputConfig"]["DataSource"]["S3DataSource"]["ManifestS3Uri"]
    if manifest is None:
        stack.s3.delete_object(Bucket=BUCKET, Key=uri.removeprefix(f"s3://{BUCKET}/"))
    else:
        stack.put(uri.removeprefix(f"s3://{BUCKET}/"), manifest)
    # When the job runs
    svc.create_labeling_job(**params)
    described = wait_for_status(svc, "broken")
    svc.stop()
    # Then it fails with the reason, no output, and the Failed event is emitted
    assert described["LabelingJobStatus"] == "Failed" and reason in described["FailureReason"]
    assert "LabelingJobOutput" not in described
    assert_real_describe_shape(described)
    assert [e["detail"]["LabelingJobStatus"] for e in stack.received_events("broken")] == ["Failed"]


def test_wait_mode_resumes_when_the_reviewed_manifest_appears(stack: Stack, tmp_path: Path):
    # Given the service waiting for a person's review in a folder
    svc = service(stack, review_mode="wait", review_dir=tmp_path)
    svc.create_labeling_job(**job_params(stack, "review-1"))
    draft_path = tmp_path / "review-1.draft.manifest"
    deadline = time.monotonic() + 10
    while not draft_path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)
    assert svc.describe_labeling_job(LabelingJobName="review-1")["LabelingJobStatus"] == "InProgress"
    # When a person moves a box on frame 2, keeps frame 1 as drawn, and leaves frame 0 out
    draft = loads_manifest(draft_path.read_text())
    draft[2]["reviewed"]["annotations"][0]["left"] += 7
    (tmp_path / "review-1.manifest").write_text(dumps_manifest(draft[1:]))
    described = wait_for_status(svc, "review-1")
    svc.stop()
    # Then the job completes: the moved frame is adjusted, the kept one unadjusted, the missing one failed
    assert described["LabelingJobStatus"] == "Completed"
    frames = [
        parse_output_line(line, "reviewed")
        for line in loads_manifest(stack.read(described["LabelingJobOutput"]["OutputDatasetS3Uri"]))
    ]
    assert frames[0].failed and "missing from the reviewed manifest" in (frames[0].failure_reason or "")
    assert frames[1].adjustment_status == "unadjusted"
    assert (
        frames[2].adjustment_status == "adjusted"
        and frames[2].boxes[0].left == draft[2]["reviewed"]["annotations"][0]["left"]
    )
    assert described["LabelCounters"]["HumanLabeled"] == 2
    assert [e["detail"]["LabelingJobStatus"] for e in stack.received_events("review-1")] == ["Completed"]


def test_stopping_a_waiting_job_emits_stopped(stack: Stack, tmp_path: Path):
    # Given a job waiting for review
    svc = service(stack, review_mode="wait", review_dir=tmp_path)
    svc.create_labeling_job(**job_params(stack, "halt"))
    # When it is stopped through the API
    svc.stop_labeling_job(LabelingJobName="halt")
    status = svc.wait("halt", timeout_s=10)
    svc.stop()
    # Then it ends Stopped with the Stopped event and no output
    assert status == "Stopped"
    assert "LabelingJobOutput" not in svc.describe_labeling_job(LabelingJobName="halt")
    assert [e["detail"]["LabelingJobStatus"] for e in stack.received_events("halt")] == ["Stopped"]


# ---- verification jobs -------------------------------------------------------------------------
DOCS_EXAMPLE = {  # the verification output line of the Ground Truth developer guide
    "source-ref": "s3://bucket/image.png",
    "verify-bounding-box": "1",
    "verify-bounding-box-metadata": {
        "class-name": "bad",
        "confidence": 0.93,
        "type": "groundtruth/label-verification",
        "job-name": "verify-bounding-boxes",
        "human-annotated": "yes",
        "creation-date": "2018-10-18T22:18:13.527256",
        "worker-feedback": [{"comment": "The bounding box on the bird is too wide on the right side."}],
    },
}


def verification_params(
    stack: Stack,
    name: str,
    manifest_lines: list[dict[str, Any]] | None = None,
    verdicts: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The parameters the workflow sends for a `verify` manifest part (workflow/adapters/labeling.py)."""
    params = job_params(stack, name, manifest_lines)
    categories = verdicts or verification_categories()
    params["LabelCategoryConfigS3Uri"] = stack.put(f"cfg/{name}-verdicts.json", json.dumps(categories))
    params["HumanTaskConfig"] |= {
        "UiConfig": {
            "UiTemplateS3Uri": stack.put(
                f"cfg/{name}-verify.liquid.html", verification_ui_template("prelabel", "Right?")
            )
        },
        "PreHumanTaskLambdaArn": VERIFY.format("PRE"),
        "AnnotationConsolidationConfig": {"AnnotationConsolidationLambdaArn": VERIFY.format("ACS")},
    }
    return params


def output_lines(stack: Stack, described: dict[str, Any]) -> list[dict[str, Any]]:
    return loads_manifest(stack.read(described["LabelingJobOutput"]["OutputDatasetS3Uri"]))


def wait_for_file(path: Path, timeout_s: float = 10.0) -> Path:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.02)
    return path


def test_simulate_mode_verification_job_writes_ground_truths_verdict_lines(stack: Stack):
    # Given a verification job over three pre-labeled frames (0, 1 and 2 boxes) and a frame without
    # a pre-label, with the workflow's verdicts as label categories
    lines = [
        input_manifest_line(
            f"s3://{BUCKET}/frames/{i}.png", frame_detections(f"{i}.png", i), DEFAULT_ADAS_TAXONOMY
        )
        for i in range(3)
    ] + [{"source-ref": f"s3://{BUCKET}/frames/bare.png"}]
    svc = service(stack)
    params = verification_params(stack, "verify-auto", lines)
    # When it runs with the reviewer who accepts
    arn = svc.create_labeling_job(**params)["LabelingJobArn"]
    described = wait_for_status(svc, "verify-auto")
    svc.stop()
    # Then it completes in the real response shape, with the Completed event
    assert described["LabelingJobStatus"] == "Completed"
    assert_real_describe_shape(described)
    assert [e["detail"]["LabelingJobStatus"] for e in stack.received_events("verify-auto")] == ["Completed"]
    assert described["LabelCounters"]["MachineLabeled"] == 3  # a stand-in, not people
    assert described["LabelCounters"]["FailedNonRetryableError"] == 1
    # And each pre-labeled line comes back whole, with the first verdict as Ground Truth writes it
    outputs = output_lines(stack, described)
    for before, after in zip(lines[:3], outputs[:3], strict=True):
        assert {k: after[k] for k in before} == before
        assert set(after) == set(before) | {"reviewed", "reviewed-metadata"}
        assert after["reviewed"] == "0"
        meta = after["reviewed-metadata"]
        assert list(meta) == [
            "class-name",
            "confidence",
            "type",
            "job-name",
            "human-annotated",
            "creation-date",
        ]
        assert meta["class-name"] == VERDICT_CORRECT and meta["confidence"] == 1.0
        assert meta["type"] == "groundtruth/label-verification" and meta["human-annotated"] == "no"
        assert meta["job-name"] == "labeling-job/verify-auto"
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}", meta["creation-date"])
        assert verification_verdict(after, "reviewed") == (True, VERDICT_CORRECT)
    # And the frame without pre-label boxes fails by itself: there is nothing to verify
    bare = outputs[3]["reviewed-metadata"]
    assert "reviewed" not in outputs[3] and "no prelabel boxes to verify" in bare["failure-reason"]
    assert bare["type"] == "groundtruth/label-verification"
    assert arn.endswith("/verify-auto")


@pytest.mark.parametrize(
    ("verdict", "feedback", "accepted"),
    [(VERDICT_CORRECT, (), True), (VERDICT_INCORRECT, ("the van is a truck", "a cyclist has no box"), False)],
)
def test_verification_lines_round_trip_through_the_verdict_parser(
    verdict: str, feedback: tuple[str, ...], accepted: bool
):
    # Given the verdicts of verification_categories() and a pre-labeled input line
    categories = [entry["label"] for entry in verification_categories()["labels"]]
    line = input_manifest_line("s3://b/f.png", frame_detections("f.png", 2), DEFAULT_ADAS_TAXONOMY)
    # When a verification output line is written for a verdict, with or without comments
    out = verification_output_line(line, "checked", categories, verdict, "verify-7", feedback=feedback)
    # Then the workflow's parser reads back the verdict, and the line is the input plus the label
    assert verification_verdict(out, "checked") == (accepted, verdict)
    assert out["checked"] == str(categories.index(verdict)) and {k: out[k] for k in line} == line
    assert out["checked-metadata"].get("worker-feedback", []) == [{"comment": c} for c in feedback]
    # And the metadata holds exactly the keys of the developer guide's example (feedback when given)
    example_keys = set(DOCS_EXAMPLE["verify-bounding-box-metadata"])  # type: ignore[arg-type]
    assert set(out["checked-metadata"]) == example_keys - ({"worker-feedback"} if not feedback else set())
    assert verification_verdict(DOCS_EXAMPLE, "verify-bounding-box") == (False, "bad")


def test_wait_mode_verification_takes_the_persons_verdicts_and_comments(stack: Stack, tmp_path: Path):
    # Given a verification job waiting for a person
    svc = service(stack, review_mode="wait", review_dir=tmp_path)
    svc.create_labeling_job(**verification_params(stack, "verify-wait"))
    draft_path = wait_for_file(tmp_path / "verify-wait.draft.manifest")
    # Then the draft is in the verification output format, with the accepting verdict
    draft = loads_manifest(draft_path.read_text())
    assert [verification_verdict(line, "reviewed") for line in draft] == [(True, VERDICT_CORRECT)] * 3
    # When the person keeps frame 0, rejects frame 1 by its class-name with a comment, and frame 2
    # by its index only
    draft[1]["reviewed-metadata"] |= {
        "class-name": VERDICT_INCORRECT,
        "worker-feedback": [{"comment": "the second car is a bus"}],
    }
    draft[2]["reviewed"] = "1"
    (tmp_path / "verify-wait.manifest").write_text(dumps_manifest(draft))
    described = wait_for_status(svc, "verify-wait")
    svc.stop()
    # Then the job completes with those verdicts, written as Ground Truth writes them
    assert described["LabelingJobStatus"] == "Completed"
    outputs = output_lines(stack, described)
    assert [verification_verdict(line, "reviewed") for line in outputs] == [
        (True, VERDICT_CORRECT),
        (False, VERDICT_INCORRECT),
        (False, VERDICT_INCORRECT),
    ]
    assert [line["reviewed"] for line in outputs] == ["0", "1", "1"]
    assert outputs[1]["reviewed-metadata"]["worker-feedback"] == [{"comment": "the second car is a bus"}]
    assert "worker-feedback" not in outputs[0]["reviewed-metadata"]
    assert described["LabelCounters"]["HumanLabeled"] == 3


def test_wait_mode_verification_fails_objects_with_unreadable_verdicts(stack: Stack, tmp_path: Path):
    # Given a verification job with three verdicts, waiting for a person, over six frames
    lines = [
        input_manifest_line(
            f"s3://{BUCKET}/frames/v{i}.png", frame_detections(f"v{i}.png", 1), DEFAULT_ADAS_TAXONOMY
        )
        for i in range(6)
    ]
    verdicts = label_category_config([VERDICT_CORRECT, VERDICT_INCORRECT, "frame unusable"])
    svc = service(stack, review_mode="wait", review_dir=tmp_path)
    svc.create_labeling_job(**verification_params(stack, "verify-bad", lines, verdicts))
    draft = loads_manifest(wait_for_file(tmp_path / "verify-bad.draft.manifest").read_text())
    # When the saved review breaks each frame's verdict in another way, and leaves out the last
    draft[0]["reviewed-metadata"]["class-name"] = "looks fine"
    draft[1]["reviewed"] = "7"
    draft[2] |= {"reviewed": "1"}
    draft[2]["reviewed-metadata"]["class-name"] = "frame unusable"
    draft[3]["reviewed-metadata"]["type"] = "groundtruth/object-detection"
    draft[4]["reviewed-metadata"]["confidence"] = 3
    (tmp_path / "verify-bad.manifest").write_text(dumps_manifest(draft[:5]))
    described = wait_for_status(svc, "verify-bad")
    svc.stop()
    # Then each of those objects fails alone, with its reason, typed as a verification output
    outputs = output_lines(stack, described)
    reasons = [line["reviewed-metadata"].get("failure-reason", "") for line in outputs]
    for reason, expected in zip(
        reasons,
        [
            "'looks fine' is not one of the job's label categories",
            "verdict index '7' is not one of 0..2",
            "verdict index '1' and class-name 'frame unusable' disagree",
            "not a verification verdict",
            "confidence must be a number from 0 to 1",
            "missing from the reviewed manifest",
        ],
        strict=True,
    ):
        assert expected in reason
    assert all("reviewed" not in line for line in outputs)
    assert {line["reviewed-metadata"]["type"] for line in outputs} == {"groundtruth/label-verification"}
    assert described["LabelCounters"]["FailedNonRetryableError"] == 6
