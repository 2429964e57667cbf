"""The security findings of issue 10 acted on in template.yaml: a dead-letter queue (and an alarm) for
the inference callback's SNS subscriptions, PutMetricData bounded by namespace, network isolation
stated (and why it stays off)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from workflow.tools.lint_template import load_template

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


def statements(node: Any) -> Iterator[dict[str, Any]]:
    """Every IAM policy statement below ``node``."""
    if isinstance(node, dict):
        if "Effect" in node and "Action" in node:
            yield node
        for value in node.values():
            yield from statements(value)
    elif isinstance(node, list):
        for value in node:
            yield from statements(value)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    return dict(load_template(TEMPLATE)["Resources"])


def getatt(value: Any) -> str:
    return str(getattr(value, "value", value))


def test_every_sns_subscription_of_the_callback_has_a_dead_letter_queue_with_an_alarm(
    resources: dict[str, Any],
) -> None:
    props = resources["InferenceCallbackFunction"]["Properties"]
    sns_events = [e for e in props["Events"].values() if e["Type"] == "SNS"]
    assert len(sns_events) == 2
    for event in sns_events:
        assert "CallbackDeadLetterQueue" in getatt(
            event["Properties"]["RedrivePolicy"]["deadLetterTargetArn"]
        )
    assert props["DeadLetterQueue"]["Type"] == "SQS"
    assert resources["CallbackDeadLetterQueue"]["Type"] == "AWS::SQS::Queue"
    # SNS may send to the queue, only from the two inference topics
    policy = resources["CallbackDeadLetterQueuePolicy"]["Properties"]["PolicyDocument"]
    allow = [s for s in policy["Statement"] if s["Effect"] == "Allow"]
    assert allow[0]["Principal"] == {"Service": "sns.amazonaws.com"} and "aws:SourceArn" in str(allow[0])
    alarm = resources["CallbackDeadLetterAlarm"]["Properties"]
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible" and alarm["Threshold"] == 1


def test_put_metric_data_is_bounded_by_namespace(resources: dict[str, Any]) -> None:
    found = [s for s in statements(resources) if "cloudwatch:PutMetricData" in as_list(s["Action"])]
    assert found
    for statement in found:
        namespaces = statement["Condition"]["StringLike"]["cloudwatch:namespace"]
        assert all(ns.startswith(("/aws/sagemaker/", "AWS/SageMaker")) for ns in namespaces)


def test_the_endpoint_model_states_its_network_isolation(resources: dict[str, Any]) -> None:
    # off on purpose: the container reads the batch's frames from S3 itself
    assert resources["EndpointModel"]["Properties"]["EnableNetworkIsolation"] is False
