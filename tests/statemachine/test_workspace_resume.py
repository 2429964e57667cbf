"""A local run killed with SIGKILL mid-run, resumed from its workspace, accounts for every frame once.

The first run goes in a subprocess that is killed once some of its batches have committed (their
``counts/`` records are on disk in the workspace). ``resume`` then starts the execution again with the
same run id and request: only the batches without a commit record are inferred again, and the report
names every frame exactly once. A later run of the same folder labels nothing new.

The model is a stand-in that returns fixed boxes (these tests are about state and resume, not the
detector); it sleeps a little per frame so the kill lands mid-run.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from workflow.domain.detections import Detections, Provenance
from workflow.local.runner import LocalModel, run_local
from workflow.local.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]
FRAMES = 24
BATCH = 2
RUN_ID = "local-killed-run"

MODEL = """
import time
import numpy as np
from workflow.domain.detections import Detections, Provenance

class Fixed:
    def __init__(self, delay=0.0):
        self.delay, self.frames = delay, []

    def predict_bytes(self, data, frame):
        time.sleep(self.delay)
        self.frames.append(frame)
        return Detections(
            boxes=np.array([[10, 10, 60, 50]], np.float32), scores=np.array([0.9], np.float32),
            class_ids=np.array([2], np.int64), class_names=("car",), image_width=64, image_height=48,
            provenance=Provenance(model="nanodet-coco", version="stand-in"), frame=frame,
        )
"""


class Fixed:
    """The same stand-in, in this process: it remembers which frames it was asked to label."""

    def __init__(self) -> None:
        self.frames: list[str] = []

    def predict_bytes(self, data: bytes, frame: str) -> Detections:
        self.frames.append(frame)
        return Detections(
            boxes=np.array([[10, 10, 60, 50]], np.float32),
            scores=np.array([0.9], np.float32),
            class_ids=np.array([2], np.int64),
            class_names=("car",),
            image_width=64,
            image_height=48,
            provenance=Provenance(model="nanodet-coco", version="stand-in"),
            frame=frame,
        )


def frames_folder(path: Path) -> Path:
    path.mkdir()
    for i in range(FRAMES):
        buf = io.BytesIO()
        Image.new("RGB", (64, 48), (i * 10 % 255, 90, 90)).save(buf, "JPEG")
        (path / f"{i:03d}.jpg").write_bytes(buf.getvalue())
    return path


def label_locally(
    folder: Path, out: Path, workspace: Workspace, **options: Any
) -> tuple[Fixed, Any, list[dict[str, Any]]]:
    """One local run of ``folder`` in this process with a fresh stand-in model, review skipped; it
    must succeed. Returns the model (which frames it was asked for), the outcome and the report's
    frame lines."""
    model = Fixed()
    outcome = run_local(
        str(folder),
        out,
        [LocalModel("nanodet-coco", lambda: model)],
        review="skip",
        overlays=False,
        workspace=workspace,
        **options,
    )
    assert outcome.status == "SUCCEEDED", outcome.error
    lines = [json.loads(x) for x in (out / "report-frames.jsonl").read_text().splitlines()]
    return model, outcome, lines


def committed(workspace: Path) -> list[Path]:
    """The batches' commit records the killed run left in the workspace."""
    return sorted((workspace / "s3").glob(f"*/runs/{RUN_ID}/counts/*.json"))


def test_a_run_killed_mid_run_resumes_and_labels_every_frame_exactly_once(tmp_path: Path) -> None:
    folder = frames_folder(tmp_path / "frames")
    workspace = tmp_path / "workspace"
    script = tmp_path / "first_run.py"
    script.write_text(
        MODEL
        + textwrap.dedent(f"""
        from pathlib import Path
        from workflow.local.runner import LocalModel, run_local
        from workflow.local.workspace import Workspace

        run_local(
            {str(folder)!r}, Path({str(tmp_path / "out1")!r}),
            [LocalModel("nanodet-coco", lambda: Fixed(delay=0.4))],
            review="skip", batch_size={BATCH}, max_concurrency=2, overlays=False,
            workspace=Workspace({str(workspace)!r}), run_id={RUN_ID!r}, command=["run", {str(folder)!r}],
        )
        """)
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # Given a local run that has committed some of its batches
    first = subprocess.Popen([sys.executable, str(script)], env=env, cwd=ROOT)
    deadline = time.monotonic() + 240
    while len(committed(workspace)) < 2 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    # When its process is killed (no handler, no cleanup)
    first.send_signal(signal.SIGKILL)
    assert first.wait(timeout=30) == -signal.SIGKILL
    done_before = sum(json.loads(p.read_text())["frames"] for p in committed(workspace))
    assert 0 < done_before < FRAMES, "the kill should land mid-run"
    record = Workspace(workspace).run(RUN_ID)
    assert record is not None and record["status"] == "interrupted"

    # And the run is resumed with the same run id and request
    model, outcome, lines = label_locally(
        folder, tmp_path / "out2", Workspace(workspace), run_id=RUN_ID, request=record["request"]
    )

    # Then it succeeds, and its report names every frame exactly once, labeled
    names = sorted(line["frame"] for line in lines)
    assert names == [f"{i:03d}.jpg" for i in range(FRAMES)]
    assert {line["status"] for line in lines} == {"labeled"}
    assert outcome.summary["labeled"] == FRAMES and outcome.summary["failed"] == 0
    # And only the frames of batches without a commit record were inferred again
    assert len(model.frames) == FRAMES - done_before
    assert len(set(model.frames)) == len(model.frames)
    coco = json.loads((tmp_path / "out2" / "coco.json").read_text())
    assert sorted(i["file_name"] for i in coco["images"]) == names
    assert Workspace(workspace).run(RUN_ID)["status"] == "succeeded"  # type: ignore[index]

    # And a new run of the same folder labels nothing: every frame is already labeled
    again, third, _ = label_locally(folder, tmp_path / "out3", Workspace(workspace))
    assert third.summary["labeled"] == 0 and third.already_labeled == FRAMES
    assert again.frames == []


def test_ctrl_c_stops_cleanly_with_a_partial_report_and_the_run_resumes(tmp_path: Path) -> None:
    folder = frames_folder(tmp_path / "frames")
    workspace = tmp_path / "workspace"
    script = tmp_path / "first_run.py"
    script.write_text(
        MODEL
        + textwrap.dedent(f"""
        import json
        from pathlib import Path
        from workflow.local.runner import LocalModel, run_local
        from workflow.local.workspace import Workspace

        outcome = run_local(
            {str(folder)!r}, Path({str(tmp_path / "out1")!r}),
            [LocalModel("nanodet-coco", lambda: Fixed(delay=0.4))],
            review="skip", batch_size={BATCH}, max_concurrency=2, overlays=False,
            workspace=Workspace({str(workspace)!r}), run_id={RUN_ID!r}, command=["run", {str(folder)!r}],
        )
        print(json.dumps({{"interrupted": outcome.interrupted, "status": outcome.status}}))
        """)
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.Popen(
        [sys.executable, str(script)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while len(committed(workspace)) < 2 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    # When the run gets Ctrl-C
    first.send_signal(signal.SIGINT)
    stdout, stderr = first.communicate(timeout=120)
    # Then it stops without a traceback, says it was interrupted, and leaves a partial report
    assert first.returncode == 0, stderr[-2000:]
    assert "Traceback" not in stderr
    assert json.loads(stdout.strip().splitlines()[-1]) == {"interrupted": True, "status": "ABORTED"}
    report = json.loads((tmp_path / "out1" / "report.json").read_text())
    assert report["status"] == "ABORTED" and 0 < report["labeled"] < FRAMES
    record = Workspace(workspace).run(RUN_ID)
    assert record is not None and record["status"] == "interrupted"

    # And resuming it labels the rest: every frame once
    model, _, lines = label_locally(
        folder, tmp_path / "out2", Workspace(workspace), run_id=RUN_ID, request=record["request"]
    )
    assert sorted(line["frame"] for line in lines) == [f"{i:03d}.jpg" for i in range(FRAMES)]
    assert {line["status"] for line in lines} == {"labeled"}
    assert len(model.frames) <= FRAMES - report["labeled"]


def test_a_profile_that_asks_relabels_the_folder_when_it_or_its_model_changes(tmp_path: Path) -> None:
    from workflow.domain.profile import LabelingProfile, default_profile

    folder = frames_folder(tmp_path / "frames")
    workspace = Workspace(tmp_path / "workspace")
    asks = LabelingProfile.model_validate({**default_profile().to_dict(), "relabel_when_changed": True})
    changed = asks.to_dict()
    changed["routing"]["accept_score"] = 0.61

    def run(name: str, profile: LabelingProfile) -> tuple[Fixed, dict[str, str]]:
        model, _, lines = label_locally(folder, tmp_path / name, workspace, profile=profile, batch_size=8)
        return model, {line["frame"]: line.get("reason", line["status"]) for line in lines}

    # Given a folder labeled once under a profile that asks to relabel on change
    first, _ = run("out1", asks)
    assert len(first.frames) == FRAMES
    # When the same folder runs again under the same profile, nothing is labeled again
    again, outcomes = run("out2", asks)
    assert again.frames == []
    assert len(outcomes) == FRAMES
    assert all(
        r.startswith("already labeled by run ") and r.endswith(" with this profile and models")
        for r in outcomes.values()
    ), outcomes
    # When the profile's routing changes, every frame is labeled again
    relabeled, outcomes = run("out3", LabelingProfile.model_validate(changed))
    assert sorted(relabeled.frames) == sorted(first.frames)
    assert set(outcomes.values()) == {"labeled"}
