"""People review in a real local Label Studio: the run waits, the webhook resumes it, Publish counts it.

The Label Studio server (``.venv-labelstudio``, ``make label-studio``) runs on 127.0.0.1 with its
data in a temporary workspace. The test plays the reviewers through Label Studio's REST API (the
browser test in ``tests/e2e`` does it through the labeling page): it annotates one task of two,
then both, moving one pre-label, deleting one and adding one. The browser test does the same on
the labeling page, driven by Playwright on Debian's chromium (``apt-get install chromium``), and
saves a screenshot of the page with the pre-labels (AUTOLABEL_SCREENSHOT_DIR to keep it).
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from published import joined

from workflow.adapters.labelstudio import LabelStudioClient
from workflow.local.endpoint import Predictor
from workflow.local.labelstudio_server import VENV, LocalLabelStudio
from workflow.local.runner import LocalModel, RunOutcome, run_local

pytestmark = pytest.mark.slow
FRAMES = ("000000.png", "000008.png")


@pytest.fixture(scope="module")
def frames(shared_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("frames")
    for name in FRAMES:
        shutil.copy(shared_dir / "data" / "kitti_object" / "image_2" / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def studio(frames: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalLabelStudio]:
    if not (VENV / ".installed").exists():
        pytest.skip("Label Studio is not installed: run `make label-studio` (builds .venv-labelstudio)")
    server = LocalLabelStudio(tmp_path_factory.mktemp("label-studio"), frames.parent)
    server.start()
    yield server
    server.stop()


class Run:
    """A local run in a background thread (it blocks until people finish)."""

    def __init__(self, target: Callable[[], RunOutcome]) -> None:
        self.outcome: RunOutcome | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(target,), daemon=True)
        self.thread.start()

    def _run(self, target: Callable[[], RunOutcome]) -> None:
        try:
            self.outcome = target()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 180) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)
    return value


def projects(out: Path) -> list[dict[str, Any]]:
    path = out / "review" / "label-studio.json"
    return json.loads(path.read_text())["projects"] if path.exists() else []


def region(task: dict[str, Any]) -> list[dict[str, Any]]:
    return copy.deepcopy(task["predictions"][0]["result"])


def submit(client: LabelStudioClient, task: dict[str, Any], result: list[dict[str, Any]]) -> None:
    client.request("POST", f"/api/tasks/{task['id']}/annotations/", {"result": result})


def post_webhook(url: str, headers: dict[str, str], body: dict[str, Any]) -> int:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json", **headers}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def test_people_review_in_label_studio_and_the_run_publishes_their_boxes(
    studio: LocalLabelStudio, frames: Path, detector_factory: Callable[[], Predictor], tmp_path: Path
) -> None:
    # Given a run over two KITTI frames reviewed in the local Label Studio
    out = tmp_path / "out"
    token = studio.credentials["token"]
    run = Run(
        lambda: run_local(
            frames,
            out,
            [LocalModel(name="nanodet-coco", factory=detector_factory)],
            review="label-studio",
            label_studio_url=studio.url,
            label_studio_api_key=token,
            overlays=False,
            timeout_s=600,
        )
    )
    (project,) = wait_for(lambda: projects(out), "the review project")
    client = LabelStudioClient(studio.url, token)
    tasks = {Path(t["data"]["frame"]).name: t for t in client.tasks(project["project_id"])}

    # Then the project has one task per frame, the pre-labels as predictions; the connection file is private
    assert sorted(tasks) == sorted(FRAMES)
    busy = tasks["000008.png"]
    assert len(busy["predictions"][0]["result"]) >= 2, "KITTI 000008 should carry several pre-labels"
    prediction = busy["predictions"][0]
    assert "nanodet-coco" in prediction["model_version"]
    assert all(0 < r["score"] <= 1 for r in prediction["result"])
    assert (out / "review" / "label-studio.json").stat().st_mode & 0o777 == 0o600
    config = client.project(project["project_id"])["label_config"]
    assert "<RectangleLabels" in config and 'background="#' in config

    # When a webhook comes with a wrong secret, Then it is refused
    (hook,) = client.webhooks(project["project_id"])
    assert (
        post_webhook(
            hook["url"], {"X-Autolabel-Webhook-Secret": "wrong"}, {"project": {"id": project["project_id"]}}
        )
        == 403
    )

    # When one task of two is annotated (the person moves one box and deletes another)
    moved = region(busy)
    moved[0]["value"]["x"] += 0.2 * moved[0]["value"]["width"]
    del moved[-1]
    submit(client, busy, moved)
    time.sleep(3)
    # and the same webhook is delivered again, out of order (a hint: the API says one task is pending)
    assert (
        post_webhook(
            hook["url"],
            hook["headers"],
            {"action": "ANNOTATION_CREATED", "project": {"id": project["project_id"]}},
        )
        == 200
    )
    # Then the run keeps waiting
    assert run.thread.is_alive() and run.outcome is None

    # When the other task is annotated too (the person adds a box)
    other = tasks["000000.png"]
    added = region(other) + [
        {
            "id": "added0",
            "from_name": "label",
            "to_name": "image",
            "type": "rectanglelabels",
            "original_width": other["data"]["width"],
            "original_height": other["data"]["height"],
            "value": {
                "x": 5,
                "y": 40,
                "width": 6,
                "height": 12,
                "rotation": 0,
                "rectanglelabels": ["pedestrian"],
            },
        }
    ]
    submit(client, other, added)
    run.thread.join(300)

    # Then the webhook resumed the run and it published the people's boxes
    assert run.error is None and run.outcome is not None, run.error
    assert run.outcome.status == "SUCCEEDED", run.outcome.error
    lines = [json.loads(raw) for raw in (out / "output.manifest").read_text().splitlines()]
    assert len(lines) == 2 and all(line["reviewed-metadata"]["human-annotated"] == "yes" for line in lines)
    assert {line["reviewed-metadata"]["adjustment-status"] for line in lines} == {"adjusted"}
    card = json.loads((out / "scorecard.json").read_text())["total"]
    assert (card["moved"], card["deleted"], card["added"]) == (1, 1, 1)
    frames = [json.loads(line) for line in (out / "report-frames.jsonl").read_text().splitlines()]
    assert {f["labeled_by"] for f in frames} == {"people (adjusted)"}


# --- the browser test: a person on the labeling page (Playwright, Debian's chromium) ---------------
CHROMIUM = Path("/usr/bin/chromium")


def browser() -> Any:
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is missing: apt-get install chromium (the browser test drives it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install playwright==1.65.2")
    return sync_playwright()


def canvas_point(page: Any, value: dict[str, float], dx: float = 0.5, dy: float = 0.5) -> tuple[float, float]:
    """Screen coordinates of a point of a region (fractions of its box) on the labeling canvas."""
    box = page.locator("canvas").first.bounding_box()
    x = box["x"] + box["width"] * (value["x"] + dx * value["width"]) / 100
    y = box["y"] + box["height"] * (value["y"] + dy * value["height"]) / 100
    return x, y


def drag(page: Any, start: tuple[float, float], end: tuple[float, float]) -> None:
    page.mouse.move(*start)
    page.mouse.down()
    page.mouse.move((start[0] + end[0]) / 2, (start[1] + end[1]) / 2, steps=5)
    page.mouse.move(*end, steps=5)
    page.mouse.up()
    page.wait_for_timeout(500)


def test_a_person_moves_deletes_and_adds_a_box_in_the_browser_and_the_scorecard_counts_it(
    studio: LocalLabelStudio, frames: Path, detector_factory: Callable[[], Predictor], tmp_path: Path
) -> None:
    with browser() as pw:
        # Given a run over two KITTI frames waiting for people in the local Label Studio
        out = tmp_path / "out"
        token = studio.credentials["token"]
        run = Run(
            lambda: run_local(
                frames,
                out,
                [LocalModel(name="nanodet-coco", factory=detector_factory)],
                review="label-studio",
                label_studio_url=studio.url,
                label_studio_api_key=token,
                overlays=False,
                timeout_s=600,
            )
        )
        (project,) = wait_for(lambda: projects(out), "the review project")
        client = LabelStudioClient(studio.url, token)
        tasks = {Path(t["data"]["frame"]).name: t for t in client.tasks(project["project_id"])}
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = chromium.new_page(viewport={"width": 1400, "height": 900})
        page.goto(studio.url + "/user/login/")
        page.fill("input[name=email]", studio.credentials["username"])
        page.fill("input[name=password]", studio.credentials["password"])
        page.keyboard.press("Enter")
        page.wait_for_load_state("networkidle")

        def open_task(name: str) -> list[dict[str, Any]]:
            page.goto(f"{studio.url}/projects/{project['project_id']}/data?tab=0&task={tasks[name]['id']}")
            page.get_by_role("button", name="Submit").wait_for()
            page.wait_for_timeout(3000)
            return [r["value"] for r in tasks[name]["predictions"][0]["result"]]

        # When the person opens the busy frame, drags its first box right and deletes its last one
        regions = open_task("000008.png")
        assert len(regions) >= 2
        shots = Path(os.environ.get("AUTOLABEL_SCREENSHOT_DIR", tmp_path))
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(shots / "label-studio-prelabels.png"))
        first = regions[0]
        start = canvas_point(page, first)
        page.mouse.click(*start)
        end = (
            start[0] + 0.3 * first["width"] / 100 * page.locator("canvas").first.bounding_box()["width"],
            start[1],
        )
        drag(page, start, end)
        page.keyboard.press("Escape")
        page.mouse.click(*canvas_point(page, regions[-1]))
        page.keyboard.press("Backspace")
        page.wait_for_timeout(500)
        page.get_by_role("button", name="Submit").click()
        page.wait_for_timeout(2000)

        # and on the other frame adds a car box where there was none, and submits
        open_task("000000.png")
        page.keyboard.press("1")
        empty = {"x": 2, "y": 5, "width": 6, "height": 15}
        drag(page, canvas_point(page, empty, 0, 0), canvas_point(page, empty, 1, 1))
        page.get_by_role("button", name="Submit").click()
        page.wait_for_timeout(2000)
        chromium.close()

        # Then the run resumes and the scorecard counts exactly one moved, one deleted, one added
        run.thread.join(300)
        assert run.error is None and run.outcome is not None, run.error
        assert run.outcome.status == "SUCCEEDED", run.outcome.error
        card = json.loads((out / "scorecard.json").read_text())["total"]
        assert (card["moved"], card["deleted"], card["added"]) == (1, 1, 1), card
        assert sorted(Path(t["data"]["frame"]).name for t in client.tasks(project["project_id"])) == sorted(
            FRAMES
        )
        assert (shots / "label-studio-prelabels.png").stat().st_size > 10_000
        shutil.copy(shots / "label-studio-prelabels.png", tmp_path / "kept.png")


def test_a_label_studio_that_goes_away_ends_the_wait_with_a_clear_reason_and_every_frame_reported(
    studio: LocalLabelStudio,
    frames: Path,
    detector_factory: Callable[[], Predictor],
    local_cloud: Callable[..., Any],
) -> None:
    # Given a run reviewed in Label Studio with the shortest review timeout (60 s)
    cloud = local_cloud(
        {"autolabel-nanodet-coco": detector_factory},
        parameters={"LabelStudioUrl": studio.url, "LabelStudioImages": "local-files"},
    )
    logs = "drive-logs"
    cloud.s3.create_bucket(Bucket=logs)
    for name in FRAMES:
        cloud.s3.put_object(Bucket=logs, Key=f"gone/{name}", Body=(frames / name).read_bytes())
    cloud.set_environment(
        {
            "LABEL_STUDIO_API_KEY": studio.credentials["token"],
            "LABEL_STUDIO_WEBHOOK_SECRET": "s" * 32,
            "LABEL_STUDIO_LOCAL_FILES": f"s3://{logs}/gone/={frames}={frames.parent}",
        }
    )
    request = {"sources": [f"s3://{logs}/gone/"], "review": "label-studio", "review_timeout_seconds": 60}
    arn = cloud.start_run(request, name="gone")
    read = lambda key: json.loads(cloud.s3.get_object(Bucket=cloud.data_bucket, Key=key)["Body"].read())  # noqa: E731
    listed = lambda: cloud.s3.list_objects_v2(  # noqa: E731
        Bucket=cloud.data_bucket, Prefix="runs/gone/review/label-studio/"
    ).get("Contents")
    (entry,) = wait_for(listed, "the review project")
    project_id = read(entry["Key"])["project_id"]
    client = LabelStudioClient(studio.url, studio.credentials["token"])
    wait_for(lambda: client.webhooks(project_id), "the webhook")

    # When the Label Studio server goes away before anybody reviewed
    studio.stop()
    described = cloud.wait(arn, timeout=300)

    # Then the wait ends at the review timeout with a reason that says so, and every frame is in the report
    assert described["status"] == "SUCCEEDED"
    assert json.loads(described["output"])["review"] == "failed"
    review = read("runs/gone/dataset/stats.json")["review"]
    assert "ReviewTimedOut" in json.dumps(review) and "review_timeout_seconds" in json.dumps(review)
    report, _ = joined(cloud.s3, json.loads(described["output"]))
    assert sorted(Path(f["frame"]).name for f in report["frames"]) == sorted(FRAMES)
    # (frames routed to people whose review did not finish are failed with that reason, not published
    # as machine labels: the next run sends them to people again)
    assert all(f["status"] == "failed" and "ReviewTimedOut" in f["reason"] for f in report["frames"])
