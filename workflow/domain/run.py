"""Typed payloads passed between the states of the workflow (small: S3 URIs, never arrays of labels)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from workflow.domain.frames import S3Uri
from workflow.domain.profile import LabelingProfile, ModelEndpoint, validate_profile
from workflow.domain.records import BatchItem

# "human": people review in the profile's backend (review.backend); a backend name overrides the
# profile; "skip" (or "none") publishes the pre-labels without review.
ReviewMode = Literal["human", "skip", "none", "groundtruth", "label-studio"]
ReviewBackend = Literal["groundtruth", "label-studio", "none"]


class _Payload(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)


class RunRequest(_Payload):
    """The state machine's input, as a person, the CLI, the API or the schedule gives it."""

    sources: list[str] = Field(min_length=1, description="s3:// prefixes (or single frames) to label")
    batch_size: int = Field(8, ge=1, le=500)
    max_concurrency: int = Field(10, ge=1, le=10_000)
    review: ReviewMode = "human"
    models: list[ModelEndpoint] | None = None
    relabel: bool = Field(False, description="label frames again even if an earlier run labeled them")
    batch_timeout_seconds: int = Field(3600, ge=60, le=86_400)
    review_timeout_seconds: int = Field(30 * 86_400, ge=60, le=30 * 86_400)
    run_id: str | None = Field(None, pattern=r"^[A-Za-z0-9\-]{1,40}$")
    profile: LabelingProfile | str | None = Field(
        None, description="a labeling profile inline, or the s3:// URI of a profile file (YAML or JSON)"
    )

    @field_validator("sources")
    @classmethod
    def _valid_uris(cls, sources: list[str]) -> list[str]:
        for source in sources:
            S3Uri.parse(source)
        return sources

    @field_validator("profile", mode="before")
    @classmethod
    def _profile(cls, profile: Any) -> Any:
        # ConfigurationError / InvalidS3Uri name the problem plainly (not a union's two errors)
        if isinstance(profile, dict):
            return validate_profile(profile, "the run request's profile")
        if isinstance(profile, str):
            S3Uri.parse(profile)
        return profile


class RunContext(_Payload):
    """What every state after PrepareRun knows about the run (the ``$.run`` object: small, whatever
    the run's size; the sources themselves are in ``sources.json``)."""

    run_id: str
    bucket: str
    run_prefix: str  # key prefix of every artefact of this run
    sources_key: str  # runs/<id>/sources.json: [{"index", "uri"}] for the ListSources Map
    source_count: int
    batches_prefix: str  # runs/<id>/batches/: the LabelBatches Map lists it (one batch per object)
    batch_size: int = Field(8, ge=1, le=500)
    relabel: bool = False
    # The profile and models' digest (LabelingProfile.labeling_version): recorded on each frame the
    # run labels; with relabel_changed, a frame labeled under another digest is labeled again.
    labeling_version: str = ""
    relabel_changed: bool = False
    max_concurrency: int
    batch_timeout_seconds: int
    review: ReviewMode
    review_timeout_seconds: int
    models: list[ModelEndpoint]
    # model name -> the lowest score the profile keeps from it (ModelMapping.lowest_kept_score): the
    # run's own endpoints leave out the candidates under it and count them (workflow.serving.protocol)
    min_scores: dict[str, float] = Field(default_factory=dict)
    profile_key: str | None = None  # runs/<id>/profile.json; None: the built-in default profile
    profile_name: str = "default"

    def key(self, *parts: str) -> str:
        return "/".join([self.run_prefix.rstrip("/"), *parts])

    @property
    def reviewed(self) -> bool:
        """Whether people review the run (``skip`` and ``none`` publish the pre-labels as they are)."""
        return self.review not in ("skip", "none")


class SourceItem(_Payload):
    """One item of the ListSources Map: a source prefix of the run."""

    index: int = Field(ge=0)
    uri: str


class ListCursor(_Payload):
    """Where the listing of one source stands: the next page and its continuation token."""

    page: int = Field(0, ge=0)
    token: str | None = None
    more: bool = True


Batch = BatchItem


class InferenceRecord(_Payload):
    """What the endpoint said about one invocation (from its SNS notification)."""

    model: str
    inference_id: str
    status: Literal["Completed", "Failed"]
    output_location: str | None = None
    failure_reason: str | None = None
    frames: list[str] = Field(default_factory=list)


class BatchInference(_Payload):
    """The task output SendTaskSuccess hands to MergeBatch: small whatever the batch (the records of a
    batch's inferences, one per frame for one-image endpoints, are in S3 at ``records_uri``)."""

    batch_id: str
    inferences: list[InferenceRecord] = Field(default_factory=list)
    records_uri: str | None = None
    done: bool = Field(False, description="an earlier attempt labeled this batch already: nothing to merge")


class BatchResult(_Payload):
    """Small per-batch result of a LabelBatches child (the labels themselves are in S3)."""

    batch_id: str
    labeled: int
    failed: int


class ManifestPart(_Payload):
    """One labeling job's input. ``task`` picks the job type; the label categories and worker
    template of the part, when set, replace the manifest-wide ones (split taxonomies, verification)."""

    index: int
    manifest_uri: str
    frames: int
    task: Literal["adjust", "verify"] = "adjust"
    stream: str = "adjust-g0"
    label_categories_uri: str | None = None
    ui_template_uri: str | None = None


class SegmentationOutput(_Payload):
    """The machine semantic-segmentation labels BuildManifest wrote: label-map PNGs and their manifest.

    An output for teams that run segmentation adjustment jobs; the workflow starts no such job.
    """

    frames: int = Field(default=0, ge=0, description="frames with a label-map PNG")
    manifest_uris: list[str] = Field(default_factory=list, description="parts of <= 100,000 lines")
    attribute: str = Field(description="the label attribute of the PNGs (ends in -ref)")
    frames_not_written: int = Field(default=0, ge=0, description="frames with masks whose label map failed")
    reason: str | None = Field(default=None, description="why frames with masks got no label map, if any")


class ManifestResult(_Payload):
    """PlanReview's output: the run's totals so far, its labeling jobs and its dataset shards."""

    parts: list[ManifestPart]
    frames_to_review: int
    frames: int = Field(0, ge=0, description="frames in the run's batches")
    labeled: int = Field(0, ge=0)
    failed: int = Field(0, ge=0)
    lost_batches: int = Field(0, ge=0, description="batches whose branch ended without a record (now failed)")
    shards_key: str = ""
    shard_count: int = Field(0, ge=0)
    label_categories_uri: str
    ui_template_uri: str
    prelabel_attribute: str
    categories: list[str]
    workers_per_frame: int | None = Field(
        default=None, ge=1, le=9, description="workers per frame of the run's jobs; None: WORKERS_PER_FRAME"
    )
    segmentation: SegmentationOutput | None = None


class ReviewResult(_Payload):
    """A completed review job, as every backend's callback reports it (the job's Ground Truth output)."""

    job_name: str
    status: str
    output_manifest_uri: str | None = None
    label_attribute: str
    part: int | None = Field(None, description="the manifest part the job reviewed (set by CollectReview)")


def review_outcome(state: dict[str, Any]) -> tuple[dict[int, ReviewResult], str | None]:
    """The finished jobs by part, and why review did not finish (None when it did or was not asked)."""
    reviews = [ReviewResult.model_validate(r) for r in state.get("reviews") or []]
    error = state.get("review_error")
    reason = None
    if error:
        cause = str(error.get("Cause") or "")
        reason = f"review did not finish: {error.get('Error', 'error')}" + (
            f": {cause[:300]}" if cause else ""
        )
    return {r.part: r for r in reviews if r.part is not None}, reason


def resolve_review(review: str, profile_backend: str) -> Literal["groundtruth", "label-studio", "skip"]:
    """The backend a run reviews in: the run input's, else the profile's; ``skip`` for no review."""
    chosen = profile_backend if review == "human" else review
    if chosen in ("skip", "none"):
        return "skip"
    if chosen not in ("groundtruth", "label-studio"):
        raise ValueError(f"unknown review backend {chosen!r}: groundtruth, label-studio or none")
    return chosen  # type: ignore[return-value]
