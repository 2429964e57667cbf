"""Extract frames from drive logs: camera topics to image files, a lineage record per frame, selection.

Output layout under ``dest`` (the same locally and in S3)::

    frames/<log>/<topic>/<index:06d>-<time_ns>.jpg   the frames (sortable: topic offset, then time;
                                                     7+ digits in a topic of 10^6 messages or more)
    frames/<log>/<topic>/lineage-<chunk:06d>.jsonl   the same records, 1,000 message offsets a chunk
    frames/<log>/selection.json                      the log's selection counts (the run report adds them)
    frames.jsonl                                     a FrameLineage per frame, keyed by its path in frames/
    extraction.json                                  per log: topics, selection counts, rejected messages

A log is read twice: first its GPS and IMU topics (small messages), so that each frame's nearest
fix and the distance travelled are known when the frame is met; then its camera topics, where the
selection's cheap rules run before a frame is converted or hashed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from workflow.domain.lineage import (
    SELECTION_FILE,
    FrameLineage,
    LogSelection,
    frame_name,
    index_width,
    lineage_chunk_name,
    write_lineage,
)
from workflow.domain.selection import LogSettings
from workflow.logs.hashing import frame_hash
from workflow.logs.images import (
    FrameRejected,
    compressed_frame,
    encode,
    hash_view,
    jpeg_ready,
    raw_image,
    raw_jpeg,
)
from workflow.logs.nav import GpsTrack, ImuTrack, RawMessage, raw_stamp_ns, stamp_ns
from workflow.logs.reader import COMPRESSED_IMAGE, IMAGE_TYPES, IMU, NAVSATFIX, LogError, open_log
from workflow.logs.select import Selector
from workflow.logs.sources import LogSource
from workflow.logs.stream import MessageStream


def _read_errors() -> tuple[type[Exception], ...]:
    from rosbags.highlevel import AnyReaderError
    from rosbags.rosbag1 import ReaderError as Ros1ReaderError
    from rosbags.rosbag2 import ReaderError as Ros2ReaderError

    return (AnyReaderError, Ros1ReaderError, Ros2ReaderError)


READ_ERRORS = _read_errors()
FRAMES_DIR = "frames"
LINEAGE_FILE = "frames.jsonl"
REPORT_FILE = "extraction.json"


@dataclass
class LogExtraction:
    """What extracting one log produced."""

    log: str
    files: list[str]
    topics: list[str]
    gps_topic: str | None
    imu_topic: str | None
    records: list[FrameLineage] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)
    selection: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "log": self.log,
            "files": self.files,
            "topics": self.topics,
            "gps_topic": self.gps_topic,
            "imu_topic": self.imu_topic,
            "frames": len(self.records),
            "rejected": self.rejected,
            "selection": self.selection,
            "notes": self.notes,
            "seconds": round(self.seconds, 3),
            "cpu_seconds": round(self.cpu_seconds, 3),
        }


def topic_slug(topic: str) -> str:
    """A topic as one folder name: ``/camera/front/image`` -> ``camera_front_image``."""
    return topic.strip("/").replace("/", "_") or "root"


def _pick(
    name: str | None, kind: str, msgtype: str, types: dict[str, str], log: str, notes: list[str]
) -> str | None:
    """The GPS/IMU topic: the one named (checked), else the log's only topic of that type."""
    if name is not None:
        if types.get(name) != msgtype:
            found = sorted(t for t, m in types.items() if m == msgtype)
            raise LogError(
                log, f"{kind} topic {name!r} is not a {msgtype} topic of this log (those: {found})"
            )
        return name
    candidates = sorted(t for t, m in types.items() if m == msgtype)
    if len(candidates) > 1:
        notes.append(f"several {msgtype} topics {candidates}: set {kind}_topic to use one")
    return candidates[0] if len(candidates) == 1 else None


def camera_topics(types: dict[str, str], wanted: tuple[str, ...], log: str) -> list[str]:
    """The image topics to extract: the allow-list, checked against the log, else every image topic."""
    images = sorted(t for t, m in types.items() if m in IMAGE_TYPES)
    if not wanted:
        if not images:
            raise LogError(log, f"holds no image topic ({' or '.join(IMAGE_TYPES)}); topics: {sorted(types)}")
        return images
    problems = []
    for topic in wanted:
        if topic not in types:
            problems.append(f"{topic!r} is not in the log")
        elif types[topic] not in IMAGE_TYPES:
            problems.append(f"{topic!r} is a {types[topic]} topic, not an image topic")
    if problems:
        raise LogError(log, "; ".join(problems) + f" (image topics of this log: {images})")
    return list(dict.fromkeys(wanted))


def _time(settings: LogSettings, log_time: int, stamp: int) -> int:
    return stamp if settings.clock == "header" and stamp > 0 else log_time


def extract_log(source: LogSource, dest: Path, settings: LogSettings) -> LogExtraction:
    """Extract one log's camera frames into ``dest/frames/<log>/``; see the module docstring."""
    start, cpu = time.perf_counter(), time.process_time()
    with open_log(source) as reader:
        types = {name: info.msgtype or "" for name, info in reader.topics.items()}
        result = LogExtraction(
            log=source.name,
            files=[source.uri(p) for p in source.paths],
            topics=camera_topics(types, settings.topics, source.name),
            gps_topic=None,
            imu_topic=None,
        )
        result.gps_topic = _pick(settings.gps_topic, "gps", NAVSATFIX, types, source.name, result.notes)
        result.imu_topic = _pick(settings.imu_topic, "imu", IMU, types, source.name, result.notes)
        if settings.selection.min_distance_m > 0 and result.gps_topic is None:
            result.notes.append(
                f"min_distance_m is set but the log has no GPS topic: frames are "
                f"{'kept' if settings.selection.without_gps == 'keep' else 'dropped'} (without_gps)"
            )
        selector = Selector(settings.selection)
        try:
            stream = MessageStream(reader)
            gps, imu = _read_nav(reader, stream, result, settings)
            _read_frames(reader, stream, source, dest, settings, result, selector, gps, imu)
        except READ_ERRORS as exc:  # damage past the index: the log fails with the reason, others go on
            raise LogError(source.name, f"reading stopped: {exc}") from exc
        result.selection = selector.report()
        result.selection["rejected"] = len(result.rejected)
    result.seconds, result.cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    return result


def _read_nav(
    reader: Any, stream: MessageStream, result: LogExtraction, settings: LogSettings
) -> tuple[GpsTrack | None, ImuTrack | None]:
    gps = GpsTrack(result.gps_topic, settings.selection.gps_min_step_m) if result.gps_topic else None
    imu = ImuTrack(result.imu_topic) if result.imu_topic else None
    wanted = {t for t in (result.gps_topic, result.imu_topic) if t}
    connections = [c for c in reader.connections if c.topic in wanted]
    if not connections:
        return gps, imu
    samples: list[tuple[int, str, Any]] = []
    for connection, log_time, view in stream.messages(connections):
        # kept for the whole log: a copy (a few hundred bytes), so that no sample holds on to the
        # decompressed chunk or the file mapping that the stream's view is part of
        raw = bytes(view)
        if imu is not None and connection.topic == imu.topic:
            stamp = raw_stamp_ns(raw, reader.is2)
            if stamp is not None:  # deserialized later, and only if nearest a kept frame
                decode = partial(_decode, reader, connection.msgtype)
                samples.append((_time(settings, log_time, stamp), imu.topic, RawMessage(raw, decode)))
                continue
        msg = reader.deserialize(memoryview(raw), connection.msgtype)
        samples.append((_time(settings, log_time, stamp_ns(msg)), connection.topic, msg))
    samples.sort(key=lambda s: s[0])  # header stamps need not come in log order
    for t, topic, msg in samples:
        track = gps if gps is not None and topic == gps.topic else imu
        if track is not None:
            track.add(t, msg)
    return gps, imu


def _decode(reader: Any, msgtype: str, raw: bytes | memoryview) -> Any:
    return reader.deserialize(memoryview(raw), msgtype)


def _read_frames(
    reader: Any,
    stream: MessageStream,
    source: LogSource,
    dest: Path,
    settings: LogSettings,
    result: LogExtraction,
    selector: Selector,
    gps: GpsTrack | None,
    imu: ImuTrack | None,
) -> None:
    skew = round(settings.max_skew_s * 1e9)
    folders = {t: dest / FRAMES_DIR / source.name / topic_slug(t) for t in result.topics}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    indices = dict.fromkeys(result.topics, 0)
    # one index width per topic, from the count in the log's index, so that names sort past 10^6 frames
    widths = {t: index_width(reader.topics[t].msgcount) for t in result.topics}
    connections = [c for c in reader.connections if c.topic in folders]
    uris = {id(c): source.uri(Path(c.owner.path)) for c in connections}  # resolved once, not per frame
    for connection, log_time, raw in stream.messages(connections):
        topic = connection.topic
        index = indices[topic]
        indices[topic] += 1
        where = {
            "log_uri": uris[id(connection)],
            "topic": topic,
            "index": index,
            "log_time_ns": log_time,
        }
        try:
            # a view: the CDR deserializer slices its input, and a 1 MB raw frame's bytes would be copied
            msg = reader.deserialize(memoryview(raw), connection.msgtype)
        except Exception as exc:  # a corrupt message: reported, the log goes on
            result.rejected.append({**where, "reason": f"cannot be deserialized: {exc}"})
            continue
        stamp = stamp_ns(msg)
        t = _time(settings, log_time, stamp)
        travelled = gps.distance_at(t, skew) if gps is not None else None
        if selector.before_decode(topic, t, travelled) is not None:
            continue
        try:
            hashed, make_file = _convert(msg, connection.msgtype, settings, selector.needs_hash)
            if hashed is not None and selector.is_duplicate(topic, hashed):
                continue
            data, suffix, encoding, size = make_file()
        except FrameRejected as exc:
            result.rejected.append({**where, "reason": exc.reason})
            continue
        selector.keep(topic, t, travelled, hashed)
        if index >= 10 ** widths[topic]:  # the log's index undercounted the topic: names widen here
            widths[topic] += 1
            result.notes.append(
                f"{topic}: more messages than the log's index counts; frame names from offset {index} "
                f"have {widths[topic]} digits and sort before the earlier ones"
            )
        name = frame_name(index, t, suffix, widths[topic])
        _write_file(folders[topic] / name, data)
        result.records.append(
            FrameLineage(
                frame=f"{source.name}/{topic_slug(topic)}/{name}",
                log_uri=where["log_uri"],
                log_name=source.name,
                topic=topic,
                msgtype=connection.msgtype,
                index=index,
                log_time_ns=log_time,
                stamp_ns=stamp,
                frame_id=str(msg.header.frame_id),
                encoding=encoding,
                width=size[0] if size else None,
                height=size[1] if size else None,
                distance_m=None if travelled is None else round(travelled, 3),
                gps=gps.nearest(t, skew) if gps is not None else None,
                imu=imu.nearest(t, skew) if imu is not None else None,
            )
        )


def _write_file(path: Path, data: bytes) -> None:
    """``path.write_bytes(data)`` in three system calls (open, write, close) where Python's file
    object adds three more (fstat, a terminal check, a seek): the frame files are many."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_BINARY", 0), 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


Encoded = tuple[bytes, str, str, tuple[int, int] | None]  # file bytes, suffix, source encoding, size


def _convert(
    msg: Any, msgtype: str, settings: LogSettings, want_hash: bool
) -> tuple[int | None, Callable[[], Encoded]]:
    """The frame's hash when wanted, and how to make its file: (bytes, suffix, source encoding,
    (width, height) when known). The file is made only after the near-duplicate check, so a frame
    that selection drops is never JPEG-encoded (the encode is most of a raw frame's cost)."""
    method = settings.selection.dedupe.method
    if msgtype == COMPRESSED_IMAGE:
        data, suffix = compressed_frame(msg)
        try:
            hashed = frame_hash(data, method) if want_hash else None
        except (OSError, ValueError) as exc:
            raise FrameRejected(f"CompressedImage data does not decode: {exc}") from exc
        return hashed, lambda: (data, suffix, suffix.lstrip(".").replace("jpg", "jpeg"), None)
    if jpeg_ready(msg, settings):  # encoded from the message's buffer; hashed from a decimated view of it
        view = hash_view(msg, settings) if want_hash else None
        hashed = frame_hash(view, method) if view is not None else None

        def fast() -> Encoded:
            encoded = raw_jpeg(msg, settings)
            assert encoded is not None  # jpeg_ready said so
            return encoded[0], ".jpg", str(msg.encoding), encoded[1]

        return hashed, fast
    image = raw_image(msg, settings)
    hashed = frame_hash(image, method) if want_hash else None

    def converted() -> Encoded:
        data, suffix = encode(image, settings)
        return data, suffix, str(msg.encoding), image.size

    return hashed, converted


def write_sidecars(result: LogExtraction, frames_dir: Path) -> None:
    """The log's lineage chunks beside its frames and its ``selection.json``, so the workflow finds a
    frame's record, and the log's selection counts, under the frames prefix it labels."""
    chunks: dict[Path, list[FrameLineage]] = {}
    for record in result.records:
        folder = (frames_dir / record.frame).parent
        chunks.setdefault(folder / lineage_chunk_name(record.index), []).append(record)
    for path, chunk in chunks.items():
        write_lineage(chunk, path)
    sel = result.selection
    selection = LogSelection(
        log=result.log,
        files=result.files,
        seen=int(sel.get("seen", 0)),
        kept=int(sel.get("kept", 0)),
        dropped={k: int(v) for k, v in sel.get("dropped", {}).items()},
        rejected=len(result.rejected),
    )
    folder = frames_dir / result.log
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SELECTION_FILE).write_text(selection.model_dump_json(indent=2))


def extract_logs(
    sources: list[LogSource], dest: Path, settings: LogSettings, workers: int = 1
) -> dict[str, Any]:
    """Extract every log into ``dest``; writes frames.jsonl and extraction.json; returns the report.

    A log that cannot be read is reported with its reason and the others go on. ``workers`` > 1
    extracts a log's camera topics in that many processes.
    """
    from workflow.logs.parallel import extract_log_parallel

    dest.mkdir(parents=True, exist_ok=True)
    records: list[FrameLineage] = []
    logs: list[dict[str, Any]] = []
    failed: list[dict[str, str]] = []
    for source in sources:
        try:
            result = extract_log_parallel(source, dest, settings, workers)
        except LogError as exc:
            failed.append(
                {
                    "log": source.name,
                    "files": ", ".join(source.uri(p) for p in source.paths),
                    "reason": exc.reason,
                }
            )
            continue
        records += result.records
        logs.append(result.to_dict())
        write_sidecars(result, dest / FRAMES_DIR)
    write_lineage(records, dest / LINEAGE_FILE)
    seen = sum(log["selection"]["seen"] for log in logs)
    report = {
        "frames_dir": FRAMES_DIR,
        "lineage": LINEAGE_FILE,
        "settings": settings.model_dump(mode="json"),
        "frames": len(records),
        "messages_seen": seen,
        "rejected": sum(len(log["rejected"]) for log in logs),
        "reduction": round(1 - len(records) / seen, 4) if seen else 0.0,
        "logs": logs,
        "failed_logs": failed,
    }
    (dest / REPORT_FILE).write_text(json.dumps(report, indent=2))
    return report
