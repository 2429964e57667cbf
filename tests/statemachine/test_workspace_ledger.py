"""Two local processes on one workspace claim frames with DynamoDB's conditional semantics.

Each process starts its own LocalCloud (its own moto) on the same workspace folder and claims the
same frames through the real FrameLedger; every frame must be claimed by exactly one of them. Then
outputs name frames by their real location.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from workflow.local.runner import local_path, point_at_files

ROOT = Path(__file__).resolve().parents[2]
FRAMES = 60

CLAIMER = """
import json, os, sys, time
import boto3
from workflow.adapters.ledger import FrameLedger
from workflow.local.cloud import LocalCloud
from workflow.local.workspace import Workspace

workspace, run_id, go, out, count = sys.argv[1:6]
frames = [f"s3://in/{i:03d}.jpg" for i in range(int(count))]
with LocalCloud({}, workspace=Workspace(workspace)) as cloud:
    client = boto3.client("dynamodb", region_name="us-east-1")
    ledger = FrameLedger(client, cloud.environment["LEDGER_TABLE"])
    open(go + "." + run_id, "w").close()
    while not all(os.path.exists(go + "." + r) for r in ("run-a", "run-b")):
        time.sleep(0.05)
    won = [f for f in frames if ledger.claim(f, run_id).claimed]
json.dump(won, open(out, "w"))
"""


def test_two_processes_on_one_workspace_never_claim_the_same_frame(tmp_path: Path) -> None:
    script = tmp_path / "claim.py"
    script.write_text(textwrap.dedent(CLAIMER))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    go = str(tmp_path / "ready")
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                str(script),
                str(tmp_path / "ws"),
                run,
                go,
                str(tmp_path / f"{run}.json"),
                str(FRAMES),
            ],
            env=env,
            cwd=ROOT,
        )
        for run in ("run-a", "run-b")
    ]
    assert [w.wait(timeout=300) for w in workers] == [0, 0]
    a = json.loads((tmp_path / "run-a.json").read_text())
    b = json.loads((tmp_path / "run-b.json").read_text())
    assert not set(a) & set(b)
    assert sorted(a + b) == [f"s3://in/{i:03d}.jpg" for i in range(FRAMES)]


def test_outputs_name_frames_relative_to_the_folder_or_by_their_s3_uri(tmp_path: Path) -> None:
    local = "s3://autolabel-local-input/frames-0123456789/"
    coco = {"images": [{"id": 1, "file_name": local + "sub/a.jpg"}], "annotations": [], "categories": []}
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    (tmp_path / "output.manifest").write_text(json.dumps({"source-ref": local + "a.png"}) + "\n")
    point_at_files(tmp_path, "frames-0123456789", "/data/frames")
    assert json.loads((tmp_path / "coco.json").read_text())["images"][0]["file_name"] == "sub/a.jpg"
    assert json.loads((tmp_path / "output.manifest").read_text())["source-ref"] == "a.png"
    assert local_path("sub/a.jpg", Path("/data/frames"), "/data/frames") == Path("/data/frames/sub/a.jpg")

    (tmp_path / "coco.json").write_text(json.dumps(coco))
    point_at_files(tmp_path, "frames-0123456789", "s3://drive-logs/2026-11-24/")
    name = json.loads((tmp_path / "coco.json").read_text())["images"][0]["file_name"]
    assert name == "s3://drive-logs/2026-11-24/sub/a.jpg"
    staged = Path("/tmp/staged")
    assert local_path(name, staged, "s3://drive-logs/2026-11-24/") == staged / "sub/a.jpg"
