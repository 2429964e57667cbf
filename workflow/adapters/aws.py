"""The AWS side of the handlers: settings, clients and adapters, built once per process.

The same code runs in Lambda and in local mode (where moto answers the boto3 calls in-process).
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics
from botocore.config import Config

from workflow.adapters.callbacks import TaskCallbacks
from workflow.adapters.endpoints import SageMakerRuntime
from workflow.adapters.labeling import GroundTruthJobs
from workflow.adapters.ledger import FrameLedger
from workflow.adapters.s3 import S3Store
from workflow.adapters.tokens import TokenStore
from workflow.adapters.tracing import make_tracer
from workflow.settings import Settings

logger = Logger(service="autolabel")
# Powertools' X-Ray Tracer only where the SDK is to trace (TracingDetail=AwsCalls), else a no-op
# with the same decorators: importing the X-Ray SDK costs ~0.3 s of cold start (adapters/tracing.py).
tracer = make_tracer("autolabel")
metrics = Metrics(namespace="Autolabel", service="autolabel")

_RETRIES = Config(retries={"mode": "standard", "max_attempts": 5})


class Aws:
    """Lazily built clients and adapters; one instance per process (see :func:`aws`)."""

    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings

    @cached_property
    def settings(self) -> Settings:
        return self._settings or Settings.from_env()

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=self.settings.region, config=_RETRIES)

    @cached_property
    def s3(self) -> S3Store:
        return S3Store(self.client("s3"))

    @cached_property
    def dynamodb(self) -> Any:
        return self.client("dynamodb")

    @cached_property
    def tokens(self) -> TokenStore:
        return TokenStore(self.dynamodb, self.settings.token_table, self.settings.token_ttl_seconds)

    @cached_property
    def ledger(self) -> FrameLedger:
        return FrameLedger(
            self.dynamodb,
            self.settings.ledger_table,
            self.settings.ledger_claim_ttl_seconds,
            transactions=self.settings.ledger_transactions,
        )

    @cached_property
    def callbacks(self) -> TaskCallbacks:
        return TaskCallbacks(self.client("stepfunctions"))

    @cached_property
    def sagemaker_runtime(self) -> Any:
        return self.client("sagemaker-runtime")

    @cached_property
    def sagemaker(self) -> Any:
        return self.client("sagemaker")

    @cached_property
    def endpoints(self) -> SageMakerRuntime:
        """InvokeEndpointAsync behind the EndpointRuntime port (throttling is EndpointThrottled)."""
        return SageMakerRuntime(self.sagemaker_runtime)

    @cached_property
    def labeling_jobs(self) -> GroundTruthJobs:
        """Ground Truth jobs behind the LabelingJobs port (a retried create is LabelingJobExists)."""
        return GroundTruthJobs(self.sagemaker)

    @cached_property
    def label_studio_access(self) -> Any:
        """URL, API token and webhook secret of the team's Label Studio (the secret read once)."""
        from workflow.steps.review_labelstudio import label_studio_access

        arn = self.settings.label_studio_secret_arn
        return label_studio_access(self.settings, self.client("secretsmanager") if arn else None)

    def label_studio(self) -> tuple[Any, Any, str]:
        """(client, image locator, webhook secret) for the Label Studio review backend."""
        from workflow.adapters.labelstudio import ImageLocator, LabelStudioClient

        access = self.label_studio_access
        images = ImageLocator(
            self.settings.label_studio_images,
            self.client("s3"),
            self.settings.label_studio_presign_ttl_seconds,
            self.settings.label_studio_local_files,
        )
        return LabelStudioClient(access.url, access.api_token), images, access.webhook_secret


_instance: Aws | None = None


def aws() -> Aws:
    """The process-wide adapters (settings read once from the environment)."""
    global _instance
    if _instance is None:
        _instance = Aws()
    return _instance


def reset() -> None:
    """Forget the process-wide adapters (the local runtime calls this when it starts a new cloud)."""
    global _instance
    _instance = None
