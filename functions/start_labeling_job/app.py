"""StartLabelingJob: create the adjustment job; the task token waits in DynamoDB by job name."""

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from workflow.adapters.aws import aws, logger, metrics, tracer
from workflow.domain.run import ManifestPart, ManifestResult, RunContext
from workflow.steps.review import start_labeling_job


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    a = aws()
    result = start_labeling_job(
        event["task_token"],
        ManifestPart.model_validate(event["part"]),
        RunContext.model_validate(event["run"]),
        ManifestResult.model_validate(event["manifest"]),
        a.settings,
        a.tokens,
        a.sagemaker,
    )
    logger.info("labeling job started", extra=result)
    metrics.add_metric(name="LabelingJobsStarted", unit=MetricUnit.Count, value=1)
    return result
