"""Opening drive logs with ``rosbags`` and summarising their topics (``autolabel logs inspect``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from workflow.domain.errors import AutolabelError
from workflow.logs.sources import LogSource

if TYPE_CHECKING:
    from rosbags.highlevel import AnyReader

COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
RAW_IMAGE = "sensor_msgs/msg/Image"
IMAGE_TYPES = (COMPRESSED_IMAGE, RAW_IMAGE)
NAVSATFIX = "sensor_msgs/msg/NavSatFix"
IMU = "sensor_msgs/msg/Imu"


class LogError(AutolabelError):
    """A log cannot be read, or does not hold what the settings ask for."""

    def __init__(self, log: str, reason: str) -> None:
        super().__init__(f"{log}: {reason}")
        self.log = log
        self.reason = reason


@contextmanager
def open_log(source: LogSource) -> Iterator[AnyReader]:
    """An open ``AnyReader`` over the log's files; type definitions the log lacks (old ``.db3``)
    come from the ROS 1 Noetic or ROS 2 Humble type store."""
    from rosbags.highlevel import AnyReader, AnyReaderError
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS1_NOETIC if source.ros1 else Stores.ROS2_HUMBLE)
    try:
        reader = AnyReader(list(source.paths), default_typestore=store)
        reader.open()
    except (AnyReaderError, FileNotFoundError, ValueError, OSError) as exc:
        raise LogError(source.name, f"cannot be read as a drive log: {exc}") from exc
    try:
        yield reader
    finally:
        reader.close()


@dataclass(frozen=True)
class TopicSummary:
    """One topic of a log: its type, message count, rate and time span (log time)."""

    topic: str
    msgtype: str
    count: int
    first_ns: int | None
    last_ns: int | None

    @property
    def span_s(self) -> float:
        return 0.0 if self.first_ns is None or self.last_ns is None else (self.last_ns - self.first_ns) / 1e9

    @property
    def rate_hz(self) -> float | None:
        return (self.count - 1) / self.span_s if self.count > 1 and self.span_s > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "span_s": round(self.span_s, 3), "rate_hz": _round(self.rate_hz)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def inspect_log(source: LogSource) -> dict[str, Any]:
    """The log's files, start/end/duration and, per topic, type, count, rate and span.

    The per-topic span needs every message's time, so the whole log is read (not deserialized).
    """
    with open_log(source) as reader:
        first: dict[str, int] = {}
        last: dict[str, int] = {}
        counts: dict[str, int] = {}
        from workflow.logs.stream import MessageStream

        # mapped where the format allows: the messages' bytes are never copied, only their times read
        for connection, timestamp, _ in MessageStream(reader).messages(reader.connections):
            topic = connection.topic
            first.setdefault(topic, timestamp)
            last[topic] = timestamp
            counts[topic] = counts.get(topic, 0) + 1
        topics = [
            TopicSummary(
                name, info.msgtype or "(several types)", counts.get(name, 0), first.get(name), last.get(name)
            )
            for name, info in sorted(reader.topics.items())
        ]
        start, end, messages = reader.start_time, reader.end_time, reader.message_count
    return {
        "log": source.name,
        "files": [source.uri(p) for p in source.paths],
        "format": "ros1" if source.ros1 else source.paths[0].suffix.lstrip(".") or "rosbag2",
        "messages": messages,
        "start_ns": start,
        "end_ns": end,
        "duration_s": round(max(0, end - start) / 1e9, 3),
        "topics": [t.to_dict() for t in topics],
    }


def format_inspection(summary: dict[str, Any]) -> str:
    """A human-readable table of :func:`inspect_log`'s summary."""
    lines = [
        f"{summary['log']}  ({summary['format']}, {len(summary['files'])} file(s), "
        f"{summary['messages']} messages, {summary['duration_s']:.1f} s)"
    ]
    for path in summary["files"]:
        lines.append(f"  {path}")
    lines.append(f"  {'topic':<32} {'type':<34} {'count':>7} {'rate Hz':>8} {'span s':>8}")
    for t in summary["topics"]:
        rate = "-" if t["rate_hz"] is None else f"{t['rate_hz']:.2f}"
        lines.append(f"  {t['topic']:<32} {t['msgtype']:<34} {t['count']:>7} {rate:>8} {t['span_s']:>8.2f}")
    return "\n".join(lines)
