"""A local service that plays SageMaker Ground Truth for bounding-box adjustment and verification jobs.

It takes the same ``CreateLabelingJob`` parameters as boto3, answers ``DescribeLabelingJob`` in
the real response shape, writes ``<S3OutputPath>/<job>/manifests/output/output.manifest`` in the
exact Ground Truth output format and emits the real EventBridge state-change event. It talks to
storage and events only through the boto3 clients it is given (moto's in local mode), so the
caller's code path is the one it has against AWS.

The task type comes from the built-in pre-annotation Lambda: ``PRE-BoundingBox`` and
``PRE-AdjustmentBoundingBox`` are adjustment jobs (the output holds the reviewed boxes);
``PRE-VerificationBoundingBox`` is a verification job: the worker sees the pre-label boxes and
picks one of the job's label categories as a verdict, and the output holds
``"<attr>": "<index of the verdict>"`` with ``class-name``, ``confidence``,
``type: groundtruth/label-verification`` and, when the worker commented, ``worker-feedback``.

It is split by concern, as the local endpoint is: this module is the job's lifecycle (the API,
reading the job's inputs, writing its output, the state-change events);
``labeling_validation`` checks requests as boto3 and the service do; ``labeling_reviewers`` holds
the review modes (``simulate``: a stand-in, no person; ``wait``: a draft for a person, then their
lines). To reject a verification in ``wait`` mode, change the line's ``class-name`` to another
label category (or its index; where the two differ, the one changed from the draft wins, and an
object whose both changed to different verdicts fails); comments go in ``worker-feedback``.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from botocore.exceptions import ClientError
from PIL import Image

from workflow.domain.groundtruth import (
    MAX_DATA_OBJECTS_PER_JOB,
    ImageSize,
    ManifestFormatError,
    dumps_manifest,
    loads_manifest,
)
from workflow.local.labeling_reviewers import JobTask, await_person, simulate
from workflow.local.labeling_validation import (
    BUILTIN_TASKS,
    JobFailed,
    TaskKind,
    builtin_task,
    check_rules,
    client_error,
    validate_request,
)

__all__ = ["EVENT_DETAIL_TYPE", "EVENT_SOURCE", "JobFailed", "LocalLabelingService", "validate_request"]

EVENT_SOURCE = "aws.sagemaker"
EVENT_DETAIL_TYPE = "SageMaker Ground Truth Labeling Job State Change"
_TEMPLATE_PRELABEL = re.compile(r"task\.input\.manifestLine\.([A-Za-z0-9-]+?)\.annotations")
_log = logging.getLogger(__name__)


def _split_s3_uri(uri: str) -> tuple[str, str]:
    match = re.fullmatch(r"s3://([^/]+)/?(.*)", uri)
    if not match:
        raise JobFailed(f"ClientError: {uri} is not an s3:// URI")
    return match.group(1), match.group(2)


@dataclass
class _Job:
    name: str
    arn: str
    params: dict[str, Any]
    created: datetime
    status: str = "InProgress"
    modified: datetime = field(default_factory=lambda: datetime.now(UTC))
    failure_reason: str | None = None
    output_uri: str | None = None
    counters: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(
            ("TotalLabeled", "HumanLabeled", "MachineLabeled", "FailedNonRetryableError", "Unlabeled"), 0
        )
    )
    reference_code: str = field(default_factory=lambda: secrets.token_hex(8))
    stop_requested: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    @property
    def label_attribute(self) -> str:
        return str(self.params["LabelAttributeName"])

    @property
    def task(self) -> TaskKind:
        """``verify`` for a verification job; any other (built-in or custom) box task adjusts."""
        return BUILTIN_TASKS.get(
            builtin_task(self.params["HumanTaskConfig"]["PreHumanTaskLambdaArn"]), "adjust"
        )


class LocalLabelingService:
    """Ground Truth's control plane and workforce, in-process; see the module docstring."""

    def __init__(
        self,
        s3: Any,
        events: Any,
        region: str,
        account: str,
        review_mode: Literal["simulate", "wait"] = "simulate",
        review_dir: str | Path | None = None,
        *,
        delay_s: float = 0.2,
        poll_interval_s: float = 0.5,
        event_bus_name: str = "default",
    ) -> None:
        if review_mode not in ("simulate", "wait"):
            raise ValueError(f"review_mode must be 'simulate' or 'wait', not {review_mode!r}")
        if review_mode == "wait" and review_dir is None:
            raise ValueError("review_mode 'wait' needs a review_dir")
        self._s3, self._events = s3, events
        self._region, self._account = region, account
        self._mode = review_mode
        self._review_dir = Path(review_dir) if review_dir is not None else None
        self._delay_s, self._poll_s = delay_s, poll_interval_s
        self._bus = event_bus_name
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()

    # ---- the API -------------------------------------------------------------------------
    def create_labeling_job(self, **params: Any) -> dict[str, Any]:
        """``sagemaker.create_labeling_job``: validate, register, and start the job in the background."""
        validate_request("CreateLabelingJob", params)
        check_rules(params)
        name = params["LabelingJobName"]
        arn = f"arn:aws:sagemaker:{self._region}:{self._account}:labeling-job/{name.lower()}"
        with self._lock:
            if name.lower() in self._jobs:
                raise client_error(
                    "ResourceInUse",
                    f"Job name must be unique within an AWS account and region, and a job with this name "
                    f"already exists ({arn})",
                    "CreateLabelingJob",
                )
            job = _Job(name=name, arn=arn, params=copy.deepcopy(params), created=datetime.now(UTC))
            self._jobs[name.lower()] = job
        job.thread = threading.Thread(target=self._run, args=(job,), name=f"labeling-{name}", daemon=True)
        job.thread.start()
        return {"LabelingJobArn": arn, "ResponseMetadata": {"HTTPStatusCode": 200}}

    def describe_labeling_job(self, LabelingJobName: str) -> dict[str, Any]:  # boto3 parameter name
        """``sagemaker.describe_labeling_job`` in the real response shape."""
        job = self._get(LabelingJobName, "DescribeLabelingJob")
        with self._lock:
            response: dict[str, Any] = {
                key: copy.deepcopy(job.params[key])
                for key in (
                    "LabelingJobName",
                    "LabelAttributeName",
                    "InputConfig",
                    "OutputConfig",
                    "RoleArn",
                    "LabelCategoryConfigS3Uri",
                    "StoppingConditions",
                    "HumanTaskConfig",
                    "LabelingJobAlgorithmsConfig",
                    "Tags",
                )
                if key in job.params
            }
            response |= {
                "LabelingJobStatus": job.status,
                "LabelCounters": dict(job.counters),
                "CreationTime": job.created,
                "LastModifiedTime": job.modified,
                "JobReferenceCode": job.reference_code,
                "LabelingJobArn": job.arn,
                "ResponseMetadata": {"HTTPStatusCode": 200},
            }
            if job.failure_reason is not None:
                response["FailureReason"] = job.failure_reason
            if job.output_uri is not None:
                response["LabelingJobOutput"] = {"OutputDatasetS3Uri": job.output_uri}
        return response

    def stop_labeling_job(self, LabelingJobName: str) -> dict[str, Any]:  # boto3 parameter name
        """``sagemaker.stop_labeling_job``: the job goes Stopping, then Stopped with its event."""
        job = self._get(LabelingJobName, "StopLabelingJob")
        with self._lock:
            if job.status == "InProgress":
                job.status, job.modified = "Stopping", datetime.now(UTC)
        job.stop_requested.set()
        return {"ResponseMetadata": {"HTTPStatusCode": 200}}

    def wait(self, name: str, timeout_s: float = 30.0) -> str:
        """Block until the job ends (or the timeout passes); return its status."""
        job = self._get(name, "DescribeLabelingJob")
        if job.thread is not None:
            job.thread.join(timeout_s)
        return job.status

    def stop(self, timeout_s: float = 5.0) -> None:
        """End the background threads; jobs still running end as Stopped."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.stop_requested.set()
        for job in jobs:
            if job.thread is not None:
                job.thread.join(timeout_s)

    # ---- validation ----------------------------------------------------------------------
    def _get(self, name: str, operation: str) -> _Job:
        with self._lock:
            job = self._jobs.get(name.lower())
        if job is None:
            raise client_error("ResourceNotFound", f"Could not find labeling job '{name}'.", operation)
        return job

    # ---- the job -------------------------------------------------------------------------
    def _run(self, job: _Job) -> None:
        try:
            if job.stop_requested.wait(self._delay_s):
                self._finish(job, "Stopped")
                return
            lines = self._read_manifest(job)
            categories = self._read_categories(job)
            prelabel = self._prelabel_attribute(job, lines)
            with self._lock:
                job.counters["Unlabeled"] = len(lines)
            task = JobTask(job.name, job.label_attribute, job.task, prelabel, categories, self._image_size)
            if self._mode == "simulate":
                outputs = simulate(task, lines)
            else:
                assert self._review_dir is not None
                reviewed = await_person(task, lines, self._review_dir, self._poll_s, job.stop_requested)
                if reviewed is None:
                    self._finish(job, "Stopped")
                    return
                outputs = reviewed
            self._complete(job, outputs)
        except JobFailed as exc:
            self._finish(job, "Failed", str(exc))
        except Exception as exc:  # a job must never stay InProgress: report what broke
            _log.exception("labeling job %s crashed", job.name)
            self._finish(job, "Failed", f"InternalError: {type(exc).__name__}: {exc}")

    def _read_s3_text(self, uri: str, what: str) -> str:
        bucket, key = _split_s3_uri(uri)
        try:
            body = self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:
            raise JobFailed(f"ClientError: cannot read the {what} {uri}: {exc}") from exc
        try:
            return str(body.decode("utf-8"))
        except UnicodeDecodeError as exc:
            raise JobFailed(f"ClientError: the {what} {uri} is not UTF-8 text") from exc

    def _read_manifest(self, job: _Job) -> list[dict[str, Any]]:
        uri = job.params["InputConfig"]["DataSource"]["S3DataSource"]["ManifestS3Uri"]
        try:
            lines = loads_manifest(self._read_s3_text(uri, "input manifest"))
        except ManifestFormatError as exc:
            raise JobFailed(f"ClientError: input manifest {uri}: {exc}") from exc
        if not lines:
            raise JobFailed(f"ClientError: input manifest {uri} has no data objects")
        if len(lines) > MAX_DATA_OBJECTS_PER_JOB:
            raise JobFailed(
                f"ClientError: input manifest has {len(lines)} objects, over {MAX_DATA_OBJECTS_PER_JOB}"
            )
        for number, line in enumerate(lines, start=1):
            if not isinstance(line.get("source-ref"), str):
                raise JobFailed(f"ClientError: input manifest line {number} has no source-ref")
            if job.label_attribute in line:
                raise JobFailed(
                    f"ClientError: label attribute {job.label_attribute!r} already used on line {number}"
                )
        return lines

    def _read_categories(self, job: _Job) -> list[str] | None:
        uri = job.params.get("LabelCategoryConfigS3Uri")
        if uri is None:
            return None
        text = self._read_s3_text(uri, "label category configuration")
        try:
            labels = [str(entry["label"]) for entry in json.loads(text)["labels"]]
        except (ValueError, KeyError, TypeError) as exc:
            raise JobFailed(f"ClientError: label category configuration {uri} is malformed: {exc}") from exc
        if not 1 <= len(labels) <= 50:
            raise JobFailed(f"ClientError: {len(labels)} label categories; a bounding-box job takes 1 to 50")
        return labels

    def _prelabel_attribute(self, job: _Job, lines: list[dict[str, Any]]) -> str | None:
        """The attribute whose boxes reach the worker: named by the template, else found in the lines."""
        template_uri = job.params["HumanTaskConfig"]["UiConfig"].get("UiTemplateS3Uri")
        if template_uri is not None:
            match = _TEMPLATE_PRELABEL.search(self._read_s3_text(template_uri, "worker UI template"))
            if match:
                return match.group(1)
        for key in lines[0]:
            meta = lines[0].get(f"{key}-metadata")
            if isinstance(meta, dict) and meta.get("type") == "groundtruth/object-detection":
                return key
        return None

    def _image_size(self, uri: str) -> ImageSize:
        bucket, key = _split_s3_uri(uri)
        try:
            body = self._s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            with Image.open(io.BytesIO(body)) as image:
                return ImageSize(width=image.width, height=image.height, depth=len(image.getbands()))
        except (ClientError, OSError) as exc:
            raise ManifestFormatError(f"cannot read the image {uri}: {exc}") from exc

    def _complete(self, job: _Job, outputs: list[dict[str, Any]]) -> None:
        base = job.params["OutputConfig"]["S3OutputPath"].rstrip("/")
        uri = f"{base}/{job.name}/manifests/output/output.manifest"
        bucket, key = _split_s3_uri(uri)
        try:
            self._s3.put_object(Bucket=bucket, Key=key, Body=dumps_manifest(outputs).encode("utf-8"))
        except ClientError as exc:
            raise JobFailed(f"ClientError: cannot write the output manifest {uri}: {exc}") from exc
        failed = sum(1 for o in outputs if job.label_attribute not in o)
        human = sum(
            1
            for o in outputs
            if (o.get(f"{job.label_attribute}-metadata") or {}).get("human-annotated") == "yes"
        )
        with self._lock:
            job.output_uri = uri
            job.counters.update(
                TotalLabeled=len(outputs) - failed,
                HumanLabeled=human,
                MachineLabeled=len(outputs) - failed - human,
                FailedNonRetryableError=failed,
                Unlabeled=0,
            )
        self._finish(job, "Completed")

    def _finish(self, job: _Job, status: str, reason: str | None = None) -> None:
        with self._lock:
            job.status, job.modified = status, datetime.now(UTC)
            if reason is not None:
                job.failure_reason = reason[:1024]
        self._emit(job, status)

    def _emit(self, job: _Job, status: str) -> None:
        entry = {
            "Source": EVENT_SOURCE,
            "DetailType": EVENT_DETAIL_TYPE,
            "Detail": json.dumps({"LabelingJobStatus": status}),
            "Resources": [job.arn],
            "EventBusName": self._bus,
        }
        try:
            response = self._events.put_events(Entries=[entry])
        except ClientError:
            _log.exception("could not emit the %s event of labeling job %s", status, job.name)
            return
        if response.get("FailedEntryCount"):
            _log.error(
                "EventBridge refused the %s event of %s: %s", status, job.name, response.get("Entries")
            )
