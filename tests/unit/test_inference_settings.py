"""Inference settings: validated once, recorded into provenance."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from workflow.inference.settings import InferenceSettings


def test_defaults_letterbox_and_tile_wide_frames_on_the_horizon_band() -> None:
    # Given default settings, Then frames are letterboxed, tiled when wide, not flipped, at a low threshold
    settings = InferenceSettings()
    assert settings.letterbox and settings.tiling == "auto" and not settings.flip_tta
    assert settings.input_size is None and settings.classes is None
    assert settings.score_threshold == 0.05 and settings.tile_band == (0.3, 0.75)


@pytest.mark.parametrize(
    ("frame_w", "input_w", "values", "side"),
    [
        (1600, 416, {}, 320),  # a nuScenes-size frame: tiles of 0.77 inputs
        (1242, 416, {}, 320),  # KITTI
        (624, 416, {}, None),  # not wider than 1.5 inputs: the whole frame is enough
        (1600, 512, {}, 384),  # CenterNet's 512 input
        (1600, 416, {"tile_size": 416}, 416),
        (320, 416, {"tiling": True}, 320),
        (1600, 416, {"tiling": False}, None),
    ],
)
def test_tile_side_follows_the_frame_width(
    frame_w: int, input_w: int, values: dict[str, object], side: int | None
) -> None:
    # Given settings and a frame, Then the tile side is chosen from the frame and the model input
    assert InferenceSettings.model_validate(values).tile_side(frame_w, input_w, input_w) == side


def test_per_class_threshold_overrides_the_default() -> None:
    # Given a default of 0.3 and 0.6 for cars, Then each class gets its own
    settings = InferenceSettings(score_threshold=0.3, per_class_thresholds={"car": 0.6})
    assert settings.threshold_for("car") == 0.6 and settings.threshold_for("person") == 0.3


@pytest.mark.parametrize(
    "values",
    [
        {"score_threshold": 1.5},
        {"per_class_thresholds": {"car": -0.1}},
        {"nms_iou": 0.0},
        {"tile_overlap": 0.95},
        {"input_size": 16},
        {"unknown_option": True},
        {"tile_band": (0.8, 0.2)},
        {"tiling": "sometimes"},
    ],
    ids=["score", "per-class", "nms-iou", "overlap", "input-size", "extra-field", "band", "tiling"],
)
def test_invalid_settings_are_refused(values: dict[str, object]) -> None:
    # Given an out-of-range or unknown value, Then validation fails
    with pytest.raises(ValidationError):
        InferenceSettings.model_validate(values)


def test_provenance_form_is_json_ready_without_threads() -> None:
    # Given settings with a thread count, Then the provenance form omits it and round-trips
    settings = InferenceSettings(tiling=True, classes=["car"], intra_op_num_threads=2)
    recorded = settings.for_provenance()
    assert "intra_op_num_threads" not in recorded and recorded["classes"] == ["car"]
    assert InferenceSettings.model_validate(recorded) == settings.model_copy(
        update={"intra_op_num_threads": None}
    )
