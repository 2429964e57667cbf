"""Which fused frames people must see: auto-accept, verify or adjust, plus a random audit.

A frame is **auto-accepted** (published as machine-labeled) when every box is confident
(fused score >= ``accept_score``), the models agree on every box (of the models that answered
for the frame and can report the box's class, at least ``min_support`` of them saw it), it has
between ``min_boxes`` and ``max_boxes`` boxes, and every model of the run answered for it.
A frame that misses auto-accept but whose boxes all agree and score >= ``verify_score`` goes to a
**verification** job (cheaper: people accept or reject the whole label) when ``verify_score`` is
set; anything else goes to an **adjustment** job (people edit the pre-labels).

A share ``audit_rate`` of the auto-accepted frames still goes to people (adjustment), chosen by a
hash of the frame URI and ``audit_seed``: the same frames every rerun, so audits are repeatable
and measure how often auto-accept was wrong.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from workflow.domain.detections import Detections

Route = Literal["auto", "verify", "adjust"]
ROUTES: tuple[Route, ...] = ("auto", "verify", "adjust")


class RoutingPolicy(BaseModel):
    """The profile's ``routing`` section. Disabled (the default), every labeled frame goes to people."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    enabled: bool = False
    accept_score: float = Field(default=0.5, ge=0.0, le=1.0, description="every box at least this for auto")
    min_support: float = Field(
        default=1.0, gt=0.0, le=1.0, description="share of the able models that must have seen each box"
    )
    min_boxes: int = Field(default=1, ge=0, description="fewer boxes: people look for missed objects")
    max_boxes: int = Field(default=30, ge=0, description="more boxes: a crowded scene goes to people")
    verify_score: float | None = Field(
        default=None,
        ge=0.0,
        le=1.0,
        description="route agreeing frames scoring at least this to verification",
    )
    audit_rate: float = Field(
        default=0.05, ge=0.0, le=1.0, description="share of auto frames people still check"
    )
    audit_seed: str = Field(default="", max_length=64, description="changes which frames are audited")

    @model_validator(mode="after")
    def _consistent(self) -> RoutingPolicy:
        if self.min_boxes > self.max_boxes:
            raise ValueError(f"min_boxes {self.min_boxes} exceeds max_boxes {self.max_boxes}")
        if self.verify_score is not None and self.verify_score > self.accept_score:
            raise ValueError(
                f"verify_score {self.verify_score} must not exceed accept_score {self.accept_score}"
            )
        return self


class RouteDecision(BaseModel):
    """Where one frame goes, and why (stored with the frame's labels)."""

    model_config = ConfigDict(defer_build=True, extra="forbid", frozen=True)

    route: Route
    audit: bool = False  # an auto-accepted frame drawn for the audit: people adjust it anyway
    reasons: tuple[str, ...] = ()
    boxes: int = 0
    min_score: float | None = None
    unsupported_boxes: int = 0  # boxes some able model did not see

    @property
    def to_people(self) -> bool:
        return self.route != "auto" or self.audit

    @property
    def job_task(self) -> Literal["adjust", "verify"] | None:
        """The labeling task the frame goes to, or None for machine-labeled frames."""
        if self.route == "verify":
            return "verify"
        return "adjust" if self.to_people else None


def audit_draw(frame: str, seed: str = "") -> float:
    """A number in [0, 1) fixed by the frame URI and the seed (SHA-256), uniform over frames."""
    digest = hashlib.sha256(f"{seed}\x00{frame}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def is_audited(frame: str, rate: float, seed: str = "") -> bool:
    """Whether an auto-accepted frame is drawn for the audit; reruns draw the same frames."""
    return audit_draw(frame, seed) < rate


def unsupported(
    detections: Detections, able: Mapping[str, frozenset[str] | None], min_support: float
) -> list[int]:
    """Indices of boxes seen by fewer than ``min_support`` of the models able to report their class.

    ``able`` maps each model that answered for the frame to the classes it can report (None: all).
    Without support records (a single unfused model) every box counts as supported.
    """
    if detections.support is None:
        return []
    doubtful = []
    for i, (name, support) in enumerate(zip(detections.class_names, detections.support, strict=True)):
        expected = {m for m, covers in able.items() if covers is None or name in covers}
        if not expected:
            continue
        seen = {s.model for s in support} & expected
        if len(seen) < min_support * len(expected) - 1e-9:
            doubtful.append(i)
    return doubtful


def route_frame(
    detections: Detections,
    able: Mapping[str, frozenset[str] | None],
    policy: RoutingPolicy,
    missing_models: Sequence[str] = (),
) -> RouteDecision:
    """The review decision for one fused frame; see the module docstring.

    ``missing_models`` are models of the run that gave no result for this frame.
    """
    n = len(detections)
    min_score = float(detections.scores.min()) if n else None
    doubtful = unsupported(detections, able, policy.min_support)
    stats: dict[str, Any] = {"boxes": n, "min_score": min_score, "unsupported_boxes": len(doubtful)}
    if not policy.enabled:
        return RouteDecision(route="adjust", reasons=("routing disabled",), **stats)
    reasons = _doubts(n, min_score, len(doubtful), policy, missing_models)
    if not reasons:
        audit = policy.audit_rate > 0 and is_audited(detections.frame, policy.audit_rate, policy.audit_seed)
        return RouteDecision(route="auto", audit=audit, reasons=("audit",) if audit else (), **stats)
    verifiable = (
        policy.verify_score is not None
        and not doubtful
        and not missing_models
        and policy.min_boxes <= n <= policy.max_boxes
        and (min_score is None or min_score >= policy.verify_score)
    )
    return RouteDecision(route="verify" if verifiable else "adjust", reasons=tuple(reasons), **stats)


def _doubts(
    n: int, min_score: float | None, doubtful: int, policy: RoutingPolicy, missing: Sequence[str]
) -> list[str]:
    reasons = []
    if missing:
        reasons.append(f"no result from {', '.join(sorted(missing))}")
    if n < policy.min_boxes:
        reasons.append(f"{n} boxes, fewer than {policy.min_boxes}")
    if n > policy.max_boxes:
        reasons.append(f"{n} boxes, more than {policy.max_boxes}")
    if min_score is not None and min_score < policy.accept_score:
        reasons.append(f"a box scores {min_score:.2f} < {policy.accept_score}")
    if doubtful:
        reasons.append(f"{doubtful} boxes not seen by every able model")
    return reasons


def route_counts(decisions: Sequence[RouteDecision]) -> dict[str, int]:
    """Frames per route, with the audited auto frames counted apart (``audit``)."""
    counts = dict.fromkeys((*ROUTES, "audit"), 0)
    for d in decisions:
        counts[d.route] += 1
        counts["audit"] += int(d.audit)
    return counts
