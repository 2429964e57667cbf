"""`autolabel run LOGS --out OUT`: drive logs are extracted into OUT/frames, then labeled end to end."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from log_helpers import LogFactory
from pycocotools.coco import COCO

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


@pytest.mark.slow
def test_a_labeled_frame_leads_back_to_its_log_message_and_time_in_every_output(
    drive_log: LogFactory, detector: Predictor, tmp_path: Path
) -> None:
    # Given a ROS 1 bag of raw rgb8 frames, GPS and IMU
    (bag,) = drive_log("bag", "raw")
    out = tmp_path / "out"
    # When `autolabel run` labels every 4th frame, near-duplicates removed, with the simulated review
    argv = ["run", str(bag), "--out", str(out), "--every-nth", "4", "--dedupe", "--no-overlays"]
    status = main([*argv, "--review", "simulate"])
    # Then every published manifest line, COCO image and report line carries the frame's record
    assert status == 0
    lineage = read_lineage(out / "frames.jsonl")
    assert len(lineage) >= 5
    lines = [json.loads(x) for x in (out / "output.manifest").read_text().splitlines() if x.strip()]
    report_lines = [json.loads(x) for x in (out / "report-frames.jsonl").read_text().splitlines() if x]
    coco = COCO(str(out / "coco.json"))
    prelabels = COCO(str(out / "prelabels.coco.json"))
    assert len(lines) == len(coco.imgs) == len(prelabels.imgs) == len(lineage)
    by_name = {Path(f).name: r for f, r in lineage.items()}
    for line in lines:
        record = by_name[Path(line["source-ref"]).name]
        assert line["lineage"] == record.published()
    for image in [*coco.imgs.values(), *prelabels.imgs.values()]:
        assert image["lineage"] == by_name[Path(image["file_name"]).name].published()
    review_lines = [json.loads(x) for x in (out / "input.manifest").read_text().splitlines() if x.strip()]
    assert len(review_lines) == len(lineage)  # the Ground Truth job's lines carried it too
    assert all(x["lineage"] == by_name[Path(x["source-ref"]).name].published() for x in review_lines)
    labeled = [r for r in report_lines if r["status"] == "labeled"]
    assert len(labeled) == len(lineage)
    assert all(r["lineage"] == lineage[r["frame"]].published() for r in labeled)
    # and the record finds the message again: its log, topic and log time hold exactly that frame
    from rosbags.highlevel import AnyReader

    record = next(iter(lineage.values()))
    assert record.log_uri == bag.resolve().as_uri() and record.gps is not None and record.imu is not None
    with AnyReader([bag]) as reader:
        wanted = [c for c in reader.connections if c.topic == record.topic]
        found = list(reader.messages(wanted, start=record.log_time_ns, stop=record.log_time_ns + 1))
        assert len(found) == 1
        msg = reader.deserialize(found[0][2], found[0][0].msgtype)
        assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == record.stamp_ns
    # and report.json counts what each selection rule dropped, as the extraction did
    report = json.loads((out / "report.json").read_text())
    (log,) = json.loads((out / "extraction.json").read_text())["logs"]
    selection = report["drive_log_selection"]
    assert selection["logs"] == 1 and selection["frames_kept"] == len(lineage) == log["selection"]["kept"]
    assert selection["messages_seen"] == log["selection"]["seen"] == 60
    assert selection["dropped_by_rule"] == log["selection"]["dropped"]
    dropped = selection["dropped_by_rule"]
    assert dropped["every_nth"] == 45 and dropped["near_duplicate"] > 0
    assert report["skipped"] == 0  # the lineage sidecars beside the frames are no frames


@pytest.mark.slow
def test_a_damaged_lineage_chunk_costs_no_frame_and_the_report_names_it(
    drive_log: LogFactory, detector: Predictor, tmp_path: Path
) -> None:
    # Given frames extracted from a bag, one of their lineage records cut off mid-line
    (bag,) = drive_log("bag")
    ext = tmp_path / "ext"
    assert main(["logs", "extract", str(bag), "--out", str(ext), "--every-nth", "10", "--no-dedupe"]) == 0
    (chunk,) = (ext / "frames").glob("*/*/lineage-000000.jsonl")
    lines = chunk.read_text().splitlines()
    lines[2] = lines[2][:40]
    chunk.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out"
    # When the frames are labeled
    status = main(["run", str(ext / "frames"), "--out", str(out), "--review", "skip", "--no-overlays"])
    # Then every frame is labeled, all but the damaged one with its lineage
    report = json.loads((out / "report.json").read_text())
    assert status == 0 and report["labeled"] == len(lines) == 6 and report["failed"] == 0
    manifest = [json.loads(x) for x in (out / "output.manifest").read_text().splitlines() if x.strip()]
    assert len(manifest) == 6 and sum("lineage" in line for line in manifest) == 5
    # And the report names the chunk, why, and the one frame it left without lineage
    (problem,) = report["drive_log_lineage"]["problems"]
    assert problem["chunk"].endswith("camera_front_image/lineage-000000.jsonl") and problem["frames"] == 1
    assert problem["reason"].startswith("line 3 is not JSON")
    assert report["drive_log_lineage"]["frames_without_lineage"] == 1
