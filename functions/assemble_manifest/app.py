"""AssembleManifest: one labeling job's input manifest, streamed from its batches' review lines."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from workflow.adapters.aws import aws, logger, metrics, tracer
from workflow.domain.run import ManifestPart, RunContext
from workflow.steps.plan import assemble_manifest


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    part = assemble_manifest(
        RunContext.model_validate(event["run"]), ManifestPart.model_validate(event["part"]), aws().s3
    )
    metrics.add_metric(name="FramesInManifest", unit=MetricUnit.Count, value=part.frames)
    return part.model_dump(mode="json")
