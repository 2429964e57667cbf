"""InvokeModels and the SNS callback: asynchronous inference of a batch, resumed by notifications."""

from __future__ import annotations

import json
from typing import Any

from workflow.adapters.run_store import RunStore
from workflow.adapters.tokens import PendingInference
from workflow.domain.errors import EndpointThrottled
from workflow.domain.frames import S3Uri, inference_id
from workflow.domain.model_requests import batch_content_type
from workflow.domain.notifications import AsyncInferenceNotification
from workflow.domain.records import batch_id_of
from workflow.domain.run import BatchInference, RunContext
from workflow.settings import Settings
from workflow.steps.ports import Callbacks, EndpointRuntime, ObjectStore, Tokens

__all__ = ["EndpointThrottled", "invoke_models", "on_inference_result"]  # the ASL retries EndpointThrottled


def _image_request(model: Any, frame: str) -> dict[str, str]:
    """ContentType/Accept of a one-image request: JumpStart vision models take ``application/x-image``
    and give class names, scores and boxes only with ``application/json;verbose``."""
    if model.response_format == "jumpstart":
        return {"ContentType": "application/x-image", "Accept": "application/json;verbose"}
    return {"ContentType": "image/png" if frame.lower().endswith(".png") else "image/jpeg"}


def invoke_models(
    token: str,
    batch_key: str,
    run: RunContext,
    s3: ObjectStore,
    tokens: Tokens,
    runtime: EndpointRuntime,
    callbacks: Callbacks,
) -> dict[str, Any]:
    """Start every model's inference of the batch; the token is parked before the first request.

    A batch an earlier attempt (or a resumed run) finished is not inferred again: the task is
    resumed at once with ``done`` and MergeBatch keeps the records already written.
    """
    store = RunStore(s3, run.bucket, run.run_prefix)
    name = batch_id_of(batch_key)
    if store.batch_done(name) is not None:
        done = BatchInference(batch_id=name, inferences=[], done=True)
        callbacks.succeed(token, done.model_dump(mode="json"))
        return {"batch_key": "", "inferences": 0, "done": True}
    batch = store.get_batch(name)
    requests: list[tuple[PendingInference, dict[str, Any]]] = []
    for model in run.models:
        if model.batch_requests:
            request_uri = s3.put_json(
                S3Uri(run.bucket, run.key("requests", f"{batch.batch_id}.json")), batch.frames
            )
            inf_id = inference_id(run.run_id, batch.batch_id, model.name)
            params = {"ContentType": _batch_type(model, run), "InputLocation": request_uri}
            requests.append(
                (PendingInference(inf_id, model.name, batch.frames), params | _common(model, inf_id))
            )
        else:
            for frame in batch.frames:
                inf_id = inference_id(run.run_id, batch.batch_id, model.name, frame)
                params = {"InputLocation": frame} | _common(model, inf_id) | _image_request(model, frame)
                requests.append((PendingInference(inf_id, model.name, [frame]), params))
    batch_key = tokens.park_batch(run.run_id, batch.batch_id, token, [p for p, _ in requests])
    for _, params in requests:
        runtime.invoke_async(params)  # EndpointThrottled propagates: the ASL retries it with backoff
    return {"batch_key": batch_key, "inferences": len(requests)}


def _batch_type(model: Any, run: RunContext) -> str:
    """Our own container is told the lowest score the profile keeps from the model (it answers only
    those candidates and counts the rest); another container's answers are thresholded in MergeBatch."""
    if model.response_format != "autolabel":
        return "application/json"
    return batch_content_type(run.min_scores.get(model.name, 0.0))


def _common(model: Any, inf_id: str) -> dict[str, Any]:
    return {"EndpointName": model.endpoint_name, "Accept": "application/json", "InferenceId": inf_id}


def on_inference_result(
    note: AsyncInferenceNotification,
    tokens: Tokens,
    callbacks: Callbacks,
    s3: ObjectStore,
    settings: Settings,
) -> str:
    """Record one notification; resume the batch's task when its last inference has reported.

    The batch's inference records (or its frames' failures) go to S3 and the task gets their URI,
    so SendTaskSuccess' 256 KiB and SendTaskFailure's 32,768-character cause hold at any batch size.
    Returns what happened (``unknown``, ``waiting``, ``resumed``, ``failed``) for the logs.
    """
    batch_key = tokens.record_inference(
        note.inference_id, note.invocation_status, note.output_location, note.failure_reason
    )
    if batch_key is None:
        return "unknown"
    outcome = tokens.claim_completed_batch(batch_key)
    if outcome is None:
        return "waiting"
    sent = False
    base = S3Uri(settings.data_bucket, f"{settings.runs_prefix.strip('/')}/{outcome.run_id}/inferences")
    try:
        if all(r.status == "Failed" for r in outcome.inferences):
            failures = [
                {"frame": frame, "reason": f"{r.model}: {r.failure_reason}"}
                for r in outcome.inferences
                for frame in r.frames
            ]
            uri = s3.put_json(base.join(f"{outcome.batch_id}.failures.json"), failures)
            first = outcome.inferences[0]
            message = f"every inference failed; first: {first.model}: {first.failure_reason}"[:1000]
            cause = json.dumps({"batch_id": outcome.batch_id, "failures_uri": uri, "errorMessage": message})
            callbacks.fail(outcome.token, "InferenceFailed", cause)
            sent, result = True, "failed"
        else:
            records = [r.model_dump(mode="json") for r in outcome.inferences]
            uri = s3.put_json(base.join(f"{outcome.batch_id}.json"), records)
            result_payload = BatchInference(batch_id=outcome.batch_id, records_uri=uri)
            callbacks.succeed(outcome.token, result_payload.model_dump(mode="json"))
            sent, result = True, "resumed"
    finally:
        tokens.release_batch(outcome.batch_key, sent)
    return result
