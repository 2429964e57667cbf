"""Verification jobs end to end in local mode: frames routed to ``verify`` go to a Ground Truth
bounding-box verification job, and the published dataset takes the verdicts.

The REAL state machine runs with the local NanoDet endpoint on three KITTI frames and a profile
whose routing auto-accepts confident frames, sends agreeing frames scoring >= ``verify_score`` to
a verification job and the rest to an adjustment job. The local labeling service plays both jobs:
in ``auto`` mode its reviewer accepts; in ``wait`` mode a person rejects a frame's labels.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from published import joined

from workflow.domain.groundtruth import dumps_manifest, loads_manifest, parse_output_line
from workflow.domain.profile import default_profile
from workflow.domain.routing import RouteDecision
from workflow.domain.verification import (
    VERDICT_CORRECT,
    VERDICT_INCORRECT,
    VERIFICATION_TYPE,
    verification_categories,
    verification_verdict,
)
from workflow.local.cloud import LocalCloud
from workflow.local.endpoint import Predictor

pytestmark = pytest.mark.slow

LOGS = "drive-logs"
PRELABEL, REVIEWED = "prelabel", "reviewed"  # Settings' default label attributes
VERIFY_LAMBDA = "arn:aws:lambda:us-east-1:432418664414:function:PRE-VerificationBoundingBox"
# NanoDet on these KITTI frames (measured): 000000 one pedestrian at 0.80, 000007 one car at 0.51,
# 000008 nine cars scoring 0.31 to 0.76. With this routing: auto, verify and adjust.
ROUTES = {"000000.png": "auto", "000007.png": "verify", "000008.png": "adjust"}
ROUTING = {
    "enabled": True,
    "accept_score": 0.7,
    "verify_score": 0.4,
    "min_boxes": 1,
    "audit_rate": 0.0,
}


def run_three_kitti_frames(cloud: LocalCloud, shared_dir: Path, prefix: str) -> str:
    """Upload the frames and start a human-review run with the routing profile; returns its ARN."""
    cloud.s3.create_bucket(Bucket=LOGS)
    for name in ROUTES:
        body = (shared_dir / "data" / "kitti_object" / "image_2" / name).read_bytes()
        cloud.s3.put_object(Bucket=LOGS, Key=f"{prefix}/{name}", Body=body)
    profile = default_profile().to_dict() | {"name": "verify-routing", "routing": ROUTING}
    return cloud.start_run(
        {"sources": [f"s3://{LOGS}/{prefix}/"], "profile": profile, "batch_size": 3, "review": "human"}
    )


def read(cloud: LocalCloud, uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bytes(cloud.s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def read_lines(cloud: LocalCloud, uri: str) -> list[dict[str, Any]]:
    return loads_manifest(read(cloud, uri).decode())


def routes_of_the_run(cloud: LocalCloud, run_id: str) -> dict[str, str]:
    """The route MergeBatch gave each frame, by file name."""
    listed = cloud.s3.list_objects_v2(Bucket=cloud.data_bucket, Prefix=f"runs/{run_id}/labels/")
    routes = {}
    for obj in listed["Contents"]:
        batch = json.loads(read(cloud, f"s3://{cloud.data_bucket}/{obj['Key']}"))
        for frame in batch["frames"]:
            routes[frame["frame"].rsplit("/", 1)[-1]] = RouteDecision.model_validate(frame["route"]).route
    return routes


def jobs_of_the_run(cloud: LocalCloud, summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """DescribeLabelingJob of each job the run reviewed with, by task (adjust or verify)."""
    stats = json.loads(read(cloud, summary["outputs"]["stats"]))
    described = [
        cloud.sagemaker.describe_labeling_job(LabelingJobName=name) for name in stats["review"]["jobs"]
    ]
    return {
        "verify" if d["HumanTaskConfig"]["PreHumanTaskLambdaArn"] == VERIFY_LAMBDA else "adjust": d
        for d in described
    }


def test_auto_review_verifies_the_frames_routed_to_verification(
    local_cloud: Callable[..., LocalCloud], detector_factory: Callable[[], Predictor], shared_dir: Path
) -> None:
    # Given a local cloud whose labeling service is the stand-in that accepts (simulate: no person),
    # and a profile routing frames to verification
    cloud = local_cloud({"autolabel-nanodet-coco": detector_factory})
    # When a human-review run labels three KITTI frames
    arn = run_three_kitti_frames(cloud, shared_dir, "verify-auto")
    described = cloud.wait(arn, timeout=120)
    # Then it succeeds and labels every frame, one per route
    assert described["status"] == "SUCCEEDED", (described.get("error"), described.get("cause"))
    report, summary = joined(cloud.s3, json.loads(described["output"]))
    assert (summary["labeled"], summary["failed"], summary["review"]) == (
        3,
        0,
        "simulated (no person reviewed)",
    )
    assert routes_of_the_run(cloud, summary["run_id"]) == ROUTES
    # And the verify frame went to a Ground Truth verification job with the verdicts as categories,
    # the adjust frame to an adjustment job
    jobs = jobs_of_the_run(cloud, summary)
    assert set(jobs) == {"adjust", "verify"}
    verify = jobs["verify"]
    assert verify["LabelingJobStatus"] == "Completed"
    assert json.loads(read(cloud, verify["LabelCategoryConfigS3Uri"])) == verification_categories()
    inputs = read_lines(cloud, verify["InputConfig"]["DataSource"]["S3DataSource"]["ManifestS3Uri"])
    assert [line["source-ref"] for line in inputs] == [f"s3://{LOGS}/verify-auto/000007.png"]
    # And its output is Ground Truth's verification format, which the workflow's parser reads
    (output,) = read_lines(cloud, verify["LabelingJobOutput"]["OutputDatasetS3Uri"])
    assert output[REVIEWED] == "0" and output[f"{REVIEWED}-metadata"]["type"] == VERIFICATION_TYPE
    assert verification_verdict(output, REVIEWED) == (True, VERDICT_CORRECT)
    # And the published dataset marks the frames the stand-in judged as simulated, never as people's
    by = {f["frame"].rsplit("/", 1)[-1]: f["labeled_by"] for f in report["frames"]}
    assert by == {
        "000000.png": "machine (auto-accepted)",
        "000007.png": "machine (simulated review, no person)",
        "000008.png": "machine (simulated review, no person)",
    }
    # (a stand-in's verdict is counted apart: no person verified the frame)
    assert (report["review"]["frames_verified"], report["review"]["frames_simulated"]) == (0, 2)
    published = {
        line["source-ref"].rsplit("/", 1)[-1]: line
        for line in read_lines(cloud, summary["outputs"]["output_manifest"])
    }
    verified = published["000007.png"]
    # (published as the job's output line: the machine pre-labels plus the stand-in's verdict)
    assert verified[f"{PRELABEL}-metadata"]["human-annotated"] == "no"
    assert verification_verdict(verified, REVIEWED) == (True, VERDICT_CORRECT)
    assert parse_output_line(verified, PRELABEL).boxes == parse_output_line(inputs[0], PRELABEL).boxes


def test_a_person_rejecting_a_verification_fails_that_frame_only(
    local_cloud: Callable[..., LocalCloud],
    detector_factory: Callable[[], Predictor],
    shared_dir: Path,
    tmp_path: Path,
) -> None:
    # Given a local cloud whose labeling service waits for a person, and the same routing
    cloud = local_cloud({"autolabel-nanodet-coco": detector_factory}, review_mode="wait", review_dir=tmp_path)
    arn = run_three_kitti_frames(cloud, shared_dir, "verify-wait")
    answered: dict[str, list[dict[str, Any]]] = {}

    def person() -> None:
        """Saves each draft as it appears: adjustments unchanged, verifications rejected with a comment."""
        for draft in tmp_path.glob("*.draft.manifest"):
            job = draft.name.removesuffix(".draft.manifest")
            if job in answered:
                continue
            lines = loads_manifest(draft.read_text())
            for line in lines:
                meta = line[f"{REVIEWED}-metadata"]
                if meta.get("type") == VERIFICATION_TYPE:
                    meta |= {
                        "class-name": VERDICT_INCORRECT,
                        "worker-feedback": [{"comment": "the parked car on the right has no box"}],
                    }
            (tmp_path / f"{job}.manifest").write_text(dumps_manifest(lines))
            answered[job] = lines

    # When the person answers both jobs
    described = cloud.wait(arn, timeout=120, on_poll=person)
    # Then the run succeeds after both jobs, one of them a verification job
    assert described["status"] == "SUCCEEDED", (described.get("error"), described.get("cause"))
    assert len(answered) == 2
    verdicts = [verification_verdict(line, REVIEWED) for lines in answered.values() for line in lines]
    assert (False, VERDICT_INCORRECT) in verdicts
    # And the rejected frame is failed with the verdict as its reason, and left out of the dataset
    report, summary = joined(cloud.s3, json.loads(described["output"]))
    assert (summary["labeled"], summary["failed"]) == (2, 1)
    (failed,) = [f for f in report["frames"] if f["status"] == "failed"]
    assert failed["frame"] == f"s3://{LOGS}/verify-wait/000007.png"
    assert failed["reason"] == (
        f"verification: people judged the labels wrong ({VERDICT_INCORRECT}); "
        "the next run that claims it sends it to an adjustment job"
        "; reviewers said: the parked car on the right has no box"
    )
    published = {
        line["source-ref"].rsplit("/", 1)[-1]
        for line in read_lines(cloud, summary["outputs"]["output_manifest"])
    }
    assert published == {"000000.png", "000008.png"}
    assert report["review"]["frames_verified"] == 0
    # And the verification job's output holds the person's verdict and comment as Ground Truth writes them
    verify = jobs_of_the_run(cloud, summary)["verify"]
    (output,) = read_lines(cloud, verify["LabelingJobOutput"]["OutputDatasetS3Uri"])
    assert output[REVIEWED] == "1"
    assert output[f"{REVIEWED}-metadata"]["worker-feedback"] == [
        {"comment": "the parked car on the right has no box"}
    ]
    # When the next run over the same prefix starts (a person answers its job unchanged)
    answered.clear()
    for draft in tmp_path.glob("*.manifest"):
        draft.unlink()
    second = cloud.start_run(
        {
            "sources": [f"s3://{LOGS}/verify-wait/"],
            "profile": default_profile().to_dict() | {"name": "verify-routing", "routing": ROUTING},
            "batch_size": 3,
            "review": "human",
        }
    )
    described = cloud.wait(second, timeout=120, on_poll=person)
    # Then it labels only the rejected frame, and sends it to an adjustment job, not to verification again
    assert described["status"] == "SUCCEEDED", (described.get("error"), described.get("cause"))
    again = json.loads(described["output"])
    assert (again["labeled"], again["failed"], again["skipped"]) == (1, 0, 2)
    assert routes_of_the_run(cloud, again["run_id"]) == {"000007.png": "adjust"}
    assert set(jobs_of_the_run(cloud, again)) == {"adjust"}
