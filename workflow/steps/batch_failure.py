"""RecordBatchFailure: a batch whose branch failed is written down frame by frame, never lost."""

from __future__ import annotations

from typing import Any

from workflow.adapters.run_store import RunStore
from workflow.adapters.s3 import S3Store
from workflow.domain.records import BatchLabels, batch_failures, batch_id_of, failures_uri
from workflow.domain.run import BatchResult, RunContext


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
    store.put_labels(BatchLabels(batch_id=batch.batch_id, failed=failed), len(batch.frames), {})
    return BatchResult(batch_id=batch.batch_id, labeled=0, failed=len(failed))
