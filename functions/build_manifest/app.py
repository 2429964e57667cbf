"""BuildManifest: Ground Truth input manifest(s), label categories, worker template, COCO pre-labels."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from workflow.adapters.aws import aws, logger, metrics, tracer
from workflow.domain.run import RunContext
from workflow.steps.manifest import build_manifest


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    a = aws()
    result = build_manifest(RunContext.model_validate(event["run"]), a.settings, a.s3)
    metrics.add_metric(name="FramesToReview", unit=MetricUnit.Count, value=result.frames_to_review)
    return result.model_dump(mode="json")
