"""A dated price table for estimating the human review cost of a run, and the estimate itself.

Source: AWS pricing page "Amazon SageMaker Ground Truth Pricing"
(https://aws.amazon.com/sagemaker/groundtruth/pricing/), figures as last read in PRICES_AS_OF; this
project's machines cannot reach the page, so they were not re-checked when written. Ground Truth bills
per labeled *data object* (one frame); with the public workforce (Amazon Mechanical Turk) each
worker's task on a data object is paid at the task type's price. The Ground Truth service fee
per labeled object and private/vendor workforce charges are NOT in this table: the estimate
is the public-workforce labeling price only. Prices change: update the table and its date.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Workforce = Literal["public", "private", "vendor"]
ReviewTask = Literal["adjust", "verify"]

PRICES_AS_OF = "2025-06"
PRICE_SOURCE = "Amazon SageMaker Ground Truth Pricing (aws.amazon.com/sagemaker/groundtruth/pricing)"
DEFAULT_WORKERS_PER_FRAME = 3


@dataclass(frozen=True)
class TaskPrice:
    """The price of one worker's task on one data object."""

    task_type: str
    workforce: Workforce
    usd_per_object_per_worker: float
    note: str = ""


PRICE_TABLE: dict[tuple[ReviewTask, Workforce], TaskPrice] = {
    ("adjust", "public"): TaskPrice("bounding box", "public", 0.036),
    # The pricing page lists no separate verification price for bounding boxes; priced as a
    # bounding-box task, so routing to verification saves nothing in this estimate.
    ("verify", "public"): TaskPrice("bounding box (verification)", "public", 0.036, "assumed = bounding box"),
    # A private workforce is paid by its employer, not per task.
    ("adjust", "private"): TaskPrice("bounding box", "private", 0.0, "paid by the employer"),
    ("verify", "private"): TaskPrice("bounding box (verification)", "private", 0.0, "paid by the employer"),
}


def task_price(task: ReviewTask, workforce: Workforce) -> TaskPrice:
    """The table's price; KeyError naming the missing entry (vendors set their own prices)."""
    try:
        return PRICE_TABLE[(task, workforce)]
    except KeyError:
        raise KeyError(
            f"no price for {task} tasks with a {workforce} workforce (vendors price in AWS Marketplace)"
        ) from None


def review_cost(
    frames: int, task: ReviewTask = "adjust", workforce: Workforce = "public", workers: int = 3
) -> float:
    """USD for ``workers`` people each reviewing ``frames`` frames, rounded to cents."""
    if frames < 0 or workers < 1:
        raise ValueError(f"frames must be >= 0 and workers >= 1, got {frames} and {workers}")
    return round(frames * workers * task_price(task, workforce).usd_per_object_per_worker, 2)


def cost_estimate(
    to_adjust: int, to_verify: int, labeled: int, workforce: Workforce = "public", workers: int = 3
) -> dict[str, object]:
    """Review cost with routing (only routed frames) against without (every labeled frame adjusted)."""
    with_routing = review_cost(to_adjust, "adjust", workforce, workers) + review_cost(
        to_verify, "verify", workforce, workers
    )
    without = review_cost(labeled, "adjust", workforce, workers)
    return {
        "currency": "USD",
        "workforce": workforce,
        "workers_per_frame": workers,
        "usd_per_frame_per_worker": task_price("adjust", workforce).usd_per_object_per_worker,
        "with_routing": round(with_routing, 2),
        "without_routing": without,
        "saved": round(without - with_routing, 2),
        "prices_as_of": PRICES_AS_OF,
        "price_source": PRICE_SOURCE,
        "excludes": "Ground Truth per-object service fee; inference and workflow run cost",
    }
