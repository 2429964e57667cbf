"""Drive-log ingestion in AWS, against moto: the plan, the claim's idempotency, the extraction task."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from log_helpers import LogFactory
from moto import mock_aws

from workflow.domain.lineage import FrameLineage
from workflow.domain.profile import default_profile
from workflow.domain.run import RunRequest
from workflow.local.cloud import DEFAULT_TEMPLATE
from workflow.local.template import Template
from workflow.logs.ingest import DriveLogLedger, DriveLogRequest, log_id, plan_drive_logs
from workflow.logs.task import TaskSettings, run_task

ASL = DEFAULT_TEMPLATE.parent / "statemachine" / "drivelogs.asl.json"
DATA, LOGS, TABLE = "autolabel-data", "fleet-drive-logs", "DriveLogTable"


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        for bucket in (DATA, LOGS):
            s3.create_bucket(Bucket=bucket)
        ddb.create_table(**Template(DEFAULT_TEMPLATE).create_table_request(TABLE))
        yield {"s3": s3, "dynamodb": ddb}


def _items(s3: Any, plan: dict[str, Any]) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(
        s3.get_object(Bucket=plan["bucket"], Key=plan["key"])["Body"].read()
    )
    return items


def test_an_event_plans_one_item_per_log_with_its_run_request(aws: dict[str, Any]) -> None:
    # Given an S3 event naming an .mcap log (with its ETag) and a .txt that is no log
    request = DriveLogRequest.model_validate(
        {
            "logs": [
                {"bucket": LOGS, "key": "incoming/2026-11-30/drive_7.mcap", "etag": '"abc123"', "size": 10},
                {"bucket": LOGS, "key": "incoming/2026-11-30/notes.txt", "etag": "x", "size": 1},
            ],
            "review": "skip",
        }
    )
    # When the execution plans its logs
    plan = plan_drive_logs(request, aws["s3"], DATA, "exec-1")
    # Then one item is written for the log, keyed by URI + ETag, the .txt counted as ignored
    (item,) = _items(aws["s3"], plan)
    assert (plan["count"], plan["ignored"]) == (1, 1)
    assert item["ledger_key"] == f"s3://{LOGS}/incoming/2026-11-30/drive_7.mcap#abc123"
    assert item["output_prefix"] == f"s3://{DATA}/drivelogs/{item['log_id']}/"
    # and its run request is one the autolabel state machine accepts, named <log id>-a<attempt>
    run = RunRequest.model_validate({**item["run_request"], "run_id": f"{item['log_id']}-a999"})
    assert run.sources == [f"{item['output_prefix']}frames/"] and run.review == "skip"


def test_the_same_log_with_another_etag_is_another_log() -> None:
    # Given one object before and after it was replaced, when their ids are made
    first, second = log_id("s3://b/drive.bag", "e1"), log_id("s3://b/drive.bag", "e2")
    # Then they differ, keep the file stem, and stay valid run ids with an attempt suffix
    assert first != second and first.startswith("drive-")
    assert all(re.fullmatch(r"[A-Za-z0-9\-]{1,40}", f"{i}-a100") for i in (first, second))
    assert len(log_id("s3://b/" + "x" * 300 + ".mcap", "e")) <= 33


def test_the_schedule_lists_logs_and_leaves_out_those_already_settled(aws: dict[str, Any]) -> None:
    # Given a prefix holding a bag, a db3, an mcap and a jpg; the bag already done in the ledger
    s3 = aws["s3"]
    for key in ("in/a.bag", "in/b.db3", "in/c.mcap", "in/d.jpg"):
        s3.put_object(Bucket=LOGS, Key=key, Body=key.encode())
    etag = s3.head_object(Bucket=LOGS, Key="in/a.bag")["ETag"].strip('"')
    aws["dynamodb"].put_item(
        TableName=TABLE, Item={"log_key": {"S": f"s3://{LOGS}/in/a.bag#{etag}"}, "status": {"S": "done"}}
    )
    # When the scheduled execution plans the prefix, the event also naming c.mcap (no ETag)
    request = DriveLogRequest(prefixes=(f"s3://{LOGS}/in/",), logs=({"bucket": LOGS, "key": "in/c.mcap"},))  # type: ignore[arg-type]
    plan = plan_drive_logs(request, s3, DATA, "exec-2", DriveLogLedger(aws["dynamodb"], TABLE))
    # Then the db3 and the mcap (once) are planned, the done bag left out
    assert sorted(i["log_uri"] for i in _items(s3, plan)) == [
        f"s3://{LOGS}/in/b.db3",
        f"s3://{LOGS}/in/c.mcap",
    ]
    assert plan["already_done"] == 1


# --- the claim: the ASL's own DynamoDB parameters, run against moto ---------------------------------


def _state(name: str) -> dict[str, Any]:
    states = json.loads(ASL.read_text())["States"]["ProcessLogs"]["ItemProcessor"]["States"]
    return dict(states[name])


def _resolve(value: Any, data: dict[str, Any], context: dict[str, Any]) -> Any:
    """The subset of Step Functions' parameter resolution these states use."""
    if isinstance(value, dict):
        out = {}
        for key, v in value.items():
            out[key.removesuffix(".$")] = (
                _path(v, data, context) if key.endswith(".$") else _resolve(v, data, context)
            )
        return out
    if isinstance(value, list):
        return [_resolve(v, data, context) for v in value]
    return value


def _path(expr: str, data: dict[str, Any], context: dict[str, Any]) -> Any:
    if expr.startswith("States.Format("):
        template, *args = [a.strip() for a in expr[len("States.Format(") : -1].split(",")]
        return template.strip("'").format(*(_path(a, data, context) for a in args))
    if expr.startswith("States.JsonToString("):
        return json.dumps(_path(expr[len("States.JsonToString(") : -1], data, context))
    root, rest = (context, expr[3:]) if expr.startswith("$$.") else (data, expr[2:])
    for part in rest.split("."):
        root = root[part]
    return root


def _call(ddb: Any, state: str, item: dict[str, Any]) -> dict[str, Any]:
    params = _resolve(
        _state(state)["Parameters"],
        item,
        {"State": {"EnteredTime": "2026-12-01T09:00:00Z"}, "Execution": {"Id": "arn:x"}},
    )
    params["TableName"] = TABLE
    result: dict[str, Any] = ddb.update_item(**params)
    return result


def test_a_log_version_is_claimed_once_and_again_only_after_it_failed(aws: dict[str, Any]) -> None:
    # Given a planned item
    request = DriveLogRequest(logs=({"bucket": LOGS, "key": "in/drive.bag", "etag": "e1"},))  # type: ignore[arg-type]
    (item,) = _items(aws["s3"], plan_drive_logs(request, aws["s3"], DATA, "exec-3"))
    ddb = aws["dynamodb"]
    # When ClaimLog runs twice (an S3 event delivered twice, or the schedule meeting it again)
    first = _call(ddb, "ClaimLog", item)
    with pytest.raises(ClientError) as again:
        _call(ddb, "ClaimLog", item)
    # Then the first claims attempt 1 and the second is refused by the condition (-> AlreadyClaimed)
    assert first["Attributes"]["attempts"] == {"N": "1"}
    assert again.value.response["Error"]["Code"] == "ConditionalCheckFailedException"
    assert _state("ClaimLog")["Catch"][0] == {
        "ErrorEquals": ["DynamoDB.ConditionalCheckFailedException"],
        "ResultPath": None,
        "Next": "AlreadyClaimed",
    }
    # When the extraction fails and MarkFailed records it, then the next claim is attempt 2
    _call(ddb, "MarkFailed", {**item, "error": {"Error": "ExtractionFailed", "Cause": "exit 1"}})
    assert _call(ddb, "ClaimLog", item)["Attributes"]["attempts"] == {"N": "2"}
    # and once it is labeled, it is never claimed again
    _call(ddb, "MarkDone", {**item, "run": {"execution_arn": "arn:run"}})
    with pytest.raises(ClientError):
        _call(ddb, "ClaimLog", item)
    stored = ddb.get_item(TableName=TABLE, Key={"log_key": {"S": item["ledger_key"]}})["Item"]
    assert stored["status"] == {"S": "done"} and stored["run_execution"] == {"S": "arn:run"}


def test_every_failure_of_a_child_is_recorded_before_it_fails() -> None:
    # Given the child's states, then extraction and labeling errors all lead to MarkFailed, then LogFailed
    assert _state("ExtractFrames")["Catch"][0]["Next"] == "MarkFailed"
    assert _state("ExtractionSucceeded")["Default"] == "ExtractionFailed"
    assert _state("ExtractionFailed")["Next"] == "MarkFailed"
    assert _state("LabelFrames")["Catch"][0]["Next"] == "MarkFailed"
    assert _state("MarkFailed")["Next"] == "LogFailed" and _state("LogFailed")["Type"] == "Fail"
    assert _state("LabelFrames")["Resource"] == "arn:aws:states:::states:startExecution.sync:2"


# --- the extraction task ---------------------------------------------------------------------------


def test_the_task_extracts_the_claimed_log_version_into_the_output_prefix(
    aws: dict[str, Any], drive_log: LogFactory, tmp_path: Path
) -> None:
    # Given a .db3 log in the fleet bucket and its ETag
    s3 = aws["s3"]
    (db3,) = drive_log("db3")
    s3.upload_file(str(db3), LOGS, "in/drive.db3")
    etag = s3.head_object(Bucket=LOGS, Key="in/drive.db3")["ETag"]
    settings = TaskSettings.from_env(
        {
            "LOG_URI": f"s3://{LOGS}/in/drive.db3",
            "LOG_ETAG": etag,
            "OUTPUT_PREFIX": f"s3://{DATA}/drivelogs/drive-1/",
            "PROFILE": json.dumps(
                {**default_profile().to_dict(), "logs": {"selection": {"min_distance_m": 4.0}}}
            ),
            "WORK_DIR": str(tmp_path / "work"),
            "WORKERS": "2",
        }
    )
    # When the task runs
    report = run_task(settings, s3)
    # Then the profile's selection applied and frames, lineage and report are in the output prefix
    listed = [o["Key"] for o in s3.list_objects_v2(Bucket=DATA, Prefix="drivelogs/drive-1/")["Contents"]]
    frames = [k for k in listed if k.startswith("drivelogs/drive-1/frames/") and k.endswith(".jpg")]
    assert report["frames"] == len(frames) == 8
    lines = (
        s3.get_object(Bucket=DATA, Key="drivelogs/drive-1/frames.jsonl")["Body"].read().decode().splitlines()
    )
    records = [FrameLineage.model_validate_json(line) for line in lines]
    assert {r.log_uri for r in records} == {f"s3://{LOGS}/in/drive.db3"}
    assert {f"drivelogs/drive-1/frames/{r.frame}" for r in records} == set(frames)
    assert "drivelogs/drive-1/extraction.json" in listed
    # and the workflow finds each frame's record and the selection counts under the frames prefix it labels
    assert "drivelogs/drive-1/frames/drive/selection.json" in listed
    assert "drivelogs/drive-1/frames/drive/camera_front_image/lineage-000000.jsonl" in listed


def test_the_task_refuses_a_log_replaced_since_it_was_claimed(aws: dict[str, Any], tmp_path: Path) -> None:
    # Given a log object whose ETag is not the one claimed
    aws["s3"].put_object(Bucket=LOGS, Key="in/x.mcap", Body=b"new content")
    settings = TaskSettings(
        "s3://fleet-drive-logs/in/x.mcap", "0" * 32, f"s3://{DATA}/drivelogs/x/", "", tmp_path, 1
    )
    # When the task runs, then S3 refuses the download (412) and nothing is extracted
    with pytest.raises(ClientError) as err:
        run_task(settings, aws["s3"])
    assert err.value.response["Error"]["Code"] in ("412", "PreconditionFailed")


def test_an_inline_profile_too_large_for_the_task_overrides_is_refused() -> None:
    # Given a profile whose JSON is longer than the ECS container overrides can carry
    profile = {**default_profile().to_dict(), "description": "x" * 7000}
    # When a drivelogs request carries it inline, then it is refused, pointing to an s3:// profile
    with pytest.raises(ValueError, match="pass its s3:// URI"):
        DriveLogRequest(prefixes=("s3://b/p/",), profile=profile)
    assert (
        DriveLogRequest(prefixes=("s3://b/p/",), profile="s3://b/profile.yaml").profile
        == "s3://b/profile.yaml"
    )
