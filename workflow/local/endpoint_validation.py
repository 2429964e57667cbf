"""Request validation of the local asynchronous endpoint, as SageMaker runtime does it.

Two layers, like the real call path: botocore's client-side parameter validation (types,
required members, minimum lengths: a :class:`botocore.exceptions.ParamValidationError`), then the
service's own checks (maximum lengths, patterns, ranges, endpoint existence), answered with a
``ValidationError`` :class:`botocore.exceptions.ClientError` worded like the service's.
Constraints are those of the botocore ``sagemaker-runtime`` service model (InvokeEndpointAsync).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import botocore.session
from botocore.exceptions import ClientError, ParamValidationError
from botocore.model import OperationModel
from botocore.validate import ParamValidator

OPERATION = "InvokeEndpointAsync"
MAX_INLINE_BODY = 128_000
DEFAULT_TTL_SECONDS = 21_600
DEFAULT_INVOCATION_TIMEOUT_SECONDS = 900

# (member, service field name, max length, pattern or None); patterns translated from Java regexes.
_STRING_RULES: tuple[tuple[str, str, int, str | None], ...] = (
    ("EndpointName", "endpointName", 63, r"[a-zA-Z0-9](-*[a-zA-Z0-9])*"),
    ("ContentType", "contentType", 1024, r"[\x00-\x7f]*"),
    ("Accept", "accept", 1024, r"[\x00-\x7f]*"),
    ("CustomAttributes", "customAttributes", 1024, r"[\x00-\x7f]*"),
    ("InferenceId", "inferenceId", 64, r"\S[\x20-\x7e]*"),
    ("InputLocation", "inputLocation", 1024, r"(https|s3)://([^/]+)/?(.*)"),
    ("S3OutputPathExtension", "s3OutputPathExtension", 512, r"(?!s3:|https:)[a-zA-Z0-9!_.*'()/-]+"),
    ("Filename", "filename", 32, r"(?!.*\..*\.)[a-zA-Z0-9][a-zA-Z0-9\-_.]*"),
)
_INT_RULES: tuple[tuple[str, str, int, int], ...] = (
    ("RequestTTLSeconds", "requestTTLSeconds", 60, 21_600),
    ("InvocationTimeoutSeconds", "invocationTimeoutSeconds", 1, 3_600),
)


@dataclass(frozen=True)
class AsyncRequest:
    """A validated InvokeEndpointAsync request (defaults filled in, except InferenceId)."""

    endpoint_name: str
    input_location: str | None
    body: bytes | None
    content_type: str | None
    accept: str | None
    custom_attributes: str | None
    inference_id: str | None
    output_path_extension: str | None
    filename: str | None
    ttl_seconds: int
    invocation_timeout_seconds: int


@functools.cache
def operation_model() -> OperationModel:
    """botocore's InvokeEndpointAsync model (loaded once: an endpoint loads it when created, so that
    the run's first requests, arriving together, do not each load it)."""
    model = botocore.session.get_session().get_service_model("sagemaker-runtime")
    return model.operation_model(OPERATION)


def validation_error(message: str) -> ClientError:
    """A ClientError shaped like the service's 400 ValidationError answer."""
    return ClientError(
        {
            "Error": {"Code": "ValidationError", "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": 400},
        },
        OPERATION,
    )


def check_client_side(params: Mapping[str, Any]) -> None:
    """botocore's own parameter validation, exactly what a boto3 client does before sending."""
    report = ParamValidator().validate(dict(params), operation_model().input_shape)
    if report.has_errors():
        raise ParamValidationError(report=report.generate_report())


def _service_errors(params: Mapping[str, Any]) -> list[str]:
    errors = []
    for member, field, max_len, pattern in _STRING_RULES:
        value = params.get(member)
        if value is None:
            continue
        shown = "*** sensitive data ***" if member == "CustomAttributes" else value
        if len(value) > max_len:
            errors.append(
                f"Value '{shown}' at '{field}' failed to satisfy constraint: "
                f"Member must have length less than or equal to {max_len}"
            )
        if pattern is not None and not re.fullmatch(pattern, value, flags=re.DOTALL):
            errors.append(
                f"Value '{shown}' at '{field}' failed to satisfy constraint: "
                f"Member must satisfy regular expression pattern: {pattern}"
            )
    for member, field, low, high in _INT_RULES:
        value = params.get(member)
        if value is not None and not low <= value <= high:
            bound = f"greater than or equal to {low}" if value < low else f"less than or equal to {high}"
            errors.append(
                f"Value '{value}' at '{field}' failed to satisfy constraint: Member must be {bound}"
            )
    body = params.get("Body")
    if body is not None and len(body) > MAX_INLINE_BODY:
        errors.append(
            f"Value at 'body' failed to satisfy constraint: "
            f"Member must have length less than or equal to {MAX_INLINE_BODY}"
        )
    return errors


def validate_request(params: Mapping[str, Any], endpoint_name: str) -> AsyncRequest:
    """Validate InvokeEndpointAsync keyword arguments as boto3 + the service would.

    Raises ParamValidationError (client side) or a ValidationError ClientError (service side).
    """
    check_client_side(params)
    errors = _service_errors(params)
    if errors:
        noun = "error" if len(errors) == 1 else "errors"
        raise validation_error(f"{len(errors)} validation {noun} detected: " + "; ".join(errors))
    has_location, has_body = params.get("InputLocation") is not None, params.get("Body") is not None
    if has_location == has_body:
        raise validation_error("Provide exactly one of InputLocation and Body.")
    if params["EndpointName"] != endpoint_name:
        raise validation_error(f"Endpoint {params['EndpointName']} not found.")
    body = params.get("Body")
    if isinstance(body, str):
        body = body.encode()
    elif body is not None and not isinstance(body, bytes):
        body = body.read()
    return AsyncRequest(
        endpoint_name=params["EndpointName"],
        input_location=params.get("InputLocation"),
        body=body,
        content_type=params.get("ContentType"),
        accept=params.get("Accept"),
        custom_attributes=params.get("CustomAttributes"),
        inference_id=params.get("InferenceId"),
        output_path_extension=params.get("S3OutputPathExtension"),
        filename=params.get("Filename"),
        ttl_seconds=params.get("RequestTTLSeconds") or DEFAULT_TTL_SECONDS,
        invocation_timeout_seconds=params.get("InvocationTimeoutSeconds")
        or DEFAULT_INVOCATION_TIMEOUT_SECONDS,
    )
