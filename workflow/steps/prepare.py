"""PrepareRun: find the frames to label, skip what must not be sent, cut batches."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from workflow.adapters.ledger import FrameLedger
from workflow.adapters.s3 import S3Store
from workflow.domain.errors import ConfigurationError
from workflow.domain.frames import S3Uri, batch_frames, batch_id, dedupe_preserving_order, is_frame_key
from workflow.domain.profile import LabelingProfile, ModelProfile, default_profile, parse_profile
from workflow.domain.run import ModelEndpoint, RunContext, RunRequest
from workflow.settings import Settings

# Ground Truth refuses images over 40 MB (and 100 megapixels: the endpoint checks that on decode).
MAX_FRAME_BYTES = 40 * 2**20


@dataclass
class Discovery:
    frames: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    adjust: set[str] = field(default_factory=set)  # frames an earlier run asked to send to adjustment


def run_id_from(request: RunRequest, execution_name: str) -> str:
    raw = request.run_id or execution_name
    return re.sub(r"[^A-Za-z0-9\-]", "-", raw)[:40].strip("-") or "run"


def discover(request: RunRequest, s3: S3Store, settings: Settings) -> Discovery:
    """List every source; non-image objects and unreadable sources are reported, not sent."""
    found = Discovery()
    runs_root = S3Uri(settings.data_bucket, settings.runs_prefix.strip("/") + "/")
    for source in request.sources:
        uri = S3Uri.parse(source)
        try:
            objects = list(s3.list_objects(uri))
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            found.skipped.append({"frame": source, "reason": f"cannot list source: {code or err}"})
            continue
        if not objects:
            found.skipped.append({"frame": source, "reason": "no objects under this prefix"})
        for obj, size in objects:
            if obj.bucket == runs_root.bucket and obj.key.startswith(runs_root.key):
                continue  # the workflow's own artefacts are never frames
            if obj.key.endswith("/") and size == 0:
                continue  # a console-made "folder" marker
            if not is_frame_key(obj.key):
                found.skipped.append(
                    {"frame": str(obj), "reason": "not a frame: only .jpg, .jpeg, .png are labeled"}
                )
                continue
            if size > MAX_FRAME_BYTES:
                reason = f"image is {size / 2**20:.1f} MiB; Ground Truth accepts at most 40 MiB"
                found.skipped.append({"frame": str(obj), "reason": reason})
                continue
            found.frames.append(str(obj))
    found.frames = dedupe_preserving_order(found.frames)
    return found


def claim_frames(frames: list[str], run_id: str, relabel: bool, ledger: FrameLedger) -> Discovery:
    """Claim frames in the ledger (in parallel); frames another run holds or labeled are skipped."""
    result = Discovery()
    with ThreadPoolExecutor(max_workers=16) as pool:
        claims = list(pool.map(lambda f: ledger.claim(f, run_id, relabel), frames))
    for claim in claims:
        if claim.claimed:
            result.frames.append(claim.frame)
            if claim.next_route == "adjust":
                result.adjust.add(claim.frame)
        else:
            result.skipped.append({"frame": claim.frame, "reason": claim.reason})
    return result


def _adjust(frames: list[str], adjust: set[str]) -> dict[str, list[str]]:
    """The batch's frames an earlier run asked to send to adjustment (the key only when there are any)."""
    chosen = [f for f in frames if f in adjust]
    return {"adjust": chosen} if chosen else {}


def resolve_profile(request: RunRequest, s3: S3Store) -> tuple[LabelingProfile, str]:
    """The run's profile and where it came from: inline, an s3:// file, or the built-in default."""
    if request.profile is None:
        return default_profile(), "built-in default"
    if isinstance(request.profile, LabelingProfile):
        return request.profile, "inline"
    try:
        text = s3.get_bytes(request.profile).decode("utf-8")
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        raise ConfigurationError(f"cannot read profile {request.profile}: {code or err}") from err
    except UnicodeDecodeError as err:
        raise ConfigurationError(f"profile {request.profile} is not UTF-8 text") from err
    return parse_profile(text, request.profile), request.profile


def endpoint_of(model: ModelProfile) -> ModelEndpoint:
    """The run-context form of a profile model."""
    return ModelEndpoint(
        name=model.name,
        endpoint_name=model.endpoint_name,
        response_format=model.response,
        batch_requests=model.request == "batch",
    )


def run_models(
    request: RunRequest, profile: LabelingProfile, explicit_profile: bool, settings: Settings
) -> list[ModelEndpoint]:
    """The request's models, else an explicit profile's, else the settings' defaults, else the
    built-in profile's; each must be mappable by the profile (ConfigurationError otherwise)."""
    from_profile = [endpoint_of(m) for m in profile.models]
    if request.models:
        models = list(request.models)
    elif explicit_profile and from_profile:
        models = from_profile
    else:
        models = list(settings.default_models) or from_profile
    if not models:
        raise ValueError("no models: give 'models' in the run request or DEFAULT_MODELS in the settings")
    for model in models:
        profile.mapping(model.name)
    return models


def run_profile(run: RunContext, s3: S3Store) -> LabelingProfile:
    """The profile PrepareRun stored with the run (the built-in default for runs without one)."""
    if run.profile_key is None:
        return default_profile()
    data = s3.get_json(S3Uri(run.bucket, run.profile_key))
    data.pop("source", None)
    return LabelingProfile.model_validate(data)


def prepare_run(
    request: RunRequest, execution_name: str, settings: Settings, s3: S3Store, ledger: FrameLedger
) -> RunContext:
    """Write the run's profile, batches and skip list to S3 and return the run context for later states."""
    run_id = run_id_from(request, execution_name)
    run_prefix = f"{settings.runs_prefix.strip('/')}/{run_id}"
    profile, profile_source = resolve_profile(request, s3)
    models = run_models(request, profile, request.profile is not None, settings)
    base = S3Uri(settings.data_bucket, run_prefix)
    s3.put_json(base.join("profile.json"), {**profile.to_dict(), "source": profile_source})
    found = discover(request, s3, settings)
    claimed = claim_frames(found.frames, run_id, request.relabel, ledger)
    batches: list[dict[str, Any]] = [
        {"batch_id": batch_id(i), "frames": frames} | _adjust(frames, claimed.adjust)
        for i, frames in enumerate(batch_frames(claimed.frames, request.batch_size))
    ]
    s3.put_json(base.join("batches.json"), batches)
    s3.put_json(base.join("skipped.json"), found.skipped + claimed.skipped)
    s3.put_json(base.join("request.json"), request.model_dump(mode="json"))
    return RunContext(
        run_id=run_id,
        bucket=settings.data_bucket,
        run_prefix=run_prefix,
        batches_key=f"{run_prefix}/batches.json",
        batch_count=len(batches),
        frame_count=len(claimed.frames),
        skipped_count=len(found.skipped) + len(claimed.skipped),
        max_concurrency=request.max_concurrency,
        batch_timeout_seconds=request.batch_timeout_seconds,
        review=request.review,
        review_timeout_seconds=request.review_timeout_seconds,
        models=models,
        sources=request.sources,
        profile_key=f"{run_prefix}/profile.json",
        profile_name=profile.name,
    )
