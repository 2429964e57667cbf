"""MessageStream: an indexed MCAP read from a memory map gives exactly what AnyReader.messages gives."""

from __future__ import annotations

import struct
from binascii import crc32
from pathlib import Path

import pytest
from log_helpers import LogFactory

from workflow.domain.lineage import read_lineage
from workflow.domain.selection import FrameSelection, LogSettings
from workflow.logs.extract import extract_logs
from workflow.logs.reader import open_log
from workflow.logs.sample import DriveSpec, write_drive_log
from workflow.logs.sources import discover
from workflow.logs.stream import MessageStream

ALL_FRAMES = LogSettings(selection=FrameSelection(dedupe={"enabled": False}))


def _both(
    path: Path, topics: set[str] | None
) -> tuple[list[tuple[str, int, bytes]], list[tuple[str, int, bytes]]]:
    paths = path if isinstance(path, list) else [path]
    (source,) = discover(paths)
    with open_log(source) as reader:
        wanted = [c for c in reader.connections if topics is None or c.topic in topics]
        stream = MessageStream(reader)
        assert stream.mapped(wanted)  # the memory-mapped path, not the fallback
        fast = [(c.topic, t, bytes(raw)) for c, t, raw in stream.messages(wanted)]
        slow = [(c.topic, t, bytes(raw)) for c, t, raw in reader.messages(connections=wanted)]
    return fast, slow


@pytest.mark.parametrize("image", ["compressed", "raw"])
def test_the_mapped_mcap_yields_the_same_messages_in_the_same_order(
    drive_log: LogFactory, image: str
) -> None:
    # Given an .mcap drive log (camera, GPS, IMU)
    (path,) = drive_log("mcap", image)  # type: ignore[arg-type]
    # When its messages are read by both paths: the navigation topics, the camera, everything
    for topics in ({"/gps/fix", "/imu/data"}, {"/camera/front/image"}, None):
        fast, slow = _both(path, topics)
        # Then both yield the same topics, times and bytes, in the same order
        assert fast == slow and len(fast) > 0


@pytest.mark.parametrize("image", ["compressed", "raw"])
def test_a_mapped_ros1_bag_yields_the_same_messages_split_or_not(drive_log: LogFactory, image: str) -> None:
    # Given a ROS 1 bag, and the same drive as a bag split in two parts
    for paths in (drive_log("bag", image), drive_log("bag", image, split=2)):  # type: ignore[arg-type]
        # When its messages are read by both paths: the navigation topics, the camera, everything
        for topics in ({"/gps/fix", "/imu/data"}, {"/camera/front/image"}, None):
            fast, slow = _both(paths, topics)
            # Then both yield the same topics, times and bytes, in the same order
            assert fast == slow and len(fast) > 0


@pytest.mark.parametrize("compression", ["lz4", "bz2"])
def test_compressed_ros1_chunks_read_the_same(
    nuscenes_frames: list[bytes], drive_spec: DriveSpec, compression: str, tmp_path: Path
) -> None:
    # Given a ROS 1 bag of raw frames with compressed chunks
    (path,) = write_drive_log(
        tmp_path / "c.bag", nuscenes_frames[:12], "bag", image="raw", spec=drive_spec, compression=compression
    )
    from rosbags.rosbag1.reader import decompressors

    with open_log(discover([path])[0]) as reader:
        chunks = reader.readers[0].chunks.values()
        assert {c.decompressor for c in chunks} == {decompressors[compression]}
    # When it is read by both paths, Then they agree
    fast, slow = _both(path, None)
    assert fast == slow and len(fast) > 0


def _rewrite_zstd(source: Path, target: Path) -> Path:
    """The log again, its MCAP chunks zstd-compressed (as ``ros2 bag record`` writes them)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.rosbag2.enums import CompressionFormat, CompressionMode
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    out = Writer(target, version=9, storage_plugin=StoragePlugin.MCAP)
    out.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    with open_log(discover([source])[0]) as reader, out:
        conns = {c.topic: out.add_connection(c.topic, c.msgtype, typestore=store) for c in reader.connections}
        for c, t, raw in reader.messages():
            out.write(conns[c.topic], t, raw)
    (storage,) = target.glob("*.mcap")
    return storage


def test_zstd_chunks_read_the_same_and_extract_the_same_frames(drive_log: LogFactory, tmp_path: Path) -> None:
    # Given a raw-image .mcap log and its twin with zstd-compressed chunks
    (path,) = drive_log("mcap", "raw")
    twin = _rewrite_zstd(path, tmp_path / "zstd")
    with open_log(discover([twin])[0]) as reader:
        assert {c.compression for c in reader.readers[0].storage.chunks} == {"zstd"}
    # When both are read and extracted
    fast, slow = _both(twin, None)
    extract_logs(discover([path]), tmp_path / "plain", ALL_FRAMES)
    extract_logs(discover([twin]), tmp_path / "twin", ALL_FRAMES)
    # Then the compressed chunks give the same messages, and the same frames, byte for byte
    assert fast == slow and len(fast) > 0
    plain = read_lineage(tmp_path / "plain" / "frames.jsonl")
    again = read_lineage(tmp_path / "twin" / "frames.jsonl")
    assert len(plain) == len(again) == 60
    for (a, ra), (b, rb) in zip(sorted(plain.items()), sorted(again.items()), strict=True):
        assert Path(a).name == Path(b).name and ra.index == rb.index and ra.log_time_ns == rb.log_time_ns
        assert (tmp_path / "plain" / "frames" / a).read_bytes() == (
            tmp_path / "twin" / "frames" / b
        ).read_bytes()


def _set_crcs(path: Path, wrong_at: int | None = None) -> None:
    """Write each uncompressed chunk's CRC into its header (the rosbags writer leaves 0), one wrong."""
    with open_log(discover([path])[0]) as reader:
        chunks = list(reader.readers[0].storage.chunks)
    data = bytearray(path.read_bytes())
    for n, chunk in enumerate(chunks):
        head = chunk.chunk_start_offset + 9
        size = struct.unpack_from("<Q", data, head + 16)[0]
        records = head + 28 + 4 + 8  # after the times, size, CRC, the (empty) compression name, the length
        crc = crc32(data[records : records + size]) ^ (1 if n == wrong_at else 0)
        struct.pack_into("<I", data, head + 24, crc)
    path.write_bytes(bytes(data))


def test_chunk_checksums_are_checked_and_a_mismatch_stops_the_log_with_the_reason(
    drive_log: LogFactory, tmp_path: Path
) -> None:
    # Given a log whose chunks carry their CRC, and a copy with one CRC wrong
    (path,) = drive_log("mcap", "raw")
    good, bad = tmp_path / "good.mcap", tmp_path / "bad.mcap"
    good.write_bytes(path.read_bytes())
    bad.write_bytes(path.read_bytes())
    _set_crcs(good)
    _set_crcs(bad, wrong_at=5)
    # When both are read and extracted
    fast, slow = _both(good, None)
    report = extract_logs(discover([good, bad]), tmp_path / "out", ALL_FRAMES)
    # Then the good one reads as before, and the damaged one fails with the reason while the other goes on
    assert fast == slow
    assert report["frames"] == 60
    (failed,) = report["failed_logs"]
    assert failed["log"] == "bad" and "checksum mismatch" in failed["reason"]
    with open_log(discover([bad])[0]) as reader, pytest.raises(Exception, match="checksum"):
        list(MessageStream(reader).messages(reader.connections))


def test_navigation_samples_kept_for_the_log_hold_no_view_of_a_chunk(
    drive_log: LogFactory, tmp_path: Path
) -> None:
    from workflow.logs.extract import LogExtraction, _read_nav

    # Given a log with zstd chunks (a view of a message would keep its whole decompressed chunk alive)
    (path,) = drive_log("mcap", "raw")
    twin = _rewrite_zstd(path, tmp_path / "zstd")
    with open_log(discover([twin])[0]) as reader:
        result = LogExtraction(log="x", files=[], topics=[], gps_topic="/gps/fix", imu_topic="/imu/data")
        # When its GPS and IMU topics are read into their tracks
        gps, imu = _read_nav(reader, MessageStream(reader), result, ALL_FRAMES)
    # Then the IMU samples kept serialized are copies, not views
    assert gps is not None and imu is not None and len(imu.samples) > 0
    assert all(type(sample.raw) is bytes for sample in imu.samples)
