"""ListPage: one listing page of one source: screen, claim and batch its frames."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from workflow.adapters.aws import aws, logger, metrics, tracer
from workflow.events import ListPageEvent
from workflow.steps.listing import list_page


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=ListPageEvent)
def lambda_handler(event: ListPageEvent, context: LambdaContext) -> dict[str, Any]:
    a = aws()
    cursor = list_page(event.run, event.source, event.page, a.settings, a.s3, a.ledger)
    metrics.add_metric(name="PagesListed", unit=MetricUnit.Count, value=1)
    return cursor.model_dump(mode="json")
