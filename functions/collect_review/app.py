"""CollectReview: a finished job's output manifest, split back into its batches."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from workflow.adapters.aws import aws, logger, metrics, tracer
from workflow.domain.run import ManifestPart, ReviewResult, RunContext
from workflow.steps.collect import collect_review


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    review = collect_review(
        RunContext.model_validate(event["run"]),
        ManifestPart.model_validate(event["part"]),
        ReviewResult.model_validate(event["review"]),
        aws().s3,
    )
    metrics.add_metric(name="ReviewsCollected", unit=MetricUnit.Count, value=1)
    return review.model_dump(mode="json")
