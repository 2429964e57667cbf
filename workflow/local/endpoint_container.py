"""What the model container behind the local asynchronous endpoint does with one request.

The contract lives in :mod:`workflow.serving.protocol` and the code that answers it in
:mod:`workflow.serving.handler` (the SageMaker inference-toolkit functions of the model archive):
the local endpoint runs that same code (:mod:`workflow.serving.toolkit`). Re-exported here for the
local endpoint's callers.
"""

from __future__ import annotations

from workflow.serving.protocol import (
    FrameReader,
    FrameUnreadable,
    Predictor,
    RequestFailed,
    check_accept,
    describe_error,
    media_type,
    parse_batch,
    predict_one,
    request_kind,
)

__all__ = [
    "FrameReader",
    "FrameUnreadable",
    "Predictor",
    "RequestFailed",
    "check_accept",
    "describe_error",
    "media_type",
    "parse_batch",
    "predict_one",
    "request_kind",
]
