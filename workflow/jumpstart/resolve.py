"""Resolve a SageMaker JumpStart model id into ``sam deploy --parameter-overrides``.

The SDK's JumpStart retrievers (``sagemaker.core.image_uris`` / ``model_uris`` / ``script_uris`` /
``environment_variables``, shipped by ``sagemaker-core``, the core of sagemaker 3.x) read the regional
JumpStart bucket's ``models_manifest.json`` and the model's spec JSON through S3. The SDK pins
``protobuf<7`` while this project pins protobuf 7, so it lives in its own virtualenv,
``.venv-jumpstart`` (``make jumpstart-sdk``): :func:`resolve_model` calls the SDK in this process when
it is importable, otherwise runs ``python -m workflow.jumpstart.resolve`` in that virtualenv.
This module imports nothing beyond the standard library at load time, so both interpreters can run it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
JUMPSTART_VENV = PROJECT_ROOT / ".venv-jumpstart"
# Points the resolver at another interpreter that has the SDK (e.g. a CI image's).
PYTHON_ENV_VAR = "AUTOLABEL_JUMPSTART_PYTHON"
LATEST = "*"
ENDPOINT_NAME_MAX = 63


class JumpStartUnavailable(RuntimeError):
    """Neither this interpreter nor ``.venv-jumpstart`` has the sagemaker SDK."""


class JumpStartResolveError(RuntimeError):
    """The SDK refused the model id, version, region or instance type."""


@dataclass(frozen=True)
class JumpStartArtifacts:
    """What a JumpStart model needs to be hosted, for one region and instance type."""

    model_id: str
    model_version: str  # the concrete version, also when "*" (latest) was asked for
    region: str
    instance_type: str
    image_uri: str
    model_data_url: str
    entry_script: str
    # True when model_data_url already holds the inference code (code/<entry_script>), which is what
    # the template expects (SAGEMAKER_SUBMIT_DIRECTORY=/opt/ml/model/code).
    prepacked: bool
    script_uri: str | None = None  # the separate inference-script tarball, when the spec names one
    environment: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields (the ``--json`` output and the subprocess protocol)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> JumpStartArtifacts:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)  # type: ignore[arg-type]


def sdk_importable() -> bool:
    """Whether this interpreter can import the SDK's JumpStart retrievers."""
    try:
        return importlib.util.find_spec("sagemaker.core.jumpstart") is not None
    except ModuleNotFoundError:
        return False


def jumpstart_python() -> Path | None:
    """The interpreter of ``.venv-jumpstart`` (or ``$AUTOLABEL_JUMPSTART_PYTHON``), if it exists."""
    override = os.environ.get(PYTHON_ENV_VAR)
    candidate = Path(override) if override else JUMPSTART_VENV / "bin" / "python"
    return candidate if candidate.exists() else None


def resolve_model(
    model_id: str, region: str, instance_type: str, model_version: str = LATEST
) -> JumpStartArtifacts:
    """Resolve ``model_id`` with the SDK, in this process or in ``.venv-jumpstart``.

    Raises :class:`JumpStartUnavailable` when no interpreter has the SDK and
    :class:`JumpStartResolveError` when the SDK rejects the request.
    """
    if sdk_importable():
        return resolve_with_sdk(model_id, region, instance_type, model_version)
    args = [model_id, "--region", region, "--instance-type", instance_type, "--model-version", model_version]
    return JumpStartArtifacts.from_dict(sdk_subprocess("workflow.jumpstart.resolve", args))


def sdk_subprocess(module: str, args: list[str]) -> dict[str, Any]:
    """``python -m <module> <args>`` in the interpreter that has the SDK (``.venv-jumpstart``): the
    one JSON document it prints. Its ``error: ...`` line (see :func:`print_sdk_result`) becomes a
    :class:`JumpStartResolveError`; no such interpreter, :class:`JumpStartUnavailable`. The image URIs
    of JumpStart models (here) and of the framework container (``workflow.serving.container``) are
    both resolved through it."""
    python = jumpstart_python()
    if python is None:
        raise JumpStartUnavailable(
            "the sagemaker SDK is not installed here and .venv-jumpstart is missing: run `make jumpstart-sdk`"
        )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [str(python), "-m", module, *args], capture_output=True, text=True, env=env, check=False
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        reasons = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
        raise JumpStartResolveError((reasons or lines or [f"{python} exited with {done.returncode}"])[-1])
    try:
        return dict(json.loads(done.stdout))
    except (ValueError, TypeError) as exc:
        raise JumpStartResolveError(
            f"{python} -m {module} printed no JSON object: {done.stdout[:200]!r}"
        ) from exc


def print_sdk_result(produce: Callable[[], dict[str, Any]]) -> int:
    """The ``main`` of a module :func:`sdk_subprocess` runs: print ``produce()`` as one JSON document
    (the SDK logs and prints while it works: its stdout goes to stderr), or ``error: <reason>``."""
    try:
        with contextlib.redirect_stdout(sys.stderr):
            result = produce()
    except JumpStartResolveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


def resolve_with_sdk(
    model_id: str, region: str, instance_type: str, model_version: str = LATEST
) -> JumpStartArtifacts:
    """Resolve ``model_id`` with the SDK imported in this process (sagemaker-core / sagemaker 3.x)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError
    from sagemaker.core import environment_variables, image_uris, model_uris, script_uris
    from sagemaker.core.helper.session_helper import Session
    from sagemaker.core.jumpstart.utils import verify_model_region_and_return_specs

    # The SDK's default session reads S3 from the machine's default region, not the model's.
    session = Session(boto_session=boto3.Session(region_name=region))
    common = {
        "region": region,
        "model_id": model_id,
        "model_version": model_version,
        "sagemaker_session": session,
    }
    try:
        specs = verify_model_region_and_return_specs(
            model_id=model_id,
            version=model_version,
            scope="inference",
            region=region,
            sagemaker_session=session,
        )
        image_uri = image_uris.retrieve(
            framework=None, image_scope="inference", instance_type=instance_type, **common
        )
        model_data_url = model_uris.retrieve(model_scope="inference", instance_type=instance_type, **common)
        script_uri = (
            script_uris.retrieve(script_scope="inference", **common) if specs.hosting_script_key else None
        )
        environment = environment_variables.retrieve_default(instance_type=instance_type, **common)
    # The SDK raises ValueError subclasses for unknown, deprecated or vulnerable models and bad instance
    # types; botocore's errors cover missing credentials and S3 refusals.
    except (ValueError, KeyError, NotImplementedError, BotoCoreError, ClientError) as exc:
        asked = f"{model_id} {model_version} in {region} on {instance_type}"
        raise JumpStartResolveError(f"{asked}: {exc}") from exc
    return JumpStartArtifacts(
        model_id=model_id,
        model_version=specs.version,
        region=region,
        instance_type=instance_type,
        image_uri=image_uri,
        model_data_url=model_data_url,
        entry_script=environment.get("SAGEMAKER_PROGRAM", "inference.py"),
        prepacked=not specs.use_inference_script_uri(),
        script_uri=script_uri,
        environment={str(k): str(v) for k, v in environment.items()},
    )


def default_endpoint_name(model_id: str) -> str:
    """``autolabel-<model id>`` shaped to the template's EndpointName pattern (lower case, <= 63)."""
    name = re.sub(r"[^a-z0-9-]+", "-", f"autolabel-{model_id}".lower())
    return name[:ENDPOINT_NAME_MAX].strip("-")


def parameter_overrides(artifacts: JumpStartArtifacts, endpoint_name: str | None = None) -> dict[str, str]:
    """The template parameters (``template.yaml``) that deploy ``artifacts`` as the stack's endpoint."""
    return {
        "EndpointName": endpoint_name or default_endpoint_name(artifacts.model_id),
        "ModelName": artifacts.model_id,
        "ModelResponseFormat": "jumpstart",
        "ModelImageUri": artifacts.image_uri,
        "ModelDataUrl": artifacts.model_data_url,
        "EndpointEntryScript": artifacts.entry_script,
        "EndpointInstanceType": artifacts.instance_type,
    }


def format_overrides(overrides: dict[str, str]) -> str:
    """``Key=Value`` pairs, shell-quoted, as ``sam deploy --parameter-overrides`` takes them."""
    return " ".join(shlex.quote(f"{key}={value}") for key, value in overrides.items())


def main(argv: list[str] | None = None) -> int:
    """``python -m workflow.jumpstart.resolve``: print the resolved artefacts as JSON (in-process SDK)."""
    parser = argparse.ArgumentParser(prog="python -m workflow.jumpstart.resolve", description=__doc__)
    parser.add_argument("model_id")
    parser.add_argument("--region", required=True)
    parser.add_argument("--instance-type", required=True)
    parser.add_argument("--model-version", default=LATEST)
    args = parser.parse_args(argv)
    return print_sdk_result(
        lambda: resolve_with_sdk(args.model_id, args.region, args.instance_type, args.model_version).to_dict()
    )


if __name__ == "__main__":
    sys.exit(main())
