"""This project's request contract for a model endpoint, whatever hosts it.

Two request kinds, told apart by ContentType:

- an image (``application/x-image``, ``image/jpeg``, ``image/png``, any ``image/*``): one frame;
  the answer is that frame's ``Detections.to_dict()``; any error fails the invocation. The endpoint
  is not told where the image came from, so the answer's ``frame`` is empty: the caller knows it;
- ``application/json``: a JSON list of ``s3://`` frame URIs; the answer is
  ``{"results": [...]}`` with one entry per frame, in order: the frame's ``Detections.to_dict()``
  or ``{"frame", "error": {"type", "reason"}}``. One bad frame does not fail the batch; only a
  request that cannot be used at all does.

A batch's ContentType may carry ``min-score`` (``application/json; min-score=0.25``): the lowest
score the caller keeps. Each frame's answer then leaves out the candidates under it and counts them
per class in ``below_min_score`` (``{"bench": 3, "car": 41}``), so the caller's dropped counts stay
whole while the answer carries only what it can use (NanoDet keeps candidates from 0.05: about 200 a
road frame, of which a profile at 0.25 keeps about 20). A container that does not know the
parameter ignores it (media type parameters are not part of the type) and answers every candidate.

Without a ContentType (or with an octet-stream one) the body is sniffed: JSON if it starts with
``[``, an image otherwise. Answers are JSON only.

This module imports no AWS SDK: :mod:`workflow.serving.handler` reads the frames.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np

from workflow.domain.detections import Detections
from workflow.domain.errors import AutolabelError, FrameError
from workflow.domain.model_requests import MIN_SCORE_PARAMETER
from workflow.domain.model_requests import batch_content_type as batch_content_type  # the contract's

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

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:  # type: ignore[override]
        return type(self), (self.frame, self.reason, self.code)


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


def media_parameters(content_type: str | None) -> dict[str, str]:
    """The parameters of a Content-Type value (``type/sub; a=1; b="2"``), names lower-cased."""
    found: dict[str, str] = {}
    for part in (content_type or "").split(";")[1:]:
        name, sep, value = part.partition("=")
        if sep and name.strip():
            found[name.strip().lower()] = value.strip().strip('"')
    return found


def requested_min_score(content_type: str | None) -> float:
    """The ``min-score`` a batch request asks for (0.0 when none); RequestFailed when it is no score."""
    raw = media_parameters(content_type).get(MIN_SCORE_PARAMETER)
    if raw is None:
        return 0.0
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise RequestFailed("InvalidRequest", f"{MIN_SCORE_PARAMETER}={raw!r} is not a score in [0, 1]")
    return value


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


def predict_one(predictor: Predictor, data: bytes, frame: str, min_score: float = 0.0) -> dict[str, Any]:
    """Run the model on one frame and return the JSON-ready detections (with ``min_score``, those
    the caller keeps, and the count of the others per class in ``below_min_score``)."""
    detections = predictor.predict_bytes(data, frame)
    below: dict[str, int] | None = None
    if min_score > 0:
        keep = detections.sent_scores() >= np.float32(min_score)
        left_out = Counter(n for n, k in zip(detections.class_names, keep.tolist(), strict=True) if not k)
        below = dict(sorted(left_out.items()))
        if below:
            detections = detections.select(keep)
    result = detections.to_dict()
    result["frame"] = result.get("frame") or frame
    if below is not None:
        result["below_min_score"] = below
    return result


def batch_entry(
    predictor: Predictor, read_frame: FrameReader, frame: str, min_score: float = 0.0
) -> dict[str, Any]:
    """One frame's entry of a batch answer: its detections, or why it has none."""
    try:
        return predict_one(predictor, read_frame(frame), frame, min_score)
    except RequestFailed:  # not the frame: the model itself (e.g. it could not be loaded)
        raise
    except Exception as exc:  # one bad frame must not fail the batch
        kind, reason = describe_error(exc)
        return {"frame": frame, "error": {"type": kind, "reason": reason}}


def predict_image(predictor: Predictor, payload: bytes) -> dict[str, Any]:
    """The answer to a one-image request; any error fails the invocation."""
    try:
        return predict_one(predictor, payload, "")
    except RequestFailed:
        raise
    except Exception as exc:  # turned into the invocation's failure record
        raise RequestFailed(*describe_error(exc)) from exc


def predict_batch(
    predictor: Predictor, read_frame: FrameReader, frames: list[str], min_score: float = 0.0
) -> dict[str, Any]:
    """The answer to a batch request: one entry per frame, in order."""
    return {"results": [batch_entry(predictor, read_frame, f, min_score) for f in frames]}


def encode_answer(answer: dict[str, Any]) -> str:
    """The response body: compact JSON."""
    return json.dumps(answer, separators=(",", ":"))
