"""Label Studio review jobs as data, and the webhook's decisions (fakes for the token store, S3 and API)."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from workflow.adapters.labelstudio import ImageLocator
from workflow.domain.groundtruth import ImageSize, ReviewedBox, output_manifest_line, parse_output_line
from workflow.domain.labelstudio import (
    label_config,
    local_files_url,
    pending_tasks,
    review_task,
    reviewed_line,
    task_state,
)
from workflow.domain.run import resolve_review
from workflow.domain.taxonomy import Taxonomy, TaxonomyClass
from workflow.steps.review_labelstudio import SECRET_HEADER, LabelStudioAccess, on_label_studio_webhook

TAXONOMY = Taxonomy(
    classes=(TaxonomyClass(name="car", color="#FF0000"), TaxonomyClass(name="person & rider"))
)
SIZE = ImageSize(width=200, height=100)
PRE = [
    ReviewedBox(class_id=0, class_name="car", left=20, top=10, width=40, height=20, confidence=0.9),
    ReviewedBox(class_id=0, class_name="car", left=100, top=50, width=20, height=10, confidence=0.4),
]


def input_line(frame: str = "s3://b/f+1.png") -> dict[str, Any]:
    line = output_manifest_line({"source-ref": frame}, "prelabel", PRE, "pre", False, image_size=SIZE)
    line["prelabel-metadata"]["human-annotated"] = "no"
    return line


def task_of(line: dict[str, Any], task_id: int = 1) -> dict[str, Any]:
    task = review_task(line, "prelabel", "/data/local-files/?d=x", "nanodet@1", 0.4)
    return {"id": task_id, **task, "annotations": []}


def annotate(task: dict[str, Any], result: list[dict[str, Any]], cancelled: bool = False) -> dict[str, Any]:
    done = copy.deepcopy(task)
    done["annotations"].append({"id": 7, "result": result, "was_cancelled": cancelled, "updated_at": "2026"})
    return done


def read(line: dict[str, Any], task: dict[str, Any] | None) -> dict[str, Any]:
    return reviewed_line(
        line,
        task,
        label_attribute="reviewed",
        prelabel_attribute="prelabel",
        job_name="j",
        categories=["car"],
    )


def test_the_label_config_has_one_rectangle_label_per_class_in_its_colour_escaped() -> None:
    config = label_config(TAXONOMY)
    assert '<Label value="car" background="#ff0000"/>' in config
    assert 'value="person &amp; rider"' in config and "<RectangleLabels" in config


def test_a_local_file_url_encodes_the_plus_of_nuscenes_names() -> None:
    assert local_files_url("frames/n008+0800.jpg") == "/data/local-files/?d=frames/n008%2B0800.jpg"


def test_a_task_carries_the_prelabels_in_percent_with_scores_and_the_routing_score() -> None:
    task = review_task(input_line(), "prelabel", "url", "nanodet@1", 0.4)
    (prediction,) = task["predictions"]
    assert prediction["model_version"] == "nanodet@1" and prediction["score"] == 0.4
    first = prediction["result"][0]
    assert first["value"] | {"rectanglelabels": None} == {
        "x": 10.0, "y": 10.0, "width": 20.0, "height": 20.0, "rotation": 0, "rectanglelabels": None,
    }  # fmt: skip
    assert first["score"] == 0.9 and task["data"]["frame"] == "s3://b/f+1.png"


def test_a_submitted_annotation_becomes_a_human_annotated_ground_truth_output_line() -> None:
    # Given the pre-labels as a person saw them, one moved 10 % of the image to the right
    line = input_line()
    result = copy.deepcopy(task_of(line)["predictions"][0]["result"])
    result[0]["value"]["x"] += 10
    out = read(line, annotate(task_of(line), result))
    frame = parse_output_line(out, "reviewed")
    assert frame.human_annotated and frame.adjustment_status == "adjusted"
    assert [b.left for b in frame.boxes] == [40, 100]
    # and the same boxes unchanged are "unadjusted"
    unchanged = parse_output_line(
        read(line, annotate(task_of(line), task_of(line)["predictions"][0]["result"])), "reviewed"
    )
    assert unchanged.adjustment_status == "unadjusted"


def test_a_skipped_task_or_a_missing_one_is_a_failed_line_with_the_reason() -> None:
    line = input_line()
    skipped = parse_output_line(read(line, annotate(task_of(line), [], cancelled=True)), "reviewed")
    assert skipped.failed and "skipped by the reviewer" in str(skipped.failure_reason)
    assert "no Label Studio task" in str(parse_output_line(read(line, None), "reviewed").failure_reason)


def test_a_rotated_box_fails_the_frame_not_the_job() -> None:
    line = input_line()
    result = copy.deepcopy(task_of(line)["predictions"][0]["result"])
    result[0]["value"]["rotation"] = 30
    assert "rotated" in str(
        parse_output_line(read(line, annotate(task_of(line), result)), "reviewed").failure_reason
    )


def test_pending_tasks_are_those_without_a_submitted_or_skipped_annotation() -> None:
    line = input_line()
    assert pending_tasks([task_of(line, 1), annotate(task_of(line, 2), [], cancelled=True)]) == [1]


def test_the_backend_comes_from_the_run_input_else_the_profile() -> None:
    assert resolve_review("human", "label-studio") == "label-studio"
    assert resolve_review("groundtruth", "label-studio") == "groundtruth"
    assert resolve_review("none", "groundtruth") == resolve_review("human", "none") == "skip"


def test_local_files_images_map_an_s3_prefix_to_the_folder_under_the_document_root() -> None:
    images = ImageLocator("local-files", local_files="s3://in/run/=/data/frames=/data")
    assert images.url("s3://in/run/cam/a+b.jpg") == "/data/local-files/?d=frames/cam/a%2Bb.jpg"
    assert images.storages(["s3://in/run/cam/a+b.jpg"]) == [("localfiles", "/data/frames")]
    assert ImageLocator("s3-storage").storages(["s3://b/x/1.jpg", "s3://b/x/y/2.jpg"]) == [("s3", "b/x/")]


# --- the webhook, with fakes for what it talks to -------------------------------------------------
class Fakes:
    def __init__(self, tasks: list[dict[str, Any]]) -> None:
        self.tasks_ = tasks
        self.objects: dict[str, Any] = {"s3://d/job.json": JOB, JOB["manifest_uri"]: [input_line()]}
        self.status = "waiting"
        self.sent: list[dict[str, Any]] = []
        self.writes = 0
        self.listed = 0

    # token store
    def review_link(self, key: str) -> str | None:
        return "s3://d/job.json" if key == "label-studio#5" else None

    def job_waiting(self, name: str) -> bool:
        return self.status == "waiting"

    def claim_job(self, name: str) -> str | None:
        if self.status != "waiting":
            return None
        self.status = "sent"
        return "token"

    # S3
    def get_json(self, uri: str) -> Any:
        return self.objects[uri]

    def get_lines(self, uri: str) -> Any:
        return self.objects[uri]

    def put_lines(self, uri: str, lines: list[dict[str, Any]]) -> str:
        self.objects[uri], self.writes = lines, self.writes + 1
        return uri

    # API and callbacks
    def tasks(self, project_id: int) -> list[dict[str, Any]]:
        self.listed += 1
        return self.tasks_

    def project(self, project_id: int) -> dict[str, Any]:
        """The counters Label Studio keeps (measured: finished = submitted tasks, skipped = skips)."""
        states = [task_state(t) for t in self.tasks_]
        return {
            "task_number": len(self.tasks_),
            "finished_task_number": states.count("submitted"),
            "skipped_annotations_number": states.count("skipped"),
        }

    def succeed(self, token: str, output: Any) -> bool:
        self.sent.append(output)
        return True


JOB = {
    "job_name": "run-p000",
    "manifest_uri": "s3://d/in.manifest",
    "output_manifest_uri": "s3://d/out.manifest",
    "label_attribute": "reviewed",
    "prelabel_attribute": "prelabel",
    "categories": ["car"],
}
ACCESS = LabelStudioAccess("http://ls", "token", "a-shared-secret-of-32-characters")
GOOD = {SECRET_HEADER.lower(): ACCESS.webhook_secret}


def deliver(fakes: Fakes, headers: dict[str, str] = GOOD, project: int = 5) -> Any:
    body = json.dumps({"action": "ANNOTATION_CREATED", "project": {"id": project}})
    return on_label_studio_webhook(headers, body, ACCESS, fakes, fakes, fakes, fakes)  # type: ignore[arg-type]


def test_a_webhook_with_a_wrong_or_missing_secret_is_refused_before_anything_is_read() -> None:
    fakes = Fakes([])
    assert deliver(fakes, {SECRET_HEADER: "wrong"}).status_code == 403
    assert deliver(fakes, {}).status_code == 403
    assert fakes.sent == [] and fakes.writes == 0


@pytest.mark.parametrize("project", [5, 6])
def test_a_webhook_for_a_partly_annotated_or_unknown_project_resumes_nothing(project: int) -> None:
    line = input_line()
    fakes = Fakes([task_of(line, 1), task_of(line, 2)])
    fakes.tasks_[0] = annotate(fakes.tasks_[0], [])
    outcome = deliver(fakes, project=project)
    assert outcome.status_code == 200 and fakes.sent == [] and fakes.writes == 0
    assert fakes.listed == 0  # the project's counters said "not done": no task listing


def test_duplicate_webhooks_after_completion_resume_once_and_rewrite_nothing() -> None:
    # Given a project whose only task a person submitted
    line = input_line()
    fakes = Fakes([annotate(task_of(line), task_of(line)["predictions"][0]["result"])])
    # When the webhook comes three times
    outcomes = [deliver(fakes).outcome for _ in range(3)]
    # Then the run is resumed once, with the Ground Truth-format output, which is written once
    assert outcomes == ["resumed", "already resumed", "already resumed"]
    assert fakes.writes == 1 and len(fakes.sent) == 1
    assert fakes.sent[0] == {
        "job_name": "run-p000",
        "status": "Completed",
        "output_manifest_uri": "s3://d/out.manifest",
        "label_attribute": "reviewed",
        "part": None,  # CollectReview sets it
    }
