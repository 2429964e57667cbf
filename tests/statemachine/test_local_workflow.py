"""The whole workflow, end to end, in local mode.

The REAL ``statemachine/autolabel.asl.json`` runs in moto's Step Functions interpreter with every
Lambda task bound to the real handler named in ``template.yaml``; a local asynchronous endpoint
runs the real COCO NanoDet on real KITTI and nuScenes frames and publishes the endpoint's SNS
notifications; a local labeling service plays Ground Truth (accepting every pre-label).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from published import joined
from pycocotools.coco import COCO

from workflow.adapters.ledger import FrameLedger
from workflow.adapters.tokens import PendingInference, TokenStore
from workflow.domain.boxes import box_iou as iou_matrix
from workflow.domain.detections import Detections
from workflow.domain.groundtruth import parse_output_line
from workflow.local.cloud import LocalCloud, LocalContext
from workflow.local.endpoint import Predictor

pytestmark = pytest.mark.slow

REGION = "us-east-1"
DEFAULT_ENDPOINT = "autolabel-nanodet-coco"  # template.yaml's EndpointName default
LOGS = "drive-logs"
PRELABEL, REVIEWED = "prelabel", "reviewed"  # Settings' default label attributes
BROKEN = "autolabel-broken"  # an endpoint whose model raises on every frame
FLAKY = "autolabel-flaky"  # an endpoint whose model raises on nuScenes frames 6 and 7 (crash-*)
KITTI = ("000000.png", "000007.png", "000008.png")


class CrashingModel:
    """A model that fails on every input, as a model with a broken export does."""

    message = "CUDA error: an illegal memory access was encountered"

    def predict_bytes(self, data: bytes, frame: str) -> Detections:
        raise RuntimeError(self.message)


@dataclass
class CrashesOnSomeFrames:
    """The real detector, except that it fails on the images given (by content: an endpoint that
    gets one image per request is not told its name, as in SageMaker)."""

    detector: Predictor
    crash_on: frozenset[str]

    def predict_bytes(self, data: bytes, frame: str) -> Detections:
        if hashlib.sha256(data).hexdigest() in self.crash_on:
            raise RuntimeError(CrashingModel.message)
        return self.detector.predict_bytes(data, frame)


@dataclass
class Frames:
    """Real frames from ../shared/data, by short name."""

    root: Path

    def kitti(self, name: str) -> bytes:
        return (self.root / "data" / "kitti_object" / "image_2" / name).read_bytes()

    def nuscenes(self, index: int) -> bytes:
        return (
            self.root / "data" / "nuscenes_cam_front_sequence" / "frames" / f"{index:03d}.jpg"
        ).read_bytes()


@dataclass
class Run:
    """A finished execution: its description, summary (the execution output) and report.json."""

    arn: str
    status: str
    summary: dict[str, Any]
    report: dict[str, Any]
    cloud: LocalCloud
    output: dict[str, Any] | None = None  # the execution's output as it is (summary has joined copies)

    @property
    def run_id(self) -> str:
        return str(self.summary["run_id"])

    def frames(self, status: str) -> dict[str, dict[str, Any]]:
        return {f["frame"]: f for f in self.report["frames"] if f["status"] == status}

    def read(self, uri: str) -> bytes:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return bytes(self.cloud.s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    def lines(self, uri: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.read(uri).decode().splitlines() if line.strip()]


def upload(cloud: LocalCloud, prefix: str, objects: dict[str, bytes]) -> list[str]:
    """Put objects under ``s3://drive-logs/<prefix>/``; returns their URIs in key order."""
    for name, body in objects.items():
        cloud.s3.put_object(Bucket=LOGS, Key=f"{prefix}/{name}", Body=body)
    return sorted(f"s3://{LOGS}/{prefix}/{name}" for name in objects)


def finish(cloud: LocalCloud, arn: str) -> Run:
    described = cloud.wait(arn, timeout=90)
    assert described["status"] == "SUCCEEDED", (described.get("error"), described.get("cause"))
    output = json.loads(described["output"])
    report, summary = joined(cloud.s3, output)
    return Run(arn, described["status"], summary, report, cloud, output)


def run_workflow(cloud: LocalCloud, request: dict[str, Any]) -> Run:
    return finish(cloud, cloud.start_run(request))


def broken_model(batch_requests: bool, name: str = "broken", endpoint: str = BROKEN) -> list[dict[str, Any]]:
    return [{"name": name, "endpoint_name": endpoint, "batch_requests": batch_requests}]


@pytest.fixture(scope="module")
def frames(shared_dir: Path) -> Frames:
    return Frames(shared_dir)


@dataclass
class Cloud:
    """The module's local cloud and an SQS queue subscribed to the inference success topic."""

    local: LocalCloud
    success_topic: str
    sqs: Any
    queue_url: str

    def drain_notifications(self) -> list[str]:
        """Every SNS message (the raw ``Message`` string) the success topic delivered so far."""
        found = []
        while batch := self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10).get(
            "Messages"
        ):
            for message in batch:
                found.append(json.loads(message["Body"])["Message"])
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return found

    def scan(self, table: str) -> list[dict[str, Any]]:
        """Every item of a DynamoDB table, in key order."""
        items = boto3.client("dynamodb", region_name=REGION).scan(TableName=table, ConsistentRead=True)[
            "Items"
        ]
        return sorted(items, key=lambda item: item["pk"]["S"])


@pytest.fixture(scope="module")
def cloud(
    local_cloud: Callable[..., LocalCloud],
    detector: Predictor,
    detector_factory: Callable[[], Predictor],
    frames: Frames,
) -> Cloud:
    crash_on = frozenset(hashlib.sha256(frames.nuscenes(i)).hexdigest() for i in (6, 7))
    local = local_cloud(
        {
            DEFAULT_ENDPOINT: detector_factory,
            BROKEN: CrashingModel,
            FLAKY: lambda: CrashesOnSomeFrames(detector, crash_on),
        }
    )
    local.s3.create_bucket(Bucket=LOGS)
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = sqs.create_queue(QueueName="success-notifications")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    success_topic = local.endpoints[DEFAULT_ENDPOINT].config.success_topic
    assert success_topic
    local.sns.subscribe(TopicArn=success_topic, Protocol="sqs", Endpoint=queue_arn)
    return Cloud(local, success_topic, sqs, queue_url)


@pytest.fixture(scope="module")
def first_run(cloud: Cloud, frames: Frames) -> tuple[Run, list[str]]:
    """Three KITTI and two nuScenes frames under log1/, labeled in batches of two with review."""
    objects = {name: frames.kitti(name) for name in KITTI} | {
        f"{i:03d}.jpg": frames.nuscenes(i) for i in (0, 1)
    }
    uris = upload(cloud.local, "log1", objects)
    run = run_workflow(cloud.local, {"sources": [f"s3://{LOGS}/log1/"], "batch_size": 2, "review": "human"})
    return run, uris


def kitti_boxes(shared_dir: Path, name: str, kind: str) -> np.ndarray:
    """The human-labeled 2D boxes (xyxy pixels) of one class in a KITTI label_2 file."""
    rows = (shared_dir / "data" / "kitti_object" / "label_2" / name).read_text().splitlines()
    boxes = [[float(v) for v in row.split()[4:8]] for row in rows if row.split()[0] == kind]
    return np.array(boxes, np.float32).reshape(-1, 4)


# --- 1. a run labels every frame ------------------------------------------------------------------


def test_run_over_kitti_and_nuscenes_labels_every_frame(
    first_run: tuple[Run, list[str]], shared_dir: Path, tmp_path: Path
) -> None:
    # Given five real frames under one prefix, labeled by the real workflow in batches of two
    run, uris = first_run
    # Then the execution succeeded and its report accounts for every frame, all labeled
    assert run.status == "SUCCEEDED"
    assert {f["frame"] for f in run.report["frames"]} == set(uris)
    assert set(run.frames("labeled")) == set(uris)
    assert (
        run.summary["frames_found"],
        run.summary["labeled"],
        run.summary["failed"],
        run.summary["skipped"],
    ) == (
        5,
        5,
        0,
        0,
    )
    assert run.summary["review"] == "simulated (no person reviewed)"  # the local stand-in, no person
    # And every output manifest line parses as a reviewed Ground Truth label of one input frame
    lines = run.lines(run.summary["outputs"]["output_manifest"])
    reviewed = {line["source-ref"]: parse_output_line(line, REVIEWED) for line in lines}
    assert set(reviewed) == set(uris) and len(lines) == len(uris)
    assert all(r.image_size is not None and not r.failed for r in reviewed.values())
    # And the COCO file loads with pycocotools, one image per frame, one annotation per object
    coco_path = tmp_path / "coco.json"
    coco_path.write_bytes(run.read(run.summary["outputs"]["coco"]))
    coco = COCO(str(coco_path))
    assert {img["file_name"] for img in coco.dataset["images"]} == set(uris)
    objects = sum(f["objects"] for f in run.frames("labeled").values())
    assert len(coco.getAnnIds()) == objects == sum(len(r.boxes) for r in reviewed.values()) > 0
    # And on KITTI 000008 the model found cars where people labeled cars
    frame = reviewed[f"s3://{LOGS}/log1/000008.png"]
    cars = np.array([b.xyxy for b in frame.boxes if b.class_name == "car"], np.float32).reshape(-1, 4)
    assert len(cars) >= 1
    human_cars = kitti_boxes(shared_dir, "000008.txt", "Car")
    assert (iou_matrix(cars, human_cars).max(axis=0) >= 0.5).sum() >= 1


# --- 2. frames that cannot be labeled are reported, not lost ----------------------------------------


def test_corrupt_image_fails_with_decode_reason_and_text_file_is_skipped(
    cloud: Cloud, frames: Frames
) -> None:
    # Given a real frame, a truncated JPEG and a text file under one prefix
    truncated = frames.nuscenes(3)
    uris = upload(
        cloud.local,
        "log2",
        {
            "002.jpg": frames.nuscenes(2),
            "broken.jpg": truncated[: len(truncated) // 2],
            "notes.txt": b"drive notes",
        },
    )
    # When the workflow runs over the prefix
    run = run_workflow(cloud.local, {"sources": [f"s3://{LOGS}/log2/"], "batch_size": 2, "review": "skip"})
    # Then every object is in the report: the frame labeled, the JPEG failed, the text skipped
    assert {f["frame"] for f in run.report["frames"]} == set(uris)
    assert list(run.frames("labeled")) == [f"s3://{LOGS}/log2/002.jpg"]
    failed = run.frames("failed")
    assert list(failed) == [f"s3://{LOGS}/log2/broken.jpg"]
    assert "truncated" in failed[f"s3://{LOGS}/log2/broken.jpg"]["reason"]
    skipped = run.frames("skipped")
    assert list(skipped) == [f"s3://{LOGS}/log2/notes.txt"]
    assert skipped[f"s3://{LOGS}/log2/notes.txt"]["reason"].startswith("not a frame")
    assert (run.summary["labeled"], run.summary["failed"], run.summary["skipped"]) == (1, 1, 1)


# --- 3. failing inference ------------------------------------------------------------------------


@pytest.mark.parametrize("batch_requests", [False, True], ids=["request-per-frame", "request-per-batch"])
def test_failing_model_fails_every_frame_with_reason_and_run_still_publishes(
    cloud: Cloud, frames: Frames, batch_requests: bool
) -> None:
    # Given two frames and an endpoint whose model raises on every input
    prefix = f"log3-{'batch' if batch_requests else 'frame'}"
    uris = upload(
        cloud.local, prefix, {"000000.png": frames.kitti("000000.png"), "004.jpg": frames.nuscenes(4)}
    )
    # When the workflow runs with that model, one frame per batch
    run = run_workflow(
        cloud.local,
        {
            "sources": [f"s3://{LOGS}/{prefix}/"],
            "batch_size": 1,
            "models": broken_model(batch_requests),
        },
    )
    # Then the execution succeeded, published, and lists both frames as failed with the model's error
    failed = run.frames("failed")
    assert set(failed) == set(uris)
    for entry in failed.values():
        assert entry["reason"].startswith("broken: ") and "illegal memory access" in entry["reason"]
    assert (run.summary["labeled"], run.summary["failed"]) == (0, 2)
    assert run.summary["outputs"]["output_manifest"]
    assert run.lines(run.summary["outputs"]["output_manifest"]) == []


def test_only_the_batch_whose_inference_fails_is_failed(cloud: Cloud, frames: Frames) -> None:
    # Given four frames cut into two batches, and a model that crashes on the second batch's frames
    uris = upload(
        cloud.local,
        "log5",
        {
            "a-000000.png": frames.kitti("000000.png"),
            "b-005.jpg": frames.nuscenes(5),
            "crash-006.jpg": frames.nuscenes(6),
            "crash-007.jpg": frames.nuscenes(7),
        },
    )
    # When the workflow runs with one request per frame
    run = run_workflow(
        cloud.local,
        {
            "sources": [f"s3://{LOGS}/log5/"],
            "batch_size": 2,
            "review": "skip",
            "models": broken_model(False, name="flaky", endpoint=FLAKY),
        },
    )
    # Then the first batch is labeled and the second is failed, frame by frame, with the reason
    assert set(run.frames("labeled")) == set(uris[:2])
    failed = run.frames("failed")
    assert set(failed) == set(uris[2:])
    assert all(f["reason"] == "flaky: RuntimeError: " + CrashingModel.message for f in failed.values())


# --- 4. at-least-once SNS delivery -----------------------------------------------------------------


def test_redelivered_success_notifications_change_nothing(
    cloud: Cloud, first_run: tuple[Run, list[str]]
) -> None:
    # Given the success notifications the endpoint published during the first run (captured by SQS)
    run, _ = first_run
    requests = f"/runs/{run.run_id}/requests/"
    recorded = [
        m
        for m in cloud.drain_notifications()
        if requests in json.loads(m)["requestParameters"]["inputLocation"]
    ]
    assert len(recorded) == 3  # three batches of the five frames
    tokens_before = cloud.scan("TokenTable")
    report_before = run.read(run.summary["outputs"]["report"])
    calls_before = cloud.local.invocations["InferenceCallbackFunction"]
    # When SNS delivers each of them again, after the batches resumed
    for message in recorded:
        cloud.local.sns.publish(TopicArn=cloud.success_topic, Message=message)
    # Then the callback ran for each, and neither the tokens, the report nor the execution changed
    assert cloud.local.invocations["InferenceCallbackFunction"] == calls_before + len(recorded)
    assert cloud.scan("TokenTable") == tokens_before
    assert run.read(run.summary["outputs"]["report"]) == report_before
    described = cloud.local.sfn.describe_execution(executionArn=run.arn)
    assert described["status"] == "SUCCEEDED" and json.loads(described["output"]) == run.output
    # And the handler itself, given the same message, reports that it resumed nothing
    handler = cloud.local.handlers["InferenceCallbackFunction"]
    event = {"Records": [{"EventSource": "aws:sns", "Sns": {"Message": recorded[0]}}]}
    outcome = handler(event, LocalContext("InferenceCallbackFunction"))
    assert outcome["outcomes"] and outcome["outcomes"][0] not in ("resumed", "failed")


# --- 5. the frame ledger across runs -----------------------------------------------------------------


def test_second_run_skips_labeled_frames_and_relabel_labels_them_again(
    cloud: Cloud, first_run: tuple[Run, list[str]]
) -> None:
    # Given the frames under log1/ that the first run labeled
    first, uris = first_run
    # When a second run covers the same prefix
    second = run_workflow(cloud.local, {"sources": [f"s3://{LOGS}/log1/"], "batch_size": 2, "review": "skip"})
    # Then it labels nothing and skips every frame, naming the run that labeled it
    assert second.summary["labeled"] == 0
    skipped = second.frames("skipped")
    assert set(skipped) == set(uris)
    assert {f["reason"] for f in skipped.values()} == {f"already labeled by run {first.run_id}"}
    # When a run asks to relabel two of those frames
    again = uris[:2]
    third = run_workflow(cloud.local, {"sources": again, "relabel": True, "review": "skip"})
    # Then it labels them again
    assert set(third.frames("labeled")) == set(again)
    assert third.summary["skipped"] == 0


def test_overlapping_runs_never_label_the_same_frame_twice(cloud: Cloud, frames: Frames) -> None:
    # Given four frames under one prefix
    uris = upload(cloud.local, "log6", {f"{i:03d}.jpg": frames.nuscenes(i) for i in (8, 9, 10, 11)})
    request = {"sources": [f"s3://{LOGS}/log6/"], "batch_size": 2, "review": "skip"}
    # When two runs over it start before either finishes
    arns: list[str] = []
    starters = [
        threading.Thread(target=lambda: arns.append(cloud.local.start_run(request))) for _ in range(2)
    ]
    for thread in starters:
        thread.start()
    for thread in starters:
        thread.join()
    runs = [finish(cloud.local, arn) for arn in arns]
    # Then every frame is labeled by exactly one of them, and skipped by the other with the reason
    labeled = [set(run.frames("labeled")) for run in runs]
    assert sum(len(s) for s in labeled) == len(uris)
    assert labeled[0] | labeled[1] == set(uris) and not labeled[0] & labeled[1]
    for run, other in ((runs[0], runs[1]), (runs[1], runs[0])):
        for frame, entry in run.frames("skipped").items():
            assert frame in labeled[runs.index(other)]
            assert entry["reason"] in (
                f"being labeled by run {other.run_id}",
                f"already labeled by run {other.run_id}",
            )


def test_local_dynamodb_takes_concurrent_writes_as_the_service_does(cloud: Cloud) -> None:
    # Given the token store and the frame ledger on the local cloud's tables, used from many
    # threads at once as the local runtime does (Map children, SNS deliveries, pools in handlers)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    tokens, ledger = TokenStore(dynamodb, "TokenTable"), FrameLedger(dynamodb, "LedgerTable")

    def park_and_resume(i: int) -> bool:
        tokens.park_batch(
            "concurrent", f"b{i:06d}", "token", [PendingInference(f"concurrent-{i}", "m", ["f"])]
        )
        tokens.record_inference(f"concurrent-{i}", "Completed", f"s3://{LOGS}/out/{i}.out", None)
        return tokens.claim_completed_batch(f"batch#concurrent#b{i:06d}") is not None

    frames = [f"s3://{LOGS}/concurrent/{i:03d}.jpg" for i in range(20)]
    # When forty batches are parked and resumed, and two runs claim the same twenty frames, in parallel
    with ThreadPoolExecutor(max_workers=8) as pool:
        resumed = list(pool.map(park_and_resume, range(40)))
        claims = list(
            pool.map(lambda job: ledger.claim(*job), [(f, r) for f in frames for r in ("run-x", "run-y")])
        )
    # Then no call fails, every batch resumes once, and every frame is claimed by exactly one run
    # (DynamoDB applies each request atomically; moto 5.2.5 alone does not: its transactions
    # deep-copy every table while other threads write, and a condition is checked apart from its write)
    assert all(resumed)
    assert sorted(c.frame for c in claims if c.claimed) == frames


# --- 7. Ground Truth manifests match real ones --------------------------------------------------------

JSON_TYPES = {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}
CREATION_DATE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}$")


def json_type(value: Any) -> str:
    return "null" if value is None else JSON_TYPES[type(value)]


def real_labels(shared_dir: Path) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(label, metadata) of every line of the real bounding-box output manifests."""
    found = []
    for name in (
        "gt_bbox_output_cat-ground-truth.manifest",
        "gt_bbox_output_aws-yolov5-demo_first3.manifest",
    ):
        for text in (shared_dir / "data" / "sagemaker" / name).read_text().splitlines():
            line = json.loads(text)
            (attribute,) = [k for k in line if k != "source-ref" and not k.endswith("-metadata")]
            found.append((line[attribute], line[f"{attribute}-metadata"]))
    return found


def item_shapes(items: list[dict[str, Any]]) -> set[tuple[tuple[str, str], ...]]:
    """The distinct (key, JSON type) signatures of a list of objects."""
    return {tuple(sorted((k, json_type(v)) for k, v in item.items())) for item in items}


def assert_same_shape(
    ours: tuple[dict[str, Any], dict[str, Any]],
    real: list[tuple[dict[str, Any], dict[str, Any]]],
    extra_metadata: set[str],
) -> None:
    label, meta = ours
    real_label_keys = {tuple(sorted(lab)) for lab, _ in real}
    assert real_label_keys == {tuple(sorted(label))}
    assert item_shapes(label["image_size"]) == set().union(
        *(item_shapes(lab["image_size"]) for lab, _ in real)
    )
    real_annotations = set().union(*(item_shapes(lab["annotations"]) for lab, _ in real))
    assert item_shapes(label["annotations"]) <= real_annotations and label["annotations"]
    real_meta_types = {k: json_type(v) for _, m in real for k, v in m.items()}
    assert set(meta) - set(real_meta_types) == extra_metadata
    assert set(real_meta_types) <= set(meta)
    assert {k: json_type(meta[k]) for k in real_meta_types} == real_meta_types
    assert item_shapes(meta["objects"]) == set().union(
        *(item_shapes(m["objects"]) for _, m in real if m["objects"])
    )
    assert all(k.isdigit() and isinstance(v, str) for k, v in meta["class-map"].items())
    assert CREATION_DATE.match(meta["creation-date"]) and all(
        CREATION_DATE.match(m["creation-date"]) for _, m in real
    )
    assert meta["job-name"].startswith("labeling-job/") and all(
        m["job-name"].startswith("labeling-job/") for _, m in real
    )
    assert meta["type"] == "groundtruth/object-detection" == real[0][1]["type"]


def test_manifests_have_the_shape_of_real_ground_truth_output(
    first_run: tuple[Run, list[str]], shared_dir: Path
) -> None:
    # Given the real output manifests of two Ground Truth bounding-box jobs
    real = real_labels(shared_dir)
    # And the input manifest and the dataset manifest the first run wrote (KITTI 000008 has cars)
    run, _ = first_run
    frame = f"s3://{LOGS}/log1/000008.png"
    bucket = run.summary["outputs"]["report"].removeprefix("s3://").split("/", 1)[0]
    (prelabeled,) = [
        line
        for line in run.lines(f"s3://{bucket}/runs/{run.run_id}/review/input-000.manifest")
        if line["source-ref"] == frame
    ]
    (published,) = [
        line for line in run.lines(run.summary["outputs"]["output_manifest"]) if line["source-ref"] == frame
    ]
    # Then the pre-label has exactly the keys and JSON types of a real label and its metadata
    assert_same_shape((prelabeled[PRELABEL], prelabeled[f"{PRELABEL}-metadata"]), real, extra_metadata=set())
    # And the reviewed label too, plus the adjustment-status an adjustment job adds
    assert_same_shape(
        (published[REVIEWED], published[f"{REVIEWED}-metadata"]), real, extra_metadata={"adjustment-status"}
    )
    assert published[f"{REVIEWED}-metadata"]["adjustment-status"] in ("adjusted", "unadjusted")
