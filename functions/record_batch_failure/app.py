"""RecordBatchFailure: a batch whose branch failed is written down frame by frame, never lost."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from workflow.adapters.aws import aws, logger, metrics, tracer
from workflow.events import RecordBatchFailureEvent
from workflow.steps.batch_failure import record_batch_failure, record_batch_timeout


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=RecordBatchFailureEvent)
def lambda_handler(event: RecordBatchFailureEvent, context: LambdaContext) -> dict[str, Any]:
    a = aws()
    error = event.error.as_catch()
    if event.timed_out:  # keep what arrived, close the token
        result = record_batch_timeout(event.batch_key, event.run, error, a.s3, a.tokens, a.settings)
    else:
        result = record_batch_failure(event.batch_key, event.run, error, a.s3)
    logger.warning("batch failed", extra={"batch_id": result.batch_id, "error": event.error.error})
    metrics.add_metric(name="FramesFailed", unit=MetricUnit.Count, value=result.failed)
    return result.model_dump(mode="json")
