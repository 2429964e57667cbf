"""PlanDriveLogs: the log objects of an event or a schedule, one item per log, for the Distributed Map."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from workflow.adapters.aws import aws, logger, metrics, tracer
from workflow.logs.ingest import DriveLogLedger, DriveLogRequest, plan_drive_logs


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = DriveLogRequest.model_validate(event["request"])
    a = aws()
    ledger = DriveLogLedger(a.dynamodb, event["ledger_table"])  # the state machine names its table
    plan = plan_drive_logs(request, a.client("s3"), a.settings.data_bucket, event["execution_name"], ledger)
    metrics.add_metric(name="DriveLogsPlanned", unit=MetricUnit.Count, value=plan["count"])
    logger.info("drive logs planned", extra=plan)
    return plan
