"""MergeBatch: parse each model's output, map into the taxonomy, merge per frame."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from workflow.adapters.aws import aws, logger, metrics, tracer
from workflow.events import MergeBatchEvent
from workflow.steps.merge import merge_batch


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=MergeBatchEvent)
def lambda_handler(event: MergeBatchEvent, context: LambdaContext) -> dict[str, Any]:
    a = aws()
    result = merge_batch(event.batch_key, event.run, event.inference, a.settings, a.s3)
    metrics.add_metric(name="FramesLabeled", unit=MetricUnit.Count, value=result.labeled)
    metrics.add_metric(name="FramesFailed", unit=MetricUnit.Count, value=result.failed)
    return result.model_dump(mode="json")
