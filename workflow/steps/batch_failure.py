"""RecordBatchFailure: a batch whose branch failed is written down frame by frame, never lost."""

from __future__ import annotations

from typing import Any

from workflow.adapters.run_store import RunStore
from workflow.adapters.s3 import S3Store
from workflow.adapters.tokens import TokenStore
from workflow.domain.records import BatchLabels, batch_failures, batch_id_of, failures_uri
from workflow.domain.run import BatchInference, BatchResult, RunContext
from workflow.settings import Settings


def record_batch_failure(batch_key: str, run: RunContext, error: dict[str, Any], s3: S3Store) -> BatchResult:
    """Every frame of a batch whose branch failed, with the reason, so nothing vanishes."""
    store = RunStore(s3, run.bucket, run.run_prefix)
    batch_name = batch_id_of(batch_key)
    done = store.batch_done(batch_name)
    if done is not None:
        return BatchResult(batch_id=batch_name, labeled=done.labeled, failed=done.failed)
    batch = store.get_batch(batch_name)
    uri = failures_uri(error)
    failed = batch_failures(batch.frames, error, s3.get_json(uri) if uri else None)
    labels = BatchLabels(batch_id=batch.batch_id, failed=failed, lineage=batch.lineage)
    store.put_labels(labels, len(batch.frames), {})
    return BatchResult(batch_id=batch.batch_id, labeled=0, failed=len(failed))


def record_batch_timeout(
    batch_key: str,
    run: RunContext,
    error: dict[str, Any],
    s3: S3Store,
    tokens: TokenStore,
    settings: Settings,
) -> BatchResult:
    """A batch whose task timed out: close its token (a late notification resumes nothing) and keep
    what the models that did answer returned; the frames no model answered fail with the timeout."""
    batch_name = batch_id_of(batch_key)
    reason = (
        f"States.Timeout: no notification from the endpoint within batch_timeout_seconds="
        f"{run.batch_timeout_seconds}"
    )
    records = tokens.expire_batch(run.run_id, batch_name, reason)
    if records and any(r.status == "Completed" for r in records):
        from workflow.steps.merge import merge_batch  # the science layer: only when something answered

        inference = BatchInference(batch_id=batch_name, inferences=records)
        return merge_batch(batch_key, run, inference, settings, s3)
    return record_batch_failure(batch_key, run, error, s3)
