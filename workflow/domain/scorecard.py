"""Reviewer feedback: what people did to the machine pre-labels, per class and per model.

Each pre-label is matched to at most one reviewed box of the SAME class and counted as
``kept`` (IoU >= 0.9, or unchanged), ``moved`` (0.5 <= IoU < 0.9) or ``deleted`` (no match);
reviewed boxes no pre-label matched are ``added``. A deleted pre-label that sits on an added box
of another class (IoU >= 0.5) is also counted as ``relabeled`` (it stays in deleted and added).

Matching is greedy, not optimal: same-class pairs with IoU >= 0.5 are taken best IoU first, each
box at most once. (Hungarian assignment would need scipy; greedy only differs from it when two
boxes of one class compete for the same partner, which review edits rarely produce.)

A pre-label's models come from its metadata object's ``models`` (or ``support``) list when the
fusion step wrote one, else from the frame's model (its provenance), else ``unknown``. Per model,
kept/moved/deleted/relabeled count the pre-labels the model supported, and ``added`` counts the
boxes people drew, matching no pre-label, on the model's frames (frames where it supported a
pre-label; a frame without pre-labels belongs to its frame model).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from workflow.domain.errors import AutolabelError
from workflow.domain.groundtruth import ReviewedBox, ReviewedFrame, parse_output_line

if TYPE_CHECKING:
    import numpy as np

    from workflow.domain.detections import Detections

KEEP_IOU = 0.9
MATCH_IOU = 0.5
UNKNOWN_MODEL = "unknown"
Box = tuple[float, float, float, float]


class ScorecardError(AutolabelError):
    """The review output and the pre-labels cannot be compared as given."""


@dataclass(frozen=True)
class PreLabel:
    """One machine box shown to reviewers: class, xyxy pixels and the models that proposed it."""

    class_name: str
    box: Box
    models: tuple[str, ...] = (UNKNOWN_MODEL,)


@dataclass(frozen=True)
class Match:
    """A pre-label (index) paired with a reviewed box (index) and their IoU."""

    prelabel: int
    reviewed: int
    iou: float


@dataclass(frozen=True)
class FrameOutcome:
    """What review did to one frame's pre-labels."""

    kept: tuple[Match, ...] = ()
    moved: tuple[Match, ...] = ()
    deleted: tuple[int, ...] = ()  # pre-label indices
    added: tuple[int, ...] = ()  # reviewed-box indices
    relabeled: tuple[Match, ...] = ()  # deleted pre-label -> added box of another class


def greedy_matches(iou: np.ndarray, allowed: np.ndarray, min_iou: float) -> list[Match]:
    """Pairs (pre-label, reviewed box) where ``allowed`` and IoU >= ``min_iou``, best IoU first (ties:
    lower indices first), each box at most once; the one matcher of the scorecard and the effort model."""
    import numpy as np

    pairs = [(float(iou[i, j]), int(i), int(j)) for i, j in np.argwhere(allowed & (iou >= min_iou))]
    pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
    used_pre: set[int] = set()
    used_rev: set[int] = set()
    matches = []
    for value, i, j in pairs:
        if i not in used_pre and j not in used_rev:
            used_pre.add(i)
            used_rev.add(j)
            matches.append(Match(i, j, value))
    return matches


def compare_frame(
    prelabels: Sequence[PreLabel],
    reviewed: Sequence[ReviewedBox],
    keep_iou: float = KEEP_IOU,
    match_iou: float = MATCH_IOU,
) -> FrameOutcome:
    """Match one frame's pre-labels to its reviewed boxes (greedy by IoU within class)."""
    import numpy as np

    from workflow.domain.boxes import box_iou

    pre = np.array([p.box for p in prelabels], np.float32).reshape(-1, 4)
    rev = np.array([b.xyxy for b in reviewed], np.float32).reshape(-1, 4)
    iou = box_iou(pre, rev).astype(np.float64)
    iou[np.all(np.abs(pre[:, None, :] - rev[None, :, :]) <= 1e-3, axis=2)] = 1.0  # unchanged, even if empty
    pre_names = np.array([p.class_name for p in prelabels], dtype=object)
    rev_names = np.array([b.class_name for b in reviewed], dtype=object)
    same = pre_names[:, None] == rev_names[None, :]
    matches = greedy_matches(iou, same, match_iou)
    deleted = sorted(set(range(len(prelabels))) - {m.prelabel for m in matches})
    added = sorted(set(range(len(reviewed))) - {m.reviewed for m in matches})
    leftover = np.zeros_like(same)
    leftover[np.ix_(deleted, added)] = True
    relabeled = greedy_matches(iou, leftover & ~same, match_iou)
    return FrameOutcome(
        kept=tuple(m for m in matches if m.iou >= keep_iou),
        moved=tuple(m for m in matches if m.iou < keep_iou),
        deleted=tuple(deleted),
        added=tuple(added),
        relabeled=tuple(relabeled),
    )


@dataclass
class Tally:
    """Counts for one class, one model or everything."""

    kept: int = 0
    moved: int = 0
    deleted: int = 0
    added: int = 0
    relabeled: int = 0
    moved_iou_sum: float = 0.0
    matched_iou_sum: float = 0.0

    @property
    def prelabels(self) -> int:
        return self.kept + self.moved + self.deleted

    @property
    def moved_mean_iou(self) -> float | None:
        """Mean IoU between a moved pre-label (before) and the reviewed box (after)."""
        return self.moved_iou_sum / self.moved if self.moved else None

    @property
    def matched_mean_iou(self) -> float | None:
        """Mean IoU before/after over all kept and moved pre-labels."""
        matched = self.kept + self.moved
        return self.matched_iou_sum / matched if matched else None

    @property
    def acceptance(self) -> float | None:
        """Share of pre-labels people kept or only moved."""
        return (self.kept + self.moved) / self.prelabels if self.prelabels else None

    def to_dict(self) -> dict[str, Any]:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 4)

        return {
            "prelabels": self.prelabels,
            "kept": self.kept,
            "moved": self.moved,
            "deleted": self.deleted,
            "added": self.added,
            "relabeled": self.relabeled,
            "moved_mean_iou": r(self.moved_mean_iou),
            "matched_mean_iou": r(self.matched_mean_iou),
            "acceptance": r(self.acceptance),
        }


@dataclass
class Scorecard:
    """Review feedback over many frames: totals, per class and per model."""

    frames: int = 0
    failed_frames: list[str] = field(default_factory=list)
    total: Tally = field(default_factory=Tally)
    by_class: dict[str, Tally] = field(default_factory=dict)
    by_model: dict[str, Tally] = field(default_factory=dict)
    relabels: Counter[tuple[str, str]] = field(default_factory=Counter)

    def _tallies(self, class_name: str, models: Iterable[str]) -> list[Tally]:
        """The rows one box counts in: the total, its class and each of its models."""
        by_model = [self.by_model.setdefault(m, Tally()) for m in models]
        return [self.total, self.by_class.setdefault(class_name, Tally()), *by_model]

    def add_frame(
        self, prelabels: Sequence[PreLabel], reviewed: Sequence[ReviewedBox], frame_models: Iterable[str]
    ) -> FrameOutcome:
        """Compare one reviewed frame with its pre-labels and count the outcome."""
        outcome = compare_frame(prelabels, reviewed)
        self.frames += 1
        kept = {m.prelabel for m in outcome.kept}
        for m in outcome.kept + outcome.moved:
            p = prelabels[m.prelabel]
            for t in self._tallies(p.class_name, p.models):
                if m.prelabel in kept:
                    t.kept += 1
                else:
                    t.moved += 1
                    t.moved_iou_sum += m.iou
                t.matched_iou_sum += m.iou
        for i in outcome.deleted:
            for t in self._tallies(prelabels[i].class_name, prelabels[i].models):
                t.deleted += 1
        models = sorted(set(frame_models))
        for j in outcome.added:
            for t in self._tallies(reviewed[j].class_name, models):
                t.added += 1
        for m in outcome.relabeled:
            p = prelabels[m.prelabel]
            self.relabels[(p.class_name, reviewed[m.reviewed].class_name)] += 1
            for t in self._tallies(p.class_name, p.models):
                t.relabeled += 1
        return outcome

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``--json``)."""
        return {
            "frames": self.frames,
            "failed_frames": list(self.failed_frames),
            "total": self.total.to_dict(),
            "by_class": {k: v.to_dict() for k, v in sorted(self.by_class.items())},
            "by_model": {k: v.to_dict() for k, v in sorted(self.by_model.items())},
            "relabels": [{"from": a, "to": b, "count": n} for (a, b), n in sorted(self.relabels.items())],
        }


def _box_models(obj: Mapping[str, Any]) -> tuple[str, ...]:
    """Models of one metadata object: ``models: [name, ...]`` or ``support: [name | {model: name}, ...]``."""
    raw = obj.get("models", obj.get("support"))
    if not isinstance(raw, list):
        return ()
    names = [str(v.get("model", "")) if isinstance(v, Mapping) else str(v) for v in raw]
    return tuple(dict.fromkeys(n for n in names if n))


def prelabels_from_line(
    line: Mapping[str, Any], attribute: str, frame_model: str = UNKNOWN_MODEL
) -> list[PreLabel]:
    """The pre-labels a manifest line carries under ``attribute`` (as written before review)."""
    frame = parse_output_line(dict(line), attribute)
    if frame.failed:
        raise ScorecardError(f"{frame.source_ref}: pre-label {attribute!r} failed ({frame.failure_reason})")
    objects = line[f"{attribute}-metadata"].get("objects") or [{} for _ in frame.boxes]
    return [
        PreLabel(b.class_name, b.xyxy, _box_models(obj) or (frame_model,))
        for b, obj in zip(frame.boxes, objects, strict=True)
    ]


def prelabels_from_detections(
    detections: Detections, models_per_box: Sequence[Sequence[str]] | None = None
) -> list[PreLabel]:
    """Pre-labels from machine detections.

    A box's models: ``models_per_box[i]`` if given, else the models of ``detections.support[i]``
    (fused label sets), else the provenance's model.
    """
    n = len(detections)
    if models_per_box is not None and len(models_per_box) != n:
        raise ScorecardError(f"{detections.frame}: {len(models_per_box)} model lists for {n} boxes")
    frame_model = detections.provenance.model or UNKNOWN_MODEL
    supports = detections.support or ((),) * n
    listed = models_per_box or [tuple(dict.fromkeys(s.model for s in box)) for box in supports]
    return [
        PreLabel(detections.class_names[i], (x1, y1, x2, y2), tuple(listed[i]) or (frame_model,))
        for i, (x1, y1, x2, y2) in enumerate(detections.boxes.tolist())
    ]


def build_scorecard(frames: Iterable[tuple[ReviewedFrame, Sequence[PreLabel], Sequence[str]]]) -> Scorecard:
    """A scorecard from (reviewed frame, its pre-labels, the frame's models); failed frames are listed."""
    card = Scorecard()
    for reviewed, prelabels, frame_models in frames:
        if reviewed.failed:
            card.failed_frames.append(reviewed.source_ref)
            continue
        models = {m for p in prelabels for m in p.models} or set(frame_models) or {UNKNOWN_MODEL}
        card.add_frame(prelabels, reviewed.boxes, models)
    return card


def scorecard_from_manifest(
    lines: Iterable[Mapping[str, Any]],
    label_attribute: str = "reviewed",
    prelabel_attribute: str = "prelabel",
    frame_models: Mapping[str, str] | None = None,
    default_model: str = UNKNOWN_MODEL,
) -> Scorecard:
    """Scorecard of a Ground Truth output manifest whose lines still carry the pre-label attribute.

    ``frame_models`` (source-ref -> model) names the model of frames whose pre-label objects carry
    no ``models`` list; ``default_model`` covers the rest.
    """
    frame_models = frame_models or {}

    def frames() -> Iterable[tuple[ReviewedFrame, list[PreLabel], list[str]]]:
        for line in lines:
            reviewed = parse_output_line(dict(line), label_attribute)
            model = frame_models.get(reviewed.source_ref, default_model)
            yield reviewed, prelabels_from_line(line, prelabel_attribute, model), [model]

    return build_scorecard(frames())


def scorecard_from_detections(
    lines: Iterable[Mapping[str, Any]],
    prelabels: Mapping[str, Detections],
    label_attribute: str = "reviewed",
    models_per_box: Mapping[str, Sequence[Sequence[str]]] | None = None,
) -> Scorecard:
    """Scorecard of a Ground Truth output manifest against the machine detections of each frame.

    ``prelabels`` maps each reviewed ``source-ref`` to the detections shown to reviewers (taxonomy
    names); a reviewed frame missing from it raises :class:`ScorecardError`.
    """
    supports = models_per_box or {}

    def frames() -> Iterable[tuple[ReviewedFrame, list[PreLabel], list[str]]]:
        for line in lines:
            reviewed = parse_output_line(dict(line), label_attribute)
            dets = prelabels.get(reviewed.source_ref)
            if dets is None:
                raise ScorecardError(f"{reviewed.source_ref}: no pre-labels for this reviewed frame")
            model = dets.provenance.model or UNKNOWN_MODEL
            yield reviewed, prelabels_from_detections(dets, supports.get(reviewed.source_ref)), [model]

    return build_scorecard(frames())


def _cell(value: float | None, percent: bool = False) -> str:
    if value is None:
        return "-"
    return f"{100 * value:.1f}%" if percent else f"{value:.3f}"


def format_scorecard(card: Scorecard) -> str:
    """A plain-text table: one row per class and per model, then the totals."""
    header = ("", "pre-labels", "kept", "moved", "deleted", "added", "relabeled", "IoU moved", "accepted")
    rows: list[tuple[str, ...]] = [header]

    def row(name: str, t: Tally) -> tuple[str, ...]:
        counts = (t.prelabels, t.kept, t.moved, t.deleted, t.added, t.relabeled)
        return (name, *map(str, counts), _cell(t.moved_mean_iou), _cell(t.acceptance, percent=True))

    rows += [row(f"class {k}", v) for k, v in sorted(card.by_class.items())]
    rows += [row(f"model {k}", v) for k, v in sorted(card.by_model.items())]
    rows.append(row("total", card.total))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    text = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    text.insert(0, f"{card.frames} frames reviewed, {len(card.failed_frames)} failed")
    text += [f"relabeled {a} -> {b}: {n}" for (a, b), n in sorted(card.relabels.items())]
    return "\n".join(text)


_TALLY_FIELDS = ("kept", "moved", "deleted", "added", "relabeled", "moved_iou_sum", "matched_iou_sum")


def _merge_tally(into: Tally, other: Tally) -> None:
    for name in _TALLY_FIELDS:
        setattr(into, name, getattr(into, name) + getattr(other, name))


def scorecard_state(card: Scorecard) -> dict[str, Any]:
    """The scorecard's raw counts (sums, not means), so partial scorecards add up exactly."""

    def tally(t: Tally) -> dict[str, float]:
        return {name: getattr(t, name) for name in _TALLY_FIELDS}

    return {
        "frames": card.frames,
        "failed_frames": list(card.failed_frames),
        "total": tally(card.total),
        "by_class": {k: tally(v) for k, v in card.by_class.items()},
        "by_model": {k: tally(v) for k, v in card.by_model.items()},
        "relabels": [[a, b, n] for (a, b), n in card.relabels.items()],
    }


def scorecard_from_state(state: Mapping[str, Any]) -> Scorecard:
    """Inverse of :func:`scorecard_state`."""
    return Scorecard(
        frames=int(state["frames"]),
        failed_frames=list(state.get("failed_frames", [])),
        total=Tally(**state["total"]),
        by_class={k: Tally(**v) for k, v in state.get("by_class", {}).items()},
        by_model={k: Tally(**v) for k, v in state.get("by_model", {}).items()},
        relabels=Counter({(a, b): int(n) for a, b, n in state.get("relabels", [])}),
    )


def merge_scorecards(cards: Iterable[Scorecard]) -> Scorecard:
    """One scorecard over the frames of several (e.g. one per dataset shard)."""
    total = Scorecard()
    for card in cards:
        total.frames += card.frames
        total.failed_frames.extend(card.failed_frames)
        _merge_tally(total.total, card.total)
        for name, t in card.by_class.items():
            _merge_tally(total.by_class.setdefault(name, Tally()), t)
        for name, t in card.by_model.items():
            _merge_tally(total.by_model.setdefault(name, Tally()), t)
        total.relabels.update(card.relabels)
    return total
