"""PrepareRun: the run's id, profile, models and sources (ListPage lists and claims, page by page)."""

from __future__ import annotations

import re

from workflow.adapters.ledger import FrameLedger
from workflow.adapters.s3 import S3Store
from workflow.domain.errors import ConfigurationError, ObjectUnreadable
from workflow.domain.frames import S3Uri, dedupe_preserving_order
from workflow.domain.profile import LabelingProfile, default_profile, parse_profile
from workflow.domain.run import ModelEndpoint, RunContext, RunRequest, SourceItem
from workflow.settings import Settings


def run_id_from(request: RunRequest, execution_name: str) -> str:
    raw = request.run_id or execution_name
    return re.sub(r"[^A-Za-z0-9\-]", "-", raw)[:40].strip("-") or "run"


def resolve_profile(request: RunRequest, s3: S3Store) -> tuple[LabelingProfile, str]:
    """The run's profile and where it came from: inline, an s3:// file, or the built-in default."""
    if request.profile is None:
        return default_profile(), "built-in default"
    if isinstance(request.profile, LabelingProfile):
        return request.profile, "inline"
    try:
        text = s3.get_bytes(request.profile).decode("utf-8")
    except ObjectUnreadable as err:
        raise ConfigurationError(f"cannot read profile {request.profile}: {err.code}") from err
    except UnicodeDecodeError as err:
        raise ConfigurationError(f"profile {request.profile} is not UTF-8 text") from err
    return parse_profile(text, request.profile), request.profile


def run_models(
    request: RunRequest, profile: LabelingProfile, explicit_profile: bool, settings: Settings
) -> list[ModelEndpoint]:
    """The request's models, else an explicit profile's, else the settings' defaults, else the
    built-in profile's; each must be mappable by the profile (ConfigurationError otherwise)."""
    from_profile = [m.endpoint() for m in profile.models]
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
    _check_invokable(models, settings)
    return models


def _check_invokable(models: list[ModelEndpoint], settings: Settings) -> None:
    """Refuse a model whose endpoint the deployment may not invoke (its IAM policy names exactly the
    stack's EndpointName and ProfileEndpointNames): else every batch would fail AccessDenied."""
    allowed = {n.lower() for n in settings.invokable_endpoints}
    if not allowed:
        return
    for model in models:
        if model.endpoint_name.lower() not in allowed:
            raise ConfigurationError(
                f"model {model.name!r} names endpoint {model.endpoint_name!r}, which this deployment may "
                f"not invoke (it may invoke {', '.join(sorted(allowed))}): add it to the stack's "
                "ProfileEndpointNames parameter and update the stack"
            )


def run_profile(run: RunContext, s3: S3Store) -> LabelingProfile:
    """The profile PrepareRun stored with the run (the built-in default for runs without one)."""
    if run.profile_key is None:
        return default_profile()
    data = s3.get_json(S3Uri(run.bucket, run.profile_key))
    data.pop("source", None)
    return LabelingProfile.model_validate(data)


def min_scores(profile: LabelingProfile, models: list[ModelEndpoint]) -> dict[str, float]:
    """Each model's lowest kept score under the profile (models the profile cannot map are left out:
    MergeBatch reports them)."""
    found: dict[str, float] = {}
    for model in models:
        try:
            found[model.name] = profile.mapping(model.name).lowest_kept_score()
        except ConfigurationError:
            continue
    return found


def prepare_run(
    request: RunRequest, execution_name: str, settings: Settings, s3: S3Store, ledger: FrameLedger
) -> RunContext:
    """Write the run's request, profile and sources to S3, mark the run running in the ledger and
    return the run context for later states. Listing and claiming happen in ListPage, per page."""
    run_id = run_id_from(request, execution_name)
    run_prefix = f"{settings.runs_prefix.strip('/')}/{run_id}"
    profile, profile_source = resolve_profile(request, s3)
    models = run_models(request, profile, request.profile is not None, settings)
    base = S3Uri(settings.data_bucket, run_prefix)
    s3.put_json(base.join("profile.json"), {**profile.to_dict(), "source": profile_source})
    sources = [SourceItem(index=i, uri=u) for i, u in enumerate(dedupe_preserving_order(request.sources))]
    s3.put_json(base.join("sources.json"), [item.model_dump(mode="json") for item in sources])
    s3.put_json(base.join("request.json"), request.model_dump(mode="json"))
    ledger.mark_run(run_id, "running")
    return RunContext(
        run_id=run_id,
        bucket=settings.data_bucket,
        run_prefix=run_prefix,
        sources_key=f"{run_prefix}/sources.json",
        source_count=len(sources),
        batches_prefix=f"{run_prefix}/batches/",
        batch_size=request.batch_size,
        relabel=request.relabel,
        labeling_version=profile.labeling_version([m.model_dump(mode="json") for m in models]),
        relabel_changed=profile.relabel_when_changed,
        max_concurrency=request.max_concurrency,
        batch_timeout_seconds=request.batch_timeout_seconds,
        review=request.review,
        review_timeout_seconds=request.review_timeout_seconds,
        models=models,
        min_scores=min_scores(profile, models),
        profile_key=f"{run_prefix}/profile.json",
        profile_name=profile.name,
    )
