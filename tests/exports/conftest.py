"""One real local run (NanoDet on two KITTI frames, through the state machine) for the export and
report tests."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from workflow.local.endpoint import Predictor

FRAMES = ("000000.png", "000008.png")


@pytest.fixture(scope="package")
def run_out(
    shared_dir: Path, detector_factory: Callable[[], Predictor], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    from workflow.local.runner import LocalModel, run_local

    folder = tmp_path_factory.mktemp("frames")
    for name in FRAMES:
        shutil.copy(shared_dir / "data" / "kitti_object" / "image_2" / name, folder / name)
    out = tmp_path_factory.mktemp("run") / "out"
    outcome = run_local(
        folder, out, [LocalModel(name="nanodet-coco", factory=detector_factory)], timeout_s=600
    )
    assert outcome.status == "SUCCEEDED", outcome.error
    return out
