"""InvokeModels: start the batch's asynchronous inferences; the task token waits in DynamoDB."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from workflow.adapters.aws import aws, logger, metrics, tracer
from workflow.events import InvokeModelsEvent
from workflow.steps.inference import invoke_models


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=InvokeModelsEvent)
def lambda_handler(event: InvokeModelsEvent, context: LambdaContext) -> dict[str, Any]:
    a = aws()
    result = invoke_models(
        event.task_token, event.batch_key, event.run, a.s3, a.tokens, a.endpoints, a.callbacks
    )
    metrics.add_metric(name="InferencesStarted", unit=MetricUnit.Count, value=result["inferences"])
    return result
