"""Drive-log settings: which topics become frames, how each frame is traced, and which frames are kept.

A drive log (ROS 1 ``.bag``, ROS 2 ``.db3``, ``.mcap``) holds far more frames than are worth
labelling: a 15 Hz stream repeats itself, and a car waiting at a light records hundreds of the
same picture. :class:`FrameSelection` says which frames go on, by rules applied in this order,
each counting what it dropped:

1. ``every_nth``: keep the 1st, (N+1)-th, ... frame of each camera topic;
2. ``min_interval_s``: at least this long since the topic's last kept frame;
3. ``min_distance_m``: at least this far travelled along the GPS track since the last kept frame;
4. ``dedupe``: not a near-duplicate (perceptual hash within ``max_distance`` bits) of the last kept frame.

The rules are deterministic: the same log and settings keep the same frames. :class:`LogSettings`
holds the extraction settings and the selection; a labeling profile carries one as ``logs``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

HashMethod = Literal["dhash", "phash"]
Clock = Literal["header", "log"]


class _Section(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)


class DedupeSettings(_Section):
    """Near-duplicate removal by the Hamming distance of 64-bit perceptual hashes."""

    enabled: bool = True
    method: HashMethod = Field(
        default="phash",
        description="phash (8x8 DCT corner; re-encodes of a frame at 0-2 bits, consecutive distinct "
        "nuScenes keyframes at 4-16) or dhash (difference hash; distinct keyframes as close as 0-1)",
    )
    max_distance: int = Field(
        default=2,
        ge=0,
        le=64,
        description="a frame whose hash is within this many bits of the last kept frame's is dropped",
    )


class FrameSelection(_Section):
    """Which extracted frames are kept; see the module docstring for the order of the rules."""

    every_nth: int = Field(default=1, ge=1, description="keep every N-th frame of a topic (1: all)")
    min_interval_s: float = Field(default=0.0, ge=0.0, description="minimum time between kept frames")
    min_distance_m: float = Field(
        default=0.0, ge=0.0, description="minimum distance travelled (haversine over GPS) between kept frames"
    )
    gps_min_step_m: float = Field(
        default=0.5,
        ge=0.0,
        description="GPS steps shorter than this add nothing to the distance (a stopped car's jitter)",
    )
    without_gps: Literal["keep", "drop"] = Field(
        default="keep", description="frames with no GPS fix within the skew, when min_distance_m is set"
    )
    dedupe: DedupeSettings = DedupeSettings()

    @property
    def active(self) -> bool:
        """Whether any rule can drop a frame."""
        return self.every_nth > 1 or self.min_interval_s > 0 or self.min_distance_m > 0 or self.dedupe.enabled


class LogSettings(_Section):
    """How frames come out of a drive log: topics, image conversion, lineage and selection."""

    topics: tuple[str, ...] = Field(
        default=(), description="camera topics to extract; empty: every image topic the log holds"
    )
    gps_topic: str | None = Field(default=None, description="NavSatFix topic; None: the log's only one")
    imu_topic: str | None = Field(default=None, description="Imu topic; None: the log's only one")
    max_skew_s: float = Field(
        default=0.1, ge=0.0, description="a GPS fix / IMU sample further than this from the frame is not its"
    )
    clock: Clock = Field(
        default="header",
        description="time of a frame for matching and selection: its header stamp (log time when the stamp "
        "is zero) or the log's receive time",
    )
    raw_format: Literal["jpeg", "png"] = Field(
        default="jpeg", description="file format of converted raw sensor_msgs/Image frames"
    )
    jpeg_quality: int = Field(default=95, ge=1, le=100)
    bayer: Literal["demosaic", "reject"] = Field(
        default="demosaic", description="Bayer-encoded raw frames: bilinear demosaic, or reject each one"
    )
    mono16_max: int = Field(
        default=65535, ge=1, le=65535, description="mono16 value shown as white (4095 for a 12-bit sensor)"
    )
    selection: FrameSelection = FrameSelection()
