"""How a run asks its own model container for less: the ``min-score`` parameter of a batch request's
ContentType (the contract is in :mod:`workflow.serving.protocol`; InvokeModels sets it)."""

from __future__ import annotations

MIN_SCORE_PARAMETER = "min-score"


def batch_content_type(min_score: float) -> str:
    """The ContentType of a batch request whose caller keeps scores from ``min_score``."""
    return f"application/json; {MIN_SCORE_PARAMETER}={min_score!r}" if min_score > 0 else "application/json"
