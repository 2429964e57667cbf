"""Drive-log ingestion in AWS: which log objects a ``drivelogs`` execution processes, one per child.

``statemachine/drivelogs.asl.json`` starts from a schedule (``{"prefixes": [...]}``) or from an S3
object-created event (``{"logs": [{"bucket", "key", "etag", "size"}]}``). :func:`plan_drive_logs`
turns either into one item per log object, written to S3 for the Distributed Map's ItemReader
(a listing of thousands of logs never rides in the 256 KB payload). Each item carries what its
child needs: the ledger key (log URI + ETag: a log is processed once per content), where its frames
go, and the run request the main state machine gets for them.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from workflow.domain.frames import S3Uri
from workflow.domain.run import ReviewMode
from workflow.logs.sources import LOG_SUFFIXES

DRIVELOG_PREFIX = "drivelogs"
MAX_INLINE_PROFILE = 6000


class _Payload(BaseModel):
    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)


class DriveLogObject(_Payload):
    """One log object in S3, as the S3 event names it (the ETag pins its content)."""

    bucket: str = Field(min_length=3)
    key: str = Field(min_length=1)
    etag: str | None = None
    size: int | None = Field(default=None, ge=0)

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class DriveLogRequest(_Payload):
    """A ``drivelogs`` execution's input: log objects (an S3 event), prefixes (the schedule), or both."""

    logs: tuple[DriveLogObject, ...] = ()
    prefixes: tuple[str, ...] = ()
    review: ReviewMode = "human"
    profile: str | dict[str, Any] | None = Field(
        default=None, description="labeling profile (inline or s3://) for the extraction and the runs"
    )
    max_logs: int = Field(default=10_000, ge=1, le=100_000)
    max_concurrency: int = Field(default=8, ge=1, le=1000, description="logs extracted at once")

    @field_validator("profile")
    @classmethod
    def _fits_the_task_overrides(cls, value: str | dict[str, Any] | None) -> str | dict[str, Any] | None:
        # The profile rides to the Fargate task in a container override: ECS takes 8 KiB of overrides.
        if isinstance(value, dict) and len(json.dumps(value)) > MAX_INLINE_PROFILE:
            raise ValueError(
                f"an inline profile of more than {MAX_INLINE_PROFILE} characters does not fit the "
                "extraction task's overrides: upload it and pass its s3:// URI"
            )
        return value


def log_id(uri: str, etag: str) -> str:
    """An id for one log version: its file stem (sanitised) and a digest of URI and ETag (<= 33 chars,
    so that ``<id>-a<attempt>`` is a valid run id and execution name)."""
    stem = re.sub(r"[^A-Za-z0-9]+", "-", uri.rsplit("/", 1)[-1].rsplit(".", 1)[0]).strip("-")[:20] or "log"
    digest = hashlib.sha256(f"{uri}#{etag}".encode()).hexdigest()[:12]
    return f"{stem}-{digest}"


class DriveLogLedger:
    """The drive-log table: one item per log object + ETag (``log_key``) with its ``status``.

    The state machine claims a log with a conditional UpdateItem (not there yet, or ``failed``);
    here it is only read, to leave settled logs out of a plan.
    """

    SETTLED = frozenset({"extracting", "labeling", "done"})

    def __init__(self, dynamodb: Any, table: str) -> None:
        self.dynamodb, self.table = dynamodb, table

    def settled(self, keys: list[str]) -> set[str]:
        """The keys whose log is being or has been processed."""
        found: set[str] = set()
        for start in range(0, len(keys), 100):  # BatchGetItem takes 100 keys
            pending: dict[str, Any] = {
                self.table: {
                    "Keys": [{"log_key": {"S": k}} for k in keys[start : start + 100]],
                    "ProjectionExpression": "log_key, #s",
                    "ExpressionAttributeNames": {"#s": "status"},
                }
            }
            while pending:
                page = self.dynamodb.batch_get_item(RequestItems=pending)
                for item in page["Responses"].get(self.table, []):
                    if item.get("status", {}).get("S") in self.SETTLED:
                        found.add(item["log_key"]["S"])
                pending = page.get("UnprocessedKeys") or {}
        return found


def _etag(value: str) -> str:
    return value.strip('"')


def _listed(s3: Any, prefix: str, limit: int) -> list[DriveLogObject]:
    loc = S3Uri.parse(prefix)
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=loc.key):
        for obj in page.get("Contents", []):
            if obj["Key"].endswith(LOG_SUFFIXES):
                found.append(
                    DriveLogObject(bucket=loc.bucket, key=obj["Key"], etag=obj["ETag"], size=obj["Size"])
                )
                if len(found) >= limit:
                    return found
    return found


def plan_drive_logs(
    request: DriveLogRequest,
    s3: Any,
    data_bucket: str,
    execution: str,
    ledger: DriveLogLedger | None = None,
) -> dict[str, Any]:
    """Write one item per log object to ``s3://data_bucket/drivelogs/executions/<execution>/logs.json``.

    Objects named by an event without an ETag are looked up (HeadObject); a key that is not a log
    is left out and counted; so is a log the ledger already holds as extracting or done (the
    schedule re-lists old logs: they cost no child execution). The ledger's conditional claim in
    the child stays the guarantee. Returns the ItemReader location and the counts.
    """
    named = [o for o in request.logs if o.key.endswith(LOG_SUFFIXES)]
    ignored = len(request.logs) - len(named)
    for prefix in request.prefixes:
        named += _listed(s3, prefix, request.max_logs)
    items: dict[tuple[str, str], dict[str, Any]] = {}
    for obj in named[: request.max_logs]:
        etag = _etag(obj.etag or s3.head_object(Bucket=obj.bucket, Key=obj.key)["ETag"])
        items.setdefault((obj.uri, etag), _item(obj, etag, request, data_bucket))
    settled = ledger.settled([i["ledger_key"] for i in items.values()]) if ledger is not None else set()
    done = len(settled)
    items = {k: v for k, v in items.items() if v["ledger_key"] not in settled}
    key = f"{DRIVELOG_PREFIX}/executions/{execution}/logs.json"
    s3.put_object(Bucket=data_bucket, Key=key, Body=json.dumps(list(items.values())).encode())
    return {
        "bucket": data_bucket,
        "key": key,
        "count": len(items),
        "ignored": ignored,
        "already_done": done,
        "max_concurrency": request.max_concurrency,
    }


def _item(obj: DriveLogObject, etag: str, request: DriveLogRequest, data_bucket: str) -> dict[str, Any]:
    run_id = log_id(obj.uri, etag)
    output = f"s3://{data_bucket}/{DRIVELOG_PREFIX}/{run_id}/"
    run_request: dict[str, Any] = {
        "sources": [f"{output}frames/"],
        "review": request.review,
        "run_id": run_id,
    }
    if request.profile is not None:
        run_request["profile"] = request.profile
    return {
        "ledger_key": f"{obj.uri}#{etag}",
        "log_uri": obj.uri,
        "etag": etag,
        "size": obj.size,
        "log_id": run_id,
        "output_prefix": output,
        "profile": json.dumps(request.profile)
        if isinstance(request.profile, dict)
        else (request.profile or ""),
        "run_request": run_request,
    }
