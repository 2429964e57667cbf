"""MergeBatch's segmentation label maps, workers per frame; PublishShard's scorecard and segmentation copy.

Steps run against moto's S3 (and the ledger table of template.yaml) with hand-made fused labels.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
import yaml
from fan_in_steps import job_line, merged_batch, planned, published, run_context
from moto import mock_aws
from pycocotools import mask as mask_utils

from workflow.adapters.labeling import create_labeling_job_request
from workflow.adapters.ledger import FrameLedger
from workflow.adapters.s3 import S3Store
from workflow.domain.detections import Detections, Provenance, Support
from workflow.domain.groundtruth import (
    ImageSize,
    ReviewedBox,
    boxes_from_detections,
    failed_output_line,
    output_manifest_line,
)
from workflow.domain.profile import LabelingProfile, default_profile, validate_profile
from workflow.domain.routing import RouteDecision
from workflow.domain.run import ManifestPart, ManifestResult
from workflow.domain.segmentation import read_label_map
from workflow.local.cloud import DEFAULT_TEMPLATE
from workflow.local.template import Template
from workflow.settings import Settings
from workflow.steps.manifest import batch_segmentation, painted
from workflow.steps.plan import review_workers

PROFILES = Path(__file__).resolve().parents[2] / "profiles"
W, H = 64, 48
RUN = run_context(["coco", "seg"])
SETTINGS = Settings(
    data_bucket="data",
    token_table="t",
    ledger_table="l",
    workteam_arn="arn:aws:sagemaker:us-east-1:123456789012:workteam/private-crowd/x",
    labeling_role_arn="arn:aws:iam::123456789012:role/labeling",
)


def two_models(**changes: Any) -> LabelingProfile:
    """profiles/two-models.yaml, with ``truck`` not reviewed and any taxonomy changes."""
    data: dict[str, Any] = yaml.safe_load((PROFILES / "two-models.yaml").read_text())
    for entry in data["taxonomy"]:
        entry.update(changes.get(entry["name"], {}))
    data["models"] = [
        {"name": "coco", "class_map": {"car": "car", "truck": "truck"}},
        {"name": "seg", "class_map": {"car": "car", "truck": "truck"}},
    ]
    return validate_profile(data)


def blob(x1: int, y1: int, x2: int, y2: int) -> dict[str, Any]:
    """A mask that is NOT its box: the box's left half, as a model might segment an object."""
    grid = np.zeros((H, W), np.uint8, order="F")
    grid[y1:y2, x1 : (x1 + x2) // 2] = 1
    rle = mask_utils.encode(grid)
    return {"size": [H, W], "counts": rle["counts"].decode()}


def fused_frame(
    name: str, rows: list[tuple[str, tuple[int, int, int, int], float, tuple[str, ...]]]
) -> Detections:
    """A fused label set: (class, box, score, models that saw it); a box "seg" saw carries seg's mask,
    the others a box-shaped mask (as fusion makes them)."""
    masks = []
    for _, (x1, y1, x2, y2), _, models in rows:
        if "seg" in models:
            masks.append(blob(x1, y1, x2, y2))
        else:
            grid = np.zeros((H, W), np.uint8, order="F")
            grid[y1:y2, x1:x2] = 1
            masks.append({"size": [H, W], "counts": mask_utils.encode(grid)["counts"].decode()})
    return Detections(
        boxes=np.array([r[1] for r in rows], np.float32).reshape(-1, 4),
        scores=np.array([r[2] for r in rows], np.float32),
        class_ids=np.zeros(len(rows), np.int64),
        class_names=tuple(r[0] for r in rows),
        image_width=W,
        image_height=H,
        provenance=Provenance("coco+seg", settings={"models": [{"name": "coco"}, {"name": "seg"}]}),
        frame=f"s3://drive-logs/log1/{name}.png",
        masks=tuple(masks),
        support=tuple(tuple(Support(m, r[2], mask=m == "seg") for m in r[3]) for r in rows),
    )


@pytest.fixture
def s3() -> Iterator[S3Store]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="data")
        yield S3Store(client)


@pytest.fixture
def ledger(s3: S3Store) -> FrameLedger:
    """The frame ledger table of template.yaml, in the same moto as ``s3``."""
    client = boto3.client("dynamodb", region_name="us-east-1")
    client.create_table(**Template(DEFAULT_TEMPLATE).create_table_request("LedgerTable") | {"TableName": "l"})
    return FrameLedger(client, "l")


def store(s3: S3Store, profile: LabelingProfile, frames: list[Detections]) -> None:
    """The run's profile and one merged batch of labeled frames, all routed to adjustment."""
    merged_batch(s3, RUN, profile, SETTINGS, [(d, RouteDecision(route="adjust")) for d in frames])


A = fused_frame(
    "a",
    [
        ("car", (4, 4, 20, 20), 0.9, ("coco", "seg")),  # a mask the vehicle model drew
        ("car", (30, 4, 50, 30), 0.8, ("coco",)),  # only NanoDet: a box-shaped mask
        ("truck", (10, 30, 40, 46), 0.7, ("coco", "seg")),  # drawn, but a class people do not review
    ],
)
B = fused_frame("b", [("car", (2, 2, 12, 12), 0.6, ("coco", "seg"))])
NO_DRAWN_MASK = fused_frame("c", [("car", (2, 2, 12, 12), 0.6, ("coco",))])


def test_only_drawn_masks_of_reviewed_classes_are_painted() -> None:
    # Given a fused frame: a car both models saw, a car only NanoDet saw, a truck (not reviewed)
    profile = two_models(truck={"reviewed": False})
    # Then the label map paints only the first car
    assert painted(A, profile.taxonomy).class_names == ("car",)
    assert painted(A, profile.taxonomy).boxes.tolist() == [[4, 4, 20, 20]]
    # And masks of labels no fusion touched (no support) count as drawn
    unfused = dataclasses.replace(A, support=None)
    assert len(painted(unfused, profile.taxonomy)) == 2
    # And a frame without masks paints nothing
    assert len(painted(Detections.empty(W, H, Provenance("m")), profile.taxonomy)) == 0


def test_merge_batch_writes_label_maps_of_the_drawn_masks(s3: S3Store) -> None:
    # Given three frames: two with drawn masks, one whose only mask is box-shaped
    profile = two_models(truck={"reviewed": False})
    # When MergeBatch makes the batch's label maps
    found, errors = batch_segmentation(RUN, profile, SETTINGS, s3, [A, B, NO_DRAWN_MASK])
    # Then two frames have a label map, each a segmentation manifest line under the -seg-ref attribute
    assert errors == []
    lines = {line["source-ref"]: line for line in found}
    assert sorted(lines) == [A.frame, B.frame]
    assert all(line["prelabel-seg-ref"].startswith("s3://data/runs/run-1/segmentation/") for line in found)
    assert len(list(s3.list_objects("s3://data/runs/run-1/segmentation/"))) == 2
    # And the colour map holds the reviewed classes only (truck is not reviewed)
    colours = lines[A.frame]["prelabel-seg-ref-metadata"]["internal-color-map"]
    assert "truck" not in {c["class-name"] for c in colours.values()}
    # And frame a's PNG holds the first car's drawn mask, nothing of the box-shaped car or the truck
    png = s3.get_bytes(lines[A.frame]["prelabel-seg-ref"])
    expected = np.zeros((H, W), np.uint8)
    expected[4:20, 4:12] = profile.taxonomy.reviewed_names.index("car") + 1
    assert np.array_equal(read_label_map(png, colours), expected)


def test_a_taxonomy_without_distinct_colours_writes_no_label_map_and_says_why(s3: S3Store) -> None:
    # Given a profile whose car and bus share a colour
    profile = two_models(bus={"color": "#2acf59"})
    # When MergeBatch makes the batch's label maps, Then it writes none, and names the problem
    found, errors = batch_segmentation(RUN, profile, SETTINGS, s3, [A])
    assert found == []
    (error,) = errors
    assert error.startswith("1 frames with masks got no label map") and "share the colour #2acf59" in error
    assert not list(s3.list_objects("s3://data/runs/run-1/segmentation/"))
    # And the batch's labels carry the reason (PublishShard and FinishRun report it)
    labels = merged_batch(s3, RUN, profile, SETTINGS, [(A, RouteDecision(route="auto"))])
    assert labels.segmentation == [] and labels.segmentation_errors == [error]


def test_labeling_jobs_take_the_profiles_workers_per_frame() -> None:
    # Given a run whose profile asks for 3 workers per frame, and a deployment set to 2
    settings = SETTINGS.model_copy(update={"workers_per_frame": 2})
    # Then PlanReview passes the profile's number, except for the built-in default profile
    assert review_workers(two_models(), settings) == 3
    assert review_workers(default_profile(), settings) == 2
    # And the labeling job asks for the manifest's number, or the setting's for a manifest without one
    manifest = ManifestResult(
        parts=[],
        frames_to_review=1,
        label_categories_uri="s3://data/c.json",
        ui_template_uri="s3://data/t.html",
        prelabel_attribute="prelabel",
        categories=["car"],
    )
    part = {"index": 0, "manifest_uri": "s3://data/i.manifest", "frames": 1}

    def workers(m: ManifestResult) -> int:
        request = create_labeling_job_request(RUN, ManifestPart(**part), m, settings)
        return int(request["HumanTaskConfig"]["NumberOfHumanWorkersPerDataObject"])

    assert workers(manifest.model_copy(update={"workers_per_frame": 5})) == 5
    assert workers(manifest) == 2


def test_publish_scores_the_review_per_model_and_copies_segmentation_of_published_frames(
    s3: S3Store, ledger: FrameLedger
) -> None:
    # Given frames a and b built into review jobs, with their segmentation labels
    profile = two_models(truck={"reviewed": False})
    store(s3, profile, [A, B])
    manifest = planned(s3, RUN, SETTINGS)
    for frame in (A, B):
        ledger.claim(frame.frame, "run-1", False)
    # And the review: on frame a the person keeps the first car, deletes NanoDet's car and draws a
    # new one; frame b fails in Ground Truth
    shown = boxes_from_detections(A.select(np.array([0, 1])), profile.taxonomy.reviewed_names)
    drawn = ReviewedBox(class_id=0, class_name="car", left=40, top=36, width=10, height=10)
    size = ImageSize(width=W, height=H)
    lines = [
        output_manifest_line(
            job_line({"source-ref": A.frame}),
            "reviewed",
            [shown[0], drawn],
            "run-1-p000",
            True,
            image_size=size,
        ),
        failed_output_line(
            job_line({"source-ref": B.frame}), "reviewed", "ClientError: worker timeout", "run-1-p000"
        ),
    ]
    # When CollectReview, PublishShard and FinishRun run
    summary = published(s3, RUN, manifest, {0: lines}, SETTINGS, ledger)
    report = s3.get_json(summary["outputs"]["report"])
    # Then the scorecard counts the shown pre-labels (the truck is not shown) per class and per model
    card = s3.get_json(summary["outputs"]["scorecard"])
    assert report["scorecard"] == card and card["frames"] == 1
    pick = ("prelabels", "kept", "moved", "deleted", "added")
    assert {k: card["by_class"]["car"][k] for k in pick} == dict(zip(pick, (2, 1, 0, 1, 1), strict=True))
    assert {k: card["by_model"]["coco"][k] for k in pick} == dict(zip(pick, (2, 1, 0, 1, 1), strict=True))
    assert {k: card["by_model"]["seg"][k] for k in pick} == dict(zip(pick, (1, 1, 0, 0, 1), strict=True))
    # And the shard's segmentation manifest leaves out frame b, which failed in review
    (uri,) = report["segmentation"]["manifests"]
    assert uri == "s3://data/runs/run-1/dataset/segmentation-00000.manifest"
    lines = {line["source-ref"]: line for line in s3.get_lines(uri)}
    assert list(lines) == [A.frame]
    assert report["segmentation"]["frames"] == 1
    assert s3.exists(lines[A.frame]["prelabel-seg-ref"])
    # And the run's failure of frame b is people's, with Ground Truth's reason
    (failure,) = report["failures"]
    assert failure["examples"] == [B.frame] and "worker timeout" in failure["reason"]
