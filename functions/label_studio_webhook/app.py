"""Label Studio webhook (Lambda Function URL): check the shared secret, confirm through the API that
people finished the project, and resume the waiting review task."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from workflow.adapters.aws import aws, logger, metrics, tracer
from workflow.events import FunctionUrlEvent
from workflow.steps.review_labelstudio import on_label_studio_webhook


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=FunctionUrlEvent)
def lambda_handler(event: FunctionUrlEvent, context: LambdaContext) -> dict[str, Any]:
    a = aws()
    client, _, _ = a.label_studio()
    result = on_label_studio_webhook(
        event.headers, event.text, a.label_studio_access, a.tokens, a.callbacks, a.s3, client
    )
    logger.info(
        "label studio webhook",
        extra={"outcome": result.outcome, "job": result.job_name, "pending": result.pending},
    )
    metrics.add_metric(name="LabelStudioWebhooks", unit=MetricUnit.Count, value=1)
    return {
        "statusCode": result.status_code,
        "headers": {"Content-Type": "text/plain"},
        "body": result.outcome,
    }
