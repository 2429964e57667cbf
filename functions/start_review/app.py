"""StartReview: start the review job of one manifest part in the run's backend (Ground Truth or
Label Studio); the task token waits in DynamoDB by job name until the backend's callback resumes it."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from workflow.adapters.aws import aws, logger, metrics, tracer
from workflow.events import StartReviewEvent
from workflow.steps.review import start_review


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=StartReviewEvent)
def lambda_handler(event: StartReviewEvent, context: LambdaContext) -> dict[str, Any]:
    a = aws()
    result = start_review(
        event.task_token,
        event.part,
        event.run,
        event.manifest,
        a.settings,
        a.tokens,
        a.s3,
        lambda: a.labeling_jobs,
        a.label_studio,
        a.callbacks,
    )
    logger.info("review job started", extra=result)
    metrics.add_metric(name="ReviewJobsStarted", unit=MetricUnit.Count, value=1)
    return result
