"""The PlanDriveLogs handler's event, beside the request it carries (kept out of ``workflow.events``
so that the other handlers do not import the drive-log models)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from workflow.logs.ingest import DriveLogRequest


class PlanDriveLogsEvent(BaseModel):
    """PlanDriveLogs' Payload (``statemachine/drivelogs.asl.json``)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    request: DriveLogRequest  # the drive-log execution's input (an S3 event or the schedule's)
    execution_name: str
    ledger_table: str  # the state machine names the drive-log ledger's table
