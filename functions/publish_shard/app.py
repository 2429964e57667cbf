"""PublishShard: one shard of the reviewed dataset, its report lines, and its frames settled."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from workflow.adapters.aws import aws, logger, metrics, tracer
from workflow.events import PublishShardEvent
from workflow.steps.publish import publish_shard


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=PublishShardEvent)
def lambda_handler(event: PublishShardEvent, context: LambdaContext) -> dict[str, Any]:
    a = aws()
    counts = publish_shard(event.shard, event.state.as_state(), a.settings, a.s3, a.ledger)
    metrics.add_metric(name="FramesLabeled", unit=MetricUnit.Count, value=counts.labeled)
    metrics.add_metric(name="FramesFailed", unit=MetricUnit.Count, value=counts.failed)
    return {"index": counts.index, "labeled": counts.labeled, "failed": counts.failed}
