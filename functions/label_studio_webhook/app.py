"""Label Studio webhook (Lambda Function URL): check the shared secret, confirm through the API that
people finished the project, and resume the waiting review task."""

import base64
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from workflow.adapters.aws import aws, logger, metrics, tracer
from workflow.steps.review_labelstudio import on_label_studio_webhook


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    a = aws()
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        body = base64.b64decode(body).decode("utf-8")
    client, _, _ = a.label_studio()
    result = on_label_studio_webhook(
        event.get("headers") or {}, body, a.label_studio_access, a.tokens, a.callbacks, a.s3, client
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
