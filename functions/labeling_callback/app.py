"""EventBridge 'SageMaker Ground Truth Labeling Job State Change': resume the waiting review task."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from workflow.adapters.aws import aws, logger, metrics, tracer
from workflow.events import LabelingJobEvent
from workflow.steps.review import on_labeling_job_change


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=LabelingJobEvent)
def lambda_handler(event: LabelingJobEvent, context: LambdaContext) -> dict[str, Any]:
    a = aws()
    change = event.change
    outcome = on_labeling_job_change(change, a.settings, a.tokens, a.callbacks, a.labeling_jobs)
    logger.info(
        "labeling job state change",
        extra={"job": change.job_name, "status": change.status, "outcome": outcome},
    )
    metrics.add_metric(name=f"LabelingJob{change.status}", unit=MetricUnit.Count, value=1)
    return {"job": change.job_name, "outcome": outcome}
