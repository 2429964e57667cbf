"""StartLabelingJob and the labeling-job callback: human review, waited for with a task token."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from workflow.adapters.callbacks import TaskCallbacks
from workflow.adapters.labeling import create_labeling_job_request
from workflow.adapters.tokens import TokenStore
from workflow.domain.notifications import LabelingJobStateChange
from workflow.domain.run import ManifestPart, ManifestResult, ReviewResult, RunContext
from workflow.settings import Settings


def start_labeling_job(
    token: str,
    part: ManifestPart,
    run: RunContext,
    manifest: ManifestResult,
    settings: Settings,
    tokens: TokenStore,
    sagemaker: Any,
) -> dict[str, str]:
    """Park the token under the job name, then create the job (a retried create finds it already made)."""
    request = create_labeling_job_request(run, part, manifest, settings)
    name = request["LabelingJobName"]
    tokens.park_job(name, token)
    try:
        arn = sagemaker.create_labeling_job(**request)["LabelingJobArn"]
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") != "ResourceInUse":
            raise
        arn = sagemaker.describe_labeling_job(LabelingJobName=name)["LabelingJobArn"]
    return {"job_name": name, "job_arn": arn}


def on_labeling_job_change(
    change: LabelingJobStateChange,
    settings: Settings,
    tokens: TokenStore,
    callbacks: TaskCallbacks,
    sagemaker: Any,
) -> str:
    """Resume the waiting ReviewJobs task when its job ends; redelivered events change nothing."""
    if change.status not in ("Completed", "Failed", "Stopped"):
        return "ignored"
    token = tokens.claim_job(change.job_name)
    if token is None:
        return "unknown-or-done"
    job = sagemaker.describe_labeling_job(LabelingJobName=change.job_name)
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
