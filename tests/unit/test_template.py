"""The SAM template: cfn-lint clean (also on the inlined ASL), handlers exist, runtime, IAM scope."""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from workflow.tools.lint_template import (
    StateMachineSource,
    cfn_lint_findings,
    inlined_template,
    lint_inlined,
    load_template,
    state_machine_source,
)

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
# CloudWatch Logs delivery for a state machine's log group accepts only Resource "*".
LOG_DELIVERY_ACTIONS = {
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE)


@pytest.fixture(scope="module")
def source() -> StateMachineSource:
    return state_machine_source(TEMPLATE)


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Properties of every AWS::Serverless::Function, by logical id."""
    return {
        name: resource["Properties"]
        for name, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }


def statements(node: Any) -> Iterator[dict[str, Any]]:
    """Every IAM policy statement anywhere below ``node`` (roles, inline SAM policies, bucket policies)."""
    if isinstance(node, dict):
        if "Effect" in node and ("Action" in node or "NotAction" in node):
            yield node
        for value in node.values():
            yield from statements(value)
    elif isinstance(node, list):
        for value in node:
            yield from statements(value)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_cfn_lint_finds_nothing_in_the_template():
    # Given template.yaml
    # When cfn-lint validates it (SAM resources against SAM's schemas)
    findings = cfn_lint_findings(TEMPLATE)
    # Then there is no finding
    assert findings == []


def test_cfn_lint_finds_nothing_in_the_inlined_state_machine(source, tmp_path):
    # Given the ASL inlined into a plain AWS::StepFunctions::StateMachine
    # When cfn-lint validates that generated template
    findings = lint_inlined(source, tmp_path)
    # Then there is no finding, and the template was written outside the repository
    assert findings == []
    assert [p.name for p in tmp_path.iterdir()] == ["inlined-state-machine.json"]


def test_cfn_lint_on_the_inlined_template_rejects_an_invalid_state(source, tmp_path):
    # Given a copy of the ASL where one nested state has an unknown type and one an unknown field
    definition = source.definition()
    nested = definition["States"]["LabelBatches"]["ItemProcessor"]["States"]
    nested["MergeBatch"]["Type"] = "Tsk"
    definition["States"]["Publish"]["Retries"] = []
    path = tmp_path / "broken.asl.json"
    path.write_text(json.dumps(definition), encoding="utf-8")
    broken = dataclasses.replace(source, definition_path=path)
    # When cfn-lint validates the inlined copy
    findings = lint_inlined(broken, tmp_path)
    # Then both are reported by the state machine schema rule
    assert len(findings) == 2
    assert all(f.startswith("E3601 ") for f in findings)
    assert any("'Tsk'" in f for f in findings) and any("'Retries'" in f for f in findings)


def test_inlined_template_gives_every_substitution_a_plausible_arn(source):
    # Given the inlined template
    props = inlined_template(source)["Resources"][source.logical_id]["Properties"]
    # When its DefinitionSubstitutions are read
    values = props["DefinitionSubstitutions"]
    # Then every function placeholder is a Lambda ARN and the definition keeps its ${...} names
    assert set(values) == set(source.substitutions)
    for name, value in values.items():
        assert re.fullmatch(r"arn:aws:lambda:us-east-1:\d{12}:function:[a-z0-9]+", value), (name, value)
    assert (
        props["Definition"]["States"]["PrepareRun"]["Parameters"]["FunctionName"]
        == "${PrepareRunFunctionArn}"
    )


def test_every_function_code_uri_has_app_py_with_the_named_handler(template):
    # Given every function of the template
    for name, props in functions(template).items():
        module, _, handler = props["Handler"].rpartition(".")
        path = ROOT / props["CodeUri"] / f"{module.replace('.', '/')}.py"
        # When its handler module is parsed (not imported: no AWS environment needed)
        assert module == "app" and path.is_file(), f"{name}: {path} is missing"
        tree = ast.parse(path.read_text(encoding="utf-8"))
        defined = {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}
        # Then it defines the named handler at module level
        assert handler in defined, f"{name}: {path} defines no {handler}()"


def test_every_function_runs_python_3_12(template):
    # Given the Globals and every function
    default = template.get("Globals", {}).get("Function", {}).get("Runtime")
    all_functions = functions(template)
    assert all_functions
    # When the runtime each one gets is resolved (its own, else the global one)
    runtimes = {name: props.get("Runtime", default) for name, props in all_functions.items()}
    # Then all run python3.12
    assert set(runtimes.values()) == {"python3.12"}, runtimes


def test_no_iam_statement_allows_every_resource_except_log_delivery(template):
    # Given every IAM statement of the template
    found = list(statements(template["Resources"]))
    assert found
    for statement in found:
        # When its resources include the bare wildcard
        if "*" not in as_list(statement.get("Resource", [])):
            continue
        # Then it only allows the CloudWatch Logs delivery actions, which accept no narrower resource
        assert statement["Effect"] == "Allow" and "Action" in statement, statement
        assert set(as_list(statement["Action"])) <= LOG_DELIVERY_ACTIONS, statement


def test_every_wildcard_resource_is_explained_by_a_comment():
    # Given the template text
    lines = TEMPLATE.read_text(encoding="utf-8").splitlines()
    # When the lines granting Resource "*" are found
    wildcards = [i for i, line in enumerate(lines) if re.search(r"Resource:\s*[\"']\*[\"']", line)]
    # Then a comment right above each says why
    for index in wildcards:
        assert lines[index - 1].strip().startswith("#"), (
            f"line {index + 1} grants Resource * without a comment"
        )
