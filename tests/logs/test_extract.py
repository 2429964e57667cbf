"""Extraction: CompressedImage bytes kept, raw Image encodings converted, topics checked, lineage written."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from log_helpers import FORMATS, LogFactory
from PIL import Image

from workflow.cli.main import main
from workflow.domain.lineage import read_lineage
from workflow.domain.selection import FrameSelection, LogSettings
from workflow.logs.extract import extract_log, extract_logs
from workflow.logs.images import FrameRejected, demosaic_bilinear, encode, raw_image, raw_jpeg
from workflow.logs.nav import raw_stamp_ns, stamp_ns
from workflow.logs.reader import LogError, open_log
from workflow.logs.sample import RECEIVE_LATENCY_NS, START_NS, LogFormat, camera_frames, raw_pixels
from workflow.logs.sources import discover

ALL_FRAMES = LogSettings(selection=FrameSelection(dedupe={"enabled": False}))


def _rgb(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.int16)


@pytest.mark.parametrize("fmt", FORMATS)
def test_compressed_frames_are_written_byte_for_byte(
    drive_log: LogFactory, nuscenes_frames: list[bytes], fmt: str, tmp_path: Path
) -> None:
    # Given a log whose camera topic carries CompressedImage JPEGs
    (path,) = drive_log(fmt)  # type: ignore[arg-type]
    # When every frame is extracted
    result = extract_log(discover([path])[0], tmp_path, ALL_FRAMES)
    # Then each file holds exactly the bytes of the message, in time order, with sortable names
    expected = camera_frames(nuscenes_frames, drive_log.spec)
    files = [tmp_path / "frames" / r.frame for r in result.records]
    assert [f.read_bytes() for f in files] == expected
    assert [r.frame for r in result.records] == sorted(r.frame for r in result.records)
    assert all(r.encoding == "jpeg" for r in result.records) and not result.rejected


@pytest.mark.parametrize("fmt", FORMATS)
def test_raw_rgb8_frames_are_converted_losslessly_to_png(
    drive_log: LogFactory, nuscenes_frames: list[bytes], fmt: str, tmp_path: Path
) -> None:
    # Given a log whose camera topic carries raw rgb8 sensor_msgs/Image
    (path,) = drive_log(fmt, "raw")  # type: ignore[arg-type]
    # When it is extracted with raw frames written as PNG
    result = extract_log(discover([path])[0], tmp_path, ALL_FRAMES.model_copy(update={"raw_format": "png"}))
    # Then every frame has the pixels of the decoded source frame exactly, and its size recorded
    expected = camera_frames(nuscenes_frames, drive_log.spec)
    assert len(result.records) == len(expected)
    for record, source in zip(result.records[::7], expected[::7], strict=False):
        written = (tmp_path / "frames" / record.frame).read_bytes()
        assert written.startswith(b"\x89PNG")
        assert np.array_equal(_rgb(written), _rgb(source))
        assert (record.width, record.height, record.encoding) == (800, 450, "rgb8")


def _image_msg(jpeg: bytes, encoding: str, *, pad: int = 0, bigendian: bool = False) -> Any:
    from rosbags.typesys import Stores, get_typestore

    types = get_typestore(Stores.ROS2_HUMBLE).types
    px, step = raw_pixels(jpeg, encoding)
    rows = px.reshape(px.shape[0], -1).view(np.uint8)
    if bigendian:
        rows = px.astype(">u2").reshape(px.shape[0], -1).view(np.uint8)
    if pad:
        rows = np.hstack([rows, np.zeros((rows.shape[0], pad), np.uint8)])
    header = types["std_msgs/msg/Header"](
        stamp=types["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="c"
    )
    return types["sensor_msgs/msg/Image"](
        header=header,
        height=px.shape[0],
        width=px.shape[1],
        encoding=encoding,
        is_bigendian=int(bigendian),
        step=step + pad,
        data=np.ascontiguousarray(rows).reshape(-1),
    )


@pytest.mark.parametrize(
    ("encoding", "pad", "bigendian", "max_error"),
    [
        ("rgb8", 0, False, 0),
        ("bgr8", 16, False, 0),
        ("rgba8", 0, False, 0),
        ("bgra8", 8, False, 0),
        ("mono8", 0, False, 0),
        ("mono16", 0, False, 0),
        ("mono16", 6, True, 0),
    ],
)
def test_raw_encodings_convert_to_the_same_picture(
    nuscenes_frames: list[bytes], encoding: str, pad: int, bigendian: bool, max_error: int
) -> None:
    # Given a real frame as a raw Image in the encoding (rows padded, 16-bit data big-endian where said)
    jpeg = nuscenes_frames[3]
    msg = _image_msg(jpeg, encoding, pad=pad, bigendian=bigendian)
    # When it is converted
    image = raw_image(msg, LogSettings())
    # Then it is the same picture: colour frames in RGB order, grey frames as the frame's grey levels
    source = Image.open(io.BytesIO(jpeg))
    reference = source.convert("L" if encoding.startswith("mono") else "RGB")
    assert image.size == (800, 450)
    diff = np.abs(np.asarray(image, np.int16) - np.asarray(reference, np.int16))
    assert int(diff.max()) <= max_error


@pytest.mark.parametrize(
    ("pattern", "wrong"), [("rggb", "bggr"), ("bggr", "rggb"), ("gbrg", "grbg"), ("grbg", "gbrg")]
)
def test_bayer_mosaics_are_demosaiced_close_to_the_original(
    nuscenes_frames: list[bytes], pattern: str, wrong: str
) -> None:
    # Given a real frame sampled through a Bayer colour filter
    jpeg = nuscenes_frames[5]
    msg = _image_msg(jpeg, f"bayer_{pattern}8")
    # When it is demosaiced
    image = raw_image(msg, LogSettings())
    # Then it is an RGB picture close to the original (mean error under 3 grey levels, measured 1.8),
    # far closer than the same mosaic read with the wrong pattern
    error = np.abs(np.asarray(image, np.int16) - _rgb(jpeg)).mean()
    mosaic, _ = raw_pixels(jpeg, f"bayer_{pattern}8")
    misread = np.abs(demosaic_bilinear(mosaic.astype(np.float32), wrong).astype(np.int16) - _rgb(jpeg)).mean()
    assert image.mode == "RGB" and error < 3.0 and misread > 2 * error, (error, misread)


def test_bayer_is_rejected_with_a_reason_when_the_settings_say_so(nuscenes_frames: list[bytes]) -> None:
    # Given a Bayer frame and settings that reject Bayer frames
    msg = _image_msg(nuscenes_frames[0], "bayer_rggb8")
    # When it is converted, then it is rejected naming the encoding and the setting
    with pytest.raises(FrameRejected, match=r"bayer_rggb8.*bayer: reject"):
        raw_image(msg, LogSettings(bayer="reject"))


def test_unsupported_encodings_are_rejected_and_the_rest_of_the_log_goes_on(
    drive_log: LogFactory, tmp_path: Path
) -> None:
    # Given a bag whose raw frames are all in an encoding this project does not convert ("yuv422" by name)
    from rosbags.rosbag1 import Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.ROS1_NOETIC)
    types = ts.types
    path = tmp_path / "odd.bag"
    with Writer(path) as writer:
        cam = writer.add_connection("/cam", "sensor_msgs/msg/Image", typestore=ts)
        jpg = writer.add_connection("/jpg", "sensor_msgs/msg/CompressedImage", typestore=ts)
        for i in range(3):
            header = types["std_msgs/msg/Header"](
                seq=i, stamp=types["builtin_interfaces/msg/Time"](sec=10 + i, nanosec=0), frame_id="c"
            )
            odd = types["sensor_msgs/msg/Image"](
                header=header,
                height=2,
                width=2,
                encoding="yuv422",
                is_bigendian=0,
                step=4,
                data=np.zeros(8, np.uint8),
            )
            writer.write(cam, (10 + i) * 10**9, ts.serialize_ros1(odd, "sensor_msgs/msg/Image"))
            bad = types["sensor_msgs/msg/CompressedImage"](
                header=header, format="h264", data=np.arange(16, dtype=np.uint8)
            )
            writer.write(jpg, (10 + i) * 10**9, ts.serialize_ros1(bad, "sensor_msgs/msg/CompressedImage"))
    # When it is extracted
    report = extract_logs(discover([path]), tmp_path / "out", ALL_FRAMES)
    # Then each message is rejected with its topic, offset and reason, and nothing is written for them
    (log,) = report["logs"]
    reasons = {(r["topic"], r["index"]): r["reason"] for r in log["rejected"]}
    assert len(reasons) == 6 and report["frames"] == 0
    assert "raw encoding 'yuv422' is not supported" in reasons[("/cam", 2)]
    assert "format 'h264' holds neither JPEG nor PNG" in reasons[("/jpg", 0)]


def test_topic_allow_list_is_checked_against_the_log(drive_log: LogFactory, tmp_path: Path) -> None:
    # Given a log and an allow-list naming a missing topic and a GPS topic
    (path,) = drive_log("mcap")
    settings = LogSettings(topics=("/camera/rear/image", "/gps/fix"))
    # When it is extracted, then it is refused naming both problems and the image topics it has
    with pytest.raises(LogError) as err:
        extract_log(discover([path])[0], tmp_path, settings)
    assert "'/camera/rear/image' is not in the log" in err.value.reason
    assert "'/gps/fix' is a sensor_msgs/msg/NavSatFix topic, not an image topic" in err.value.reason
    assert "['/camera/front/image']" in err.value.reason


@pytest.mark.parametrize("fmt", FORMATS)
def test_lineage_records_log_message_time_and_nearest_gps_and_imu(
    drive_log: LogFactory, fmt: str, tmp_path: Path
) -> None:
    # Given a log with camera at 10 Hz, GPS at 5 Hz, IMU at 50 Hz (log time = stamp + 20 ms)
    (path,) = drive_log(fmt)  # type: ignore[arg-type]
    # When it is extracted with a 50 ms skew: every other frame is 100 ms from the nearest GPS fix
    report = extract_logs(discover([path]), tmp_path, ALL_FRAMES.model_copy(update={"max_skew_s": 0.05}))
    records = read_lineage(tmp_path / "frames.jsonl")
    # Then each frame's record names its log, topic, offset, log time and header stamp
    assert report["frames"] == len(records) == 60
    by_index = {r.index: r for r in records.values()}
    r7 = by_index[7]
    assert r7.frame in records and (tmp_path / "frames" / r7.frame).is_file()
    assert r7.log_uri == path.resolve().as_uri() and r7.topic == "/camera/front/image"
    assert r7.stamp_ns == START_NS + 700_000_000 and r7.log_time_ns == r7.stamp_ns + RECEIVE_LATENCY_NS
    assert r7.frame.endswith(f"000007-{r7.stamp_ns:019d}.jpg")
    # and the nearest GPS fix and IMU sample within the skew, or none
    assert by_index[8].gps is not None and by_index[8].gps.skew_s == 0.0
    assert by_index[8].gps.latitude == pytest.approx(42.3 + 8.0 * 0.8 / 111_195.0)
    assert r7.gps is None and r7.imu is not None and r7.imu.skew_s == 0.0
    assert r7.imu.linear_acceleration == (0.1, 0.0, 9.81)


def test_cli_extract_writes_frames_lineage_and_report(drive_log: LogFactory, tmp_path: Path) -> None:
    # Given a split bag
    parts = drive_log("bag", split=2)
    # When `autolabel logs extract` runs on its parts
    status = main(["logs", "extract", *map(str, parts), "--out", str(tmp_path), "--no-dedupe"])
    # Then the frames of both parts are written, each record naming its part
    report = json.loads((tmp_path / "extraction.json").read_text())
    records = read_lineage(tmp_path / "frames.jsonl")
    assert status == 0 and report["frames"] == 60
    assert {r.log_uri for r in records.values()} == {p.resolve().as_uri() for p in parts}
    assert {r.log_name for r in records.values()} == {"drive-compressed-rgb8-2"}


def test_topics_extracted_in_parallel_processes_match_one_process(
    nuscenes_frames: list[bytes], tmp_path: Path
) -> None:
    # Given a three-camera .mcap log
    from workflow.logs.sample import DriveSpec, write_drive_log

    (path,) = write_drive_log(
        tmp_path / "three-mcap",
        nuscenes_frames[:10],
        "mcap",
        spec=DriveSpec(cameras=3, stop_after=5, stop_frames=5),
    )
    # When it is extracted in one process and with a process per topic
    serial = extract_logs(discover([path]), tmp_path / "serial", LogSettings())
    parallel = extract_logs(discover([path]), tmp_path / "parallel", LogSettings(), workers=3)
    # Then both keep the same frames with the same lineage and count the same drops per topic
    assert read_lineage(tmp_path / "serial" / "frames.jsonl") == read_lineage(
        tmp_path / "parallel" / "frames.jsonl"
    )
    s, p = serial["logs"][0]["selection"], parallel["logs"][0]["selection"]
    assert (s["seen"], s["kept"], s["dropped"], s["topics"]) == (
        p["seen"],
        p["kept"],
        p["dropped"],
        p["topics"],
    )
    assert s["seen"] == 45 and s["dropped"]["near_duplicate"] == 15


def test_a_16_bit_bayer_mosaic_demosaics_like_its_8_bit_twin(nuscenes_frames: list[bytes]) -> None:
    # Given a real frame's Bayer mosaic as 8-bit data and as big-endian 16-bit data (x 257)
    from rosbags.typesys import Stores, get_typestore

    mosaic, _ = raw_pixels(nuscenes_frames[9], "bayer_grbg8")
    wide = (mosaic.astype(np.uint16) * 257).astype(">u2")
    types = get_typestore(Stores.ROS2_HUMBLE).types
    header = types["std_msgs/msg/Header"](
        stamp=types["builtin_interfaces/msg/Time"](sec=1, nanosec=0), frame_id="c"
    )
    msg = types["sensor_msgs/msg/Image"](
        header=header,
        height=mosaic.shape[0],
        width=mosaic.shape[1],
        encoding="bayer_grbg16",
        is_bigendian=1,
        step=2 * mosaic.shape[1],
        data=wide.reshape(-1).view(np.uint8),
    )
    # When both are converted, then the pictures agree within one grey level
    eight = np.asarray(raw_image(_image_msg(nuscenes_frames[9], "bayer_grbg8"), LogSettings()), np.int16)
    sixteen = np.asarray(raw_image(msg, LogSettings()), np.int16)
    assert np.abs(eight - sixteen).max() <= 1


def test_a_record_summarises_into_flat_fields_for_manifests_and_coco(
    drive_log: LogFactory, tmp_path: Path
) -> None:
    # Given an extracted frame that has a GPS fix
    (path,) = drive_log("mcap")
    extract_logs(discover([path]), tmp_path, ALL_FRAMES)
    record = next(r for r in read_lineage(tmp_path / "frames.jsonl").values() if r.index == 10)
    # When it is summarised, then the fields name the message and place it, all JSON scalars
    summary = record.summary()
    assert summary == {
        "log_uri": record.log_uri,
        "topic": "/camera/front/image",
        "index": 10,
        "log_time_ns": START_NS + 1_000_000_000 + RECEIVE_LATENCY_NS,
        "stamp_ns": START_NS + 1_000_000_000,
        "latitude": pytest.approx(42.3 + 8.0 / 111_195.0),
        "longitude": -83.2,
        "gps_skew_s": 0.0,
        "distance_m": pytest.approx(8.0, abs=0.01),
    }
    assert json.loads(json.dumps(summary))["index"] == 10


def test_a_log_that_cannot_be_read_is_reported_and_the_others_go_on(
    drive_log: LogFactory, tmp_path: Path
) -> None:
    # Given a folder holding a good .mcap and a truncated .bag
    folder = tmp_path / "logs"
    folder.mkdir()
    (mcap,) = drive_log("mcap")
    (folder / "good.mcap").write_bytes(mcap.read_bytes())
    (bag,) = drive_log("bag")
    (folder / "broken.bag").write_bytes(bag.read_bytes()[:5000])
    # When the folder is extracted
    report = extract_logs(discover([folder]), tmp_path / "out", ALL_FRAMES)
    # Then the broken bag is reported with its reason and the good log's frames are all there
    (failed,) = report["failed_logs"]
    assert failed["log"] == "broken" and "cannot be read as a drive log" in failed["reason"]
    assert report["frames"] == 60 and [log["log"] for log in report["logs"]] == ["good"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_header_stamp_read_from_the_serialized_bytes_is_the_deserialized_one(
    drive_log: LogFactory, fmt: LogFormat
) -> None:
    # Given a log's IMU and GPS messages (IMU samples stay serialized until one is nearest a frame)
    (path,) = drive_log(fmt)
    with open_log(discover([path])[0]) as reader:
        nav = [c for c in reader.connections if c.topic in ("/imu/data", "/gps/fix")]
        messages = list(reader.messages(connections=nav))
        # When their stamps are read from the bytes, then each is the stamp deserializing gives
        assert len(messages) == 330
        for connection, _, raw in messages:
            assert raw_stamp_ns(raw, reader.is2) == stamp_ns(reader.deserialize(raw, connection.msgtype))
    # and bytes that are no little-endian CDR are left to the deserializer
    assert raw_stamp_ns(b"\x00\x00" + bytes(10), True) is None and raw_stamp_ns(b"\x00\x01", True) is None


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_unpadded_8_bit_raw_frames_are_encoded_to_jpeg_straight_from_the_message(
    nuscenes_frames: list[bytes], encoding: str
) -> None:
    # Given a real frame as an unpadded raw Image, and the same frame with padded rows
    jpeg = nuscenes_frames[3]
    msg = _image_msg(jpeg, encoding)
    # When it is encoded without going through a Pillow image
    fast = raw_jpeg(msg, LogSettings())
    assert fast is not None
    data, size = fast
    # Then it is a JPEG of the same picture as the general path's (RGB order, alpha dropped)
    decoded = Image.open(io.BytesIO(data))
    general = Image.open(io.BytesIO(encode(raw_image(msg, LogSettings()), LogSettings())[0]))
    assert data[:3] == b"\xff\xd8\xff" and size == decoded.size == (800, 450)
    assert decoded.mode == ("L" if encoding == "mono8" else "RGB")
    diff = np.abs(np.asarray(decoded, np.int16) - np.asarray(general, np.int16))
    assert float(diff.mean()) < 1.0, float(diff.mean())
    # and padded rows, or PNG output, are left to the general path
    assert raw_jpeg(_image_msg(jpeg, encoding, pad=8), LogSettings()) is None
    assert raw_jpeg(msg, LogSettings(raw_format="png")) is None


def test_frame_names_sort_in_offset_order_past_a_million_frames_and_keep_6_digits_below() -> None:
    from workflow.domain.lineage import frame_name, index_width, lineage_key

    t = START_NS
    # Given topics of 10^6 - 1, 10^6 and 10^6 + 1 messages
    assert [index_width(n) for n in (0, 1, 999_999, 1_000_000, 1_000_001, 10_000_001)] == [6, 6, 6, 6, 7, 8]
    # Then a topic under 10^6 + 1 messages keeps the 6-digit names it always had
    assert frame_name(999_999, t, ".jpg", index_width(1_000_000)) == f"999999-{t:019d}.jpg"
    # And in a larger one every name has 7 digits, so that lexical order is offset order
    width = index_width(1_000_001)
    names = [frame_name(i, t + i, ".jpg", width) for i in (0, 9, 10, 999_999, 1_000_000)]
    assert names == sorted(names) and names[0] == f"0000000-{t:019d}.jpg"
    # (the 6-digit scheme puts the millionth frame first)
    assert sorted([f"{999_999:06d}", f"{1_000_000:06d}"]) == ["1000000", "999999"]
    # And a wide name still leads to its lineage chunk
    assert lineage_key(f"drive/cam/{names[-1]}") == "drive/cam/lineage-001000.jsonl"


def test_extraction_names_a_large_topics_frames_with_wider_offsets(
    drive_log: LogFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import workflow.logs.extract as extract
    from workflow.domain.lineage import index_width, lineage_key

    # Given a log whose camera topic the extraction takes for one of 10^6 + 60 messages
    (path,) = drive_log("mcap")
    widths: list[int] = []

    def counted(count: int) -> int:
        widths.append(index_width(count + 1_000_000))
        return widths[-1]

    monkeypatch.setattr(extract, "index_width", counted)
    # When it is extracted
    extract_logs(discover([path]), tmp_path, ALL_FRAMES)
    # Then every frame name has 7 offset digits, the names sort in offset order, and each name's
    # lineage chunk is the one written
    records = sorted(read_lineage(tmp_path / "frames.jsonl").values(), key=lambda r: r.index)
    names = [r.frame for r in records]
    assert widths == [7] and len(names) == 60 and names == sorted(names)
    assert all(Path(n).name.startswith(f"{r.index:07d}-") for n, r in zip(names, records, strict=True))
    chunk = tmp_path / "frames" / lineage_key(names[0])  # type: ignore[operator]
    assert chunk.is_file() and len(chunk.read_text().splitlines()) == 60


def test_a_raw_frame_that_selection_drops_as_a_near_duplicate_is_never_encoded(
    drive_log: LogFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import workflow.logs.extract as extract

    # Given a raw rgb8 log with a stop at a light (near-duplicate frames), and a count of JPEG encodes
    (path,) = drive_log("mcap", "raw")
    encodes: list[int] = []

    def counted(msg: Any, settings: LogSettings) -> tuple[bytes, tuple[int, int]] | None:
        encodes.append(1)
        return raw_jpeg(msg, settings)

    monkeypatch.setattr(extract, "raw_jpeg", counted)
    # When it is extracted with near-duplicate removal
    report = extract_logs(discover([path]), tmp_path, LogSettings())
    # Then frames were dropped as near-duplicates, and only the kept ones were encoded
    (log,) = report["logs"]
    assert log["selection"]["dropped"]["near_duplicate"] > 0
    assert len(encodes) == report["frames"] == log["selection"]["kept"]
