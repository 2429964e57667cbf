"""The one reader of a verification job's verdict and comments, as PublishShard words a rejection."""

from __future__ import annotations

from typing import Any

import pytest

from workflow.domain.groundtruth import ManifestFormatError
from workflow.domain.verification import (
    VERDICT_INCORRECT,
    VERIFICATION_TYPE,
    rejection_reason,
    verification_verdict,
    worker_comments,
)

FRAME = "s3://drive-logs/a/0001.jpg"


def rejected(feedback: Any = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"class-name": VERDICT_INCORRECT, "type": VERIFICATION_TYPE, "confidence": 0.9}
    if feedback is not None:
        meta["worker-feedback"] = feedback
    return {"source-ref": FRAME, "checked": "1", "checked-metadata": meta}


@pytest.mark.parametrize(
    ("feedback", "said"),
    [
        ([{"comment": "the van has no box"}, {"comment": "  "}], "; reviewers said: the van has no box"),
        ("one plain comment", "; reviewers said: one plain comment"),
        (None, ""),
        ([], ""),
    ],
    ids=["ground-truth-list", "plain-string", "none", "empty"],
)
def test_a_rejection_names_the_verdict_and_the_reviewers_comments(feedback: Any, said: str) -> None:
    # Given a verification line people rejected, with or without comments
    line = rejected(feedback)
    verdict = verification_verdict(line, "checked")
    assert verdict == (False, VERDICT_INCORRECT)
    # Then the frame's reason names the verdict, and their comments as worker_comments reads them
    assert rejection_reason(line, "checked", verdict[1]) == (
        f"verification: people judged the labels wrong ({VERDICT_INCORRECT}); "
        "the next run that claims it sends it to an adjustment job" + said
    )


def test_comments_that_cannot_be_read_are_said_so_and_do_not_fail_the_frame() -> None:
    # Given a rejected line whose worker-feedback is neither a list nor a string
    line = rejected({"comment": "not in a list"})
    with pytest.raises(ManifestFormatError):
        worker_comments(line["checked-metadata"]["worker-feedback"])
    # Then the rejection still reads, saying the comments could not be read
    reason = rejection_reason(line, "checked", VERDICT_INCORRECT)
    assert "reviewers' comments unreadable: worker-feedback must be a list of comments, got dict" in reason
