"""The events the Lambda handlers receive, as pydantic models for Powertools' parser.

Each handler is wrapped by ``event_parser(model=...)`` (``aws_lambda_powertools.utilities.parser``),
so a malformed event fails before any work with a ValidationError naming the field. The states'
payloads reuse the domain's types (ReportFailedRun's event, ``ExecutionStatusEvent``, lives beside
its detail in ``workflow.steps.failure``, and PlanDriveLogs' in ``workflow.logs.events``, so the
other handlers import no drive-log models); the SNS and EventBridge envelopes are modelled here
with only the fields we read, rather than through Powertools' built-in models: importing
``aws_lambda_powertools.utilities.parser.models`` loads every service's model (0.5 s measured
here), which would double a light handler's cold start.
"""

from __future__ import annotations

import base64
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, Json

from workflow.domain.notifications import AsyncInferenceNotification, LabelingJobStateChange
from workflow.domain.records import ShardPlan
from workflow.domain.run import (
    BatchInference,
    ListCursor,
    ManifestPart,
    ManifestResult,
    ReviewResult,
    RunContext,
    RunRequest,
    SourceItem,
)


class _Event(BaseModel):
    # The state machine's Parameters (and AWS' envelopes) may carry more than a handler reads.
    # defer_build: a handler builds only its own event's validator, at its first event (0.5 ms here),
    # not all of this module's at import (measured: importing this module 17-21 ms -> 9-11 ms).
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True, defer_build=True)


# --- task states ----------------------------------------------------------------------------------
class PrepareRunEvent(_Event):
    request: RunRequest  # the execution's input, as given
    execution_name: str


class ListPageEvent(_Event):
    run: RunContext
    source: SourceItem
    cursor: ListCursor | None = None  # the first page of a source has none

    @property
    def page(self) -> ListCursor:
        return self.cursor or ListCursor()


class InvokeModelsEvent(_Event):
    task_token: str
    batch_key: str  # the LabelBatches Map's item: the key of the batch's object
    run: RunContext


class MergeBatchEvent(_Event):
    batch_key: str
    run: RunContext
    inference: BatchInference  # the InvokeModels task's output (SendTaskSuccess)


class CaughtError(_Event):
    """A Catch's error output: the error's name and its cause (often the failed Lambda's JSON)."""

    error: str = Field(alias="Error")
    cause: str = Field("", alias="Cause")

    def as_catch(self) -> dict[str, Any]:
        """The error as the Catch gave it (``Error``, ``Cause``)."""
        return {"Error": self.error, "Cause": self.cause}


class RecordBatchFailureEvent(_Event):
    batch_key: str
    run: RunContext
    error: CaughtError

    @property
    def timed_out(self) -> bool:
        return self.error.error == "States.Timeout"


class PlanReviewEvent(_Event):
    run: RunContext


class AssembleManifestEvent(_Event):
    run: RunContext
    part: ManifestPart


class StartReviewEvent(_Event):
    task_token: str
    part: ManifestPart
    run: RunContext
    manifest: ManifestResult


class CollectReviewEvent(_Event):
    run: RunContext
    part: ManifestPart
    review: ReviewResult


class RunState(_Event):
    """What PublishShard and FinishRun read of the run: its context and how review ended."""

    run: RunContext
    reviews: list[ReviewResult] | None = None
    review_error: CaughtError | None = None  # the review branch's Catch, when review did not finish

    def as_state(self) -> dict[str, Any]:
        """The state as the state machine passes it (``review_error`` with ``Error`` and ``Cause``)."""
        return {
            "run": self.run.model_dump(mode="json"),
            "reviews": [r.model_dump(mode="json") for r in self.reviews or []],
            "review_error": None if self.review_error is None else self.review_error.as_catch(),
        }


class PublishShardEvent(_Event):
    shard: ShardPlan
    state: RunState


class FinishRunEvent(_Event):
    state: RunState


# --- SNS: async-inference notifications -----------------------------------------------------------
class _SnsMessage(_Event):
    message: Json[AsyncInferenceNotification] = Field(alias="Message")


class _SnsRecord(_Event):
    sns: _SnsMessage = Field(alias="Sns")


class InferenceResultsEvent(_Event):
    """An SNS->Lambda event: one record per async-inference notification."""

    records: list[_SnsRecord] = Field(default_factory=list, alias="Records")

    @property
    def notifications(self) -> list[AsyncInferenceNotification]:
        return [record.sns.message for record in self.records]


# --- Lambda Function URL (payload 2.0): the Label Studio webhook ----------------------------------
class FunctionUrlEvent(_Event):
    headers: dict[str, str] = Field(default_factory=dict)
    body: str | None = None
    is_base64_encoded: bool = Field(False, alias="isBase64Encoded")

    @property
    def text(self) -> str:
        """The request body as text (the Function URL base64-encodes bodies it deems binary)."""
        body = self.body or ""
        return base64.b64decode(body).decode("utf-8") if self.is_base64_encoded else body


# --- EventBridge ----------------------------------------------------------------------------------
class _LabelingJobDetail(_Event):
    status: str = Field(alias="LabelingJobStatus")
    job_arn: str = Field("", alias="LabelingJobArn")
    failure_reason: str | None = Field(None, alias="FailureReason")


class LabelingJobEvent(_Event):
    """'SageMaker Ground Truth Labeling Job State Change' (the job's ARN is the event's resource)."""

    detail_type: str = Field("", alias="detail-type")
    resources: list[str] = Field(default_factory=list)
    detail: _LabelingJobDetail

    @property
    def change(self) -> LabelingJobStateChange:
        arn = self.resources[0] if self.resources else self.detail.job_arn
        return LabelingJobStateChange.model_validate(
            {"status": self.detail.status, "job_arn": arn, "failure_reason": self.detail.failure_reason}
        )
