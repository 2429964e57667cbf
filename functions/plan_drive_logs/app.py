"""PlanDriveLogs: the log objects of an event or a schedule, one item per log, for the Distributed Map."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from workflow.adapters.aws import aws, logger, metrics, tracer
from workflow.logs.events import PlanDriveLogsEvent
from workflow.logs.ingest import DriveLogLedger, plan_drive_logs


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=PlanDriveLogsEvent)
def lambda_handler(event: PlanDriveLogsEvent, context: LambdaContext) -> dict[str, Any]:
    a = aws()
    ledger = DriveLogLedger(a.dynamodb, event.ledger_table)
    bucket = a.settings.data_bucket
    plan = plan_drive_logs(event.request, a.client("s3"), bucket, event.execution_name, ledger)
    metrics.add_metric(name="DriveLogsPlanned", unit=MetricUnit.Count, value=plan["count"])
    logger.info("drive logs planned", extra=plan)
    return plan
