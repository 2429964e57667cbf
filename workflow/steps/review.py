"""StartReview: the one review port. A review job per manifest part, waited for with a task token.

The backend is the run input's ``review`` (``groundtruth``, ``label-studio``), else the profile's
``review.backend``. Whatever the backend, the token is parked by job name and resumed with a
:class:`ReviewResult` naming a Ground Truth OUTPUT manifest, so Publish reads one format.
Ground Truth jobs resume through their EventBridge state-change event (this module); Label
Studio projects through their webhook (``workflow.steps.review_labelstudio``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from workflow.adapters.labeling import create_labeling_job_request
from workflow.adapters.s3 import S3Store
from workflow.adapters.tokens import TokenStore
from workflow.domain.errors import ConfigurationError, LabelingJobExists
from workflow.domain.notifications import LabelingJobStateChange
from workflow.domain.run import ManifestPart, ManifestResult, ReviewResult, RunContext, resolve_review
from workflow.settings import Settings
from workflow.steps.ports import Callbacks, LabelingJobs, Tokens
from workflow.steps.prepare import run_profile


def start_review(
    token: str,
    part: ManifestPart,
    run: RunContext,
    manifest: ManifestResult,
    settings: Settings,
    tokens: TokenStore,
    s3: S3Store,
    labeling_jobs: Callable[[], LabelingJobs],
    label_studio: Callable[[], tuple[Any, Any, str]],
    callbacks: Callbacks | None = None,
) -> dict[str, Any]:
    """Start the part's review job in the run's backend. ``labeling_jobs`` and ``label_studio`` build
    the backend's adapters on demand (``label_studio``: client, image locator, webhook secret)."""
    profile = run_profile(run, s3)
    backend = resolve_review(run.review, profile.review.backend)
    if backend == "groundtruth":
        return {
            "backend": "groundtruth",
            **start_labeling_job(token, part, run, manifest, settings, tokens, labeling_jobs(), callbacks),
        }
    if backend == "label-studio":
        from workflow.steps.review_labelstudio import start_label_studio_review

        client, images, secret = label_studio()
        return start_label_studio_review(
            token, part, run, manifest, profile, settings, tokens, s3, client, images, secret
        )
    raise ConfigurationError(
        f"run {run.run_id} has no review backend (review {run.review!r}) but reached StartReview"
    )


def start_labeling_job(
    token: str,
    part: ManifestPart,
    run: RunContext,
    manifest: ManifestResult,
    settings: Settings,
    tokens: Tokens,
    jobs: LabelingJobs,
    callbacks: Callbacks | None = None,
) -> dict[str, str]:
    """Park the token under the job name, then create the job (a retried create finds it already made).

    A resumed run (same run id) meets the job of its earlier execution: when that job has ended
    already, its state-change event went by long ago, so the token is resumed here at once with
    the job's end (``callbacks``), instead of waiting for an event that never comes."""
    request = create_labeling_job_request(run, part, manifest, settings)
    name = request["LabelingJobName"]
    tokens.park_job(name, token)
    try:
        arn = jobs.create(request)
    except LabelingJobExists:
        job = jobs.describe(name)
        arn = job["LabelingJobArn"]
        status = job.get("LabelingJobStatus")
        if callbacks is not None and status in ENDED_JOB:
            change = LabelingJobStateChange(
                status=status, job_arn=arn, failure_reason=job.get("FailureReason")
            )
            on_labeling_job_change(change, settings, tokens, callbacks, jobs)
    return {"job_name": name, "job_arn": arn}


ENDED_JOB = ("Completed", "Failed", "Stopped")


def on_labeling_job_change(
    change: LabelingJobStateChange,
    settings: Settings,
    tokens: Tokens,
    callbacks: Callbacks,
    jobs: LabelingJobs,
) -> str:
    """Resume the waiting review task when its job ends; redelivered events change nothing."""
    if change.status not in ("Completed", "Failed", "Stopped"):
        return "ignored"
    token = tokens.claim_job(change.job_name)
    if token is None:
        return "unknown-or-done"
    job = jobs.describe(change.job_name)
    if change.status == "Completed":
        result = ReviewResult(
            job_name=change.job_name,
            status="Completed",
            label_attribute=job["LabelAttributeName"],
            output_manifest_uri=job.get("LabelingJobOutput", {}).get("OutputDatasetS3Uri"),
        )
        callbacks.succeed(token, result.model_dump(mode="json"))
        return "resumed"
    reason = job.get("FailureReason") or change.failure_reason or f"labeling job {change.status.lower()}"
    callbacks.fail(token, f"LabelingJob{change.status}", f"{change.job_name}: {reason}")
    return "failed"
