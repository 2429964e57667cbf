"""How a detector is run: one typed settings object, recorded into each result's provenance."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class InferenceSettings(BaseModel):
    """Pre/post-processing choices of one detector run.

    Defaults suit road frames: letterboxing keeps the aspect of wide camera frames, and the
    score threshold is low because small pretrained models score road objects low (NanoDet
    gives clear cars 0.35-0.55); pre-labels are reviewed by people anyway.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_size: int | None = Field(
        default=None, ge=32, le=4096, description="square model input side; None = the model's own"
    )
    score_threshold: float = Field(default=0.3, ge=0.0, le=1.0)
    per_class_thresholds: dict[str, float] = Field(
        default_factory=dict, description="class name -> score threshold, overriding score_threshold"
    )
    classes: list[str] | None = Field(default=None, description="keep only these class names")
    nms_iou: float = Field(default=0.6, gt=0.0, le=1.0)
    max_detections: int = Field(default=300, ge=1, le=10_000)
    letterbox: bool = Field(default=True, description="False = naive squash to the input size")
    tiling: bool = Field(default=False, description="also run overlapping tiles of the frame")
    tile_size: int | None = Field(
        default=None, ge=32, le=8192, description="tile side in frame pixels; None = the model input size"
    )
    tile_overlap: float = Field(default=0.25, ge=0.0, lt=0.9)
    flip_tta: bool = Field(default=False, description="also run the mirror image of every view")
    intra_op_num_threads: int | None = Field(
        default=None, ge=1, le=256, description="onnxruntime threads; None = onnxruntime's default"
    )

    @field_validator("per_class_thresholds")
    @classmethod
    def _thresholds_in_range(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {name: t for name, t in value.items() if not 0.0 <= t <= 1.0}
        if bad:
            raise ValueError(f"per-class thresholds must lie in [0, 1]: {bad}")
        return value

    def threshold_for(self, class_name: str) -> float:
        """The score threshold that applies to one class."""
        return self.per_class_thresholds.get(class_name, self.score_threshold)

    def for_provenance(self) -> dict[str, Any]:
        """The settings that shape the result (thread count does not), JSON-ready."""
        return self.model_dump(mode="json", exclude={"intra_op_num_threads"})
