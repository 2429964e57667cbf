"""CollectReview: a finished job's output manifest, split back into its batches."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from workflow.adapters.aws import aws, logger, metrics, tracer
from workflow.events import CollectReviewEvent
from workflow.steps.collect import collect_review


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=CollectReviewEvent)
def lambda_handler(event: CollectReviewEvent, context: LambdaContext) -> dict[str, Any]:
    review = collect_review(event.run, event.part, event.review, aws().s3)
    metrics.add_metric(name="ReviewsCollected", unit=MetricUnit.Count, value=1)
    return review.model_dump(mode="json")
