"""Inference settings: validated once, recorded into provenance."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from workflow.inference.settings import InferenceSettings


def test_defaults_letterbox_without_tiling_or_tta() -> None:
    # Given default settings, Then frames are letterboxed, not tiled nor flipped
    settings = InferenceSettings()
    assert settings.letterbox and not settings.tiling and not settings.flip_tta
    assert settings.input_size is None and settings.classes is None


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
    ],
    ids=["score", "per-class", "nms-iou", "overlap", "input-size", "extra-field"],
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
