"""The events the Lambda handlers receive, as pydantic models for Powertools' parser.

Each handler is wrapped by ``event_parser(model=...)`` (``aws_lambda_powertools.utilities.parser``),
so a malformed event fails before any work with a ValidationError naming the field. The states'
payloads reuse the domain's types (ReportFailedRun's event, ``ExecutionStatusEvent``, lives beside
its detail in ``workflow.steps.failure``); the SNS and EventBridge envelopes are modelled here with only
the fields we read, rather than through Powertools' built-in models: importing
``aws_lambda_powertools.utilities.parser.models`` loads every service's model (0.5 s measured
here), which would double a light handler's cold start.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, Json

from workflow.domain.notifications import AsyncInferenceNotification, LabelingJobStateChange
from workflow.domain.run import ListCursor, ManifestPart, ManifestResult, ReviewResult, RunContext, SourceItem


class _Event(BaseModel):
    # The state machine's Parameters (and AWS' envelopes) may carry more than a handler reads.
    model_config = ConfigDict(extra="ignore", populate_by_name=True, frozen=True)


# --- task states ----------------------------------------------------------------------------------
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


class StartReviewEvent(_Event):
    task_token: str
    part: ManifestPart
    run: RunContext
    manifest: ManifestResult


class CollectReviewEvent(_Event):
    run: RunContext
    part: ManifestPart
    review: ReviewResult


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
