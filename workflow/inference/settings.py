"""How a detector is run: one typed settings object, recorded into each result's provenance."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# "auto" tiling: frames wider than this many model inputs are tiled (a 1242 or 1600 px road frame
# letterboxed into 416 px loses its distant road users; a 640 px frame does not need tiles).
AUTO_TILE_MARGIN = 1.5
# Tile side when none is given, as a share of the model input: tiles are upscaled into the model
# by 1 / 0.77 = 1.3, so a 30 px pedestrian reaches the size NanoDet finds reliably.
AUTO_TILE_SHARE = 0.77
# Where distant road users are in a forward camera frame: the band around the horizon, as shares
# of the frame height (KITTI's horizon lies near 0.47, nuScenes' near 0.5).
ROAD_BAND = (0.3, 0.75)


class InferenceSettings(BaseModel):
    """Pre/post-processing choices of one detector run.

    Defaults suit road frames (measured in bench/quality.py): letterboxing keeps the aspect of wide
    camera frames; a frame wider than 1.5 model inputs is also tiled, with tiles of 0.77 model
    inputs over the band around the horizon, where road users are small and distant; and the
    score threshold is low (0.05), because small pretrained models score road objects low and the
    profile's thresholds and routing, not the detector, decide what people see.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_size: int | None = Field(
        default=None, ge=32, le=4096, description="square model input side; None = the model's own"
    )
    score_threshold: float = Field(default=0.05, ge=0.0, le=1.0)
    per_class_thresholds: dict[str, float] = Field(
        default_factory=dict, description="class name -> score threshold, overriding score_threshold"
    )
    classes: list[str] | None = Field(default=None, description="keep only these class names")
    nms_iou: float = Field(default=0.6, gt=0.0, le=1.0)
    max_detections: int = Field(default=300, ge=1, le=10_000)
    letterbox: bool = Field(default=True, description="False = naive squash to the input size")
    tiling: bool | Literal["auto"] = Field(
        default="auto",
        description="also run overlapping tiles of the frame; auto: when the frame is wider than "
        f"{AUTO_TILE_MARGIN} model inputs",
    )
    tile_size: int | None = Field(
        default=None,
        ge=32,
        le=8192,
        description=f"tile side in frame pixels; None = {AUTO_TILE_SHARE} of the model input, in 32s",
    )
    tile_band: tuple[float, float] | None = Field(
        default=ROAD_BAND,
        description="(top, bottom) shares of the frame height that tiles cover; None = the whole frame",
    )
    tile_overlap: float = Field(default=0.25, ge=0.0, lt=0.9)
    flip_tta: bool = Field(default=False, description="also run the mirror image of every view")
    intra_op_num_threads: int | None = Field(
        default=None, ge=1, le=256, description="onnxruntime threads; None = onnxruntime's default"
    )

    @model_validator(mode="after")
    def _band_in_frame(self) -> InferenceSettings:
        if self.tile_band is not None and not 0.0 <= self.tile_band[0] < self.tile_band[1] <= 1.0:
            raise ValueError(
                f"tile_band must be (top, bottom) with 0 <= top < bottom <= 1, got {self.tile_band}"
            )
        return self

    def tile_side(self, frame_w: int, input_w: int, input_h: int) -> int | None:
        """The tile side for a frame ``frame_w`` wide, or None when this frame is not tiled."""
        if self.tiling is False or (self.tiling == "auto" and frame_w <= AUTO_TILE_MARGIN * input_w):
            return None
        if self.tile_size is not None:
            return self.tile_size
        return max(32, round(AUTO_TILE_SHARE * max(input_w, input_h) / 32) * 32)

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
