"""CollectReview: split one finished job's output manifest back into its batches.

The job's output is streamed once; each line goes to its batch (the ``autolabel-batch`` field
its input line carried), and a batch's lines are written as soon as all of them have arrived, so
memory holds the batches still open, not the job. Lines that name no batch of the job are kept in
``reviewed/unattributed/`` and counted: their frames are reported missing from the job's output.
"""

from __future__ import annotations

from typing import Any

from workflow.adapters.run_store import RunStore
from workflow.adapters.s3 import S3Store
from workflow.domain.records import BATCH_FIELD
from workflow.domain.run import ManifestPart, ReviewResult, RunContext


def collect_review(run: RunContext, part: ManifestPart, review: ReviewResult, s3: S3Store) -> ReviewResult:
    """Write ``reviewed/<batch>/<part>.jsonl`` for each batch of the job; return the review with its part."""
    store = RunStore(s3, run.bucket, run.run_prefix)
    planned = store.get_part(part.index)
    expected = dict(zip(planned.batches, planned.sizes, strict=True))
    open_batches: dict[str, list[dict[str, Any]]] = {}
    stray: list[dict[str, Any]] = []
    if review.output_manifest_uri:
        for line in s3.iter_lines(review.output_manifest_uri):
            name = str(line.get(BATCH_FIELD, ""))
            if name not in expected:
                stray.append(line)
                continue
            lines = open_batches.setdefault(name, [])
            lines.append(line)
            if len(lines) == expected[name]:
                store.put_reviewed(name, part.index, open_batches.pop(name))
    for name, lines in open_batches.items():
        store.put_reviewed(name, part.index, lines)  # a job that returned fewer lines than it was given
    if stray:
        s3.put_lines(store.uri(f"reviewed/unattributed/{part.index:03d}.jsonl"), stray)
    return review.model_copy(update={"part": part.index})
