"""Drive logs written at test time from the real nuScenes sequence (nothing binary is committed).

The camera topic plays the 40 real front-camera frames at 10 Hz; after frame 20 the car stops for
20 frames (2 s) in which the GPS stands still and the camera sees frame 20 again with sensor noise,
re-encoded. GPS at 5 Hz, IMU at 50 Hz; log time is header stamp + 20 ms.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from log_helpers import LogFactory

from workflow.logs.sample import DriveSpec


@pytest.fixture(scope="session")
def nuscenes_frames(shared_dir: Path) -> list[bytes]:
    folder = shared_dir / "data" / "nuscenes_cam_front_sequence" / "frames"
    frames = [p.read_bytes() for p in sorted(folder.glob("*.jpg"))]
    if len(frames) != 40:
        pytest.skip(f"expected the 40-frame nuScenes sequence in {folder}, found {len(frames)} frames")
    return frames


@pytest.fixture(scope="session")
def drive_spec() -> DriveSpec:
    return DriveSpec()


@pytest.fixture(scope="session")
def drive_log(
    tmp_path_factory: pytest.TempPathFactory, nuscenes_frames: list[bytes], drive_spec: DriveSpec
) -> LogFactory:
    """``drive_log(fmt, image, encoding, split)`` -> the files of that log (written once a session)."""
    return LogFactory(tmp_path_factory.mktemp("drive-logs"), nuscenes_frames, drive_spec)
