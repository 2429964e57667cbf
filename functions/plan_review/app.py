"""PlanReview: the run's labeling jobs and dataset shards, from the batches' counts."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from workflow.adapters.aws import aws, logger, metrics, tracer
from workflow.events import PlanReviewEvent
from workflow.steps.plan import plan_review


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=PlanReviewEvent)
def lambda_handler(event: PlanReviewEvent, context: LambdaContext) -> dict[str, Any]:
    a = aws()
    result = plan_review(event.run, a.settings, a.s3)
    metrics.add_metric(name="FramesToReview", unit=MetricUnit.Count, value=result.frames_to_review)
    logger.info("run planned", extra={"parts": len(result.parts), "shards": result.shard_count})
    return result.model_dump(mode="json")
