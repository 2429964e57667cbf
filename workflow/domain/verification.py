"""Ground Truth bounding-box verification jobs, all in one place: their verdicts (the job's label
categories), the output line a job writes, and reading a person's verdict and comments back.

Routing (``workflow.domain.routing``) decides which frames go to verification; PlanReview writes
:func:`verification_categories` and the worker template (``workflow.domain.worker_templates``);
the local labeling service writes :func:`verification_output_line` / :func:`reviewed_verdict_line`;
PublishShard reads :func:`verification_verdict` and :func:`rejection_reason`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from workflow.domain.groundtruth import (
    LABEL_CATEGORY_DOCUMENT_VERSION,
    ManifestFormatError,
    creation_date,
    metadata_job_name,
)

VERDICT_CORRECT, VERDICT_INCORRECT = "labels correct", "labels need adjustment"
VERIFICATION_TYPE = "groundtruth/label-verification"


def verification_categories() -> dict[str, Any]:
    """The label category file of a verification job: the verdicts a worker picks from."""
    return {
        "document-version": LABEL_CATEGORY_DOCUMENT_VERSION,
        "labels": [{"label": VERDICT_CORRECT}, {"label": VERDICT_INCORRECT}],
    }


def verification_output_line(
    input_line: dict[str, Any],
    label_attribute: str,
    categories: Sequence[str],
    verdict: str,
    job_name: str,
    *,
    confidence: float = 1.0,
    feedback: Sequence[str] = (),
    created: datetime | None = None,
    human_annotated: bool = True,
) -> dict[str, Any]:
    """What Ground Truth writes for one object of a verification job: the input line plus the verdict.

    ``human_annotated=False`` only for a stand-in reviewer (no person judged the frame).

    The label is the verdict's index in the job's label categories, as a string (``"1"``); the
    metadata names it (``class-name``). One local reviewer decides, so ``confidence`` is 1.0 unless
    given; ``worker-feedback`` appears only when there are comments.
    """
    if verdict not in categories:
        raise ManifestFormatError(
            f"verdict {verdict!r} is not one of the job's label categories {list(categories)}"
        )
    meta: dict[str, Any] = {
        "class-name": verdict,
        "confidence": round(float(confidence), 2),
        "type": VERIFICATION_TYPE,
        "job-name": metadata_job_name(job_name),
        "human-annotated": "yes" if human_annotated else "no",
        "creation-date": creation_date(created),
    }
    if feedback:
        meta["worker-feedback"] = [{"comment": comment} for comment in feedback]
    return {
        **input_line,
        label_attribute: str(list(categories).index(verdict)),
        f"{label_attribute}-metadata": meta,
    }


def chosen_verdict(index: Any, name: Any, categories: list[str]) -> str:
    """The verdict from the label's index and ``class-name``; where they differ, the one changed from the
    draft (which holds the first verdict) wins."""
    chosen = set()
    if index is not None:
        if isinstance(index, bool) or not re.fullmatch(r"\d+", str(index)) or int(index) >= len(categories):
            raise ManifestFormatError(f"verdict index {index!r} is not one of 0..{len(categories) - 1}")
        chosen.add(categories[int(index)])
    if name is not None:
        if name not in categories:
            raise ManifestFormatError(
                f"verdict {name!r} is not one of the job's label categories {categories}"
            )
        chosen.add(name)
    changed = chosen - {categories[0]} if len(chosen) > 1 else chosen
    if len(changed) != 1:
        raise ManifestFormatError(
            "no verdict (class-name)"
            if not chosen
            else f"verdict index {index!r} and class-name {name!r} disagree"
        )
    return changed.pop()


def worker_comments(feedback: Any) -> tuple[str, ...]:
    """``worker-feedback`` as Ground Truth's list of ``{"comment": ...}``, also from plain strings."""
    if feedback is None:
        return ()
    entries = [feedback] if isinstance(feedback, str) else feedback
    if not isinstance(entries, list):
        raise ManifestFormatError(
            f"worker-feedback must be a list of comments, got {type(feedback).__name__}"
        )
    comments = []
    for entry in entries:
        text = entry.get("comment") if isinstance(entry, dict) else entry
        if not isinstance(text, str):
            raise ManifestFormatError(f"worker-feedback entry {entry!r} has no comment text")
        if text.strip():
            comments.append(text)
    return tuple(comments)


def reviewed_verdict_line(
    line: dict[str, Any], reviewed: dict[str, Any], attribute: str, categories: list[str], job_name: str
) -> dict[str, Any]:
    """The verification output for a line a person saved (a draft line with its verdict, possibly
    changed, and comments): the rules are in ``workflow.local.labeling``'s docstring."""
    meta = reviewed.get(f"{attribute}-metadata")
    if not isinstance(meta, dict):
        raise ManifestFormatError(f"no {attribute}-metadata verdict")
    if "failure-reason" in meta and attribute not in reviewed:
        raise ManifestFormatError(str(meta["failure-reason"]))
    if meta.get("type", VERIFICATION_TYPE) != VERIFICATION_TYPE:
        raise ManifestFormatError(f"{attribute} is a {meta.get('type')!r} label, not a verification verdict")
    verdict = chosen_verdict(reviewed.get(attribute), meta.get("class-name"), categories)
    confidence = meta.get("confidence", 1.0)
    if isinstance(confidence, bool) or not isinstance(confidence, int | float) or not 0 <= confidence <= 1:
        raise ManifestFormatError(f"confidence must be a number from 0 to 1, got {confidence!r}")
    return verification_output_line(
        line,
        attribute,
        categories,
        verdict,
        job_name,
        confidence=confidence,
        feedback=worker_comments(meta.get("worker-feedback")),
    )


def verification_verdict(line: dict[str, Any], attribute: str) -> tuple[bool, str] | None:
    """(accepted, verdict) of a verification job's output line; None when it holds no verdict."""
    meta = line.get(f"{attribute}-metadata")
    if not isinstance(meta, dict) or meta.get("type") != VERIFICATION_TYPE:
        return None
    if "failure-reason" in meta and attribute not in line:
        return None  # Ground Truth could not get a verdict: a failed object, not a rejection
    verdict = str(meta.get("class-name", ""))
    return verdict == VERDICT_CORRECT, verdict


def rejection_reason(line: dict[str, Any], attribute: str, verdict: str) -> str:
    """Why a frame people judged wrong is not published: the verdict and, when given, their comments
    (comments that cannot be read are said so; they never fail the frame's publication)."""
    reason = (
        f"verification: people judged the labels wrong ({verdict}); "
        "the next run that claims it sends it to an adjustment job"
    )
    meta = line.get(f"{attribute}-metadata")
    try:
        comments = worker_comments(meta.get("worker-feedback") if isinstance(meta, dict) else None)
    except ManifestFormatError as err:
        return f"{reason}; reviewers' comments unreadable: {err}"
    return f"{reason}; reviewers said: {' | '.join(comments)}" if comments else reason
