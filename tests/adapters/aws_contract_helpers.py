"""Support for tests/adapters/test_aws_contracts.py: stubbed boto3 clients and the template's IAM.

``StubbedClient`` is a real boto3 client behind botocore's ``Stubber``: every call is checked
against the expected parameters and validated by botocore against the service model (required
members, types, lengths), and every stubbed response against the operation's output shape. On
top of botocore's validation, :func:`model_violations` checks what botocore leaves out: string
patterns (ARNs), maximum lengths and enums.

``TemplateIam`` resolves the policy statements template.yaml gives each function (Ref, GetAtt,
Sub, Join, Split, Select, If) so a test can ask whether the calls a step made are allowed, on the
exact resources they touched.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from botocore.stub import ANY, Stubber

from workflow.tools.lint_template import load_template

ACCOUNT = "123456789012"
STACK = "autolabel"
NAMES = {  # what CloudFormation would name the stack's resources (Ref values)
    "DataBucket": "autolabel-data",
    "TokenTable": "autolabel-tokens",
    "LedgerTable": "autolabel-ledger",
    "LabelingRole": "autolabel-labeling-role",
}


@dataclass
class Call:
    service: str
    operation: str
    params: dict[str, Any]
    error: str | None = None  # the error code the service answered with, if any


class RecordingClient:
    """A real boto3 client (answered by moto when a test runs under ``mock_aws``) that records its calls."""

    def __init__(self, service: str, region: str = "us-east-1") -> None:
        self.service = service
        self.client = boto3.client(
            service, region_name=region, aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        self.calls: list[Call] = []
        self.client.meta.events.register("before-parameter-build", self._record)
        self.client.meta.events.register("after-call", self._answered)

    def _record(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        call = Call(self.service, model.name, dict(params))
        context["recorded_call"] = call  # per request, so calls made from threads stay apart
        self.calls.append(call)

    def _answered(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        call = context.get("recorded_call")
        if call is not None and "Error" in parsed:
            call.error = str(parsed["Error"].get("Code", ""))

    def violations(self) -> list[str]:
        """What the recorded calls break of the model's patterns, maximum lengths and enums."""
        found = []
        for call in self.calls:
            shape = self.client.meta.service_model.operation_model(call.operation).input_shape
            found += model_violations(shape, call.params, call.operation)
        return found

    def params(self, operation: str) -> list[dict[str, Any]]:
        return [c.params for c in self.calls if c.operation == operation]


class StubbedClient(RecordingClient):
    """A RecordingClient whose answers come from botocore's Stubber, in order, for exact parameters."""

    def __init__(self, service: str, region: str = "us-east-1") -> None:
        super().__init__(service, region)
        self.stub = Stubber(self.client)
        self.stub.activate()

    def expect(self, method: str, params: dict[str, Any], response: dict[str, Any] | None = None) -> None:
        self.stub.add_response(method, response or {}, params)

    def expect_error(self, method: str, params: dict[str, Any], code: str, **extra: Any) -> None:
        self.stub.add_client_error(method, service_error_code=code, expected_params=params, **extra)

    def verify(self) -> None:
        """Every expected call was made, and every call passes the model's stricter constraints."""
        self.stub.assert_no_pending_responses()
        assert self.violations() == []


def model_violations(shape: Any, value: Any, path: str) -> list[str]:
    """Patterns, maximum lengths and enums of the service model that ``value`` breaks."""
    found: list[str] = []
    if shape.type_name == "structure" and isinstance(value, dict):
        for name, member in value.items():
            found += model_violations(shape.members[name], member, f"{path}.{name}")
    elif shape.type_name == "list" and isinstance(value, list):
        if "max" in shape.metadata and len(value) > shape.metadata["max"]:
            found.append(f"{path}: {len(value)} items > {shape.metadata['max']}")
        for i, member in enumerate(value):
            found += model_violations(shape.member, member, f"{path}[{i}]")
    elif shape.type_name == "map" and isinstance(value, dict):
        for key, member in value.items():
            found += model_violations(shape.key, key, f"{path} key")
            found += model_violations(shape.value, member, f"{path}[{key}]")
    elif shape.type_name == "string" and isinstance(value, str):
        meta = shape.metadata
        if "max" in meta and len(value) > meta["max"]:
            found.append(f"{path}: {len(value)} characters > {meta['max']}")
        if shape.enum and value not in shape.enum:
            found.append(f"{path}: {value!r} not in {shape.enum}")
        pattern = meta.get("pattern")
        if pattern and _compiles(pattern) and not re.search(pattern, value):
            found.append(f"{path}: {value!r} does not match {pattern}")
    return found


def _compiles(pattern: str) -> bool:
    try:
        re.compile(pattern)
        return True
    except re.error:  # a few model patterns use Java-only syntax (\p{...})
        return False


# --- the template's IAM ---------------------------------------------------------------------------
# The IAM action of S3 operations whose action is not "s3:<operation>" (multipart uploads are PutObject).
S3_ACTIONS = {
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "CreateMultipartUpload": "s3:PutObject",
    "UploadPart": "s3:PutObject",
    "CompleteMultipartUpload": "s3:PutObject",
}


def iam_action_and_resources(call: Call, region: str = "us-east-1") -> list[tuple[str, str]]:
    """The IAM (action, resource ARN) pairs one API call is authorised by."""
    p = call.params
    if call.service == "s3":
        bucket = f"arn:aws:s3:::{p['Bucket']}"
        if call.operation == "ListObjectsV2":
            return [("s3:ListBucket", bucket)]
        pairs = [(S3_ACTIONS.get(call.operation, f"s3:{call.operation}"), f"{bucket}/{p['Key']}")]
        if call.operation in ("GetObject", "HeadObject") and call.error in ("NoSuchKey", "404"):
            # Without s3:ListBucket on the bucket, S3 answers a missing key with 403 AccessDenied, not
            # 404 NoSuchKey: a step that reads "absent" from a 404 needs the listing permission too.
            pairs.append(("s3:ListBucket", bucket))
        return pairs
    if call.service == "dynamodb":
        table = f"arn:aws:dynamodb:{region}:{ACCOUNT}:table/"
        if call.operation == "TransactWriteItems":  # authorised per item, as the item's own action
            return [
                (
                    f"dynamodb:{kind}Item" if kind != "ConditionCheck" else "dynamodb:ConditionCheckItem",
                    table + item[kind]["TableName"],
                )
                for item in p["TransactItems"]
                for kind in item
            ]
        return [(f"dynamodb:{call.operation}", table + p["TableName"])]
    if call.service == "sagemaker-runtime":
        return [
            (
                f"sagemaker:{call.operation}",
                f"arn:aws:sagemaker:{region}:{ACCOUNT}:endpoint/{p['EndpointName'].lower()}",
            )
        ]
    if call.service == "sagemaker":
        job = f"arn:aws:sagemaker:{region}:{ACCOUNT}:labeling-job/{p['LabelingJobName'].lower()}"
        pairs = [(f"sagemaker:{call.operation}", job)]
        if call.operation == "CreateLabelingJob":
            pairs.append(("iam:PassRole", p["RoleArn"]))
            if p.get("Tags"):
                pairs.append(("sagemaker:AddTags", job))
        return pairs
    if call.service == "stepfunctions":
        return [
            (f"states:{call.operation}", f"arn:aws:states:{region}:{ACCOUNT}:stateMachine:{STACK}-autolabel")
        ]
    raise ValueError(f"no IAM mapping for {call.service}:{call.operation}")


@dataclass
class TemplateIam:
    """template.yaml's policy statements per function, resolved for one set of parameter values."""

    path: Path
    parameters: dict[str, Any] = field(default_factory=dict)
    region: str = "us-east-1"

    def __post_init__(self) -> None:
        self.template = load_template(self.path)
        defaults = {k: v.get("Default", "") for k, v in self.template["Parameters"].items()}
        for name, spec in self.template["Parameters"].items():
            if spec["Type"] == "CommaDelimitedList" and isinstance(defaults[name], str):
                defaults[name] = defaults[name].split(",")
        self.values: dict[str, Any] = {
            **defaults,
            **self.parameters,
            "AWS::Region": self.region,
            "AWS::AccountId": ACCOUNT,
            "AWS::Partition": "aws",
            "AWS::StackName": STACK,
            "AWS::NoValue": None,
        }
        for name, resource in self.template["Resources"].items():
            self.values.setdefault(name, self._ref(name, resource["Type"]))

    def _ref(self, name: str, kind: str) -> str:
        if kind == "AWS::Serverless::StateMachine":
            return f"arn:aws:states:{self.region}:{ACCOUNT}:stateMachine:{STACK}-autolabel"
        if kind == "AWS::SNS::Topic":
            return f"arn:aws:sns:{self.region}:{ACCOUNT}:{STACK}-{name}"
        return NAMES.get(name, f"{STACK}-{name.lower()}")

    def _attr(self, name: str, attribute: str) -> str:
        kind = self.template["Resources"][name]["Type"]
        ref = self.values[name]
        arns = {
            "AWS::S3::Bucket": f"arn:aws:s3:::{ref}",
            "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{self.region}:{ACCOUNT}:table/{ref}",
            "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT}:role/{ref}",
        }
        if attribute == "Arn" and kind in arns:
            return arns[kind]
        return f"{ref}.{attribute}"

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    def resolve(self, node: Any) -> Any:
        if isinstance(node, list):
            return [v for v in (self.resolve(n) for n in node) if v is not None]
        if not isinstance(node, dict):
            return node
        if len(node) != 1:
            return {k: self.resolve(v) for k, v in node.items()}
        ((key, arg),) = node.items()
        if key == "Ref":
            return self.values[arg]
        if key == "Fn::GetAtt":
            name, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
            return self._attr(name, attribute)
        if key == "Fn::Sub":
            text, names = (arg, {}) if isinstance(arg, str) else (arg[0], self.resolve(arg[1]))
            return re.sub(r"\$\{([^}]+)\}", lambda m: self._sub(m.group(1), names), text)
        if key == "Fn::Join":
            return str(arg[0]).join(str(v) for v in self.resolve(arg[1]))
        if key == "Fn::Split":
            return str(self.resolve(arg[1])).split(arg[0])
        if key == "Fn::Select":
            return self.resolve(arg[1])[int(arg[0])]
        if key == "Fn::If":
            return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])
        if key == "Fn::Equals":
            a, b = self.resolve(arg)
            return str(a) == str(b)
        if key == "Fn::Not":
            return not self.resolve(arg[0])
        if key == "Fn::And":
            return all(self.resolve(arg))
        if key == "Condition":
            return self.condition(arg)
        return {key: self.resolve(arg)}

    def _sub(self, name: str, names: dict[str, Any]) -> str:
        if name in names:
            return str(names[name])
        if "." in name:
            return self._attr(*name.split(".", 1))
        return str(self.values[name])

    def statements(self, function: str) -> list[dict[str, Any]]:
        """The Allow statements of a function's inline policies (SAM policy templates are not read)."""
        policies = self.resolve(self.template["Resources"][function]["Properties"].get("Policies", []))
        return [s for policy in policies if isinstance(policy, dict) for s in policy.get("Statement", [])]

    def role_statements(self, role: str) -> list[dict[str, Any]]:
        """The statements of an AWS::IAM::Role's inline policies."""
        policies = self.resolve(self.template["Resources"][role]["Properties"]["Policies"])
        return [s for policy in policies for s in policy["PolicyDocument"]["Statement"]]

    def allows(self, function: str, action: str, resource: str) -> bool:
        kind = self.template["Resources"][function]["Type"]
        found = self.role_statements(function) if kind == "AWS::IAM::Role" else self.statements(function)
        for statement in found:
            actions = _as_list(statement["Action"])
            if statement["Effect"] != "Allow" or not any(fnmatch.fnmatchcase(action, a) for a in actions):
                continue
            if any(fnmatch.fnmatchcase(resource, r) for r in _as_list(statement["Resource"])):
                return True
        return False

    def denied(self, function: str, calls: list[Call]) -> list[str]:
        """The (action, resource) pairs of ``calls`` that the function's policies do not allow."""
        return [
            f"{action} on {resource}"
            for call in calls
            for action, resource in iam_action_and_resources(call, self.region)
            if not self.allows(function, action, resource)
        ]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


__all__ = ["ANY", "Call", "RecordingClient", "StubbedClient", "TemplateIam", "model_violations"]
