"""From a built model archive to the stack's deploy parameters: upload it, print the overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from workflow.jumpstart.resolve import default_endpoint_name

MODELS_PREFIX = "models"


def archive_key(config: dict[str, Any], endpoint_name: str) -> str:
    """Where an archive goes in the stack's bucket: one key per endpoint and archive content."""
    return f"{MODELS_PREFIX}/{endpoint_name}/{config['archive_sha256'][:12]}/model.tar.gz"


def endpoint_name_of(config: dict[str, Any], endpoint_name: str | None = None) -> str:
    """The endpoint name asked for, else the profile's (recorded by package), else ``autolabel-<model>``."""
    recorded = config.get("deploy", {}).get("endpoint_name")
    return endpoint_name or recorded or default_endpoint_name(str(config["model"]))


def model_name_of(config: dict[str, Any]) -> str:
    """The model name the run records: the profile's model name when packaged for one."""
    return str(config.get("deploy", {}).get("model_name") or config["model"])


def parameter_overrides(
    config: dict[str, Any],
    *,
    image_uri: str,
    model_data_url: str,
    instance_type: str,
    endpoint_name: str | None = None,
) -> dict[str, str]:
    """The template parameters that make the stack host this archive on a framework container."""
    return {
        "EndpointName": endpoint_name_of(config, endpoint_name),
        "ModelName": model_name_of(config),
        "ModelResponseFormat": "autolabel",
        "ModelImageUri": image_uri,
        "ModelDataUrl": model_data_url,
        "EndpointEntryScript": str(config["entry_script"]),
        "EndpointInstanceType": instance_type,
    }


# What templates/model-endpoint.yaml needs from the main stack: its outputs, and one of its parameters.
STACK_OUTPUTS = ("DataBucketName", "InferenceSuccessTopicArn", "InferenceErrorTopicArn")
STACK_PARAMETERS = ("SourceBucketNames",)


def stack_bucket(cloudformation: Any, stack: str) -> str:
    """The ``DataBucketName`` output of a deployed stack."""
    return stack_values(cloudformation, stack, ("DataBucketName",), ())["DataBucketName"]


def stack_values(
    cloudformation: Any,
    stack: str,
    outputs: tuple[str, ...] = STACK_OUTPUTS,
    parameters: tuple[str, ...] = STACK_PARAMETERS,
) -> dict[str, str]:
    """Outputs and parameters of a deployed stack, by key; ValueError naming a missing output."""
    described = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
    found = {o["OutputKey"]: str(o["OutputValue"]) for o in described.get("Outputs", [])}
    missing = [key for key in outputs if key not in found]
    if missing:
        raise ValueError(f"stack {stack} has no {', '.join(missing)} output: is it this project's stack?")
    values = {key: found[key] for key in outputs}
    for parameter in described.get("Parameters", []):
        if parameter["ParameterKey"] in parameters and parameter.get("ParameterValue"):
            values[parameter["ParameterKey"]] = str(parameter["ParameterValue"])
    return values


def upload_archive(s3: Any, archive: Path, bucket: str, key: str) -> str:
    """Upload the archive (multipart for large files); returns its ``s3://`` URI."""
    s3.upload_file(str(archive), bucket, key, ExtraArgs={"ContentType": "application/gzip"})
    return f"s3://{bucket}/{key}"
