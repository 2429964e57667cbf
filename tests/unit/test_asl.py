"""The state machine definition: substitutions, Lambda targets, graph, retries, timeouts, moto's limits."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from workflow.tools.lint_template import (
    SUBSTITUTION,
    StateMachineSource,
    check_asl_validator,
    graph_findings,
    iter_states,
    state_machine_source,
    substitution_findings,
)

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
LAMBDA_SERVICE_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.TooManyRequestsException",
}
# Error names that match every Lambda service error (States.TaskFailed matches all but States.Timeout).
CATCH_ALL_ERRORS = {"States.ALL", "States.TaskFailed"}


@pytest.fixture(scope="module")
def source() -> StateMachineSource:
    return state_machine_source(TEMPLATE)


@pytest.fixture(scope="module")
def definition(source: StateMachineSource) -> dict[str, Any]:
    return source.definition()


def tasks(definition: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every Task state, nested ones included, as (scope/name, state)."""
    return [(f"{scope}{name}", s) for scope, name, s in iter_states(definition) if s["Type"] == "Task"]


def lambda_tasks(definition: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (n, s) for n, s in tasks(definition) if s["Resource"].startswith("arn:aws:states:::lambda:invoke")
    ]


def validator_source(
    source: StateMachineSource, tmp_path: Path, definition: dict[str, Any]
) -> StateMachineSource:
    """The same state machine with its ASL replaced by ``definition`` (written under tmp_path)."""
    path = tmp_path / "changed" / source.definition_path.name
    path.parent.mkdir()
    path.write_text(json.dumps(definition), encoding="utf-8")
    return dataclasses.replace(source, definition_path=path)


def test_every_placeholder_has_a_substitution_and_every_substitution_is_used(source):
    # Given the ASL text and the template's DefinitionSubstitutions
    used = set(SUBSTITUTION.findall(source.text()))
    # When they are compared
    # Then both sides name the same placeholders, and the lint check agrees
    assert used, "the ASL uses no ${...} placeholder at all"
    assert used == set(source.substitutions)
    assert substitution_findings(source.text(), source.substitutions) == []


def test_substitution_check_names_a_missing_and_an_unused_entry():
    # Given an ASL that uses ${Missing} and substitutions that define only Unused
    text = '{"Resource": "${Missing}"}'
    # When the substitutions are checked
    findings = substitution_findings(text, {"Unused": "x"})
    # Then both mismatches are reported
    assert findings == [
        "${Missing} has no DefinitionSubstitutions entry",
        "DefinitionSubstitutions entry 'Unused' is not used",
    ]


def test_every_lambda_task_invokes_a_function_of_the_template(source, definition):
    # Given the Lambda tasks of the ASL and the template's functions
    functions = {
        name
        for name, resource in source.template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
    }
    invoked = lambda_tasks(definition)
    assert invoked, "the ASL has no Lambda task"
    for name, state in invoked:
        # When its FunctionName is resolved through DefinitionSubstitutions
        match = re.fullmatch(r"\$\{(\w+)\}", state["Parameters"]["FunctionName"])
        assert match, f"{name}: FunctionName must be a ${{...}} substitution"
        value = source.substitutions[match.group(1)]
        # Then it is the Arn (or Ref) of a function declared in the template
        target = value["Fn::GetAtt"][0] if "Fn::GetAtt" in value else value.get("Ref")
        assert target in functions, f"{name}: {match.group(0)} resolves to {value}, not a function"


def test_definition_is_json_with_every_target_existing_and_every_state_reachable(source, definition):
    # Given the ASL file
    # When it is parsed and its transition graph walked (nested Map states included)
    findings = graph_findings(definition)
    # Then it is a JSON object with states, and no transition is broken nor any state orphaned
    assert isinstance(json.loads(source.text()), dict)
    assert definition["States"]
    assert findings == []


def small_definition() -> dict[str, Any]:
    """A valid machine with every kind of transition: Next, Choice rules and Default, Catch, a nested Map."""
    task = {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "f"}}
    return {
        "StartAt": "Start",
        "States": {
            "Start": {**task, "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Done"}], "Next": "Pick"},
            "Pick": {
                "Type": "Choice",
                "Choices": [{"Variable": "$.n", "NumericGreaterThan": 0, "Next": "Each"}],
                "Default": "Done",
            },
            "Each": {
                "Type": "Map",
                "ItemProcessor": {
                    "StartAt": "Work",
                    "States": {"Work": {**task, "Next": "Last"}, "Last": {"Type": "Succeed"}},
                },
                "Next": "Done",
            },
            "Done": {"Type": "Succeed"},
        },
    }


def test_graph_check_accepts_every_kind_of_transition():
    # Given a small valid machine using Next, Choice rules, Default, Catch and a nested Map
    # When its graph is checked
    # Then nothing is reported
    assert graph_findings(small_definition()) == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda d: d["States"]["Each"]["ItemProcessor"]["States"]["Work"].update(Next="Nowhere"),
            [
                "Each/ItemProcessor/Work: transition to 'Nowhere', which names no state in its scope",
                "Each/ItemProcessor/Last: not reachable from StartAt",
            ],
        ),
        (
            lambda d: d["States"]["Each"].update(Next="Work"),
            ["Each: transition to 'Work', which names no state in its scope"],
        ),
        (
            lambda d: d["States"]["Pick"]["Choices"][0].update(Next="Gone"),
            [
                "Pick: transition to 'Gone', which names no state in its scope",
                "Each: not reachable from StartAt",
            ],
        ),
        (
            lambda d: d["States"]["Pick"].update(Default="Gone"),
            ["Pick: transition to 'Gone', which names no state in its scope"],
        ),
        (
            lambda d: d["States"]["Start"]["Catch"][0].update(Next="Lost"),
            ["Start: transition to 'Lost', which names no state in its scope"],
        ),
        (
            lambda d: d["States"]["Each"].pop("Next"),
            ["Each: needs exactly one of Next or End"],
        ),
        (
            lambda d: d.update(StartAt="Nope"),
            [
                "StartAt 'Nope' names no state",
                "Start: not reachable from StartAt",
                "Pick: not reachable from StartAt",
                "Each: not reachable from StartAt",
                "Done: not reachable from StartAt",
            ],
        ),
    ],
    ids=["next-in-map", "next-out-of-scope", "choice-rule", "choice-default", "catch", "no-end", "start-at"],
)
def test_graph_check_reports_broken_transitions(mutate, expected):
    # Given a valid machine with one transition broken
    broken = small_definition()
    mutate(broken)
    # When the graph is checked
    findings = graph_findings(broken)
    # Then the broken transition, and every state it orphans, is reported
    assert findings == expected


def test_asl_validator_accepts_the_definition_and_rejects_a_next_to_a_missing_state(
    source, definition, tmp_path
):
    # Given the npm asl-validator installed by `npm ci` (make lint does that)
    if not (ROOT / "node_modules" / ".bin" / "asl-validator").exists():
        pytest.skip("asl-validator is not installed: run `npm ci` (make lint installs it)")
    broken = copy.deepcopy(definition)
    broken["States"][broken["StartAt"]]["Next"] = "Nowhere"
    # When it validates the ASL (placeholders replaced by ARNs), then a copy with a broken Next
    ok = check_asl_validator(source, tmp_path, ROOT, install=False)
    if ok.skipped:
        pytest.skip(ok.skipped)
    bad = check_asl_validator(validator_source(source, tmp_path, broken), tmp_path, ROOT, install=False)
    # Then the real definition passes and the broken one names the missing target
    assert ok.findings == []
    assert any("Nowhere" in line for line in bad.findings), bad.findings


def test_no_map_uses_an_item_batcher(definition):
    """moto 5.2.5's Step Functions interpreter cannot parse ``ItemBatcher``, and local mode runs this
    very definition, so the Distributed Maps read items that are already batches or shards: ListPage
    writes one ``batches/<batch_id>.json`` object per batch of N frames and the LabelBatches Map lists
    that prefix (one child per batch, which also keeps the per-transition cost of a Standard workflow
    proportional to batches, not frames); ListSources and PublishShards read JSON lists PrepareRun and
    PlanReview wrote (sources, shards)."""
    # Given every Map state of the definition, nested ones included
    maps = [(name, state) for _, name, state in iter_states(definition) if state["Type"] == "Map"]
    # When their fields are inspected
    readers = {name: state["ItemReader"] for name, state in maps if "ItemReader" in state}
    # Then the sources and the shards come from S3 JSON objects, the batches from a listing of their
    # prefix, and no Map uses ItemBatcher
    assert {name: r["Resource"] for name, r in readers.items()} == {
        "ListSources": "arn:aws:states:::s3:getObject",
        "LabelBatches": "arn:aws:states:::s3:listObjectsV2",
        "PublishShards": "arn:aws:states:::s3:getObject",
    }
    assert readers["LabelBatches"]["Parameters"] == {
        "Bucket.$": "$.run.bucket",
        "Prefix.$": "$.run.batches_prefix",
    }
    assert readers["ListSources"]["Parameters"]["Key.$"] == "$.run.sources_key"
    assert [name for name, state in maps if "ItemBatcher" in state] == []


def test_every_task_retries_lambda_service_errors(definition):
    # Given every Task state, nested ones included
    all_tasks = tasks(definition)
    assert all_tasks
    for name, state in all_tasks:
        # When the errors its Retry rules match are collected
        retried = {error for rule in state.get("Retry", []) for error in rule["ErrorEquals"]}
        # Then every Lambda service error is retried, by name or by a catch-all
        assert retried & CATCH_ALL_ERRORS or retried >= LAMBDA_SERVICE_ERRORS, (
            f"{name} does not retry {sorted(LAMBDA_SERVICE_ERRORS - retried)}"
        )


def test_every_wait_for_task_token_task_has_a_timeout(definition):
    # Given the tasks that wait for a callback (a lost callback would otherwise wait for a year)
    waiting = [(n, s) for n, s in tasks(definition) if s["Resource"].endswith(".waitForTaskToken")]
    assert waiting, "the workflow waits for SNS/EventBridge callbacks, so it must have such tasks"
    for name, state in waiting:
        # When their timeout fields are read
        # Then each has a fixed or a per-run timeout
        assert "TimeoutSeconds" in state or "TimeoutSecondsPath" in state, f"{name} has no timeout"
