"""The messages AWS sends us: async-inference SNS notifications and Ground Truth state changes."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Lenient(BaseModel):
    # AWS adds fields over time: accept and ignore the ones we do not read.
    model_config = ConfigDict(defer_build=True, extra="ignore", populate_by_name=True, frozen=True)


class RequestParameters(_Lenient):
    endpoint_name: str = Field(alias="endpointName")
    input_location: str = Field(alias="inputLocation")
    content_type: str | None = Field(None, alias="contentType")
    accept: str | None = None


class ResponseParameters(_Lenient):
    content_type: str | None = Field(None, alias="contentType")
    output_location: str = Field(alias="outputLocation")


class AsyncInferenceNotification(_Lenient):
    """The JSON in the SNS ``Message`` of a SageMaker asynchronous inference result."""

    invocation_status: Literal["Completed", "Failed"] = Field(alias="invocationStatus")
    inference_id: str = Field(alias="inferenceId")
    request_parameters: RequestParameters = Field(alias="requestParameters")
    response_parameters: ResponseParameters | None = Field(None, alias="responseParameters")
    failure_reason: str | None = Field(None, alias="failureReason")
    event_name: str = Field("InferenceResult", alias="eventName")

    @property
    def output_location(self) -> str | None:
        return self.response_parameters.output_location if self.response_parameters else None


def notifications_from_sns_event(event: dict[str, Any]) -> list[AsyncInferenceNotification]:
    """Every inference notification in an SNS->Lambda event (one record per message)."""
    return [
        AsyncInferenceNotification.model_validate(json.loads(record["Sns"]["Message"]))
        for record in event.get("Records", [])
    ]


class LabelingJobStateChange(_Lenient):
    """EventBridge 'SageMaker Ground Truth Labeling Job State Change'."""

    status: Literal["Completed", "Failed", "Stopped", "InProgress", "Stopping", "Initializing"]
    job_arn: str
    failure_reason: str | None = None

    @classmethod
    def from_event(cls, event: dict[str, Any]) -> LabelingJobStateChange:
        detail = event.get("detail", {})
        resources = event.get("resources") or [detail.get("LabelingJobArn", "")]
        return cls(
            status=detail["LabelingJobStatus"],
            job_arn=resources[0],
            failure_reason=detail.get("FailureReason"),
        )

    @property
    def job_name(self) -> str:
        return self.job_arn.rsplit("/", 1)[-1]
