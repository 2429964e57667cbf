"""Where a frame came from: the drive log, the message in it, and the car's position at that time.

Extraction writes one :class:`FrameLineage` per frame, one JSON object a line, to ``frames.jsonl``
beside the ``frames/`` folder, keyed by ``frame`` (the frame's path under ``frames/``). A reviewed
label thus leads back to its log, topic, message and time: ``(log_uri, topic, index)`` names the
message, ``log_time_ns`` finds it again (``reader.messages(start=log_time_ns, stop=log_time_ns + 1)``).

So that the workflow can carry a frame's record into what it publishes without reading a whole
log's ``frames.jsonl``, extraction also writes the records beside the frames, in chunks named from
the frame's own name: frame ``frames/<log>/<topic>/<index:06d>-<time_ns:019d>.jpg`` (:func:`frame_name`;
the index has 7+ digits in a topic of 10^6 messages or more) has its record
in ``frames/<log>/<topic>/lineage-<index // LINEAGE_CHUNK:06d>.jsonl`` (:func:`lineage_key`), so a
listing page reads only the chunks of its own frames. Each log's selection counts are in
``frames/<log>/selection.json`` (:class:`LogSelection`), which the listing adds to the run's report.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

LINEAGE_VERSION = 1
LINEAGE_CHUNK = 1000  # frame indices (message offsets) per lineage chunk
SELECTION_FILE = "selection.json"
# The key a frame's published record has on manifest lines, COCO images and report lines. Ground
# Truth copies a manifest line's other top-level keys through to its output; it must not end in
# ``-ref`` or ``-metadata``, which name label attributes.
LINEAGE_FIELD = "lineage"
_FRAME_NAME = re.compile(r"(?P<index>\d{6,})-\d{19}\.(?:jpe?g|png)")
_LINEAGE_NAME = re.compile(r"lineage-\d{6,}\.jsonl")


class _Record(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)


class GpsSample(_Record):
    """The GPS fix (``sensor_msgs/NavSatFix``) nearest the frame within the skew."""

    topic: str
    stamp_ns: int
    skew_s: float = Field(description="fix time minus frame time, seconds")
    latitude: float
    longitude: float
    altitude: float
    status: int = Field(description="NavSatStatus: -1 no fix, 0 fix, 1 SBAS, 2 GBAS")


class ImuSample(_Record):
    """The IMU sample (``sensor_msgs/Imu``) nearest the frame within the skew."""

    topic: str
    stamp_ns: int
    skew_s: float
    orientation: tuple[float, float, float, float] = Field(description="quaternion x, y, z, w")
    angular_velocity: tuple[float, float, float] = Field(description="rad/s")
    linear_acceleration: tuple[float, float, float] = Field(description="m/s^2")


class FrameLineage(_Record):
    """One extracted frame's record (a line of ``frames.jsonl``)."""

    version: int = LINEAGE_VERSION
    frame: str = Field(
        description="path of the frame file under frames/, e.g. drive/camera_front/000012-....jpg"
    )
    log_uri: str = Field(description="the log file the message is in (file:// or s3://; a split bag's part)")
    log_name: str = Field(description="the log's name (a split bag's common stem)")
    topic: str
    msgtype: str = Field(description="sensor_msgs/msg/CompressedImage or sensor_msgs/msg/Image")
    index: int = Field(ge=0, description="offset: the message's position in its topic, 0-based, time order")
    log_time_ns: int = Field(description="when the log recorded the message (receive time)")
    stamp_ns: int = Field(description="the message's header stamp (0 when the publisher left it unset)")
    frame_id: str = ""
    encoding: str = Field(
        description="the message's format (jpeg, png) or raw encoding (rgb8, bayer_rggb8...)"
    )
    width: int | None = None
    height: int | None = None
    distance_m: float | None = Field(
        default=None, description="distance travelled along the GPS track since the log's first fix"
    )
    gps: GpsSample | None = None
    imu: ImuSample | None = None

    def summary(self) -> dict[str, Any]:
        """A flat, JSON-ready subset for a manifest line's metadata or a COCO image's extra fields:
        enough to find the message again and place the frame on the map."""
        out: dict[str, Any] = {
            "log_uri": self.log_uri,
            "topic": self.topic,
            "index": self.index,
            "log_time_ns": self.log_time_ns,
            "stamp_ns": self.stamp_ns,
        }
        if self.gps is not None:
            out.update(latitude=self.gps.latitude, longitude=self.gps.longitude, gps_skew_s=self.gps.skew_s)
        if self.distance_m is not None:
            out["distance_m"] = self.distance_m
        return out

    def published(self) -> dict[str, Any]:
        """The record as it travels into manifest lines, COCO images and report lines: all of it but
        the frame's path (the line or image names the frame already)."""
        return self.model_dump(mode="json", exclude={"frame"})


class LogSelection(_Record):
    """What selection did to one log's frames (``frames/<log>/selection.json``)."""

    log: str
    files: list[str] = Field(default_factory=list)
    seen: int = Field(ge=0, description="camera messages met")
    kept: int = Field(ge=0, description="frames extracted")
    dropped: dict[str, int] = Field(default_factory=dict, description="frames each selection rule dropped")
    rejected: int = Field(
        0, ge=0, description="messages that could not be made a frame (the reasons: extraction.json)"
    )


def index_width(count: int) -> int:
    """Digits of a topic's frame offsets in its frame names: 6, or as many as the topic's last offset
    needs. One width per topic keeps the names' lexical order the offsets' order: a topic of 10^6
    messages or more has all its names zero-padded to 7+ digits (``0999999-`` before ``1000000-``),
    while a smaller one keeps the 6-digit names it always had."""
    return max(6, len(str(max(count, 1) - 1)))


def frame_name(index: int, time_ns: int, suffix: str, width: int = 6) -> str:
    """An extracted frame's file name: ``<index>-<time_ns:019d><suffix>``, the index zero-padded to
    ``width`` digits (:func:`index_width` of the topic's message count)."""
    return f"{index:0{width}d}-{time_ns:019d}{suffix}"


def lineage_chunk_name(index: int) -> str:
    """The lineage chunk file of the frame at message offset ``index``, in the frame's folder."""
    return f"lineage-{index // LINEAGE_CHUNK:06d}.jsonl"


def lineage_key(frame_key: str) -> str | None:
    """Where an extracted frame's lineage record is (a key or path); None for a frame whose name is
    not one extraction gives (``<index:06d>-<time_ns:019d>.<ext>``)."""
    folder, _, name = frame_key.rpartition("/")
    match = _FRAME_NAME.fullmatch(name)
    if match is None:
        return None
    chunk = lineage_chunk_name(int(match["index"]))
    return f"{folder}/{chunk}" if folder else chunk


def is_lineage_key(key: str) -> bool:
    """True for an extraction's sidecar objects: lineage chunks and per-log selection counts."""
    name = key.rpartition("/")[2]
    return name == SELECTION_FILE or _LINEAGE_NAME.fullmatch(name) is not None


def parse_lineage_chunk(body: bytes) -> tuple[dict[str, FrameLineage], list[str]]:
    """A lineage chunk's records by frame file name, and what is wrong with its other lines.

    Each line stands alone: a truncated or invalid line costs only its own frame's record, and is
    described (line number and why) so that the run can report it; the chunk's other records are used.
    """
    records: dict[str, FrameLineage] = {}
    problems: list[str] = []
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = body.decode("utf-8", errors="replace")
        problems.append(f"not UTF-8 text ({exc.reason} at byte {exc.start})")
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError as exc:
            problems.append(f"line {number} is not JSON ({exc}), a truncated or damaged record")
            continue
        if not isinstance(data, dict):
            problems.append(f"line {number} is a JSON {type(data).__name__}, not a lineage record")
            continue
        try:
            record = FrameLineage.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "record"
            more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
            frame = f" (frame {data['frame']})" if isinstance(data.get("frame"), str) else ""
            problems.append(f"line {number}{frame} is not a lineage record: {where}: {first['msg']}{more}")
            continue
        records[record.frame.rpartition("/")[2]] = record
    return records, problems


def write_lineage(records: Iterable[FrameLineage], path: Path) -> int:
    """Write records as JSON lines; returns how many."""
    count = 0
    with path.open("w", encoding="utf-8") as out:
        for record in records:
            out.write(record.model_dump_json() + "\n")
            count += 1
    return count


def read_lineage(path: Path) -> dict[str, FrameLineage]:
    """``frames.jsonl`` as a map from frame path to record."""
    records = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            record = FrameLineage.model_validate_json(line)
            records[record.frame] = record
    return records
