"""ReportFailedRun: an execution that failed, timed out or was aborted still writes its report."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from workflow.adapters.aws import aws, logger, metrics, tracer
from workflow.steps.failure import ExecutionStatusEvent, on_execution_change


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=ExecutionStatusEvent)
def lambda_handler(event: ExecutionStatusEvent, context: LambdaContext) -> dict[str, Any]:
    a = aws()
    result = on_execution_change(event.detail, a.settings, a.s3, a.ledger)
    if result["status"] == "reported":
        metrics.add_metric(name="RunsFailed", unit=MetricUnit.Count, value=1)
    logger.info("execution status change", extra=result)
    return result
