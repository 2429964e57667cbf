"""Every handler parses its event with a Powertools parser model, and the models match what the
state machines send: each Lambda task's Payload keys are fields of its function's event model."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.parser import parse
from pydantic import BaseModel, ValidationError

from workflow import events

ROOT = Path(__file__).resolve().parents[2]
HANDLERS = sorted(p.parent for p in (ROOT / "functions").glob("*/app.py"))
PARSER = re.compile(r"@event_parser\(model=(\w+)\)")


def event_model(folder: Path) -> type[BaseModel]:
    source = (folder / "app.py").read_text()
    found = PARSER.findall(source)
    assert len(found) == 1, f"{folder.name}: its handler is not wrapped by one event_parser"
    name = found[0]
    module = re.search(rf"from ([\w.]+) import [^\n]*\b{name}\b", source)
    assert module, f"{folder.name}: where {name} comes from"
    return getattr(__import__(module.group(1), fromlist=[name]), name)  # type: ignore[no-any-return]


def payload_keys(folder: str) -> list[tuple[str, list[str]]]:
    """(state name, Payload keys) of every Lambda task whose function's code is ``folder``."""
    placeholder = "".join(part.title() for part in folder.split("_")) + "FunctionArn"
    found = []
    for asl in (ROOT / "statemachine").glob("*.asl.json"):

        def walk(states: dict[str, Any]) -> None:
            for name, state in states.items():
                params = state.get("Parameters") or {}
                if placeholder in str(params.get("FunctionName", "")):
                    found.append((name, [k.removesuffix(".$") for k in params["Payload"]]))
                for key in ("Iterator", "ItemProcessor"):
                    if key in state:
                        walk(state[key]["States"])
                for branch in state.get("Branches", []):
                    walk(branch["States"])

        walk(json.loads(asl.read_text())["States"])
    return found


@pytest.mark.parametrize("folder", HANDLERS, ids=lambda p: p.name)
def test_every_handler_parses_its_event_with_a_model(folder: Path) -> None:
    # Given a handler, Then it is wrapped by event_parser with a pydantic model, and no handler
    # reads its event as a raw dict
    model = event_model(folder)
    assert issubclass(model, BaseModel)
    assert "event: dict" not in (folder / "app.py").read_text()


@pytest.mark.parametrize("folder", HANDLERS, ids=lambda p: p.name)
def test_the_state_machines_payload_keys_are_the_models_fields(folder: Path) -> None:
    # Given the Lambda tasks that invoke this function in the state machines
    model = event_model(folder)
    fields = {f.alias or n for n, f in model.model_fields.items()} | set(model.model_fields)
    required = {f.alias or n for n, f in model.model_fields.items() if f.is_required()}
    for state, keys in payload_keys(folder.name):
        # Then every key it sends is a field, and every required field is sent
        assert set(keys) <= fields, f"{state} sends {sorted(set(keys) - fields)} that {model.__name__} drops"
        assert required <= set(keys), f"{state} omits {sorted(required - set(keys))}"


RUN = {
    "run_id": "r1",
    "bucket": "b",
    "run_prefix": "runs/r1",
    "sources_key": "runs/r1/sources.json",
    "source_count": 1,
    "batches_prefix": "runs/r1/batches/",
    "max_concurrency": 2,
    "batch_timeout_seconds": 60,
    "review": "skip",
    "review_timeout_seconds": 60,
    "models": [{"name": "m", "endpoint_name": "e"}],
}


def test_a_malformed_event_fails_before_any_work_naming_the_field() -> None:
    # Given a MergeBatch event whose inference lacks its batch id
    event = {"batch_key": "runs/r1/batches/b0.json", "run": RUN, "inference": {"inferences": []}}
    # When it is parsed, Then the ValidationError names the missing field
    with pytest.raises(ValidationError) as err:
        parse(event=event, model=events.MergeBatchEvent)
    assert "inference.batch_id" in str(err.value).replace("\n", " ").replace(" ", ".")


def test_a_caught_error_keeps_the_catchs_shape_and_tells_a_timeout() -> None:
    # Given RecordBatchFailure's event after a task timed out (a Catch gives Error and Cause)
    event = {"batch_key": "k", "run": RUN, "error": {"Error": "States.Timeout", "Cause": ""}}
    parsed = parse(event=event, model=events.RecordBatchFailureEvent)
    # Then it is told a timeout, and the error handed on is the Catch's own
    assert parsed.timed_out
    assert parsed.error.as_catch() == {"Error": "States.Timeout", "Cause": ""}
    other = {**event, "error": {"Error": "Lambda.Unknown", "Cause": '{"errorMessage": "x"}'}}
    assert not parse(event=other, model=events.RecordBatchFailureEvent).timed_out


def test_the_run_state_is_handed_on_as_the_state_machine_passes_it() -> None:
    # Given FinishRun's state after a review that failed (the ASL's initial reviews are [])
    review = {"job_name": "j", "status": "Completed", "label_attribute": "a", "part": 0}
    error = {"Error": "States.Timeout", "Cause": "no callback"}
    parsed = parse(
        event={"state": {"run": RUN, "reviews": [review], "review_error": error}}, model=events.FinishRunEvent
    )
    state = parsed.state.as_state()
    # Then the steps read the same state they read from the raw event
    assert state["reviews"] == [{**review, "output_manifest_uri": None}]
    assert state["review_error"] == error
    assert state["run"]["run_id"] == "r1"
    skipped = parse(
        event={"state": {"run": RUN, "reviews": None, "review_error": None}}, model=events.FinishRunEvent
    )
    assert skipped.state.as_state()["reviews"] == [] and skipped.state.as_state()["review_error"] is None


def test_a_function_url_body_is_decoded_when_base64() -> None:
    # Given the Function URL's event 2.0 with a body it base64-encoded
    body = '{"project": {"id": 3}}'
    event = {"headers": {"x": "y"}, "body": base64.b64encode(body.encode()).decode(), "isBase64Encoded": True}
    # Then the handler reads the text; a plain body is read as is, a missing one as empty
    assert parse(event=event, model=events.FunctionUrlEvent).text == body
    assert parse(event={"headers": {}, "body": body}, model=events.FunctionUrlEvent).text == body
    assert parse(event={"headers": {}}, model=events.FunctionUrlEvent).text == ""
