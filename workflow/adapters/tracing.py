"""The handlers' tracer: Powertools' X-Ray Tracer only when the X-Ray SDK is to run, else a no-op.

Importing the X-Ray SDK costs about 0.3 s of every cold start (its recorder builds a botocore
session at import), even when Powertools then disables it. So the SDK is loaded only where
Powertools would trace: inside Lambda (``LAMBDA_TASK_ROOT`` set), not under ``sam local``, and
with ``POWERTOOLS_TRACE_DISABLED`` unset or false. The template sets that variable from its
``TracingDetail`` parameter; Lambda's active tracing records each invocation without the SDK.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

_TRUE = {"1", "true", "yes", "on", "y", "t"}


def _truthy(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in _TRUE


def sdk_tracing_enabled() -> bool:
    """Whether Powertools' Tracer would trace here (the same rules as Powertools' own)."""
    if _truthy("POWERTOOLS_TRACE_DISABLED"):
        return False
    in_lambda = bool(os.environ.get("LAMBDA_TASK_ROOT"))
    emulated = bool(os.environ.get("AWS_SAM_LOCAL") or os.environ.get("AWS_CHALICE_CLI_MODE"))
    return in_lambda and not emulated


class NoTracer:
    """The decorator surface of Powertools' ``Tracer`` the handlers use, doing nothing."""

    disabled = True

    def __init__(self, service: str | None = None) -> None:
        self.service = service

    def capture_lambda_handler(
        self, lambda_handler: Callable[..., Any] | None = None, **_options: Any
    ) -> Any:
        """``@tracer.capture_lambda_handler``, bare or called with options: the handler as is."""
        if lambda_handler is None:
            return lambda handler: handler
        return lambda_handler

    def capture_method(self, method: Callable[..., Any] | None = None, **_options: Any) -> Any:
        """``@tracer.capture_method`` or ``@tracer.capture_method(...)``: the method as is."""
        if method is None:
            return lambda func: func
        return method

    def put_annotation(self, key: str, value: Any) -> None:
        return None

    def put_metadata(self, key: str, value: Any, namespace: str | None = None) -> None:
        return None


def make_tracer(service: str, **options: Any) -> Any:
    """Powertools' Tracer (given ``options``) where the X-Ray SDK is to trace, else a NoTracer."""
    if not sdk_tracing_enabled():
        return NoTracer(service)
    from aws_lambda_powertools import Tracer

    return Tracer(service=service, **options)
