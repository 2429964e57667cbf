"""AssembleManifest: one labeling job's input manifest, streamed from its batches' review lines."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser.parser import event_parser
from aws_lambda_powertools.utilities.typing import LambdaContext

from workflow.adapters.aws import aws, logger, metrics, tracer
from workflow.events import AssembleManifestEvent
from workflow.steps.plan import assemble_manifest


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
@event_parser(model=AssembleManifestEvent)
def lambda_handler(event: AssembleManifestEvent, context: LambdaContext) -> dict[str, Any]:
    part = assemble_manifest(event.run, event.part, aws().s3)
    metrics.add_metric(name="FramesInManifest", unit=MetricUnit.Count, value=part.frames)
    return part.model_dump(mode="json")
