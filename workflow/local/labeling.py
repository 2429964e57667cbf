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

Review modes: ``simulate`` is a stand-in reviewer for tests and demos, no person: it accepts every
pre-label (adjusts nothing, gives a verification job's first verdict) and says so, writing
``human-annotated: "no"`` and counting the objects as machine-labeled; ``wait`` writes
``<review_dir>/<job>.draft.manifest`` (the pre-labels in the output format, ``human-annotated:
"no"``) and waits for a person to save the reviewed lines (``human-annotated: "yes"``) as
``<review_dir>/<job>.manifest``. To reject a verification, change the line's ``class-name`` to
another label category (or its index; where the two differ, the one changed from the draft wins,
and an object whose both changed to different verdicts fails); comments go in ``worker-feedback``.
"""

from __future__ import annotations

import copy
import functools
import io
import json
import logging
import re
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import botocore.session
import botocore.validate
from botocore.exceptions import ClientError
from PIL import Image

from workflow.domain.groundtruth import (
    MAX_DATA_OBJECTS_PER_JOB,
    GroundTruthError,
    ImageSize,
    ManifestFormatError,
    ReviewedBox,
    ReviewedFrame,
    dumps_manifest,
    failed_output_line,
    loads_manifest,
    output_manifest_line,
    parse_output_line,
    same_boxes,
    validate_label_attribute_name,
)
from workflow.domain.verification import VERIFICATION_TYPE, reviewed_verdict_line, verification_output_line

EVENT_SOURCE = "aws.sagemaker"
EVENT_DETAIL_TYPE = "SageMaker Ground Truth Labeling Job State Change"
TaskKind = Literal["adjust", "verify"]
# Built-in task types (the Lambda names after PRE-/ACS-) this service plays, and what their workers do.
_BUILTIN_TASKS: dict[str, TaskKind] = {
    "BoundingBox": "adjust",
    "AdjustmentBoundingBox": "adjust",
    "VerificationBoundingBox": "verify",
}
_TEMPLATE_PRELABEL = re.compile(r"task\.input\.manifestLine\.([A-Za-z0-9-]+?)\.annotations")
_log = logging.getLogger(__name__)


class JobFailed(Exception):
    """The whole job fails; the message becomes ``FailureReason``."""


@functools.cache
def _sagemaker_model() -> Any:
    return botocore.session.get_session().get_service_model("sagemaker")


def _client_error(code: str, message: str, operation: str, status: int = 400) -> ClientError:
    response: Any = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, operation)


def _constraint_problems(value: Any, shape: Any, path: str) -> list[str]:
    """The server-side length and pattern checks that a boto3 client leaves to the service."""
    problems: list[str] = []
    meta = shape.metadata
    if shape.type_name == "structure" and isinstance(value, dict):
        for key, member in shape.members.items():
            if key in value:
                problems += _constraint_problems(value[key], member, f"{path}.{key}" if path else key)
    elif shape.type_name == "list" and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            problems.append(
                f"Value at '{path}' failed to satisfy constraint: Member must have length <= {meta['max']}"
            )
        for i, item in enumerate(value):
            problems += _constraint_problems(item, shape.member, f"{path}[{i}]")
    elif shape.type_name == "string" and isinstance(value, str):
        if "max" in meta and len(value) > meta["max"]:
            problems.append(
                f"Value at '{path}' failed to satisfy constraint: Member must have length <= {meta['max']}"
            )
        pattern = meta.get("pattern")
        try:
            mismatch = pattern is not None and re.fullmatch(pattern, value) is None
        except re.error:  # Java-only classes such as \p{L}: the service checks them, we cannot
            mismatch = False
        if mismatch:
            problems.append(
                f"Value '{value}' at '{path}' failed to satisfy constraint: "
                f"Member must satisfy regular expression pattern: {pattern}"
            )
    elif shape.type_name == "integer" and isinstance(value, int) and "max" in meta and value > meta["max"]:
        problems.append(
            f"Value '{value}' at '{path}' failed to satisfy constraint: Member must be <= {meta['max']}"
        )
    return problems


def validate_request(operation: str, params: dict[str, Any]) -> None:
    """Validate like boto3 (ParamValidationError) and then like the service (ValidationException)."""
    shape = _sagemaker_model().operation_model(operation).input_shape
    botocore.validate.validate_parameters(params, shape)
    problems = _constraint_problems(params, shape, "")
    if problems:
        message = (
            f"{len(problems)} validation error{'s' if len(problems) > 1 else ''} detected: "
            + "; ".join(problems)
        )
        raise _client_error("ValidationException", message, operation)


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
        return _BUILTIN_TASKS.get(
            _builtin_task(self.params["HumanTaskConfig"]["PreHumanTaskLambdaArn"]), "adjust"
        )


def _builtin_task(lambda_arn: str) -> str:
    """``VerificationBoundingBox`` of ``arn:...:function:PRE-VerificationBoundingBox``; "" if not built in."""
    name = lambda_arn.rsplit(":function:", 1)[-1]
    prefix, _, task = name.partition("-")
    return task if prefix in ("PRE", "ACS") else ""


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
        self._check_rules(params)
        name = params["LabelingJobName"]
        arn = f"arn:aws:sagemaker:{self._region}:{self._account}:labeling-job/{name.lower()}"
        with self._lock:
            if name.lower() in self._jobs:
                raise _client_error(
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
            raise _client_error("ResourceNotFound", f"Could not find labeling job '{name}'.", operation)
        return job

    @staticmethod
    def _check_rules(params: dict[str, Any]) -> None:
        """Rules the service enforces beyond the request shape."""
        task = params["HumanTaskConfig"]
        ui = task["UiConfig"]
        pre = task.get("PreHumanTaskLambdaArn", "")
        problems = []
        if ("UiTemplateS3Uri" in ui) == ("HumanTaskUiArn" in ui):
            problems.append("UiConfig needs exactly one of UiTemplateS3Uri and HumanTaskUiArn")
        if "UiTemplateS3Uri" in ui and not (pre and "AnnotationConsolidationConfig" in task):
            problems.append(
                "PreHumanTaskLambdaArn and AnnotationConsolidationConfig are required for this task type"
            )
        if "S3DataSource" not in params["InputConfig"]["DataSource"]:
            problems.append("the local labeling service reads an S3 input manifest only (no streaming jobs)")
        builtin = _builtin_task(pre)
        if builtin and builtin not in _BUILTIN_TASKS:
            problems.append(
                f"the local labeling service plays bounding-box adjustment and verification jobs only, "
                f"not PRE-{builtin}"
            )
        consolidation = task.get("AnnotationConsolidationConfig", {}).get(
            "AnnotationConsolidationLambdaArn", ""
        )
        if builtin and _builtin_task(consolidation) not in ("", builtin):
            problems.append(
                f"PRE-{builtin} needs the consolidation Lambda ACS-{builtin}, not {consolidation}"
            )
        if _BUILTIN_TASKS.get(builtin) == "verify" and "LabelCategoryConfigS3Uri" not in params:
            problems.append(
                "a verification job needs LabelCategoryConfigS3Uri: its categories are the verdicts"
            )
        try:
            validate_label_attribute_name(params["LabelAttributeName"], "bounding-box")
        except GroundTruthError as exc:
            problems.append(str(exc))
        if problems:
            raise _client_error("ValidationException", "; ".join(problems), "CreateLabelingJob")

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
            if self._mode == "simulate":
                outputs = [self._simulated_line(job, line, prelabel, categories) for line in lines]
            else:
                reviewed = self._await_review(job, lines, prelabel, categories)
                if reviewed is None:
                    self._finish(job, "Stopped")
                    return
                outputs = self._reviewed_lines(job, lines, reviewed, prelabel, categories)
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

    @staticmethod
    def _in_categories(boxes: Sequence[ReviewedBox], categories: list[str] | None) -> list[ReviewedBox]:
        """Boxes with ``class_id`` = index in the job's label categories, as Ground Truth numbers them."""
        if categories is None:
            return list(boxes)
        missing = sorted({b.class_name for b in boxes if b.class_name not in categories})
        if missing:
            raise ManifestFormatError(f"classes {missing} are not label categories of the job")
        return [b.model_copy(update={"class_id": categories.index(b.class_name)}) for b in boxes]

    @staticmethod
    def _prelabel_frame(line: dict[str, Any], prelabel: str | None) -> ReviewedFrame | None:
        if prelabel is None or not isinstance(line.get(f"{prelabel}-metadata"), dict):
            return None
        frame = parse_output_line(line, prelabel)
        return None if frame.image_size is None else frame

    def _prelabels(
        self, line: dict[str, Any], prelabel: str | None
    ) -> tuple[ImageSize, tuple[ReviewedBox, ...]]:
        """The frame's size and pre-label boxes; a frame without pre-labels is read for its size."""
        frame = self._prelabel_frame(line, prelabel)
        if frame is not None and frame.image_size is not None:
            return frame.image_size, frame.boxes
        return self._image_size(line["source-ref"]), ()

    def _simulated_line(
        self, job: _Job, line: dict[str, Any], prelabel: str | None, categories: list[str] | None
    ) -> dict[str, Any]:
        """What a stand-in that changes nothing produces: the pre-labels unadjusted, or the first verdict,
        marked ``human-annotated: "no"`` (no person looked at the frame)."""
        try:
            if job.task == "verify":
                self._require_prelabel(line, prelabel)
                verdicts = _verdicts(categories)
                return verification_output_line(
                    line, job.label_attribute, verdicts, verdicts[0], job.name, human_annotated=False
                )
            size, boxes = self._prelabels(line, prelabel)
            labeled = self._in_categories(boxes, categories)
        except GroundTruthError as exc:
            return _failed_line(job, line, f"ClientError: {exc}")
        return output_manifest_line(
            line,
            job.label_attribute,
            labeled,
            job.name,
            adjusted=False,
            image_size=size,
            human_annotated=False,
        )

    def _require_prelabel(self, line: dict[str, Any], prelabel: str | None) -> None:
        """A verification worker judges the pre-label boxes: a frame without them cannot be verified."""
        if self._prelabel_frame(line, prelabel) is None:
            raise ManifestFormatError(f"the frame has no {prelabel or 'pre-label'} boxes to verify")

    def _await_review(
        self, job: _Job, lines: list[dict[str, Any]], prelabel: str | None, categories: list[str] | None
    ) -> str | None:
        """Write the draft, then poll for the reviewed manifest; None when the job is stopped first."""
        assert self._review_dir is not None
        self._review_dir.mkdir(parents=True, exist_ok=True)
        draft = [self._simulated_line(job, line, prelabel, categories) for line in lines]
        # Written whole, then renamed: a person (or a script) never sees half a draft.
        target = self._review_dir / f"{job.name}.draft.manifest"
        partial = target.with_name(f".{target.name}.partial")
        partial.write_text(dumps_manifest(draft))
        partial.replace(target)
        reviewed = self._review_dir / f"{job.name}.manifest"
        last_seen: tuple[int, int] | None = None
        while not job.stop_requested.wait(self._poll_s):
            if not reviewed.exists():
                continue
            stat = reviewed.stat()
            # Read only once size and mtime held still for a poll: the editor may still be writing.
            if last_seen == (stat.st_size, stat.st_mtime_ns):
                return reviewed.read_text(encoding="utf-8")
            last_seen = (stat.st_size, stat.st_mtime_ns)
        return None

    def _reviewed_lines(
        self,
        job: _Job,
        lines: list[dict[str, Any]],
        text: str,
        prelabel: str | None,
        categories: list[str] | None,
    ) -> list[dict[str, Any]]:
        try:
            by_source = {str(line.get("source-ref")): line for line in loads_manifest(text)}
        except ManifestFormatError as exc:
            raise JobFailed(f"ClientError: reviewed manifest of {job.name}: {exc}") from exc
        outputs = []
        for line in lines:
            reviewed = by_source.get(line["source-ref"])
            try:
                if reviewed is None:
                    raise ManifestFormatError("the frame is missing from the reviewed manifest")
                if job.task == "verify":
                    self._require_prelabel(line, prelabel)
                    outputs.append(
                        reviewed_verdict_line(
                            line, reviewed, job.label_attribute, _verdicts(categories), job.name
                        )
                    )
                else:
                    outputs.append(self._reviewed_boxes_line(job, line, reviewed, prelabel, categories))
            except GroundTruthError as exc:
                outputs.append(_failed_line(job, line, f"ClientError: {exc}"))
        return outputs

    def _reviewed_boxes_line(
        self,
        job: _Job,
        line: dict[str, Any],
        reviewed: dict[str, Any],
        prelabel: str | None,
        categories: list[str] | None,
    ) -> dict[str, Any]:
        frame = parse_output_line(reviewed, job.label_attribute)
        if frame.failure_reason is not None or frame.image_size is None:
            raise ManifestFormatError(frame.failure_reason or "no label")
        pre = self._prelabel_frame(line, prelabel)
        before = pre.boxes if pre is not None else ()
        boxes = self._in_categories(frame.boxes, categories)
        return output_manifest_line(
            line,
            job.label_attribute,
            boxes,
            job.name,
            adjusted=not same_boxes(frame.boxes, before),
            image_size=frame.image_size,
        )

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


# ---- verification jobs ---------------------------------------------------------------------
def _failed_line(job: _Job, line: dict[str, Any], reason: str) -> dict[str, Any]:
    """A data object the job could not label, its metadata typed as the job's task type."""
    failed = failed_output_line(line, job.label_attribute, reason, job.name)
    if job.task == "verify":
        failed[f"{job.label_attribute}-metadata"]["type"] = VERIFICATION_TYPE
    return failed


def _verdicts(categories: list[str] | None) -> list[str]:
    if not categories:
        raise JobFailed("ClientError: a verification job needs label categories (its verdicts)")
    return categories
