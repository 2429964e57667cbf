"""Routing frames to people or straight to the dataset; audits; review prices; the jobs it makes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
import yaml
from fan_in_steps import BATCH, frame_reports, job_line, merged_batch, planned, published, run_context
from moto import mock_aws

from workflow.adapters.labeling import create_labeling_job_request
from workflow.adapters.ledger import FrameLedger
from workflow.adapters.s3 import S3Store
from workflow.domain.detections import Detections, Provenance, Support
from workflow.domain.fusion import ModelOutput, fuse
from workflow.domain.groundtruth import (
    ImageSize,
    boxes_from_detections,
    output_manifest_line,
    parse_output_line,
)
from workflow.domain.prices import PRICES_AS_OF, cost_estimate, review_cost, task_price
from workflow.domain.profile import LabelingProfile, validate_profile
from workflow.domain.routing import (
    RouteDecision,
    RoutingPolicy,
    audit_draw,
    is_audited,
    route_counts,
    route_frame,
)
from workflow.domain.run import ManifestPart, ManifestResult
from workflow.domain.verification import VERDICT_CORRECT, verification_categories, verification_verdict
from workflow.domain.worker_templates import verification_ui_template
from workflow.local.cloud import DEFAULT_TEMPLATE
from workflow.local.template import Template
from workflow.settings import Settings

PROFILES = Path(__file__).resolve().parents[2] / "profiles"
FRAME = "s3://drive-logs/log1/000008.png"
ON = RoutingPolicy(enabled=True, accept_score=0.5, min_support=1.0, min_boxes=1, max_boxes=4, audit_rate=0.0)
BOTH = {"coco": None, "vehicles": frozenset({"car", "truck", "bus"})}  # models that answered, what they see
Row = tuple[float, float, float, float, float, str]


def fused(rows_a: list[Row], rows_b: list[Row], frame: str = FRAME) -> Detections:
    """WBF of a COCO model (every class) and a vehicle model on one 1242x375 frame."""

    def dets(rows: list[Row], model: str) -> Detections:
        return Detections(
            boxes=np.array([r[:4] for r in rows], np.float32).reshape(-1, 4),
            scores=np.array([r[4] for r in rows], np.float32),
            class_ids=np.zeros(len(rows), np.int64),
            class_names=tuple(r[5] for r in rows),
            image_width=1242,
            image_height=375,
            provenance=Provenance(model),
            frame=frame,
        )

    return fuse(
        [
            ModelOutput("coco", dets(rows_a, "coco")),
            ModelOutput("vehicles", dets(rows_b, "vehicles"), covers=BOTH["vehicles"]),
        ]
    )


CAR_A, CAR_B = (100, 100, 200, 200, 0.9, "car"), (102, 100, 202, 200, 0.8, "car")
FAR_CAR = (600, 150, 640, 180, 0.9, "car")
PEDESTRIAN = (300, 80, 330, 160, 0.7, "pedestrian")


@pytest.mark.parametrize(
    ("rows_a", "rows_b", "policy", "route", "reason"),
    [
        pytest.param([CAR_A], [CAR_B], ON, "auto", None, id="both models see the car, confidently"),
        pytest.param(
            [CAR_A, PEDESTRIAN], [CAR_B], ON, "auto", None, id="a pedestrian the vehicle model cannot see"
        ),
        pytest.param(
            [CAR_A, FAR_CAR],
            [CAR_B],
            ON,
            "adjust",
            "1 boxes not seen by every able model",
            id="a car one model missed",
        ),
        pytest.param(
            [(*CAR_A[:4], 0.5, "car")],
            [(*CAR_B[:4], 0.3, "car")],
            ON,
            "adjust",
            "a box scores 0.40 < 0.5",
            id="low fused score",
        ),
        pytest.param(
            [], [], ON, "adjust", "0 boxes, fewer than 1", id="an empty frame: people look for misses"
        ),
        pytest.param(
            [CAR_A, *[(10 + 50 * i, 300, 40 + 50 * i, 340, 0.9, "pedestrian") for i in range(4)]],
            [CAR_B],
            ON,
            "adjust",
            "5 boxes, more than 4",
            id="a crowded frame",
        ),
        pytest.param(
            [(*CAR_A[:4], 0.5, "car")],
            [(*CAR_B[:4], 0.3, "car")],
            ON.model_copy(update={"verify_score": 0.35}),
            "verify",
            "a box scores 0.40 < 0.5",
            id="agreeing but less sure: verification",
        ),
        pytest.param(
            [CAR_A, FAR_CAR],
            [CAR_B],
            ON.model_copy(update={"verify_score": 0.35}),
            "adjust",
            "not seen by every able model",
            id="disagreement is never only verified",
        ),
        pytest.param(
            [CAR_A],
            [CAR_B],
            RoutingPolicy(),
            "adjust",
            "routing disabled",
            id="routing off: every frame to people",
        ),
    ],
)
def test_route_of_a_fused_frame(
    rows_a: list[Row], rows_b: list[Row], policy: RoutingPolicy, route: str, reason: str | None
) -> None:
    # Given the fused labels of two models on one frame
    labels = fused(rows_a, rows_b)
    # When routed
    decision = route_frame(labels, BOTH, policy)
    # Then the frame goes where the policy says, for the stated reason
    assert decision.route == route
    assert decision.boxes == len(labels)
    if reason is None:
        assert decision.reasons == ()
    else:
        assert any(reason in r for r in decision.reasons), decision.reasons


def test_a_frame_a_model_gave_no_result_for_goes_to_people() -> None:
    labels = fused([CAR_A], [CAR_B])
    decision = route_frame(labels, {"coco": None}, ON, missing_models=["vehicles"])
    assert decision.route == "adjust" and decision.reasons[0] == "no result from vehicles"


def test_min_support_half_accepts_a_box_one_of_two_models_saw() -> None:
    labels = fused([CAR_A, FAR_CAR], [CAR_B])
    policy = ON.model_copy(update={"min_support": 0.5, "accept_score": 0.4})
    assert route_frame(labels, BOTH, policy).route == "auto"


# --- audit sampling ----------------------------------------------------------------------------------


def test_audit_draws_are_deterministic_per_frame_and_seed() -> None:
    # Given 20,000 frame URIs
    frames = [f"s3://drive-logs/2026-11-24/cam-front/{i:06d}.jpg" for i in range(20_000)]
    # When each is drawn twice for a 5 % audit
    first = [is_audited(f, 0.05) for f in frames]
    again = [is_audited(f, 0.05) for f in frames]
    # Then reruns draw exactly the same frames, and about 5 % of them
    assert first == again
    assert sum(first) / len(frames) == pytest.approx(0.05, abs=0.005)
    # And another seed draws other frames; rates 0 and 1 draw none and all
    reseeded = [is_audited(f, 0.05, seed="2026-q4") for f in frames]
    assert reseeded != first and sum(reseeded) / len(frames) == pytest.approx(0.05, abs=0.005)
    assert not any(is_audited(f, 0.0) for f in frames[:100]) and all(is_audited(f, 1.0) for f in frames[:100])
    assert 0.0 <= audit_draw(frames[0]) < 1.0


def test_an_auto_accepted_frame_drawn_for_audit_still_goes_to_people() -> None:
    # Given a confident, agreed frame under a policy that audits every auto frame
    labels = fused([CAR_A], [CAR_B])
    decision = route_frame(labels, BOTH, ON.model_copy(update={"audit_rate": 1.0}))
    # Then it stays "auto" (the routing said so) but is audited: people adjust it anyway
    assert (decision.route, decision.audit, decision.to_people, decision.job_task) == (
        "auto",
        True,
        True,
        "adjust",
    )
    assert route_counts([decision, route_frame(labels, BOTH, ON)]) == {
        "auto": 2,
        "verify": 0,
        "adjust": 0,
        "audit": 1,
    }


# --- prices ------------------------------------------------------------------------------------------


def test_review_cost_uses_the_dated_ground_truth_price() -> None:
    # Given the price table (public workforce, bounding box, $0.036 per frame per worker, as of 2025-06)
    assert PRICES_AS_OF == "2025-06"
    assert task_price("adjust", "public").usd_per_object_per_worker == 0.036
    # When 1,000 frames are reviewed by 3 workers
    # Then it costs 1000 x 3 x 0.036
    assert review_cost(1000, workers=3) == pytest.approx(108.0)
    # And routing 800 of 1,000 frames straight to the dataset saves their share
    estimate = cost_estimate(to_adjust=150, to_verify=50, labeled=1000, workers=3)
    assert (estimate["with_routing"], estimate["without_routing"], estimate["saved"]) == (21.6, 108.0, 86.4)
    with pytest.raises(KeyError, match="vendors"):
        task_price("adjust", "vendor")


# --- verification jobs ---------------------------------------------------------------------------------


def test_verification_job_files() -> None:
    # Given the verification categories and worker template
    categories = verification_categories()
    template = verification_ui_template("prelabel", "Are these labels right? {{ not liquid }}")
    # Then the categories are the two verdicts and the template is well-formed HTML drawing the pre-labels
    assert [c["label"] for c in categories["labels"]] == [VERDICT_CORRECT, "labels need adjustment"]
    HTMLParser().feed(template)
    assert "task.input.manifestLine.prelabel.annotations" in template
    assert "{{ not liquid }}" not in template  # the header cannot inject Liquid
    # And a verification output line (the shape of the AWS guide's example) reads as a verdict
    line = {
        "source-ref": FRAME,
        "verified": "0",
        "verified-metadata": {
            "class-name": VERDICT_CORRECT,
            "confidence": 0.93,
            "type": "groundtruth/label-verification",
            "job-name": "labeling-job/v",
            "human-annotated": "yes",
            "creation-date": "2026-11-25T10:00:00.000000",
        },
    }
    assert verification_verdict(line, "verified") == (True, VERDICT_CORRECT)
    assert verification_verdict({"source-ref": FRAME}, "verified") is None


RUN = run_context(["coco"])
SETTINGS = Settings(
    data_bucket="data",
    token_table="t",
    ledger_table="l",
    workteam_arn="arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/x",
    labeling_role_arn="arn:aws:iam::123456789012:role/labeling",
)


def test_a_verify_part_starts_a_verification_job_with_its_own_categories() -> None:
    # Given a manifest with an adjustment part and a verification part
    manifest = ManifestResult(
        parts=[],
        frames_to_review=2,
        label_categories_uri="s3://data/review/label-categories.json",
        ui_template_uri="s3://data/review/worker-template.liquid.html",
        prelabel_attribute="prelabel",
        categories=["car"],
    )
    adjust = ManifestPart(index=0, manifest_uri="s3://data/review/input-000.manifest", frames=1)
    verify = ManifestPart(
        index=1,
        manifest_uri="s3://data/review/input-001.manifest",
        frames=1,
        task="verify",
        label_categories_uri="s3://data/review/verification-categories.json",
        ui_template_uri="s3://data/review/verification-template.liquid.html",
    )
    # When their CreateLabelingJob requests are built
    a = create_labeling_job_request(RUN, adjust, manifest, SETTINGS)
    v = create_labeling_job_request(RUN, verify, manifest, SETTINGS)
    # Then the adjustment job uses the adjustment Lambdas and the manifest's files
    assert a["HumanTaskConfig"]["PreHumanTaskLambdaArn"].endswith(":function:PRE-AdjustmentBoundingBox")
    assert a["LabelCategoryConfigS3Uri"] == manifest.label_categories_uri
    # And the verification job the verification Lambdas and its own categories and template
    task = v["HumanTaskConfig"]
    assert task["PreHumanTaskLambdaArn"].endswith(":function:PRE-VerificationBoundingBox")
    assert task["AnnotationConsolidationConfig"]["AnnotationConsolidationLambdaArn"].endswith(
        ":function:ACS-VerificationBoundingBox"
    )
    assert v["LabelCategoryConfigS3Uri"] == verify.label_categories_uri
    assert task["UiConfig"]["UiTemplateS3Uri"] == verify.ui_template_uri
    assert a["LabelingJobName"] != v["LabelingJobName"]


# --- MergeBatch, PlanReview, AssembleManifest: only the routed frames, split taxonomies ------------------


@pytest.fixture
def s3() -> Iterator[S3Store]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="data")
        yield S3Store(client)


def store(s3: S3Store, profile: LabelingProfile, frames: list[tuple[Detections, RouteDecision]]) -> None:
    """A run's profile and one batch of labeled, routed frames, as PrepareRun and MergeBatch write them."""
    merged_batch(s3, RUN, profile, SETTINGS, frames)


def frame(name: str, classes: list[str], profile: LabelingProfile) -> Detections:
    n = len(classes)
    return Detections(
        boxes=np.array([[10 + 20 * i, 10, 25 + 20 * i, 40] for i in range(n)], np.float32).reshape(-1, 4),
        scores=np.full(n, 0.9, np.float32),
        class_ids=np.array([profile.taxonomy.index(c) for c in classes], np.int64),
        class_names=tuple(classes),
        image_width=640,
        image_height=480,
        provenance=Provenance("m"),
        frame=f"s3://drive-logs/log1/{name}.jpg",
        support=tuple((Support("m", 0.9),) for _ in classes),
    )


def test_only_frames_routed_to_people_go_into_the_jobs(s3: S3Store, ledger: FrameLedger) -> None:
    # Given three labeled frames: auto-accepted, to adjust, to verify
    profile = validate_profile(yaml.safe_load((PROFILES / "two-models.yaml").read_text()))
    routes = {
        "auto": RouteDecision(route="auto"),
        "adjust": RouteDecision(route="adjust"),
        "verify": RouteDecision(route="verify"),
    }
    store(s3, profile, [(frame(name, ["car"], profile), route) for name, route in routes.items()])
    # When PlanReview and AssembleManifest run
    result = planned(s3, RUN, SETTINGS)
    # Then one adjustment part holds the frame to adjust and one verification part the frame to verify
    assert result.frames_to_review == 2
    assert [(p.task, p.stream, p.frames) for p in result.parts] == [
        ("adjust", "adjust-g0", 1),
        ("verify", "verify", 1),
    ]
    adjust_lines, verify_lines = (s3.get_lines(p.manifest_uri) for p in result.parts)
    assert [line["source-ref"] for line in adjust_lines] == ["s3://drive-logs/log1/adjust.jpg"]
    assert [line["source-ref"] for line in verify_lines] == ["s3://drive-logs/log1/verify.jpg"]
    assert {line["autolabel-batch"] for line in adjust_lines + verify_lines} == {BATCH}
    categories = s3.get_json(result.parts[1].label_categories_uri or "")
    assert categories == verification_categories()
    # And the auto-accepted frame is in no job, though PublishShard puts it in the COCO pre-labels
    summary = published(s3, RUN, result, {0: [], 1: []}, SETTINGS, ledger)
    prelabels = s3.get_json("s3://data/runs/run-1/prelabels/coco-00000.json")
    assert len(prelabels["images"]) == 3
    assert summary["labeled"] == 1  # the frames people never returned fail: only the auto one is labeled


def test_a_taxonomy_over_10_reviewed_classes_is_split_into_jobs_of_10(s3: S3Store) -> None:
    # Given a profile of 25 reviewed classes that asks to split, and three frames to adjust: one with
    # a class of the first group, one with classes of the first and third, one with no box at all
    data: dict[str, Any] = yaml.safe_load((PROFILES / "two-models.yaml").read_text())
    data["taxonomy"] += [{"name": f"sign-{i:03d}"} for i in range(15)]
    data["review"]["large_taxonomy"] = "split"
    profile = validate_profile(data)
    adjust = RouteDecision(route="adjust")
    store(
        s3,
        profile,
        [
            (frame("a", ["car"], profile), adjust),
            (frame("b", ["car", "sign-012"], profile), adjust),
            (frame("c", [], profile), adjust),
        ],
    )
    # When PlanReview and AssembleManifest run
    result = planned(s3, RUN, SETTINGS)
    # Then each group of at most 10 classes (a crowd-bounding-box's labels) has its own job and categories
    assert [p.stream for p in result.parts] == ["adjust-g0", "adjust-g1", "adjust-g2"]
    sources = [
        [line["source-ref"].rsplit("/", 1)[1] for line in s3.get_lines(p.manifest_uri)] for p in result.parts
    ]
    assert sources == [["a.jpg", "b.jpg", "c.jpg"], ["c.jpg"], ["b.jpg", "c.jpg"]]
    files = [p.label_categories_uri or result.label_categories_uri for p in result.parts]
    labels = [[c["label"] for c in s3.get_json(uri)["labels"]] for uri in files]
    assert [len(group) for group in labels] == [10, 10, 5]
    assert labels[2][-1] == "sign-014"
    # And a frame's line in a group's job shows only that group's boxes, numbered in that group
    third = {
        line["source-ref"].rsplit("/", 1)[1]: line for line in s3.get_lines(result.parts[2].manifest_uri)
    }
    assert third["b.jpg"]["prelabel-metadata"]["class-map"] == {str(labels[2].index("sign-012")): "sign-012"}
    assert json.dumps(third["c.jpg"]["prelabel"]["annotations"]) == "[]"


# --- PublishShard, FinishRun: machine labels, verdicts, jobs split by class group -------------------------


@pytest.fixture
def ledger(s3: S3Store) -> FrameLedger:
    """The frame ledger table of template.yaml, in the same moto as ``s3``."""
    client = boto3.client("dynamodb", region_name="us-east-1")
    client.create_table(**Template(DEFAULT_TEMPLATE).create_table_request("LedgerTable") | {"TableName": "l"})
    return FrameLedger(client, "l")


def verdict_line(uri: str, verdict: str) -> dict[str, Any]:
    """A verification job's output line, in the shape of the AWS guide's example."""
    meta = {
        "class-name": verdict,
        "confidence": 0.9,
        "type": "groundtruth/label-verification",
        "job-name": "labeling-job/run-1-p002",
        "human-annotated": "yes",
        "creation-date": "2026-11-25T10:00:00.000000",
    }
    return job_line({"source-ref": uri, "reviewed": "0", "reviewed-metadata": meta})


def test_publish_writes_machine_labels_verdicts_and_the_union_of_split_jobs(
    s3: S3Store, ledger: FrameLedger
) -> None:
    # Given a 25-class profile split into jobs, and four frames routed four ways
    data: dict[str, Any] = yaml.safe_load((PROFILES / "two-models.yaml").read_text())
    data["taxonomy"] += [{"name": f"sign-{i:03d}"} for i in range(15)]
    data["review"]["large_taxonomy"] = "split"
    profile = validate_profile(data)
    contents = [("a", ["car"]), ("b", ["bus"]), ("c", ["car"]), ("d", ["car", "sign-012"])]
    auto, good, bad, split = (frame(name, classes, profile) for name, classes in contents)
    store(
        s3,
        profile,
        [
            (auto, RouteDecision(route="auto")),
            (good, RouteDecision(route="verify")),
            (bad, RouteDecision(route="verify")),
            (split, RouteDecision(route="adjust")),
        ],
    )
    manifest = planned(s3, RUN, SETTINGS)
    assert [p.stream for p in manifest.parts] == ["adjust-g0", "adjust-g2", "verify"]
    for uri in (auto.frame, good.frame, bad.frame, split.frame):
        ledger.claim(uri, "run-1", False)
    # And the jobs' outputs: frame d adjusted in the first and third class groups, b and c verified
    size = ImageSize(width=640, height=480)
    groups = profile.review_groups()
    outputs = {}
    for part, group in ((0, groups[0]), (1, groups[2])):
        [box] = boxes_from_detections(split.select(np.array([n in group for n in split.class_names])), group)
        line = output_manifest_line(
            job_line({"source-ref": split.frame}),
            "reviewed",
            [box],
            f"run-1-p00{part}",
            part == 1,
            image_size=size,
        )
        outputs[part] = [line]
    outputs[2] = [
        verdict_line(good.frame, VERDICT_CORRECT),
        verdict_line(bad.frame, "labels need adjustment"),
    ]
    # When CollectReview, PublishShard and FinishRun run
    summary = published(s3, RUN, manifest, outputs, SETTINGS, ledger)
    # Then the auto-accepted and the verified frames are published with their machine labels,
    # the verified one with the people's verdict beside them; no line keeps the batch field
    index = s3.get_json(summary["outputs"]["index"])
    (shard,) = index["shards"]
    lines = {line["source-ref"]: line for line in s3.get_lines(shard["output_manifest"])}
    assert not any("autolabel-batch" in line for line in lines.values())
    for uri in (auto.frame, good.frame):
        assert lines[uri]["prelabel-metadata"]["human-annotated"] == "no"
    assert "reviewed" not in lines[auto.frame]
    assert verification_verdict(lines[good.frame], "reviewed") == (True, VERDICT_CORRECT)
    # And the frame people judged wrong is failed with the verdict, not published
    report = s3.get_json(summary["outputs"]["report"])
    frames = frame_reports(s3, report)
    failed = {f["frame"]: f["reason"] for f in frames if f["status"] == "failed"}
    assert list(failed) == [bad.frame] and "labels need adjustment" in failed[bad.frame]
    # And the frame split over two jobs is one line holding the boxes of both, in full-taxonomy ids
    reviewed = parse_output_line(lines[split.frame], "reviewed")
    names = profile.taxonomy.reviewed_names
    assert sorted((b.class_name, b.class_id) for b in reviewed.boxes) == [
        ("car", names.index("car")),
        ("sign-012", names.index("sign-012")),
    ]
    assert reviewed.adjustment_status == "adjusted"
    by = {f["frame"]: f["labeled_by"] for f in frames if f["status"] == "labeled"}
    assert by == {
        auto.frame: "machine (auto-accepted)",
        good.frame: "people (verified)",
        split.frame: "people (adjusted)",
    }
    assert report["review"]["frames_verified"] == 1
    assert (summary["labeled"], summary["failed"]) == (3, 1)
