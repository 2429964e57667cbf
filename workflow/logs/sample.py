"""Write a drive log from real frames: a camera topic, a GPS track with a stop, and an IMU.

Tests and ``make bench`` build their logs with this at run time (nothing binary is committed), with
the ``rosbags`` writers, in all three formats: ROS 1 ``.bag`` (optionally split in parts), ROS 2
``.db3`` and ``.mcap`` (each written as a rosbag2 folder holding the one storage file). The camera
sees the given frames at ``rate_hz``; at ``stop_after`` frames the car stops for ``stop_frames``
frames, during which the GPS stands still and the camera sees the last frame again, with sensor
noise and re-encoded, as a camera at a red light does.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

LogFormat = Literal["bag", "db3", "mcap"]
ImageKind = Literal["compressed", "raw"]
CAMERA_TOPIC = "/camera/front/image"
GPS_TOPIC = "/gps/fix"
IMU_TOPIC = "/imu/data"
START_NS = 1_700_000_000_000_000_000
RECEIVE_LATENCY_NS = 20_000_000  # log (receive) time = header stamp + 20 ms
METRES_PER_DEG_LAT = 111_195.0


@dataclass(frozen=True)
class DriveSpec:
    """What the synthetic drive looks like."""

    rate_hz: float = 10.0
    stop_after: int = 20
    stop_frames: int = 20
    speed_mps: float = 8.0
    gps_hz: float = 5.0
    imu_hz: float = 50.0
    lat0: float = 42.3
    lon0: float = -83.2
    noise_sigma: float = 3.0
    laps: int = 1  # the drive repeated (a longer log for throughput), the car moving on each lap
    cameras: int = 1  # more camera topics (/camera/side<N>/image) seeing the same frames

    @property
    def camera_topics(self) -> tuple[str, ...]:
        return (CAMERA_TOPIC, *(f"/camera/side{n}/image" for n in range(1, self.cameras)))


def camera_frames(frames: Sequence[bytes], spec: DriveSpec, seed: int = 0) -> list[bytes]:
    """The camera's JPEG stream: the frames, with the stop's noisy re-encodes inserted, ``laps`` times."""
    return _lap(frames, spec, seed) * spec.laps


def _lap(frames: Sequence[bytes], spec: DriveSpec, seed: int) -> list[bytes]:
    if not 0 < spec.stop_after <= len(frames):
        return list(frames)
    rng = np.random.default_rng(seed)
    base = np.asarray(Image.open(io.BytesIO(frames[spec.stop_after - 1])).convert("RGB"), dtype=np.float32)
    stopped = []
    for _ in range(spec.stop_frames):
        noisy = np.clip(base + rng.normal(0.0, spec.noise_sigma, base.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(noisy).save(buf, "JPEG", quality=int(rng.integers(80, 96)))
        stopped.append(buf.getvalue())
    return [*frames[: spec.stop_after], *stopped, *frames[spec.stop_after :]]


def track_position(t_s: float, spec: DriveSpec, lap_frames: int, stops: bool = True) -> tuple[float, float]:
    """Latitude/longitude at ``t_s`` seconds: northward at speed_mps, standing still during each stop."""
    stop_start = spec.stop_after / spec.rate_hz
    stop_len = spec.stop_frames / spec.rate_hz if stops else 0.0
    lap_s = lap_frames / spec.rate_hz
    lap, t_s = divmod(t_s, lap_s)
    moving = lap * (lap_s - stop_len) + min(t_s, stop_start) + max(0.0, t_s - stop_start - stop_len)
    return spec.lat0 + spec.speed_mps * moving / METRES_PER_DEG_LAT, spec.lon0


def _stamp(types: Any, ns: int) -> Any:
    return types["builtin_interfaces/msg/Time"](sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _header(types: Any, ros1: bool, ns: int, frame_id: str, seq: int) -> Any:
    kwargs: dict[str, Any] = {"stamp": _stamp(types, ns), "frame_id": frame_id}
    if ros1:
        kwargs["seq"] = seq
    return types["std_msgs/msg/Header"](**kwargs)


def raw_pixels(jpeg: bytes, encoding: str) -> tuple[np.ndarray, int]:
    """The frame as a ``sensor_msgs/Image`` pixel buffer in ``encoding``, and its row step in bytes."""
    rgb = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
    if encoding == "rgb8":
        px = rgb
    elif encoding == "bgr8":
        px = rgb[..., ::-1]
    elif encoding in ("rgba8", "bgra8"):
        color = rgb if encoding == "rgba8" else rgb[..., ::-1]
        px = np.dstack([color, np.full(rgb.shape[:2], 255, np.uint8)])
    elif encoding == "mono8":
        px = np.asarray(Image.fromarray(rgb).convert("L"))
    elif encoding == "mono16":
        px = (np.asarray(Image.fromarray(rgb).convert("L")).astype(np.uint16) * 257).astype("<u2")
    elif encoding.startswith("bayer_") and encoding.endswith("8"):
        pattern = encoding[len("bayer_") : -1]
        px = np.zeros(rgb.shape[:2], np.uint8)
        for (dy, dx), channel in zip(((0, 0), (0, 1), (1, 0), (1, 1)), pattern, strict=True):
            px[dy::2, dx::2] = rgb[dy::2, dx::2, "rgb".index(channel)]
    else:
        raise ValueError(f"no sample writer for encoding {encoding!r}")
    px = np.ascontiguousarray(px)
    return px, px.strides[0]


def _messages(
    frames: Sequence[bytes], image: ImageKind, encoding: str, spec: DriveSpec, types: Any, ros1: bool
) -> Iterator[tuple[str, int, Any]]:
    """(topic, log time ns, message) of the whole drive, in time order."""
    stream = camera_frames(frames, spec)
    duration_s = len(stream) / spec.rate_hz
    events: list[tuple[int, str, int]] = []
    for camera in spec.camera_topics:
        events += [(round(i * 1e9 / spec.rate_hz), camera, i) for i in range(len(stream))]
    events += [
        (round(i * 1e9 / spec.gps_hz), GPS_TOPIC, i) for i in range(math.ceil(duration_s * spec.gps_hz))
    ]
    events += [
        (round(i * 1e9 / spec.imu_hz), IMU_TOPIC, i) for i in range(math.ceil(duration_s * spec.imu_hz))
    ]
    for offset, topic, i in sorted(events):
        ns = START_NS + offset
        if topic in spec.camera_topics:
            header = _header(types, ros1, ns, topic.split("/")[2], i)
            if image == "compressed":
                data = np.frombuffer(stream[i], np.uint8)
                msg = types["sensor_msgs/msg/CompressedImage"](header=header, format="jpeg", data=data)
            else:
                px, step = raw_pixels(stream[i], encoding)
                msg = types["sensor_msgs/msg/Image"](
                    header=header,
                    height=px.shape[0],
                    width=px.shape[1],
                    encoding=encoding,
                    is_bigendian=0,
                    step=step,
                    data=px.reshape(-1).view(np.uint8),
                )
        elif topic == GPS_TOPIC:
            lap_frames = len(stream) // spec.laps
            lat, lon = track_position(offset / 1e9, spec, lap_frames, lap_frames > len(frames))
            status = types["sensor_msgs/msg/NavSatStatus"](status=0, service=1)
            msg = types["sensor_msgs/msg/NavSatFix"](
                header=_header(types, ros1, ns, "gps", i),
                status=status,
                latitude=lat,
                longitude=lon,
                altitude=180.0,
                position_covariance=np.zeros(9, np.float64),
                position_covariance_type=0,
            )
        else:
            v3, quat = types["geometry_msgs/msg/Vector3"], types["geometry_msgs/msg/Quaternion"]
            msg = types["sensor_msgs/msg/Imu"](
                header=_header(types, ros1, ns, "imu", i),
                orientation=quat(x=0.0, y=0.0, z=0.0, w=1.0),
                orientation_covariance=np.zeros(9, np.float64),
                angular_velocity=v3(x=0.0, y=0.0, z=0.01 * i),
                angular_velocity_covariance=np.zeros(9, np.float64),
                linear_acceleration=v3(x=0.1, y=0.0, z=9.81),
                linear_acceleration_covariance=np.zeros(9, np.float64),
            )
        yield topic, ns + RECEIVE_LATENCY_NS, msg


def _msgtype(topic: str, image: ImageKind) -> str:
    if topic.startswith("/camera/"):
        return "sensor_msgs/msg/CompressedImage" if image == "compressed" else "sensor_msgs/msg/Image"
    return "sensor_msgs/msg/NavSatFix" if topic == GPS_TOPIC else "sensor_msgs/msg/Imu"


def write_drive_log(
    path: Path,
    frames: Sequence[bytes],
    fmt: LogFormat,
    *,
    image: ImageKind = "compressed",
    encoding: str = "rgb8",
    spec: DriveSpec = DriveSpec(),
    split: int = 1,
    compression: Literal["none", "lz4", "bz2"] = "none",
) -> list[Path]:
    """Write the drive to ``path`` and return the files a reader opens.

    ``bag``: ``path`` is the bag (with ``split`` > 1: ``<stem>_0.bag``, ``<stem>_1.bag``, ... as
    ``rosbag record --split`` names them). ``db3``/``mcap``: ``path`` is the rosbag2 folder; the
    returned file is the storage file inside it. ``compression``: ROS 1 chunk compression.
    """
    from rosbags.typesys import Stores, get_typestore

    ros1 = fmt == "bag"
    typestore = get_typestore(Stores.ROS1_NOETIC if ros1 else Stores.ROS2_HUMBLE)
    messages = list(_messages(frames, image, encoding, spec, typestore.types, ros1))
    if ros1:
        return _write_ros1(path, messages, image, typestore, split, spec, compression)
    return [_write_ros2(path, messages, image, typestore, fmt, spec)]


def _write_ros1(
    path: Path,
    messages: list[tuple[str, int, Any]],
    image: ImageKind,
    ts: Any,
    split: int,
    spec: DriveSpec,
    compression: str = "none",
) -> list[Path]:
    from rosbags.rosbag1 import Writer

    if split <= 1:
        parts = [(path, messages)]
    else:
        size = math.ceil(len(messages) / split)
        parts = [
            (path.with_name(f"{path.stem}_{n}.bag"), messages[n * size : (n + 1) * size])
            for n in range(split)
        ]
    for part, chunk in parts:
        writer = Writer(part)
        if compression != "none":
            writer.set_compression(Writer.CompressionFormat[compression.upper()])
        with writer:
            conns = {
                t: writer.add_connection(t, _msgtype(t, image), typestore=ts)
                for t in (*spec.camera_topics, GPS_TOPIC, IMU_TOPIC)
            }
            for topic, ns, msg in chunk:
                writer.write(conns[topic], ns, ts.serialize_ros1(msg, _msgtype(topic, image)))
    return [p for p, _ in parts]


def _write_ros2(
    path: Path,
    messages: list[tuple[str, int, Any]],
    image: ImageKind,
    ts: Any,
    fmt: LogFormat,
    spec: DriveSpec,
) -> Path:
    from rosbags.rosbag2 import StoragePlugin, Writer

    plugin = StoragePlugin.MCAP if fmt == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conns = {
            t: writer.add_connection(t, _msgtype(t, image), typestore=ts)
            for t in (*spec.camera_topics, GPS_TOPIC, IMU_TOPIC)
        }
        for topic, ns, msg in messages:
            writer.write(conns[topic], ns, ts.serialize_cdr(msg, _msgtype(topic, image)))
    (storage,) = path.glob(f"*.{fmt}")
    return storage
