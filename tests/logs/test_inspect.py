"""`autolabel logs inspect`: topics with type, count, rate and span, for .bag (split too), .db3 and .mcap."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from log_helpers import FORMATS, LogFactory

from workflow.cli.main import main
from workflow.domain.errors import ConfigurationError
from workflow.logs.reader import LogError, inspect_log
from workflow.logs.sources import discover


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("image", ["compressed", "raw"])
def test_inspect_lists_each_topic_with_type_count_rate_and_span(
    drive_log: LogFactory, fmt: str, image: str
) -> None:
    # Given a 6-second drive log: 60 camera frames at 10 Hz, GPS at 5 Hz, IMU at 50 Hz
    (path,) = drive_log(fmt, image)  # type: ignore[arg-type]
    # When it is inspected
    summary = inspect_log(discover([path])[0])
    # Then every topic is listed with its type, message count, rate and time span
    topics = {t["topic"]: t for t in summary["topics"]}
    camera_type = "sensor_msgs/msg/CompressedImage" if image == "compressed" else "sensor_msgs/msg/Image"
    assert {n: (t["msgtype"], t["count"]) for n, t in topics.items()} == {
        "/camera/front/image": (camera_type, 60),
        "/gps/fix": ("sensor_msgs/msg/NavSatFix", 30),
        "/imu/data": ("sensor_msgs/msg/Imu", 300),
    }
    assert topics["/camera/front/image"]["rate_hz"] == pytest.approx(10.0)
    assert topics["/gps/fix"]["rate_hz"] == pytest.approx(5.0)
    assert topics["/imu/data"]["rate_hz"] == pytest.approx(50.0)
    assert topics["/camera/front/image"]["span_s"] == pytest.approx(5.9)
    assert summary["messages"] == 390 and summary["duration_s"] == pytest.approx(5.98, abs=0.01)


def test_split_bag_parts_are_read_as_one_log(drive_log: LogFactory) -> None:
    # Given a bag recorded with --split into three parts
    parts = drive_log("bag", "compressed", split=3)
    assert [p.name for p in parts] == [f"drive-compressed-rgb8-3_{n}.bag" for n in range(3)]
    # When the folder is inspected through the CLI
    sources = discover([parts[0].parent])
    split = [s for s in sources if s.name == "drive-compressed-rgb8-3"]
    # Then the parts form one log whose topics add up over the parts
    assert len(split) == 1 and split[0].paths == tuple(parts)
    summary = inspect_log(split[0])
    assert len(summary["files"]) == 3
    assert {t["topic"]: t["count"] for t in summary["topics"]}["/camera/front/image"] == 60


def test_cli_inspect_prints_json_for_several_files(
    drive_log: LogFactory, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a .db3 and an .mcap file
    (db3,), (mcap,) = drive_log("db3"), drive_log("mcap")
    # When `autolabel logs inspect --json` runs on both
    status = main(["logs", "inspect", "--json", str(db3), str(mcap)])
    # Then it succeeds and prints one summary per log
    out = json.loads(capsys.readouterr().out)
    assert status == 0
    assert [s["format"] for s in out] == ["db3", "mcap"]


def test_a_file_that_is_not_a_log_is_refused_with_its_reason(tmp_path: Path) -> None:
    # Given a text file named .mcap and a .txt file
    fake = tmp_path / "fake.mcap"
    fake.write_text("not an mcap file")
    other = tmp_path / "notes.txt"
    other.write_text("x")
    # When they are opened as logs
    # Then the .txt is refused by name and the fake .mcap by its content, each naming the file
    with pytest.raises(ConfigurationError, match="notes.txt: not a drive log"):
        discover([other])
    with pytest.raises(LogError, match="fake: cannot be read as a drive log"):
        inspect_log(discover([fake])[0])


@pytest.mark.parametrize("compression", ["lz4", "bz2"])
def test_compressed_bags_are_read(nuscenes_frames: list[bytes], tmp_path: Path, compression: str) -> None:
    # Given a ROS 1 bag whose chunks are lz4- or bz2-compressed
    from workflow.logs.sample import DriveSpec, write_drive_log

    spec = DriveSpec(stop_after=5, stop_frames=2)
    (path,) = write_drive_log(
        tmp_path / "c.bag", nuscenes_frames[:8], "bag", spec=spec, compression=compression
    )  # type: ignore[arg-type]
    # When it is inspected, then its 10 camera frames are counted at 10 Hz
    topics = {t["topic"]: t for t in inspect_log(discover([path])[0])["topics"]}
    assert topics["/camera/front/image"]["count"] == 10
    assert topics["/camera/front/image"]["rate_hz"] == pytest.approx(10.0)
