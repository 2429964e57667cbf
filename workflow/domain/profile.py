"""The labeling profile: one file that says which models label a run and how their labels combine.

A profile (YAML or JSON, validated here) holds the project taxonomy (names, colours, which
classes people review), the models (endpoint name, local model, batch requests and response format, a class
map from the model's classes into the taxonomy, per-class score thresholds, a weight), how the
models' boxes are fused, how frames are routed to people, and review settings. PrepareRun copies
the resolved profile into the run's S3 prefix, so every run records what labeled it.

Without a profile, :func:`default_profile` applies: the COCO NanoDet mapped onto the ADAS
taxonomy, any other model mapped by COCO and taxonomy names, and every frame reviewed.
``profiles/default.yaml`` in the repository is the same profile as a file.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from workflow.domain.errors import ConfigurationError
from workflow.domain.groundtruth import MAX_WORKER_UI_LABELS
from workflow.domain.prices import DEFAULT_WORKERS_PER_FRAME, Workforce
from workflow.domain.routing import RoutingPolicy
from workflow.domain.selection import LogSettings
from workflow.domain.taxonomy import COCO_TO_ADAS, DEFAULT_ADAS_TAXONOMY, ClassMap, Taxonomy
from workflow.domain.vocabulary import FusionMethod, ResponseFormat

PROFILE_VERSION: Literal[1] = 1
# The score from which the built-in profile shows a pre-label to people (bench/quality.py: on the
# labeled KITTI frames, reviewer effort saved is 73 % at 0.25, 79 % at 0.3, -150 % at 0.05 where
# people delete hundreds of doubtful boxes; the detector itself keeps candidates from 0.05).
DEFAULT_MIN_SCORE = 0.25


class _Section(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)


class ModelMapping(_Section):
    """How one model's detections enter the taxonomy: class map, thresholds, weight."""

    class_map: dict[str, str] = Field(
        min_length=1, description="model class name -> taxonomy class; unlisted classes are dropped"
    )
    min_score: float = Field(
        default=0.0, ge=0.0, le=1.0, description="score threshold of classes not in thresholds"
    )
    thresholds: dict[str, float] = Field(default_factory=dict, description="taxonomy class -> threshold")
    weight: float = Field(
        default=1.0, gt=0.0, le=100.0, description="trust in fusion, relative to the others"
    )
    class_weights: dict[str, float] = Field(default_factory=dict, description="taxonomy class -> weight")

    @field_validator("thresholds")
    @classmethod
    def _in_unit_range(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if not 0.0 <= v <= 1.0}
        if bad:
            raise ValueError(f"thresholds must lie in [0, 1]: {bad}")
        return value

    @field_validator("class_weights")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in value.items() if not 0.0 < v <= 100.0}
        if bad:
            raise ValueError(f"class weights must lie in (0, 100]: {bad}")
        return value

    def threshold(self, class_name: str) -> float:
        return self.thresholds.get(class_name, self.min_score)

    def covers(self) -> frozenset[str]:
        """The taxonomy classes this model can report."""
        return frozenset(self.class_map.values())

    def lowest_kept_score(self) -> float:
        """The lowest score any of this model's detections can be kept with: a candidate under it
        is dropped whatever its class (below its class's threshold, or of a class not mapped)."""
        return min(self.threshold(name) for name in set(self.class_map.values()))

    def unknown_classes(self, taxonomy: Taxonomy) -> list[str]:
        named = set(self.class_map.values()) | set(self.thresholds) | set(self.class_weights)
        return sorted(n for n in named if n not in taxonomy)


# The keys profiles used before a model had one shape (profile and run input alike), and their names now.
_RENAMED_MODEL_KEYS = {
    "endpoint": "endpoint_name",
    "request": "batch_requests (true: one list of frames per batch; false: one image per request)",
    "response": "response_format",
}


class ModelEndpoint(_Section):
    """One model behind one asynchronous endpoint, and how to ask it: the run input's ``models``,
    the deployment's ``DEFAULT_MODELS`` and the run context name models with exactly these fields;
    a profile's model (:class:`ModelProfile`) is this plus how its labels enter the taxonomy."""

    name: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$",
        description="model name used in provenance and reports",
    )
    endpoint_name: str = Field(
        min_length=1, max_length=63, description="SageMaker endpoint; default autolabel-<name>"
    )
    response_format: ResponseFormat = "autolabel"
    batch_requests: bool = Field(
        default=True,
        description="send one JSON list of frame URIs per batch (our endpoint) or one image per request",
    )

    @model_validator(mode="before")
    @classmethod
    def _default_endpoint(cls, data: Any) -> Any:
        if isinstance(data, dict):
            renamed = sorted(k for k in data if k in _RENAMED_MODEL_KEYS)
            if renamed:
                hints = "; ".join(f"{k!r} is now {_RENAMED_MODEL_KEYS[k]}" for k in renamed)
                raise ValueError(f"model {data.get('name', '?')!r}: {hints}")
            if not data.get("endpoint_name") and isinstance(data.get("name"), str):
                data = {**data, "endpoint_name": f"autolabel-{data['name']}"[:63]}
        return data

    def endpoint(self) -> ModelEndpoint:
        """Only the endpoint fields (the run context carries these, not a profile's class maps)."""
        return ModelEndpoint.model_validate(self.model_dump(include=set(ModelEndpoint.model_fields)))


class ModelProfile(ModelEndpoint, ModelMapping):
    """One model of the profile: where it runs and how it answers (:class:`ModelEndpoint`), how its
    output enters the taxonomy (:class:`ModelMapping`), and how local mode runs it."""

    local_model: str | None = Field(
        default=None, description="local mode: a known model name or an .onnx path; default: the name"
    )
    local_inference: dict[str, Any] = Field(
        default_factory=dict, description="local mode: inference settings (tiling, flip_tta, ...)"
    )


class FusionSettings(_Section):
    """How the models' boxes of one frame and class become one box (``workflow.domain.fusion``)."""

    method: FusionMethod = "wbf"
    iou: float = Field(default=0.55, gt=0.0, le=1.0)
    skip_score: float = Field(default=0.0, ge=0.0, le=1.0, description="boxes under this take no part")


class ClassCalibration(_Section):
    """One class's accept threshold and what it was measured to give on a labeled sample."""

    accept_score: float = Field(ge=0.0, le=1.0, description="boxes at least this are accepted unseen")
    precision: float | None = Field(default=None, ge=0.0, le=1.0, description="measured at that score")
    boxes: int = Field(default=0, ge=0, description="pre-labels at or above the score in the sample")
    labeled: int = Field(default=0, ge=0, description="labeled objects of the class in the sample")


class Calibration(_Section):
    """Per-class accept thresholds chosen by ``autolabel calibrate`` on a labeled sample.

    ``expected_precision`` is the measured precision of the boxes of auto-accepted frames
    (every box of such a frame passes its class threshold) over ``sample_frames`` labeled frames
    and ``sample_boxes`` boxes: what a run's report should state next to its auto-accepted frames.
    """

    target_precision: float = Field(ge=0.0, le=1.0)
    classes: dict[str, ClassCalibration] = Field(default_factory=dict)
    expected_precision: float | None = Field(default=None, ge=0.0, le=1.0)
    sample_frames: int = Field(default=0, ge=0)
    sample_boxes: int = Field(default=0, ge=0)
    auto_accepted_frames: int = Field(default=0, ge=0, description="sample frames every box of which passes")
    match_iou: float = Field(default=0.5, gt=0.0, le=1.0, description="IoU a box needs to count as correct")
    source: str = Field(default="", description="the predictions and labels it was measured on")

    def accept_scores(self) -> dict[str, float]:
        """Taxonomy class -> accept threshold."""
        return {name: c.accept_score for name, c in self.classes.items()}


class ReviewSettings(_Section):
    """Human review: where people review (the backend), who reviews (for the cost estimate) and what to
    do with > 50 reviewed classes. The run input's ``review`` overrides the backend."""

    backend: Literal["groundtruth", "label-studio", "none"] = "groundtruth"

    workforce: Workforce = "public"
    workers_per_frame: int = Field(default=DEFAULT_WORKERS_PER_FRAME, ge=1, le=9)
    large_taxonomy: Literal["refuse", "split"] = Field(
        default="refuse", description="more than 50 reviewed classes: refuse the profile, or split into jobs"
    )


class LabelingProfile(_Section):
    """A whole profile; see the module docstring."""

    version: Literal[1] = PROFILE_VERSION
    name: str = Field(default="profile", min_length=1, max_length=64)
    description: str = ""
    taxonomy: Taxonomy
    models: tuple[ModelProfile, ...] = ()
    other_models: ModelMapping | None = Field(
        default=None,
        description="mapping of run models the profile does not list; None: such models are refused",
    )
    fusion: FusionSettings = FusionSettings()
    routing: RoutingPolicy = RoutingPolicy()
    review: ReviewSettings = ReviewSettings()
    logs: LogSettings = Field(
        default=LogSettings(), description="drive-log sources: topics, lineage, frame selection"
    )
    calibration: Calibration | None = Field(
        default=None, description="per-class accept thresholds measured by `autolabel calibrate`"
    )
    relabel_when_changed: bool = Field(
        default=False,
        description="label a frame again when this profile, or a model it names (endpoint, local "
        "model, inference settings), has changed since the frame was labeled",
    )

    @field_validator("taxonomy", mode="before")
    @classmethod
    def _class_list(cls, value: Any) -> Any:
        return {"classes": value} if isinstance(value, list | tuple) else value

    @model_validator(mode="after")
    def _consistent(self) -> LabelingProfile:
        for field_name, values in (
            ("model names", [m.name for m in self.models]),
            ("endpoints", [m.endpoint_name for m in self.models]),
        ):
            repeated = sorted(v for v, n in Counter(values).items() if n > 1)
            if repeated:
                raise ValueError(f"{field_name} repeated in the profile: {repeated}")
        mappings: list[tuple[str, ModelMapping]] = [(m.name, m) for m in self.models]
        if self.other_models is not None:
            mappings.append(("other_models", self.other_models))
        if self.calibration is not None:
            unknown_calibrated = sorted(n for n in self.calibration.classes if n not in self.taxonomy)
            if unknown_calibrated:
                raise ValueError(f"calibration: classes {unknown_calibrated} are not in the taxonomy")
        for owner, mapping in mappings:
            unknown = mapping.unknown_classes(self.taxonomy)
            if unknown:
                raise ValueError(
                    f"{owner}: classes {unknown} are not in the taxonomy {list(self.taxonomy.names)}"
                )
        reviewed = len(self.taxonomy.reviewed_names)
        if reviewed == 0:
            raise ValueError("no taxonomy class is reviewed: mark at least one class reviewed: true")
        large = reviewed > MAX_WORKER_UI_LABELS and self.review.backend == "groundtruth"
        if large and self.review.large_taxonomy == "refuse":
            raise ValueError(
                f"{reviewed} reviewed classes, but a Ground Truth bounding-box worker UI "
                f"(crowd-bounding-box) shows at most {MAX_WORKER_UI_LABELS} labels. Map several model "
                f"classes onto one taxonomy class in the class maps, mark classes people need not review "
                f"with 'reviewed: false', set review.large_taxonomy: split to run one job per group of "
                f"{MAX_WORKER_UI_LABELS} classes, or review in Label Studio (review.backend: label-studio)"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, the taxonomy as a plain list of classes (the file format)."""
        data = self.model_dump(mode="json")
        data["taxonomy"] = data["taxonomy"]["classes"]
        return data

    def labeling_version(self, models: list[dict[str, Any]]) -> str:
        """What a frame's labels were made with, as a short digest: this profile's labeling content
        (not its name, description or this option) and the run's models. A frame labeled under
        another digest was labeled by another profile or model version."""
        data = self.to_dict()
        for field_name in ("name", "description", "relabel_when_changed"):
            data.pop(field_name, None)
        text = json.dumps({"profile": data, "models": models}, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    # --- lookups ----------------------------------------------------------------------------
    def model(self, name: str) -> ModelProfile | None:
        return next((m for m in self.models if m.name == name), None)

    def mapping(self, model: str) -> ModelMapping:
        """The model's mapping, else ``other_models``; ConfigurationError when the profile has neither."""
        found = self.model(model) or self.other_models
        if found is None:
            raise ConfigurationError(
                f"model {model!r} is not in profile {self.name!r} (models: {[m.name for m in self.models]}) "
                "and the profile has no other_models mapping"
            )
        return found

    def class_map(self, model: str) -> ClassMap:
        """The model's classes -> taxonomy map as a :class:`ClassMap`."""
        return ClassMap(taxonomy=self.taxonomy, mapping=dict(self.mapping(model).class_map))

    def review_groups(self) -> list[tuple[str, ...]]:
        """The reviewed classes cut into label-category groups, in taxonomy order: at most 10 (what a
        Ground Truth worker UI shows); one group for a profile that reviews in Label Studio."""
        names = self.taxonomy.reviewed_names
        size = len(names) if self.review.backend == "label-studio" else MAX_WORKER_UI_LABELS
        return [names[i : i + size] for i in range(0, len(names), size)]


def default_profile() -> LabelingProfile:
    """The built-in profile: NanoDet COCO onto the ADAS taxonomy, other models by COCO/taxonomy names,
    pre-labels shown from score 0.25, WBF fusion, routing off (every frame reviewed).
    ``profiles/default.yaml`` is the same."""
    taxonomy = DEFAULT_ADAS_TAXONOMY
    coco = dict(COCO_TO_ADAS.mapping)
    return LabelingProfile(
        name="default",
        description="COCO NanoDet onto the ADAS taxonomy; every labeled frame goes to people",
        taxonomy=taxonomy,
        models=(
            ModelProfile(
                name="nanodet-coco",
                endpoint_name="autolabel-nanodet-coco",
                local_model="nanodet-coco",
                class_map=coco,
                min_score=DEFAULT_MIN_SCORE,
            ),
        ),
        other_models=ModelMapping(
            class_map={**{n: n for n in taxonomy.names}, **coco}, min_score=DEFAULT_MIN_SCORE
        ),
    )


def parse_profile(text: str, source: str = "profile") -> LabelingProfile:
    """A profile from JSON or YAML text; ConfigurationError naming the source and every problem."""
    try:
        data = json.loads(text)
    except ValueError:
        import yaml  # only YAML profiles need PyYAML

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigurationError(f"{source}: neither JSON nor YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"{source}: a profile is a mapping, got {type(data).__name__}")
    return validate_profile(data, source)


def validate_profile(data: Any, source: str = "profile") -> LabelingProfile:
    """Validate a profile mapping; ConfigurationError listing each problem with its location."""
    try:
        return LabelingProfile.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '(top)'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigurationError(f"{source} is not a valid labeling profile: {problems}") from exc


def load_profile(path: str | Path) -> LabelingProfile:
    """Read and validate a profile file (.yaml, .yml or .json)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read profile {file}: {exc}") from exc
    return parse_profile(text, str(file))
