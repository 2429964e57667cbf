"""Ground Truth labeling jobs: the CreateLabelingJob request for a bounding-box adjustment job."""

from __future__ import annotations

import re
from typing import Any, Literal

from botocore.exceptions import ClientError

from workflow.domain.errors import ConfigurationError, LabelingJobExists
from workflow.domain.run import ManifestPart, ManifestResult, RunContext
from workflow.settings import Settings

# Accounts that own Ground Truth's built-in pre-annotation and consolidation Lambdas, per region.
BUILT_IN_LAMBDA_ACCOUNTS = {
    "us-east-1": "432418664414",
    "us-east-2": "266458841044",
    "us-west-2": "081040173940",
    "ca-central-1": "918755190332",
    "eu-west-1": "568282634449",
    "eu-west-2": "487402164563",
    "eu-central-1": "203001061592",
    "ap-northeast-1": "477331159723",
    "ap-northeast-2": "845288260483",
    "ap-south-1": "565803892007",
    "ap-southeast-1": "377565633583",
    "ap-southeast-2": "454466003867",
}

TaskType = Literal["AdjustmentBoundingBox", "VerificationBoundingBox", "AdjustmentSemanticSegmentation"]


def built_in_lambdas(region: str, task: TaskType = "AdjustmentBoundingBox") -> tuple[str, str]:
    """(pre-annotation, consolidation) Lambda ARNs of a built-in task type in a region."""
    account = BUILT_IN_LAMBDA_ACCOUNTS.get(region)
    if account is None:
        raise ConfigurationError(
            f"Ground Truth built-in task Lambdas are not known for region {region!r}; "
            f"supported: {', '.join(sorted(BUILT_IN_LAMBDA_ACCOUNTS))}"
        )
    prefix = f"arn:aws:lambda:{region}:{account}:function"
    return f"{prefix}:PRE-{task}", f"{prefix}:ACS-{task}"


def job_name(run_id: str, part: int) -> str:
    """A LabelingJobName (<= 63 chars, letters, digits, hyphens) unique to the run and manifest part."""
    base = re.sub(r"[^A-Za-z0-9\-]", "-", run_id).strip("-")[:54] or "run"
    return f"{base}-p{part:03d}"


def create_labeling_job_request(
    run: RunContext, part: ManifestPart, manifest: ManifestResult, settings: Settings
) -> dict[str, Any]:
    """The CreateLabelingJob parameters for one manifest part.

    Workers per frame: the manifest's (BuildManifest took it from the run's profile), else the
    WORKERS_PER_FRAME setting.
    """
    if not settings.workteam_arn or not settings.labeling_role_arn:
        raise ConfigurationError("WORKTEAM_ARN and LABELING_ROLE_ARN must be set to start labeling jobs")
    # Routing (issue 5): a part flagged "verify" is a verification job, with its own categories/template.
    task: TaskType = "VerificationBoundingBox" if part.task == "verify" else "AdjustmentBoundingBox"
    pre, consolidation = built_in_lambdas(settings.region, task)
    return {
        "LabelingJobName": job_name(run.run_id, part.index),
        "LabelAttributeName": settings.label_attribute,
        "InputConfig": {
            "DataSource": {"S3DataSource": {"ManifestS3Uri": part.manifest_uri}},
            # Driving frames show faces and number plates: never declare them free of personal data
            # (the declaration would let public workforces see them). Adult content they do not hold.
            "DataAttributes": {"ContentClassifiers": ["FreeOfAdultContent"]},
        },
        "OutputConfig": {"S3OutputPath": f"s3://{run.bucket}/{run.key('review', 'output')}/"},
        "RoleArn": settings.labeling_role_arn,
        "LabelCategoryConfigS3Uri": part.label_categories_uri or manifest.label_categories_uri,
        "HumanTaskConfig": {
            "WorkteamArn": settings.workteam_arn,
            "UiConfig": {"UiTemplateS3Uri": part.ui_template_uri or manifest.ui_template_uri},
            "PreHumanTaskLambdaArn": pre,
            "TaskTitle": settings.task_title,
            "TaskDescription": settings.task_description,
            "NumberOfHumanWorkersPerDataObject": manifest.workers_per_frame or settings.workers_per_frame,
            "TaskTimeLimitInSeconds": settings.task_time_limit_seconds,
            "TaskAvailabilityLifetimeInSeconds": min(run.review_timeout_seconds, 864_000),
            "MaxConcurrentTaskCount": 1000,
            "AnnotationConsolidationConfig": {"AnnotationConsolidationLambdaArn": consolidation},
        },
        "Tags": [{"Key": "autolabel:run", "Value": run.run_id}],
    }


class GroundTruthJobs:
    """CreateLabelingJob / DescribeLabelingJob behind the LabelingJobs port (a ``sagemaker`` client)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def create(self, request: dict[str, Any]) -> str:
        """Create the job; its ARN. LabelingJobExists when a job of that name was made already."""
        try:
            return str(self.client.create_labeling_job(**request)["LabelingJobArn"])
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") == "ResourceInUse":
                raise LabelingJobExists(request["LabelingJobName"]) from err
            raise

    def describe(self, name: str) -> dict[str, Any]:
        """DescribeLabelingJob's answer."""
        return dict(self.client.describe_labeling_job(LabelingJobName=name))
