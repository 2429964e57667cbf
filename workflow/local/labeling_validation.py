"""What the local labeling service refuses, as Ground Truth would: the request checked like boto3
(``ParamValidationError``) and then like the service (``ValidationException``: lengths, patterns and
the rules of the task types it plays), with the built-in task types it knows."""

from __future__ import annotations

import functools
import re
from typing import Any, Literal

import botocore.session
import botocore.validate
from botocore.exceptions import ClientError

from workflow.domain.groundtruth import GroundTruthError, validate_label_attribute_name

TaskKind = Literal["adjust", "verify"]
# Built-in task types (the Lambda names after PRE-/ACS-) this service plays, and what their workers do.
BUILTIN_TASKS: dict[str, TaskKind] = {
    "BoundingBox": "adjust",
    "AdjustmentBoundingBox": "adjust",
    "VerificationBoundingBox": "verify",
}


class JobFailed(Exception):
    """The whole job fails; the message becomes ``FailureReason``."""


@functools.cache
def sagemaker_model() -> Any:
    return botocore.session.get_session().get_service_model("sagemaker")


def client_error(code: str, message: str, operation: str, status: int = 400) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, operation)


def _constraint_problems(value: Any, shape: Any, path: str) -> list[str]:
    """The server-side length and pattern checks that a boto3 client leaves to the service."""
    problems: list[str] = []
    meta = shape.metadata
    if shape.type_name == "structure" and isinstance(value, dict):
        for key, member in shape.members.items():
            if key in value:
                problems += _constraint_problems(value[key], member, f"{path}.{key}" if path else key)
    elif shape.type_name == "list" and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            problems.append(
                f"Value at '{path}' failed to satisfy constraint: Member must have length <= {meta['max']}"
            )
        for i, item in enumerate(value):
            problems += _constraint_problems(item, shape.member, f"{path}[{i}]")
    elif shape.type_name == "string" and isinstance(value, str):
        if "max" in meta and len(value) > meta["max"]:
            problems.append(
                f"Value at '{path}' failed to satisfy constraint: Member must have length <= {meta['max']}"
            )
        pattern = meta.get("pattern")
        try:
            mismatch = pattern is not None and re.fullmatch(pattern, value) is None
        except re.error:  # Java-only classes such as \p{L}: the service checks them, we cannot
            mismatch = False
        if mismatch:
            problems.append(
                f"Value '{value}' at '{path}' failed to satisfy constraint: "
                f"Member must satisfy regular expression pattern: {pattern}"
            )
    elif shape.type_name == "integer" and isinstance(value, int) and "max" in meta and value > meta["max"]:
        problems.append(
            f"Value '{value}' at '{path}' failed to satisfy constraint: Member must be <= {meta['max']}"
        )
    return problems


def validate_request(operation: str, params: dict[str, Any]) -> None:
    """Validate like boto3 (ParamValidationError) and then like the service (ValidationException)."""
    shape = sagemaker_model().operation_model(operation).input_shape
    botocore.validate.validate_parameters(params, shape)
    problems = _constraint_problems(params, shape, "")
    if problems:
        message = (
            f"{len(problems)} validation error{'s' if len(problems) > 1 else ''} detected: "
            + "; ".join(problems)
        )
        raise client_error("ValidationException", message, operation)


def builtin_task(lambda_arn: str) -> str:
    """``VerificationBoundingBox`` of ``arn:...:function:PRE-VerificationBoundingBox``; "" if not built in."""
    name = lambda_arn.rsplit(":function:", 1)[-1]
    prefix, _, task = name.partition("-")
    return task if prefix in ("PRE", "ACS") else ""


def check_rules(params: dict[str, Any]) -> None:
    """Rules the service enforces beyond the request shape."""
    task = params["HumanTaskConfig"]
    ui = task["UiConfig"]
    pre = task.get("PreHumanTaskLambdaArn", "")
    problems = []
    if ("UiTemplateS3Uri" in ui) == ("HumanTaskUiArn" in ui):
        problems.append("UiConfig needs exactly one of UiTemplateS3Uri and HumanTaskUiArn")
    if "UiTemplateS3Uri" in ui and not (pre and "AnnotationConsolidationConfig" in task):
        problems.append(
            "PreHumanTaskLambdaArn and AnnotationConsolidationConfig are required for this task type"
        )
    if "S3DataSource" not in params["InputConfig"]["DataSource"]:
        problems.append("the local labeling service reads an S3 input manifest only (no streaming jobs)")
    builtin = builtin_task(pre)
    if builtin and builtin not in BUILTIN_TASKS:
        problems.append(
            f"the local labeling service plays bounding-box adjustment and verification jobs only, "
            f"not PRE-{builtin}"
        )
    consolidation = task.get("AnnotationConsolidationConfig", {}).get("AnnotationConsolidationLambdaArn", "")
    if builtin and builtin_task(consolidation) not in ("", builtin):
        problems.append(f"PRE-{builtin} needs the consolidation Lambda ACS-{builtin}, not {consolidation}")
    if BUILTIN_TASKS.get(builtin) == "verify" and "LabelCategoryConfigS3Uri" not in params:
        problems.append("a verification job needs LabelCategoryConfigS3Uri: its categories are the verdicts")
    try:
        validate_label_attribute_name(params["LabelAttributeName"], "bounding-box")
    except GroundTruthError as exc:
        problems.append(str(exc))
    if problems:
        raise client_error("ValidationException", "; ".join(problems), "CreateLabelingJob")
