"""`autolabel run LOGS --out OUT`: drive logs are extracted into OUT/frames, then labeled end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from log_helpers import LogFactory

from workflow.cli.main import main
from workflow.domain.lineage import read_lineage
from workflow.local.endpoint import Predictor


@pytest.mark.slow
def test_run_on_a_folder_of_logs_labels_the_selected_frames_and_keeps_their_lineage(
    drive_log: LogFactory, detector: Predictor, tmp_path: Path
) -> None:
    # Given a folder holding an .mcap (CompressedImage) and a .db3 (raw rgb8) drive log
    logs = tmp_path / "drive-logs"
    logs.mkdir()
    (mcap,) = drive_log("mcap")
    (db3,) = drive_log("db3", "raw")
    shutil.copy(mcap, logs / "monday.mcap")
    shutil.copy(db3, logs / "tuesday.db3")
    out = tmp_path / "out"
    # When `autolabel run` runs on the folder, keeping a frame every 10 m, without review
    status = main(
        ["run", str(logs), "--out", str(out), "--review", "skip", "--min-distance", "10", "--no-overlays"]
    )
    # Then the selected frames of both logs are labeled, and every labeled frame has its lineage record
    report = json.loads((out / "report.json").read_text())
    extraction = json.loads((out / "extraction.json").read_text())
    lineage = read_lineage(out / "frames.jsonl")
    assert status == 0
    # 0.8 m a frame, the last GPS fix at 30.4 m: frames at 0, 10.4 and 20.8 m are kept of each log
    assert [log["selection"]["kept"] for log in extraction["logs"]] == [3, 3]
    assert report["labeled"] == len(lineage) == 6 and report["failed"] == 0
    lines = [json.loads(x) for x in (out / "report-frames.jsonl").read_text().splitlines() if x.strip()]
    labeled = [f["frame"] for f in lines if f["status"] == "labeled"]
    assert len(labeled) == 6
    assert set(labeled) == set(lineage)  # the report names frames by their path in the frames folder
    assert {r.log_name for r in lineage.values()} == {"monday", "tuesday"}
