"""Async-inference SNS notifications (success and error topics): resume the batch when complete."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from workflow.adapters.aws import aws, logger, metrics, tracer
from workflow.events import InferenceResultsEvent
from workflow.steps.inference import on_inference_result


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=InferenceResultsEvent)
def lambda_handler(event: InferenceResultsEvent, context: LambdaContext) -> dict[str, Any]:
    a = aws()
    outcomes = []
    for note in event.notifications:
        outcome = on_inference_result(note, a.tokens, a.callbacks, a.s3, a.settings)
        logger.info(
            "inference result",
            extra={"inference_id": note.inference_id, "status": note.invocation_status, "outcome": outcome},
        )
        metrics.add_metric(name=f"Inference{note.invocation_status}", unit=MetricUnit.Count, value=1)
        outcomes.append(outcome)
    return {"outcomes": outcomes}
