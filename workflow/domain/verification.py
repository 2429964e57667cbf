"""Ground Truth bounding-box verification jobs: the output line they write, and reading a person's verdict."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from workflow.domain.groundtruth import ManifestFormatError, creation_date, metadata_job_name
from workflow.domain.routing import VERIFICATION_TYPE


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
