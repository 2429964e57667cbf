"""The local labeling service's reviewers: what its jobs' workers answer, line by line.

``simulate`` is a stand-in reviewer for tests and demos, no person: it accepts every pre-label
(adjusts nothing, gives a verification job's first verdict) and says so, writing
``human-annotated: "no"``. ``wait`` writes ``<review_dir>/<job>.draft.manifest`` (the stand-in's
lines) and waits for a person to save the reviewed lines as ``<review_dir>/<job>.manifest``; each
line is then checked and written in Ground Truth's output format. A line that cannot be read fails
that data object only, with its reason, as Ground Truth fails one object.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflow.domain.groundtruth import (
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
)
from workflow.domain.verification import VERIFICATION_TYPE, reviewed_verdict_line, verification_output_line
from workflow.local.labeling_validation import JobFailed, TaskKind


@dataclass(frozen=True)
class JobTask:
    """What a reviewer knows of a job: its name, output attribute and task type, the attribute of the
    pre-labels its workers see, its label categories, and how to read a frame's size."""

    name: str
    attribute: str
    task: TaskKind
    prelabel: str | None
    categories: list[str] | None
    image_size: Callable[[str], ImageSize]

    @property
    def verdicts(self) -> list[str]:
        if not self.categories:
            raise JobFailed("ClientError: a verification job needs label categories (its verdicts)")
        return self.categories


def simulate(job: JobTask, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stand-in reviewer's output: every line as it came, marked as no person's."""
    return [_simulated_line(job, line) for line in lines]


def await_person(
    job: JobTask, lines: list[dict[str, Any]], review_dir: Path, poll_s: float, stopped: threading.Event
) -> list[dict[str, Any]] | None:
    """Write the draft, wait for a person's reviewed manifest and read it; None when the job is
    stopped first."""
    review_dir.mkdir(parents=True, exist_ok=True)
    # Written whole, then renamed: a person (or a script) never sees half a draft.
    target = review_dir / f"{job.name}.draft.manifest"
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(dumps_manifest(simulate(job, lines)))
    partial.replace(target)
    reviewed = review_dir / f"{job.name}.manifest"
    last_seen: tuple[int, int] | None = None
    while not stopped.wait(poll_s):
        if not reviewed.exists():
            continue
        stat = reviewed.stat()
        # Read only once size and mtime held still for a poll: the editor may still be writing.
        if last_seen == (stat.st_size, stat.st_mtime_ns):
            return reviewed_lines(job, lines, reviewed.read_text(encoding="utf-8"))
        last_seen = (stat.st_size, stat.st_mtime_ns)
    return None


def reviewed_lines(job: JobTask, lines: list[dict[str, Any]], text: str) -> list[dict[str, Any]]:
    """The job's output from the manifest a person saved: one output line per input line."""
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
                _require_prelabel(job, line)
                outputs.append(reviewed_verdict_line(line, reviewed, job.attribute, job.verdicts, job.name))
            else:
                outputs.append(_reviewed_boxes_line(job, line, reviewed))
        except GroundTruthError as exc:
            outputs.append(failed_line(job, line, f"ClientError: {exc}"))
    return outputs


def failed_line(job: JobTask, line: dict[str, Any], reason: str) -> dict[str, Any]:
    """A data object the job could not label, its metadata typed as the job's task type."""
    failed = failed_output_line(line, job.attribute, reason, job.name)
    if job.task == "verify":
        failed[f"{job.attribute}-metadata"]["type"] = VERIFICATION_TYPE
    return failed


def _simulated_line(job: JobTask, line: dict[str, Any]) -> dict[str, Any]:
    """What a stand-in that changes nothing produces: the pre-labels unadjusted, or the first verdict,
    marked ``human-annotated: "no"`` (no person looked at the frame)."""
    try:
        if job.task == "verify":
            _require_prelabel(job, line)
            verdicts = job.verdicts
            return verification_output_line(
                line, job.attribute, verdicts, verdicts[0], job.name, human_annotated=False
            )
        size, boxes = _prelabels(job, line)
        labeled = _in_categories(boxes, job.categories)
    except GroundTruthError as exc:
        return failed_line(job, line, f"ClientError: {exc}")
    return output_manifest_line(
        line, job.attribute, labeled, job.name, adjusted=False, image_size=size, human_annotated=False
    )


def _reviewed_boxes_line(job: JobTask, line: dict[str, Any], reviewed: dict[str, Any]) -> dict[str, Any]:
    frame = parse_output_line(reviewed, job.attribute)
    if frame.failure_reason is not None or frame.image_size is None:
        raise ManifestFormatError(frame.failure_reason or "no label")
    pre = _prelabel_frame(line, job.prelabel)
    before = pre.boxes if pre is not None else ()
    boxes = _in_categories(frame.boxes, job.categories)
    return output_manifest_line(
        line,
        job.attribute,
        boxes,
        job.name,
        adjusted=not same_boxes(frame.boxes, before),
        image_size=frame.image_size,
    )


def _in_categories(boxes: Sequence[ReviewedBox], categories: list[str] | None) -> list[ReviewedBox]:
    """Boxes with ``class_id`` = index in the job's label categories, as Ground Truth numbers them."""
    if categories is None:
        return list(boxes)
    missing = sorted({b.class_name for b in boxes if b.class_name not in categories})
    if missing:
        raise ManifestFormatError(f"classes {missing} are not label categories of the job")
    return [b.model_copy(update={"class_id": categories.index(b.class_name)}) for b in boxes]


def _prelabel_frame(line: dict[str, Any], prelabel: str | None) -> ReviewedFrame | None:
    if prelabel is None or not isinstance(line.get(f"{prelabel}-metadata"), dict):
        return None
    frame = parse_output_line(line, prelabel)
    return None if frame.image_size is None else frame


def _prelabels(job: JobTask, line: dict[str, Any]) -> tuple[ImageSize, tuple[ReviewedBox, ...]]:
    """The frame's size and pre-label boxes; a frame without pre-labels is read for its size."""
    frame = _prelabel_frame(line, job.prelabel)
    if frame is not None and frame.image_size is not None:
        return frame.image_size, frame.boxes
    return job.image_size(line["source-ref"]), ()


def _require_prelabel(job: JobTask, line: dict[str, Any]) -> None:
    """A verification worker judges the pre-label boxes: a frame without them cannot be verified."""
    if _prelabel_frame(line, job.prelabel) is None:
        raise ManifestFormatError(f"the frame has no {job.prelabel or 'pre-label'} boxes to verify")
