"""FinishRun: the run's report, statistics, scorecard and dataset index, from the shards' counters."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from workflow.adapters.aws import aws, logger, metrics, tracer
from workflow.events import FinishRunEvent
from workflow.steps.finish import finish_run


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=FinishRunEvent)
def lambda_handler(event: FinishRunEvent, context: LambdaContext) -> dict[str, Any]:
    a = aws()
    summary = finish_run(event.state.as_state(), a.settings, a.s3, a.ledger)
    metrics.add_metric(name="FramesSkipped", unit=MetricUnit.Count, value=summary["skipped"])
    logger.info("run published", extra={k: summary[k] for k in ("run_id", "labeled", "failed", "skipped")})
    return summary
