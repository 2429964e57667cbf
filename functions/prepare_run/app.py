"""PrepareRun: list frames, skip what must not be sent, write batches."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from workflow.adapters.aws import aws, logger, metrics, tracer
from workflow.events import PrepareRunEvent
from workflow.steps.prepare import prepare_run


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=PrepareRunEvent)
def lambda_handler(event: PrepareRunEvent, context: LambdaContext) -> dict[str, Any]:
    a = aws()
    run = prepare_run(event.request, event.execution_name, a.settings, a.s3, a.ledger)
    metrics.add_metric(name="RunsStarted", unit=MetricUnit.Count, value=1)
    logger.info("run prepared", extra={"run_id": run.run_id, "sources": run.source_count})
    return run.model_dump(mode="json")
