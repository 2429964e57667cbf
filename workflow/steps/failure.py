"""ReportFailedRun: a run that failed, timed out or was aborted still reports, and lets go of its frames.

Step Functions emits an "Execution Status Change" event on EventBridge when an execution ends;
the rule on FAILED, TIMED_OUT and ABORTED invokes this step, so the execution keeps its own
failure (and can be redriven) while the run's ``report.json`` says what was labeled, what failed
and why, and what was never reached. Marking the run ``failed`` in the frame ledger releases
every frame it still holds: the next run that meets one takes it over (one write, not one per
frame). A redriven execution emits RUNNING again, which marks the run ``running`` once more.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from workflow.adapters.ledger import FrameLedger
from workflow.adapters.run_store import RunStore
from workflow.adapters.s3 import S3Store
from workflow.domain.records import add_counts
from workflow.domain.run import RunRequest
from workflow.reports.store import gallery_sample, write_report_html
from workflow.settings import Settings
from workflow.steps.prepare import run_id_from

ENDED = ("FAILED", "TIMED_OUT", "ABORTED")


class ExecutionStatusChange(BaseModel):
    """The ``detail`` of a Step Functions "Execution Status Change" EventBridge event."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    execution_arn: str = Field(alias="executionArn")
    name: str
    status: str
    input: str | None = None
    error: str | None = None
    cause: str | None = None
    redrive_count: int = Field(0, alias="redriveCount")


class ExecutionStatusEvent(BaseModel):
    """The EventBridge event around it (ReportFailedRun's handler parses it with Powertools' parser)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    detail_type: str = Field("", alias="detail-type")
    detail: ExecutionStatusChange


def run_of(change: ExecutionStatusChange) -> str | None:
    """The run id of the execution (as PrepareRun derives it), or None when its input is not a run."""
    try:
        request = RunRequest.model_validate(json.loads(change.input or "{}"))
    except ValueError:
        return None
    return run_id_from(request, change.name)


def on_execution_change(
    change: ExecutionStatusChange, settings: Settings, s3: S3Store, ledger: FrameLedger
) -> dict[str, Any]:
    """Report an ended run and release its frames; mark a redriven run running again."""
    run_id = run_of(change)
    if run_id is None:
        return {"status": "ignored", "reason": "the execution's input is not a run request"}
    if change.status == "RUNNING":
        if change.redrive_count > 0:
            ledger.mark_run(run_id, "running")
            return {"status": "resumed", "run_id": run_id}
        return {"status": "ignored", "run_id": run_id}
    if change.status not in ENDED:
        return {"status": "ignored", "run_id": run_id}
    store = RunStore(s3, settings.data_bucket, f"{settings.runs_prefix.strip('/')}/{run_id}")
    report = failed_run_report(store, run_id, change)
    s3.put_json(store.uri("report.json"), report)
    write_report_html(store, report, gallery_sample(store.shard_counts()), {})
    ledger.mark_run(run_id, "failed", f"{change.status}: {change.error or ''}")
    return {"status": "reported", "run_id": run_id, "report": str(store.uri("report.json"))}


def failed_run_report(store: RunStore, run_id: str, change: ExecutionStatusChange) -> dict[str, Any]:
    """What the run's records say when it ended early: found, labeled, failed, skipped, never reached."""
    claimed = skipped = 0
    sources: set[int] = set()
    for page in store.pages():
        claimed += page.frames
        skipped += page.skipped
        sources.add(page.source_index)
    labeled = failed = 0
    reasons: Counter[str] = Counter()
    for batch in store.all_counts():
        labeled += batch.labeled
        failed += batch.failed
        add_counts(reasons, batch.failure_reasons)
    published = sum(s.labeled for s in store.shard_counts())
    return {
        "run_id": run_id,
        "status": change.status,
        "error": change.error,
        "cause": (change.cause or "")[:2000],
        "execution_arn": change.execution_arn,
        "frames_found": claimed + skipped,
        "skipped": skipped,
        "labeled_not_published": labeled - published,
        "published": published,
        "labeled": labeled,
        "failed": failed,
        "never_reached": claimed - labeled - failed,
        "failures": [{"reason": r, "frames": n} for r, n in reasons.most_common()],
        "sources_listed": len(sources),
        "next": (
            "the run's frames are released: a later run labels them; or resume this run "
            "(Step Functions redrive, or `autolabel resume RUN_ID`) to finish only what is missing"
        ),
    }
