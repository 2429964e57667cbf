"""`autolabel endpoint resolve`: a JumpStart model id becomes the template's deploy parameters.

The sagemaker SDK reads JumpStart metadata from the region's public bucket
(``jumpstart-cache-prod-<region>``): S3 GetObject of ``models_manifest.json``, then of the spec key the
manifest names (HeadObject revalidates a cached manifest). A small path-style S3 stand-in on localhost,
reached through ``AWS_ENDPOINT_URL_S3``, answers those reads with a manifest and specs written here in the
SDK's schema, so the resolve runs offline in whichever interpreter has the SDK: this one, or
``.venv-jumpstart`` through the CLI's subprocess (moto cannot serve that second process: its server mode
needs Flask, which the project does not pin). The specs' values are illustrative, not copied from AWS.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from workflow.cli.main import main
from workflow.jumpstart.resolve import (
    JumpStartArtifacts,
    default_endpoint_name,
    format_overrides,
    jumpstart_python,
    parameter_overrides,
    sdk_importable,
)
from workflow.tools.lint_template import load_template

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
REGION = "eu-west-1"
BUCKET = f"jumpstart-cache-prod-{REGION}"
MODEL_ID = "mxnet-is-mask-rcnn-fpn-resnet101-v1d-coco"
UNPACKED_ID = "mxnet-od-ssd-512-resnet50-v1-coco"
DLC = "763104351884.dkr.ecr.{region}.amazonaws.com/mxnet-inference:1.9.0-{device}-py38"
PREPACK_KEY = f"mxnet-infer/prepack/v1.0.2/infer-prepack-{MODEL_ID}.tar.gz"
SCRIPT_KEY = "source-directory-tarballs/mxnet/inference/is/v1.1.2/sourcedir.tar.gz"


def _spec(model_id: str, version: str, prepacked: bool) -> dict[str, Any]:
    """A JumpStart model spec in the schema sagemaker.core.jumpstart.types.JumpStartModelSpecs reads."""
    spec: dict[str, Any] = {
        "model_id": model_id,
        "url": "https://cv.gluon.ai/model_zoo/segmentation.html",
        "version": version,
        "min_sdk_version": "2.100.0",
        "training_supported": False,
        "incremental_training_supported": False,
        "hosting_ecr_specs": {"framework": "mxnet", "framework_version": "1.9.0", "py_version": "py38"},
        "hosting_artifact_key": f"mxnet-infer/infer-{model_id}.tar.gz",
        "hosting_script_key": SCRIPT_KEY,
        "inference_environment_variables": [
            {
                "name": name,
                "type": "text",
                "default": value,
                "scope": "container",
                "required_for_model_class": True,
            }
            for name, value in [
                ("SAGEMAKER_PROGRAM", "inference.py"),
                ("SAGEMAKER_SUBMIT_DIRECTORY", "/opt/ml/model/code/"),
                ("SAGEMAKER_CONTAINER_LOG_LEVEL", "20"),
                ("SAGEMAKER_MODEL_SERVER_TIMEOUT", "3600"),
            ]
        ],
        "default_inference_instance_type": "ml.p3.2xlarge",
        "supported_inference_instance_types": ["ml.p3.2xlarge", "ml.g4dn.xlarge", "ml.c5.2xlarge"],
        "hosting_instance_type_variants": {
            "regional_aliases": {
                region: {
                    "cpu_ecr_uri_1": DLC.format(region=region, device="cpu"),
                    "gpu_ecr_uri_1": DLC.format(region=region, device="gpu"),
                }
                for region in (REGION, "us-west-2")
            },
            "variants": {
                "c5": {"regional_properties": {"image_uri": "$cpu_ecr_uri_1"}},
                "g4dn": {"regional_properties": {"image_uri": "$gpu_ecr_uri_1"}},
                "p3": {"regional_properties": {"image_uri": "$gpu_ecr_uri_1"}},
            },
        },
    }
    if prepacked:
        spec["hosting_prepacked_artifact_key"] = PREPACK_KEY
    return spec


def _spec_key(model_id: str, version: str) -> str:
    return f"community_models/{model_id}/specs_v{version}.json"


def _bucket_objects() -> dict[str, bytes]:
    """The bucket: a manifest with two versions of the prepacked model and one unpacked model."""
    entries = [(MODEL_ID, "1.2.0", True), (MODEL_ID, "1.2.1", True), (UNPACKED_ID, "1.0.0", False)]
    manifest = [
        {"model_id": m, "version": v, "min_version": "2.100.0", "spec_key": _spec_key(m, v)}
        for m, v, _ in entries
    ]
    objects = {"models_manifest.json": json.dumps(manifest).encode()}
    for model_id, version, prepacked in entries:
        objects[_spec_key(model_id, version)] = json.dumps(_spec(model_id, version, prepacked)).encode()
    return objects


class _S3Stub(BaseHTTPRequestHandler):
    """Path-style S3 GetObject/HeadObject over a dict; records what the SDK asked for."""

    objects: dict[str, dict[str, bytes]] = {}
    requests: list[tuple[str, str, str]] = []

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._answer(with_body=True)

    def do_HEAD(self) -> None:  # noqa: N802
        self._answer(with_body=False)

    def _answer(self, with_body: bool) -> None:
        bucket, _, key = self.path.split("?")[0].lstrip("/").partition("/")
        self.requests.append((self.command, bucket, key))
        body = self.objects.get(bucket, {}).get(key)
        if body is None:
            error = (
                b"<Error><Code>NoSuchKey</Code><Message>The specified key does not exist.</Message></Error>"
            )
            self.send_response(404)
            self.send_header("Content-Type", "application/xml")
            self.send_header("Content-Length", str(len(error)))
            self.end_headers()
            if with_body:
                self.wfile.write(error)
            return
        self.send_response(200)
        self.send_header("ETag", f'"{abs(hash(body)):x}"')
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        pass


@pytest.fixture
def jumpstart_bucket(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[tuple[str, str, str]]]:
    """The regional JumpStart bucket, served on localhost; yields the requests it received."""
    if not sdk_importable() and jumpstart_python() is None:
        pytest.skip(
            "the sagemaker SDK is not installed here and .venv-jumpstart is missing: run `make jumpstart-sdk`"
        )
    _S3Stub.objects = {BUCKET: _bucket_objects()}
    _S3Stub.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _S3Stub)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{server.server_address[1]}")
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "DISABLE_JUMPSTART_TELEMETRY": "true",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    try:
        yield _S3Stub.requests
    finally:
        server.shutdown()
        server.server_close()


def _resolve_json(capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, dict[str, Any], str]:
    code = main(["endpoint", "resolve", *extra, "--json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out.strip() else {}), err


def test_resolve_prints_the_specs_uris_for_the_region_and_instance_type(
    jumpstart_bucket: list[tuple[str, str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the regional JumpStart bucket with the Mask R-CNN model's manifest entry and spec
    # When the CLI resolves the latest version for a GPU instance
    code = main(["endpoint", "resolve", MODEL_ID, "--region", REGION, "--instance-type", "ml.g4dn.xlarge"])
    line = capsys.readouterr().out.strip()

    # Then the overrides name the GPU image of that region and the prepacked model data of version 1.2.1
    assert code == 0
    overrides = dict(item.split("=", 1) for item in line.split(" "))
    assert overrides == {
        "EndpointName": f"autolabel-{MODEL_ID}",
        "ModelName": MODEL_ID,
        "ModelResponseFormat": "jumpstart",
        "ModelImageUri": DLC.format(region=REGION, device="gpu"),
        "ModelDataUrl": f"s3://{BUCKET}/{PREPACK_KEY}",
        "EndpointEntryScript": "inference.py",
        "EndpointInstanceType": "ml.g4dn.xlarge",
    }
    # And the SDK read exactly the manifest and that version's spec from the region's bucket
    gets = {(bucket, key) for method, bucket, key in jumpstart_bucket if method == "GET"}
    assert gets == {(BUCKET, "models_manifest.json"), (BUCKET, _spec_key(MODEL_ID, "1.2.1"))}


def test_resolve_json_follows_the_instance_type_and_the_pinned_version(
    jumpstart_bucket: list[tuple[str, str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the same bucket
    # When the CLI resolves version 1.2.0 for a CPU instance, as JSON
    code, doc, _ = _resolve_json(
        capsys, MODEL_ID, "--region", REGION, "--instance-type", "ml.c5.2xlarge", "--model-version", "1.2.0"
    )

    # Then the CPU image, the prepacked data and the script tarball of that version come back
    assert code == 0
    artifacts = JumpStartArtifacts.from_dict(doc["artifacts"])
    assert artifacts.model_version == "1.2.0"
    assert artifacts.image_uri == DLC.format(region=REGION, device="cpu")
    assert artifacts.model_data_url == f"s3://{BUCKET}/{PREPACK_KEY}"
    assert artifacts.script_uri == f"s3://{BUCKET}/{SCRIPT_KEY}"
    assert artifacts.prepacked is True
    assert artifacts.environment["SAGEMAKER_SUBMIT_DIRECTORY"] == "/opt/ml/model/code/"
    assert doc["parameter_overrides"]["ModelImageUri"] == artifacts.image_uri
    assert (BUCKET, _spec_key(MODEL_ID, "1.2.0")) in {(b, k) for m, b, k in jumpstart_bucket if m == "GET"}


def test_a_model_without_a_prepacked_artefact_fails_and_names_its_script(
    jumpstart_bucket: list[tuple[str, str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a model whose inference script is a separate tarball (no prepacked artefact)
    # When the CLI resolves it
    code, doc, err = _resolve_json(
        capsys, UNPACKED_ID, "--region", REGION, "--instance-type", "ml.g4dn.xlarge"
    )

    # Then it still reports the URIs but exits 1 and tells how to repack for the template
    assert code == 1
    assert doc["artifacts"]["prepacked"] is False
    assert doc["artifacts"]["model_data_url"] == f"s3://{BUCKET}/mxnet-infer/infer-{UNPACKED_ID}.tar.gz"
    assert f"s3://{BUCKET}/{SCRIPT_KEY}" in err
    assert "Repack" in err


def test_an_instance_family_without_an_image_is_an_error(
    jumpstart_bucket: list[tuple[str, str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a spec with images for c5, g4dn and p3 only
    # When the CLI resolves the model for an m5 instance
    code = main(["endpoint", "resolve", MODEL_ID, "--region", REGION, "--instance-type", "ml.m5.xlarge"])
    out, err = capsys.readouterr()

    # Then it prints no overrides and exits 1 with the SDK's reason (not a traceback)
    assert code == 1
    assert out == ""
    assert "ml.m5.xlarge" in err
    assert "Traceback" not in err


def test_overrides_use_the_templates_parameter_names_and_patterns() -> None:
    # Given resolved artefacts of a model with a long id
    long_id = "huggingface-od-" + "x" * 70
    artifacts = JumpStartArtifacts(
        model_id=long_id,
        model_version="1.0.0",
        region=REGION,
        instance_type="ml.g4dn.xlarge",
        image_uri=DLC.format(region=REGION, device="gpu"),
        model_data_url=f"s3://{BUCKET}/{PREPACK_KEY}",
        entry_script="inference.py",
        prepacked=True,
    )

    # When they become overrides
    overrides = parameter_overrides(artifacts)
    line = format_overrides({**overrides, "ModelName": "a model"})

    # Then every key is a template parameter and every value passes its AllowedPattern / AllowedValues
    parameters = load_template(TEMPLATE)["Parameters"]
    for key, value in overrides.items():
        assert key in parameters, key
        pattern = parameters[key].get("AllowedPattern")
        assert pattern is None or re.fullmatch(pattern, value), (key, value)
        assert value in parameters[key].get("AllowedValues", [value]), (key, value)
    assert len(overrides["EndpointName"]) <= 63
    assert default_endpoint_name("Foo_Bar.v2") == "autolabel-foo-bar-v2"
    # And values with spaces stay one shell word each
    assert "'ModelName=a model'" in line


# --- the one path to the SDK's interpreter ----------------------------------------------------------
def fake_sdk_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> None:
    """An interpreter standing in for .venv-jumpstart's: a shell script given ``-m <module> <args>``."""
    python = tmp_path / "python"
    python.write_text("#!/bin/sh\n" + script)
    python.chmod(0o755)
    monkeypatch.setenv("AUTOLABEL_JUMPSTART_PYTHON", str(python))
    import workflow.jumpstart.resolve as resolve
    import workflow.serving.container as container

    monkeypatch.setattr(resolve, "sdk_importable", lambda: False)
    monkeypatch.setattr(container, "sdk_importable", lambda: False)


def test_the_container_image_and_jumpstart_models_resolve_through_one_subprocess_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given no SDK in this interpreter and an SDK interpreter that echoes the module and arguments it ran
    fake_sdk_python(
        tmp_path,
        monkeypatch,
        'shift; m=$1; shift; printf \'{"image_uri": "%s %s", "model_id": "m", "model_version": "1",'
        ' "region": "r", "instance_type": "i", "model_data_url": "s3://b/k", "entry_script": "e.py",'
        ' "prepacked": true}\' "$m" "$*"\n',
    )
    from workflow.jumpstart.resolve import resolve_model
    from workflow.serving.container import resolve_image_uri

    # When the framework container's image and a JumpStart model are resolved
    image = resolve_image_uri(REGION, "ml.c5.xlarge")
    model = resolve_model(MODEL_ID, REGION, "ml.g4dn.xlarge")
    # Then each ran its own module in that interpreter, with its arguments, and read its JSON answer
    assert image == f"workflow.serving.container --region {REGION} --instance-type ml.c5.xlarge"
    asked = f"{MODEL_ID} --region {REGION} --instance-type ml.g4dn.xlarge --model-version *"
    assert model.image_uri == f"workflow.jumpstart.resolve {asked}"
    assert model.model_data_url == "s3://b/k" and model.prepacked


def test_the_sdk_interpreters_error_line_is_the_error_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an SDK interpreter that logs, then fails with the `error:` line its module's main prints
    fake_sdk_python(
        tmp_path, monkeypatch, 'echo "INFO fetching" >&2; echo "error: no image for ml.p9" >&2; exit 1\n'
    )
    from workflow.jumpstart.resolve import JumpStartResolveError
    from workflow.serving.container import resolve_image_uri

    # Then the error raised is that reason, not the log
    with pytest.raises(JumpStartResolveError, match=r"^no image for ml\.p9$"):
        resolve_image_uri(REGION, "ml.c5.xlarge")
