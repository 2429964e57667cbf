"""This project's request contract for a model endpoint, whatever hosts it.

Two request kinds, told apart by ContentType:

- an image (``application/x-image``, ``image/jpeg``, ``image/png``, any ``image/*``): one frame;
  the answer is that frame's ``Detections.to_dict()``; any error fails the invocation. The endpoint
  is not told where the image came from, so the answer's ``frame`` is empty: the caller knows it;
- ``application/json``: a JSON list of ``s3://`` frame URIs; the answer is
  ``{"results": [...]}`` with one entry per frame, in order: the frame's ``Detections.to_dict()``
  or ``{"frame", "error": {"type", "reason"}}``. One bad frame does not fail the batch; only a
  request that cannot be used at all does.

Without a ContentType (or with an octet-stream one) the body is sniffed: JSON if it starts with
``[``, an image otherwise. Answers are JSON only.

This module imports no AWS SDK: :mod:`workflow.serving.handler` reads the frames.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from workflow.domain.detections import Detections
from workflow.domain.errors import AutolabelError, FrameError

IMAGE_TYPES = ("application/x-image", "image/")
JSON_TYPES = ("application/json",)
SNIFFED_TYPES = ("", "application/octet-stream", "binary/octet-stream")
RESPONSE_CONTENT_TYPE = "application/json"


class Predictor(Protocol):
    """Anything that turns encoded image bytes into detections (e.g. the ONNX runner)."""

    def predict_bytes(self, data: bytes, frame: str) -> Detections: ...


class RequestFailed(Exception):
    """The whole invocation failed; ``kind`` and ``reason`` go to the failure output and SNS."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(f"{kind}: {reason}")
        self.kind = kind
        self.reason = reason


class FrameUnreadable(FrameError):
    """A frame of a batch could not be read; ``code`` is the storage error code (NoSuchKey...)."""

    def __init__(self, frame: str, reason: str, code: str) -> None:
        super().__init__(frame, reason)
        self.code = code


FrameReader = Callable[[str], bytes]


def describe_error(exc: BaseException) -> tuple[str, str]:
    """(type, reason) of an error, as reported per frame and in failure notifications."""
    if isinstance(exc, RequestFailed):
        return exc.kind, exc.reason
    if isinstance(exc, FrameUnreadable):
        return exc.code, exc.reason
    if isinstance(exc, FrameError):
        return type(exc).__name__, exc.reason
    if isinstance(exc, AutolabelError):
        return type(exc).__name__, str(exc)
    return type(exc).__name__, str(exc) or repr(exc)


def media_type(content_type: str | None) -> str:
    """The bare, lower-case media type of a Content-Type value ('' when absent)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def request_kind(content_type: str | None, payload: bytes) -> str:
    """'image' or 'batch' for a request, or raise RequestFailed for an unsupported type."""
    kind = media_type(content_type)
    if kind in JSON_TYPES:
        return "batch"
    if kind.startswith(IMAGE_TYPES):
        return "image"
    if kind in SNIFFED_TYPES:
        return "batch" if payload.lstrip()[:1] == b"[" else "image"
    raise RequestFailed("UnsupportedContentType", f"content type {content_type!r} is not supported")


def check_accept(accept: str | None) -> None:
    """The model answers JSON only; refuse an Accept that excludes it."""
    wanted = [media_type(part) for part in (accept or "").split(",") if part.strip()]
    if wanted and not any(w in ("*/*", "application/*") or "json" in w for w in wanted):
        raise RequestFailed("UnsupportedAccept", f"the model answers application/json, not {accept!r}")


def parse_batch(payload: bytes) -> list[str]:
    """The frame URIs of a batch request, or RequestFailed when the body is unusable."""
    try:
        frames = json.loads(payload)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestFailed("InvalidRequest", f"batch body is not JSON: {exc}") from exc
    if not isinstance(frames, list) or not all(isinstance(f, str) for f in frames):
        raise RequestFailed("InvalidRequest", "batch body must be a JSON list of s3:// frame URIs")
    return frames


def predict_one(predictor: Predictor, data: bytes, frame: str) -> dict[str, Any]:
    """Run the model on one frame and return the JSON-ready detections."""
    detections = predictor.predict_bytes(data, frame)
    result = detections.to_dict()
    result["frame"] = result.get("frame") or frame
    return result


def batch_entry(predictor: Predictor, read_frame: FrameReader, frame: str) -> dict[str, Any]:
    """One frame's entry of a batch answer: its detections, or why it has none."""
    try:
        return predict_one(predictor, read_frame(frame), frame)
    except Exception as exc:  # one bad frame must not fail the batch
        kind, reason = describe_error(exc)
        return {"frame": frame, "error": {"type": kind, "reason": reason}}


def predict_image(predictor: Predictor, payload: bytes) -> dict[str, Any]:
    """The answer to a one-image request; any error fails the invocation."""
    try:
        return predict_one(predictor, payload, "")
    except Exception as exc:  # turned into the invocation's failure record
        raise RequestFailed(*describe_error(exc)) from exc


def predict_batch(predictor: Predictor, read_frame: FrameReader, frames: list[str]) -> dict[str, Any]:
    """The answer to a batch request: one entry per frame, in order."""
    return {"results": [batch_entry(predictor, read_frame, f) for f in frames]}


def encode_answer(answer: dict[str, Any]) -> str:
    """The response body: compact JSON."""
    return json.dumps(answer, separators=(",", ":"))
