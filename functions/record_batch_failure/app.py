"""RecordBatchFailure: a batch whose branch failed is written down frame by frame, never lost."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from workflow.adapters.aws import aws, logger, metrics, tracer
from workflow.domain.run import RunContext
from workflow.steps.batch_failure import record_batch_failure, record_batch_timeout


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    run = RunContext.model_validate(event["run"])
    a = aws()
    if event["error"].get("Error") == "States.Timeout":  # keep what arrived, close the token
        result = record_batch_timeout(event["batch_key"], run, event["error"], a.s3, a.tokens, a.settings)
    else:
        result = record_batch_failure(event["batch_key"], run, event["error"], a.s3)
    logger.warning("batch failed", extra={"batch_id": result.batch_id, "error": event["error"].get("Error")})
    metrics.add_metric(name="FramesFailed", unit=MetricUnit.Count, value=result.failed)
    return result.model_dump(mode="json")
