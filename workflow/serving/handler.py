"""The SageMaker inference-toolkit functions of this project's model archive.

``code/inference.py`` in ``model.tar.gz`` re-exports these four functions; SageMaker's framework
containers (the toolkit) call them, and so do the local endpoint and the bring-your-own server
(:mod:`workflow.serving.toolkit`):

- ``model_fn(model_dir)``: once per worker: load the weights and settings the archive holds
  (``serving.json``) and an S3 client with the endpoint's role (batch frames are read from S3);
- ``input_fn(body, content_type)``: an :class:`ImageRequest` or a :class:`BatchRequest`;
- ``predict_fn(request, model)``: the answer, as :mod:`workflow.serving.protocol` defines it;
- ``output_fn(answer, accept)``: ``(JSON text, "application/json")``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflow.domain.errors import ConfigurationError
from workflow.domain.frames import S3Uri
from workflow.serving.protocol import (
    RESPONSE_CONTENT_TYPE,
    FrameReader,
    FrameUnreadable,
    Predictor,
    check_accept,
    encode_answer,
    parse_batch,
    predict_batch,
    predict_image,
    request_kind,
    requested_min_score,
)

SERVING_FILE = "serving.json"
# onnxruntime threads per worker; the archive's settings win, this environment variable over both.
THREADS_ENV = "AUTOLABEL_INTRA_OP_THREADS"


@dataclass(frozen=True)
class ImageRequest:
    """One encoded image (the request body)."""

    data: bytes


@dataclass(frozen=True)
class BatchRequest:
    """The ``s3://`` URIs of the frames of one batch, and the lowest score the caller keeps."""

    frames: list[str]
    min_score: float = 0.0


@dataclass(frozen=True)
class ServedModel:
    """What ``model_fn`` loads: the detector and how batch frames are read."""

    predictor: Predictor
    read_frame: FrameReader


class S3FrameReader:
    """Reads ``s3://`` frames with a boto3 S3 client; errors name the frame and the S3 error code."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __call__(self, uri: str) -> bytes:
        from botocore.exceptions import BotoCoreError, ClientError

        location = S3Uri.parse(uri)
        try:
            body: bytes = self._client.get_object(Bucket=location.bucket, Key=location.key)["Body"].read()
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise FrameUnreadable(
                uri,
                f"could not read {uri}: {error.get('Message', exc)}",
                str(error.get("Code", "ClientError")),
            ) from exc
        except BotoCoreError as exc:  # no credentials, no network...
            raise FrameUnreadable(uri, f"could not read {uri}: {exc}", type(exc).__name__) from exc
        return body


def read_serving_config(model_dir: str | Path) -> dict[str, Any]:
    """The archive's ``serving.json``: model name, weights file, inference settings."""
    path = Path(model_dir) / SERVING_FILE
    if not path.is_file():
        raise ConfigurationError(f"{path} is missing: build the archive with `autolabel endpoint package`")
    config: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return config


def load_predictor(model_dir: str | Path) -> Predictor:
    """The detector the archive in ``model_dir`` holds, with its inference settings."""
    from workflow.inference.runner import OnnxDetector
    from workflow.inference.settings import InferenceSettings

    config = read_serving_config(model_dir)
    settings = dict(config.get("settings", {}))
    if os.environ.get(THREADS_ENV):
        settings["intra_op_num_threads"] = int(os.environ[THREADS_ENV])
    return OnnxDetector.from_path(
        Path(model_dir) / config["weights"],
        InferenceSettings.model_validate(settings),
        name=config["model"],
    )


def model_fn(model_dir: str) -> ServedModel:
    """Load the model of the archive unpacked in ``model_dir`` (SageMaker: ``/opt/ml/model``)."""
    import boto3

    return ServedModel(load_predictor(model_dir), S3FrameReader(boto3.client("s3")))


def input_fn(input_data: bytes | bytearray | str, content_type: str | None) -> ImageRequest | BatchRequest:
    """Decode a request body; RequestFailed for an unsupported type or an unusable batch."""
    payload = input_data.encode() if isinstance(input_data, str) else bytes(input_data)
    if request_kind(content_type, payload) == "batch":
        return BatchRequest(parse_batch(payload), requested_min_score(content_type))
    return ImageRequest(payload)


def predict_fn(request: ImageRequest | BatchRequest, model: ServedModel) -> dict[str, Any]:
    """Run the model: one image (any error fails the request) or a batch (bad frames are reported)."""
    if isinstance(request, BatchRequest):
        return predict_batch(model.predictor, model.read_frame, request.frames, request.min_score)
    return predict_image(model.predictor, request.data)


def output_fn(prediction: dict[str, Any], accept: str | None) -> tuple[str, str]:
    """The response body and its content type (JSON whatever the Accept, if it allows JSON)."""
    check_accept(accept)
    return encode_answer(prediction), RESPONSE_CONTENT_TYPE
