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
    """The endpoint name asked for, else ``autolabel-<model>`` in the template's pattern."""
    return endpoint_name or default_endpoint_name(str(config["model"]))


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
        "ModelName": str(config["model"]),
        "ModelResponseFormat": "autolabel",
        "ModelImageUri": image_uri,
        "ModelDataUrl": model_data_url,
        "EndpointEntryScript": str(config["entry_script"]),
        "EndpointInstanceType": instance_type,
    }


def stack_bucket(cloudformation: Any, stack: str) -> str:
    """The ``DataBucketName`` output of a deployed stack."""
    described = cloudformation.describe_stacks(StackName=stack)["Stacks"][0]
    for output in described.get("Outputs", []):
        if output["OutputKey"] == "DataBucketName":
            return str(output["OutputValue"])
    raise ValueError(f"stack {stack} has no DataBucketName output: is it this project's stack?")


def upload_archive(s3: Any, archive: Path, bucket: str, key: str) -> str:
    """Upload the archive (multipart for large files); returns its ``s3://`` URI."""
    s3.upload_file(str(archive), bucket, key, ExtraArgs={"ContentType": "application/gzip"})
    return f"s3://{bucket}/{key}"
