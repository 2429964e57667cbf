"""GPS and IMU tracks of a log: the sample nearest a frame within a skew, and distance travelled.

Distance travelled is the haversine length of the GPS track, counted from an anchor fix that moves
on only once the car is ``min_step_m`` away from it, so that a stopped car's GPS jitter does not add
up to metres. Fixes without a position (status -1, NaN) take no part.
"""

from __future__ import annotations

import bisect
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from workflow.domain.lineage import GpsSample, ImuSample

EARTH_RADIUS_M = 6_371_008.8  # mean Earth radius (IUGG)


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle distance in metres between two WGS84 positions (degrees)."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def stamp_ns(msg: Any) -> int:
    """A message's header stamp in nanoseconds (0 when unset)."""
    stamp = msg.header.stamp
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


_CDR_LE = b"\x00\x01"  # the CDR encapsulation header of a little-endian rosbag2 message


def raw_stamp_ns(raw: bytes | memoryview, ros2: bool) -> int | None:
    """The header stamp of a serialized message whose first field is a ``std_msgs/Header``, read
    without deserializing it (ROS 1: seq, sec, nsec; CDR: the encapsulation header, sec, nanosec);
    None when the bytes are not a layout read here (big-endian CDR, too short)."""
    if len(raw) < 12 or (ros2 and raw[:2] != _CDR_LE):
        return None
    sec, nsec = struct.unpack_from("<iI" if ros2 else "<II", raw, 4)
    return int(sec) * 1_000_000_000 + int(nsec)


@dataclass(frozen=True)
class RawMessage:
    """A message kept serialized until it is needed (an IMU sample is, only when nearest a frame)."""

    raw: bytes | memoryview
    decode: Callable[[bytes | memoryview], Any]


def _nearest(times: list[int], t: int, max_skew_ns: int) -> int | None:
    i = bisect.bisect_left(times, t)
    best = min((j for j in (i - 1, i) if 0 <= j < len(times)), key=lambda j: abs(times[j] - t), default=None)
    return best if best is not None and abs(times[best] - t) <= max_skew_ns else None


@dataclass
class GpsTrack:
    """Fixes of one NavSatFix topic in time order, and the distance travelled at each."""

    topic: str
    min_step_m: float = 0.5
    times: list[int] = field(default_factory=list)
    fixes: list[tuple[float, float, float, int, int]] = field(
        default_factory=list
    )  # lat, lon, alt, status, stamp
    travelled: list[float] = field(default_factory=list)
    _anchor: tuple[float, float] | None = None
    _distance: float = 0.0
    _arrays: tuple[np.ndarray, np.ndarray] | None = None

    def add(self, t_ns: int, msg: Any) -> None:
        """Add a fix seen at ``t_ns`` (fixes must come in time order)."""
        lat, lon, status = float(msg.latitude), float(msg.longitude), int(msg.status.status)
        if status < 0 or not (math.isfinite(lat) and math.isfinite(lon)):
            return
        if self._anchor is None:
            self._anchor = (lat, lon)
        else:
            step = haversine_m(*self._anchor, lat, lon)
            if step >= self.min_step_m:
                self._distance += step
                self._anchor = (lat, lon)
        self.times.append(t_ns)
        self.fixes.append((lat, lon, float(msg.altitude), status, stamp_ns(msg)))
        self.travelled.append(self._distance)

    def nearest(self, t_ns: int, max_skew_ns: int) -> GpsSample | None:
        i = _nearest(self.times, t_ns, max_skew_ns)
        if i is None:
            return None
        lat, lon, alt, status, stamp = self.fixes[i]
        return GpsSample(
            topic=self.topic,
            stamp_ns=stamp,
            skew_s=(self.times[i] - t_ns) / 1e9,
            latitude=lat,
            longitude=lon,
            altitude=alt,
            status=status,
        )

    def distance_at(self, t_ns: int, max_skew_ns: int) -> float | None:
        """Distance travelled at ``t_ns``, interpolated between fixes; None with no fix within the skew."""
        if _nearest(self.times, t_ns, max_skew_ns) is None:
            return None
        if self._arrays is None or len(self._arrays[0]) != len(self.times):  # once per track, not per frame
            self._arrays = (np.asarray(self.times, np.float64), np.asarray(self.travelled, np.float64))
        return float(np.interp(float(t_ns), *self._arrays))


@dataclass
class ImuTrack:
    """Samples of one Imu topic in time order."""

    topic: str
    times: list[int] = field(default_factory=list)
    samples: list[Any] = field(default_factory=list)  # Imu messages, or RawMessage to decode when needed

    def add(self, t_ns: int, msg: Any) -> None:
        """Add a sample seen at ``t_ns`` (in time order): an Imu message, or a :class:`RawMessage` (an
        IMU at 155 Hz is ten samples a frame; only the one nearest a kept frame is deserialized)."""
        self.times.append(t_ns)
        self.samples.append(msg)

    def nearest(self, t_ns: int, max_skew_ns: int) -> ImuSample | None:
        i = _nearest(self.times, t_ns, max_skew_ns)
        if i is None:
            return None
        msg = self.samples[i]
        if isinstance(msg, RawMessage):
            msg = self.samples[i] = msg.decode(msg.raw)
        o, w, a = msg.orientation, msg.angular_velocity, msg.linear_acceleration
        return ImuSample(
            topic=self.topic,
            stamp_ns=stamp_ns(msg),
            skew_s=(self.times[i] - t_ns) / 1e9,
            orientation=(float(o.x), float(o.y), float(o.z), float(o.w)),
            angular_velocity=(float(w.x), float(w.y), float(w.z)),
            linear_acceleration=(float(a.x), float(a.y), float(a.z)),
        )
