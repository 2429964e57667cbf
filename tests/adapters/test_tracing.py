"""The handlers' tracer: Powertools' X-Ray Tracer only where it would trace, else a no-op."""

from __future__ import annotations

from typing import Any

import pytest
from aws_lambda_powertools import Tracer

from workflow.adapters.tracing import NoTracer, make_tracer, sdk_tracing_enabled


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("POWERTOOLS_TRACE_DISABLED", "AWS_SAM_LOCAL", "AWS_CHALICE_CLI_MODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LAMBDA_TASK_ROOT", "/var/task")
    return monkeypatch


@pytest.mark.parametrize(
    ("env", "enabled"),
    [
        ({}, True),
        ({"POWERTOOLS_TRACE_DISABLED": "false"}, True),
        ({"POWERTOOLS_TRACE_DISABLED": "true"}, False),
        ({"POWERTOOLS_TRACE_DISABLED": "1"}, False),
        ({"AWS_SAM_LOCAL": "true"}, False),
        ({"LAMBDA_TASK_ROOT": ""}, False),
    ],
)
def test_the_sdk_traces_in_lambda_unless_disabled(
    lambda_env: pytest.MonkeyPatch, env: dict[str, str], enabled: bool
) -> None:
    # Given Lambda's environment with one variable changed
    for name, value in env.items():
        lambda_env.setenv(name, value)
    # Then the SDK traces exactly where Powertools' Tracer would (in Lambda, not emulated, not disabled)
    assert sdk_tracing_enabled() is enabled
    assert bool(Tracer._is_tracer_disabled()) is not enabled  # Powertools' own rule agrees


def test_a_disabled_tracer_is_a_no_op_with_the_decorators_the_handlers_use(
    lambda_env: pytest.MonkeyPatch,
) -> None:
    # Given tracing left to Lambda (TracingDetail=Invocations)
    lambda_env.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    tracer = make_tracer("autolabel")
    assert isinstance(tracer, NoTracer)

    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        return {"seen": event["n"]}

    # Then both decorator forms hand back the function itself, which still runs
    assert tracer.capture_lambda_handler(handler) is handler
    assert tracer.capture_lambda_handler(capture_response=False)(handler) is handler
    assert tracer.capture_method(handler) is handler
    assert tracer.capture_method(capture_error=False)(handler)({"n": 3}, None) == {"seen": 3}
    tracer.put_annotation("run", "r1")
    tracer.put_metadata("counts", {"n": 1})


def test_an_enabled_tracer_is_powertools_tracer(lambda_env: pytest.MonkeyPatch) -> None:
    # Given TracingDetail=AwsCalls (POWERTOOLS_TRACE_DISABLED=false) in Lambda
    lambda_env.setenv("POWERTOOLS_TRACE_DISABLED", "false")
    # Then the handlers get Powertools' Tracer (built without patching, to leave this process alone)
    Tracer._reset_config()
    try:
        tracer = make_tracer("autolabel", auto_patch=False)
        assert isinstance(tracer, Tracer)
        assert tracer.disabled is False
    finally:
        Tracer._reset_config()
