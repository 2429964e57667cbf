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
# Actions whose APIs accept only Resource "*": CloudWatch Logs delivery for the state machine's log
# group, ECR's registry login and CloudWatch PutMetricData (SageMaker's endpoint and labeling roles).
ONLY_STAR_ACTIONS = {
    "cloudwatch:PutMetricData",
    "ecr:GetAuthorizationToken",
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
    definition["States"]["FinishRun"]["Retries"] = []
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
    # Then every function placeholder is a Lambda ARN, the data bucket a bucket name, and the
    # definition keeps its ${...} names
    assert set(values) == set(source.substitutions)
    functions = {name: value for name, value in values.items() if name.endswith("FunctionArn")}
    assert set(values) - set(functions) == {"DataBucketName"}
    assert re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", values["DataBucketName"])
    for name, value in functions.items():
        assert re.fullmatch(r"arn:aws:lambda:us-east-1:\d{12}:function:[a-z0-9]+", value), (name, value)
    # And every step of the fleet-scale shape has its function (BuildManifest and Publish are gone)
    steps = {name.removesuffix("FunctionArn") for name in functions}
    assert steps == {
        "PrepareRun",
        "ListPage",
        "InvokeModels",
        "MergeBatch",
        "RecordBatchFailure",
        "PlanReview",
        "AssembleManifest",
        "StartReview",
        "CollectReview",
        "PublishShard",
        "FinishRun",
    }
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


def test_the_x_ray_sdk_runs_in_the_handlers_only_when_tracing_detail_asks_for_aws_calls(template):
    # Given the TracingDetail parameter and the Globals' trace switch of Powertools' Tracer
    parameter = template["Parameters"]["TracingDetail"]
    switch = template["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_TRACE_DISABLED"]
    mapping, key, field = switch["Fn::FindInMap"]
    assert key == {"Ref": "TracingDetail"}
    # When each value of the parameter is looked up
    disabled = {value: template["Mappings"][mapping][value][field] for value in parameter["AllowedValues"]}
    # Then the default leaves tracing to Lambda (no SDK) and AwsCalls turns the SDK on
    assert disabled == {"Invocations": "true", "AwsCalls": "false"}
    assert parameter["Default"] == "Invocations"
    # and every function keeps Lambda's active tracing and the global switch (no function overrides it)
    default = template["Globals"]["Function"]["Tracing"]
    for name, props in functions(template).items():
        assert props.get("Tracing", default) == "Active", name
        assert "POWERTOOLS_TRACE_DISABLED" not in props.get("Environment", {}).get("Variables", {}), name


def test_no_iam_statement_allows_every_resource_except_apis_that_accept_no_other(template):
    # Given every IAM statement of the template
    found = list(statements(template["Resources"]))
    assert found
    for statement in found:
        # When its resources include the bare wildcard
        if "*" not in as_list(statement.get("Resource", [])):
            continue
        # Then it only allows actions that accept no narrower resource
        assert statement["Effect"] == "Allow" and "Action" in statement, statement
        assert set(as_list(statement["Action"])) <= ONLY_STAR_ACTIONS, statement


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


# --- deployable: endpoint, scaling, storage, logs, triggers -------------------------------------------
ENDPOINT_RESOURCES = {
    "EndpointRole": "AWS::IAM::Role",
    "EndpointModel": "AWS::SageMaker::Model",
    "EndpointConfig": "AWS::SageMaker::EndpointConfig",
    "Endpoint": "AWS::SageMaker::Endpoint",
    "EndpointScalableTarget": "AWS::ApplicationAutoScaling::ScalableTarget",
    "BacklogTargetTrackingPolicy": "AWS::ApplicationAutoScaling::ScalingPolicy",
    "ScaleOutFromZeroPolicy": "AWS::ApplicationAutoScaling::ScalingPolicy",
    "HasBacklogWithoutCapacityAlarm": "AWS::CloudWatch::Alarm",
}


def test_the_endpoint_and_its_scaling_exist_only_when_a_model_image_is_given(template):
    # Given the template's endpoint resources
    resources = template["Resources"]
    # When their types and conditions are read
    found = {name: resources[name]["Type"] for name in ENDPOINT_RESOURCES if name in resources}
    # Then all are there, each made only under CreateEndpoint, which means "ModelImageUri is set"
    assert found == ENDPOINT_RESOURCES
    assert {resources[name].get("Condition") for name in ENDPOINT_RESOURCES} == {"CreateEndpoint"}
    assert template["Conditions"]["CreateEndpoint"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ModelImageUri"}, ""]}]
    }
    assert resources["Endpoint"]["Properties"]["EndpointName"] == {"Ref": "EndpointName"}


def test_the_endpoint_scales_to_zero_and_back_on_its_backlog(template):
    # Given the scalable target, both policies and the alarm
    r = template["Resources"]
    target = r["EndpointScalableTarget"]["Properties"]
    tracking = r["BacklogTargetTrackingPolicy"]["Properties"]
    step = r["ScaleOutFromZeroPolicy"]["Properties"]
    alarm = r["HasBacklogWithoutCapacityAlarm"]["Properties"]
    # When they are read
    metric = tracking["TargetTrackingScalingPolicyConfiguration"]["CustomizedMetricSpecification"]
    # Then the variant scales between 0 and the maximum instances ...
    assert target["MinCapacity"] == 0 and target["MaxCapacity"] == {"Ref": "EndpointMaxInstances"}
    assert target["ScalableDimension"] == "sagemaker:variant:DesiredInstanceCount"
    assert target["ResourceId"] == {"Fn::Sub": "endpoint/${Endpoint.EndpointName}/variant/AllTraffic"}
    # ... tracking the backlog per instance ...
    assert tracking["PolicyType"] == "TargetTrackingScaling"
    assert (metric["Namespace"], metric["MetricName"]) == (
        "AWS/SageMaker",
        "ApproximateBacklogSizePerInstance",
    )
    assert metric["Dimensions"] == [
        {"Name": "EndpointName", "Value": {"Fn::GetAtt": ["Endpoint", "EndpointName"]}}
    ]
    # ... and one instance starts when requests wait with none running (target tracking cannot from zero)
    assert step["PolicyType"] == "StepScaling"
    adjustment = step["StepScalingPolicyConfiguration"]
    assert adjustment["AdjustmentType"] == "ChangeInCapacity"
    assert adjustment["StepAdjustments"] == [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/SageMaker", "HasBacklogWithoutCapacity")
    assert alarm["Threshold"] == 1 and alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["AlarmActions"] == [{"Ref": "ScaleOutFromZeroPolicy"}]
    assert step["ScalingTargetId"] == tracking["ScalingTargetId"] == {"Ref": "EndpointScalableTarget"}


def test_the_async_config_notifies_the_topics_the_callback_listens_to(template):
    # Given the endpoint config and the inference callback's SNS events
    r = template["Resources"]
    config = r["EndpointConfig"]["Properties"]["AsyncInferenceConfig"]
    events = r["InferenceCallbackFunction"]["Properties"]["Events"].values()
    # When the notification topics and output paths are read
    notify = config["OutputConfig"]["NotificationConfig"]
    # Then success and error go to the callback's topics, outputs into the data bucket's async/ prefix
    assert {e["Properties"]["Topic"]["Ref"] for e in events} == {
        notify["SuccessTopic"]["Ref"],
        notify["ErrorTopic"]["Ref"],
    }
    assert config["OutputConfig"]["S3OutputPath"] == {
        "Fn::Sub": "s3://${DataBucket}/async/${EndpointName}/output/"
    }
    assert config["OutputConfig"]["S3FailurePath"] == {
        "Fn::Sub": "s3://${DataBucket}/async/${EndpointName}/failure/"
    }
    assert config["ClientConfig"]["MaxConcurrentInvocationsPerInstance"] == {
        "Ref": "MaxConcurrentInvocationsPerInstance"
    }
    assert template["Parameters"]["MaxConcurrentInvocationsPerInstance"]["Default"] == 4
    env = r["EndpointModel"]["Properties"]["PrimaryContainer"]["Environment"]
    assert env["SAGEMAKER_PROGRAM"] == {"Ref": "EndpointEntryScript"}


def test_every_function_logs_to_a_log_group_with_retention(template):
    # Given every function and every log group
    groups = {
        json.dumps(res["Properties"].get("LogGroupName")): res["Properties"]
        for res in template["Resources"].values()
        if res["Type"] == "AWS::Logs::LogGroup"
    }
    for name in functions(template):
        # When the function's log group is looked up by the name Lambda writes to
        group = groups.get(json.dumps({"Fn::Sub": f"/aws/lambda/${{{name}}}"}))
        # Then it exists and keeps logs for LogRetentionDays
        assert group is not None, f"{name} has no log group"
        assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_storage_is_encrypted_private_and_expires_what_is_intermediate(template):
    # Given the bucket, its policy and the tables
    r = template["Resources"]
    bucket = r["DataBucket"]["Properties"]
    deny = r["DataBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    # When their settings are read
    rules = {rule["Id"]: rule for rule in bucket["LifecycleConfiguration"]["Rules"] if "Id" in rule}
    # Then the bucket is encrypted, private, TLS-only, and the endpoint's raw outputs expire
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert deny["Effect"] == "Deny" and deny["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert rules["expire-async-inference-outputs"]["Prefix"] == "async/"
    # And the tables are on-demand, tokens expire by TTL, the ledger keeps point-in-time recovery
    assert {r[t]["Properties"]["BillingMode"] for t in ("TokenTable", "LedgerTable")} == {"PAY_PER_REQUEST"}
    assert r["TokenTable"]["Properties"]["TimeToLiveSpecification"] == {
        "AttributeName": "expires_at",
        "Enabled": True,
    }
    assert (
        r["LedgerTable"]["Properties"]["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"]
        is True
    )


def test_no_policy_grants_every_bucket(template):
    # Given the template text and every IAM statement
    text = json.dumps(template["Resources"])
    found = list(statements(template["Resources"]))
    # When S3 resources are looked for
    s3_resources = [
        r for s in found for r in as_list(s.get("Resource", [])) if "arn:aws:s3:::*" in json.dumps(r)
    ]
    # Then no SAM policy names bucket "*" and no statement names every bucket
    assert '"BucketName": "*"' not in text
    assert s3_resources == []


def test_source_buckets_are_named_by_a_parameter(template):
    # Given ListPage's policies (the only step that lists the sources)
    policies = functions(template)["ListPageFunction"]["Policies"]
    # When the conditional source-bucket statement is read
    (conditional,) = [p for p in policies if "Fn::If" in p]
    condition, statement, otherwise = conditional["Fn::If"]
    # Then it lists (never reads) exactly the SourceBucketNames, and nothing when the list is empty
    assert condition == "HasSourceBuckets" and otherwise == {"Ref": "AWS::NoValue"}
    assert statement["Statement"][0]["Action"] == "s3:ListBucket"
    assert "SourceBucketNames" in json.dumps(statement["Statement"][0]["Resource"])
    assert template["Parameters"]["SourceBucketNames"]["Type"] == "CommaDelimitedList"


@pytest.mark.parametrize(("response_format", "batch_requests"), [("autolabel", True), ("jumpstart", False)])
def test_default_models_send_batches_only_to_this_projects_container(response_format, batch_requests):
    # Given local mode's reading of the template with a model response format
    from workflow.local.template import Resolver, Template

    parsed = Template(TEMPLATE)
    refs = {**parsed.parameter_defaults(), "ModelResponseFormat": response_format}
    resolver = Resolver(refs, {}, parsed.data["Mappings"])
    # When the functions' DEFAULT_MODELS environment variable is resolved
    (model,) = json.loads(resolver(parsed.global_environment()["DEFAULT_MODELS"]))
    # Then a JumpStart endpoint gets one image per request, this project's container one batch
    assert model["response_format"] == response_format and model["batch_requests"] is batch_requests


def test_scheduled_and_event_started_runs_get_valid_run_requests(template):
    # Given the schedule's input and the drive-log rule's input template (review: skip without a work team)
    from workflow.domain.run import RunRequest

    r = template["Resources"]
    schedule = r["AutolabelStateMachine"]["Properties"]["Events"]["NewDriveLogs"]["Properties"]["Input"][
        "Fn::Sub"
    ]
    target = r["DriveLogReadyRule"]["Properties"]["Targets"][0]
    transformer = target["InputTransformer"]
    prefixes = template["Parameters"]["SchedulePrefixes"]["Default"]
    # When they are filled in as EventBridge would for a folder marker
    scheduled = schedule[0].replace("${SchedulePrefixes}", prefixes).replace("${Review}", "skip")
    event = transformer["InputTemplate"]["Fn::Sub"][0].replace("${Review}", "human")
    event = event.replace("<bucket>", "drive-logs").replace("<key>", "incoming/drive-42/")
    # Then both are run requests the workflow accepts, the event's naming the marker's folder
    assert RunRequest.model_validate_json(scheduled).review == "skip"
    assert RunRequest.model_validate_json(event).sources == ["s3://drive-logs/incoming/drive-42/"]
    assert transformer["InputPathsMap"] == {"bucket": "$.detail.bucket.name", "key": "$.detail.object.key"}
    assert target["Arn"] == {"Ref": "AutolabelStateMachine"}


def test_only_a_drive_log_folder_marker_starts_a_run(template):
    # Given the drive-log rule's event pattern
    rule = template["Resources"]["DriveLogReadyRule"]
    pattern = rule["Properties"]["EventPattern"]
    # When it is read
    detail = pattern["detail"]
    # Then it matches zero-byte keys ending in "/" under DriveLogPrefix of DriveLogBucketName, only when set
    assert (pattern["source"], pattern["detail-type"]) == (["aws.s3"], ["Object Created"])
    assert detail["bucket"]["name"] == [{"Ref": "DriveLogBucketName"}]
    assert detail["object"]["key"] == [{"wildcard": {"Fn::Sub": "${DriveLogPrefix}*/"}}]
    assert detail["object"]["size"] == [{"numeric": ["=", 0]}]
    assert rule["Condition"] == "HasDriveLogTrigger"


def test_the_layer_is_built_by_the_makefile_for_python_3_12_on_arm64(template):
    # Given the layer and the Makefile
    layer = template["Resources"]["WorkflowLayer"]
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    # When the build method and the target are read
    # Then SAM runs `make build-WorkflowLayer`, which installs arm64 wheels for python 3.12
    assert (
        layer["Metadata"]["BuildMethod"] == "makefile" and layer["Metadata"]["BuildArchitecture"] == "arm64"
    )
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    assert "\nbuild-WorkflowLayer:" in makefile
    assert "--python-version 3.12" in makefile and "manylinux2014_aarch64" in makefile
    assert "onnxruntime" not in re.search(r"LAYER_PACKAGES :=(.*?)\n\S", makefile, re.S).group(1)


def test_a_failed_timed_out_or_aborted_execution_starts_report_failed_run(template):
    # Given ReportFailedRun's event source and the statuses its step acts on
    from workflow.steps.failure import ENDED

    events = functions(template)["ReportFailedRunFunction"]["Events"]
    (rule,) = events.values()
    pattern = rule["Properties"]["Pattern"]
    # When its EventBridge rule is read
    detail = pattern["detail"]
    # Then it matches this stack's state machine's status changes: the ends the step reports, and
    # RUNNING (a redriven execution marks its run running again)
    assert rule["Type"] == "EventBridgeRule"
    assert (pattern["source"], pattern["detail-type"]) == (
        ["aws.states"],
        ["Step Functions Execution Status Change"],
    )
    assert detail["stateMachineArn"] == [{"Ref": "AutolabelStateMachine"}]
    assert set(detail["status"]) == {*ENDED, "RUNNING"}
    assert "SUCCEEDED" not in detail["status"]


def test_prepare_run_lists_no_bucket_and_list_page_claims_in_the_ledger(template):
    # Given the policies of PrepareRun and ListPage
    fns = functions(template)
    prepare = json.dumps(fns["PrepareRunFunction"]["Policies"])
    listing = [s for p in fns["ListPageFunction"]["Policies"] if "Statement" in p for s in p["Statement"]]
    # When their actions are read
    actions = {a for s in listing for a in as_list(s["Action"])}
    # Then PrepareRun neither lists nor claims (ListPage does both, conditionally, per page)
    assert "s3:ListBucket" not in prepare and "dynamodb:UpdateItem" not in prepare
    assert {"s3:ListBucket", "dynamodb:UpdateItem", "dynamodb:GetItem"} <= actions


def test_a_failed_map_child_never_fails_its_map_and_a_failed_page_or_shard_is_written_down(template):
    # Given the state machine and its role
    asl = json.loads((ROOT / "statemachine" / "autolabel.asl.json").read_text())
    maps = {n: s for n, s in asl["States"].items() if s["Type"] == "Map"}
    # Then every Distributed Map tolerates its children's failures (as moto does, which ignores the
    # setting): PlanReview (lost batches) and FinishRun (pages, shards) account for them instead
    assert set(maps) == {"ListSources", "LabelBatches", "PublishShards", "ReviewJobs"}
    for name in ("ListSources", "LabelBatches", "PublishShards"):
        assert maps[name]["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
        assert maps[name]["ToleratedFailurePercentage"] == 100, name
    # And ListPage and PublishShard, failing after their retries, write their error under failures/
    for map_name, task, record, folder in (
        ("ListSources", "ListPage", "ListingFailed", "listing"),
        ("PublishShards", "PublishShard", "PublishFailed", "shards"),
    ):
        states = maps[map_name]["ItemProcessor"]["States"]
        (catch,) = states[task]["Catch"]
        assert catch["ErrorEquals"] == ["States.ALL"] and catch["Next"] == record
        written = states[record]
        assert written["Resource"] == "arn:aws:states:::aws-sdk:s3:putObject"
        assert f"/failures/{folder}/" in written["Parameters"]["Key.$"]
        assert written["Parameters"]["Body.$"] == f"States.JsonToString({catch['ResultPath']})"
    # And the state machine's role may write exactly there
    role = template["Resources"]["AutolabelStateMachine"]["Properties"]["Policies"]
    puts = [s for s in statements(role) if "s3:PutObject" in as_list(s["Action"])]
    assert any(s["Resource"] == {"Fn::Sub": "${DataBucket.Arn}/runs/*/failures/*"} for s in puts), puts


@pytest.mark.parametrize(
    ("profile_endpoints", "expected"),
    [
        ("", ("autolabel-nanodet-coco",)),
        ("ep-lanes,ep-signs", ("autolabel-nanodet-coco", "ep-lanes", "ep-signs")),
    ],
)
def test_prepare_run_knows_the_endpoints_invoke_models_may_call(profile_endpoints, expected):
    # Given the template with its default EndpointName and some ProfileEndpointNames
    from workflow.local.template import Resolver, Template
    from workflow.settings import Settings

    parsed = Template(TEMPLATE)
    refs = {**parsed.parameter_defaults(), "ProfileEndpointNames": profile_endpoints}
    resolver = Resolver(refs, {}, parsed.data["Mappings"])
    # When PrepareRun's INVOKABLE_ENDPOINTS is resolved (as local mode resolves it) and read
    env = resolver(parsed.resources["PrepareRunFunction"]["Properties"]["Environment"]["Variables"])
    settings = Settings.from_env({"DATA_BUCKET": "d", "TOKEN_TABLE": "t", "LEDGER_TABLE": "l", **env})
    # Then they are the endpoints InvokeModels' policy names: EndpointName and ProfileEndpointNames
    assert settings.invokable_endpoints == expected
