"""Local endpoints' models in worker processes (workflow.local.model_workers): the same answers as
in process, errors that keep their frame and reason, a killed worker that fails only its frame and
is replaced, Ctrl-C left to the parent, and nothing left running after close."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from workflow.domain.errors import InferenceFailed, InvalidImage
from workflow.inference.settings import InferenceSettings
from workflow.local.model_workers import ArchiveRecipe, DetectorRecipe, ProcessPredictor
from workflow.serving.protocol import RequestFailed

SETTINGS = InferenceSettings(tiling=False, score_threshold=0.3)


@pytest.fixture(scope="module")
def frames(shared_dir: Path) -> list[tuple[str, bytes]]:
    paths = sorted((shared_dir / "data" / "nuscenes_cam_front_sequence" / "frames").glob("*.jpg"))[:4]
    return [(str(p), p.read_bytes()) for p in paths]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (ended, not yet reaped) counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_worker_processes_answer_what_the_model_answers_in_process(detector, frames) -> None:
    with ProcessPredictor(DetectorRecipe("nanodet-coco", SETTINGS), workers=2) as workers:
        assert len(set(workers.pids)) == 2 and os.getpid() not in workers.pids
        for frame, data in frames:
            here = detector.predict_bytes(data, frame)
            there = workers.predict_bytes(data, frame)
            assert there.frame == frame and len(there.scores) == len(here.scores) > 0
            np.testing.assert_allclose(there.boxes, here.boxes, rtol=1e-5, atol=1e-3)
            np.testing.assert_allclose(there.scores, here.scores, rtol=1e-5, atol=1e-6)
            assert there.class_names == here.class_names
            assert (there.image_width, there.image_height) == (here.image_width, here.image_height)
        assert workers.cpu_seconds > 0  # the children report what they spent


def test_a_bad_frame_comes_back_as_its_own_error_and_the_worker_goes_on(frames) -> None:
    with ProcessPredictor(DetectorRecipe("nanodet-coco", SETTINGS), workers=1) as workers:
        with pytest.raises(InvalidImage) as caught:
            workers.predict_bytes(b"this is not a jpeg", "s3://bucket/drive/broken.jpg")
        assert caught.value.frame == "s3://bucket/drive/broken.jpg"
        assert "image" in caught.value.reason
        frame, data = frames[0]
        assert len(workers.predict_bytes(data, frame).scores) > 0


def test_a_killed_worker_fails_only_the_frame_it_held_and_is_replaced(frames) -> None:
    with ProcessPredictor(DetectorRecipe("nanodet-coco", SETTINGS), workers=1) as workers:
        frame, data = frames[0]
        workers.predict_bytes(data, frame)
        (victim,) = workers.pids
        os.kill(victim, signal.SIGKILL)
        with pytest.raises(InferenceFailed) as caught:
            workers.predict_bytes(data, "s3://bucket/drive/held.jpg")
        assert caught.value.frame == "s3://bucket/drive/held.jpg"
        assert "model process ended" in caught.value.reason and "signal 9" in caught.value.reason
        (replacement,) = workers.pids
        assert replacement != victim
        assert len(workers.predict_bytes(data, frame).scores) > 0


def test_workers_leave_ctrl_c_to_the_parent_and_stop_at_close(frames) -> None:
    workers = ProcessPredictor(DetectorRecipe("nanodet-coco", SETTINGS), workers=2)
    frame, data = frames[0]
    workers.predict_bytes(data, frame)
    pids = workers.pids
    for pid in pids:
        os.kill(pid, signal.SIGINT)  # what a terminal's Ctrl-C sends the whole process group
    time.sleep(0.3)
    assert len(workers.predict_bytes(data, frame).scores) > 0
    assert all(_alive(pid) for pid in pids)
    workers.close()
    assert not any(_alive(pid) for pid in pids)


def test_a_model_that_cannot_load_says_so_at_the_first_frame(tmp_path) -> None:
    with ProcessPredictor(ArchiveRecipe(str(tmp_path / "not-an-archive")), workers=1) as workers:
        with pytest.raises(RequestFailed) as caught:
            workers.predict_bytes(b"", "s3://bucket/a.jpg")
        assert caught.value.kind == "ModelError"
        assert "could not be loaded" in caught.value.reason
        assert "not an unpacked model archive" in caught.value.reason
