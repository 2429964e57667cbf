"""Fusing several models' detections of one frame into one label set, class by class.

Three methods share one clustering step. Boxes of one class are taken best weighted score
first (score x the model's weight for the class); a box joins the cluster whose reference box
it overlaps most (IoU >= ``iou_threshold``) provided the cluster holds no box of its model yet,
else it starts a cluster. So a cluster has at most one box per model, and every fused box
records which models supported it and their scores (:class:`Support`).

- ``wbf`` (weighted box fusion, Solovyev et al. 2019): the reference box is the running fusion;
  the fused box is the average of the members weighted by weight x score, and the fused score is
  ``sum(w_m * s_m) / sum(w_m over the models that report this class)``: a box only some of the
  able models saw is scored down, a box all of them saw keeps their weighted mean score.
- ``nms``: the reference box is the best member; it is kept as it is, with its own score.
- ``best_model``: per class, only clusters holding a box of the model with the highest weight for
  that class survive, with that model's box and score (the others still count as support).

Masks ride with their box: a fused box carries the mask of its highest weighted-score member
that has one. When a frame's fused boxes carry masks but some box has no member with a mask, that
box gets a box-shaped mask, marked by no :class:`Support` having ``mask=True``.

The PyPI ``ensemble-boxes`` package implements WBF but requires numba and pandas (checked on
ensemble-boxes 1.0.9's metadata), too heavy for the Lambda layer; this module needs numpy only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from workflow.domain.boxes import box_iou
from workflow.domain.detections import Detections, Provenance, Rle, Support
from workflow.domain.vocabulary import FUSION_METHODS as FUSION_METHODS
from workflow.domain.vocabulary import FusionMethod


@dataclass(frozen=True)
class ModelOutput:
    """One model's detections of a frame (already in taxonomy names) and how much it is trusted.

    ``covers`` are the taxonomy classes the model can report (None: every class); a model that
    cannot see a class neither supports nor lowers the score of boxes of that class.
    """

    model: str
    detections: Detections
    weight: float = 1.0
    class_weights: Mapping[str, float] = field(default_factory=dict)
    covers: frozenset[str] | None = None

    def weight_for(self, class_name: str) -> float:
        return float(self.class_weights.get(class_name, self.weight))

    def reports(self, class_name: str) -> bool:
        return self.covers is None or class_name in self.covers


@dataclass
class _Member:
    model: int  # index into the outputs
    box: npt.NDArray[np.float64]
    score: float
    weighted: float
    class_id: int
    mask: Rle | None


@dataclass
class _Cluster:
    members: list[_Member]
    reference: npt.NDArray[np.float64]

    def models(self) -> set[int]:
        return {m.model for m in self.members}


@dataclass
class _Fused:
    box: npt.NDArray[np.float64]
    score: float
    class_id: int
    class_name: str
    support: tuple[Support, ...]
    mask: Rle | None


def fuse(
    outputs: Sequence[ModelOutput],
    method: FusionMethod = "wbf",
    iou_threshold: float = 0.55,
    skip_score: float = 0.0,
) -> Detections:
    """One label set from several models' detections of the same frame; see the module docstring.

    Detections scoring under ``skip_score`` take no part. Fused boxes come out class by class in
    taxonomy-id order, best score first. Raises ValueError on no outputs or frames of different sizes.
    """
    if not outputs:
        raise ValueError("nothing to fuse")
    if method not in FUSION_METHODS:
        raise ValueError(f"fusion method {method!r} is not one of {FUSION_METHODS}")
    first = outputs[0].detections
    for out in outputs[1:]:
        d = out.detections
        if (d.image_width, d.image_height) != (first.image_width, first.image_height):
            raise ValueError(
                f"{out.model} saw {d.image_width}x{d.image_height}, "
                f"{outputs[0].model} saw {first.image_width}x{first.image_height}"
            )
    if len(outputs) == 1 and outputs[0].detections.masks is None:
        fused = _alone(outputs[0], method, skip_score)
    else:
        fused = _clustered(outputs, method, iou_threshold, skip_score)
    return _detections(fused, outputs, method, iou_threshold)


def _clustered(
    outputs: Sequence[ModelOutput], method: FusionMethod, iou_threshold: float, skip_score: float
) -> list[_Fused]:
    fused: list[_Fused] = []
    for class_name in _class_order(outputs):
        members = _members(outputs, class_name, skip_score)
        clusters = _cluster(members, iou_threshold, moving_reference=method == "wbf")
        fused.extend(_resolve(clusters, outputs, class_name, method))
    return fused


def _alone(out: ModelOutput, method: FusionMethod, skip_score: float) -> list[_Fused]:
    """What the clustering gives one model's boxes without masks, computed straight: each box is
    its own cluster (a cluster takes one box per model), so it keeps its box and score (``wbf``
    divides by the model's weight what it multiplied by it, in the same float operations). The same
    order: class by class, best score first, ties in the model's order."""
    d = out.detections
    scores = [float(v) for v in d.scores]
    boxes = d.boxes.astype(np.float64)
    ids = d.class_ids.tolist()
    fused: list[_Fused] = []
    for class_name in _class_order([out]):
        w = out.weight_for(class_name)
        able = max(w if out.reports(class_name) else 0.0, 1e-12)
        rows = [i for i, n in enumerate(d.class_names) if n == class_name and scores[i] >= skip_score]
        rows.sort(key=lambda i: -(w * scores[i]))
        group = []
        for i in rows:
            box, score = boxes[i], scores[i]
            if method == "wbf":
                weighted = max(w * score, 1e-12)
                box = (box * weighted) / weighted
                score = (w * score) / able
            support = (Support(model=out.model, score=scores[i], mask=False),)
            group.append(_Fused(box, min(score, 1.0), int(ids[i]), class_name, support, None))
        fused.extend(sorted(group, key=lambda f: -f.score))
    return fused


def _class_order(outputs: Sequence[ModelOutput]) -> list[str]:
    ids: dict[str, int] = {}
    for out in outputs:
        for name, cid in zip(out.detections.class_names, out.detections.class_ids.tolist(), strict=True):
            ids.setdefault(name, int(cid))
    return sorted(ids, key=lambda n: (ids[n], n))


def _members(outputs: Sequence[ModelOutput], class_name: str, skip_score: float) -> list[_Member]:
    members = []
    for index, out in enumerate(outputs):
        d, w = out.detections, out.weight_for(class_name)
        for i, name in enumerate(d.class_names):
            score = float(d.scores[i])
            if name != class_name or score < skip_score:
                continue
            members.append(
                _Member(
                    model=index,
                    box=d.boxes[i].astype(np.float64),
                    score=score,
                    weighted=w * score,
                    class_id=int(d.class_ids[i]),
                    mask=None if d.masks is None else d.masks[i],
                )
            )
    # Stable: equal weighted scores keep the order of the models in the profile.
    return sorted(members, key=lambda m: -m.weighted)


def _cluster(members: list[_Member], iou_threshold: float, moving_reference: bool) -> list[_Cluster]:
    clusters: list[_Cluster] = []
    for member in members:
        best, best_iou = None, iou_threshold
        for cluster in clusters:
            if member.model in cluster.models():
                continue
            iou = float(
                box_iou(
                    member.box[None, :].astype(np.float32), cluster.reference[None, :].astype(np.float32)
                )[0, 0]
            )
            if iou >= best_iou:
                best, best_iou = cluster, iou
        if best is None:
            clusters.append(_Cluster([member], member.box.copy()))
            continue
        best.members.append(member)
        if moving_reference:
            best.reference = _weighted_box(best.members)
    return clusters


def _weighted_box(members: list[_Member]) -> npt.NDArray[np.float64]:
    weights = np.array([max(m.weighted, 1e-12) for m in members])
    boxes = np.stack([m.box for m in members])
    return np.asarray((boxes * weights[:, None]).sum(axis=0) / weights.sum(), np.float64)


def _best_model(outputs: Sequence[ModelOutput], class_name: str) -> int:
    able = [i for i, out in enumerate(outputs) if out.reports(class_name)]
    return max(able or range(len(outputs)), key=lambda i: (outputs[i].weight_for(class_name), -i))


def _resolve(
    clusters: list[_Cluster], outputs: Sequence[ModelOutput], class_name: str, method: FusionMethod
) -> list[_Fused]:
    able_weight = sum(out.weight_for(class_name) for out in outputs if out.reports(class_name))
    chosen = _best_model(outputs, class_name) if method == "best_model" else None
    fused = []
    for cluster in clusters:
        members = cluster.members  # best weighted score first
        if chosen is not None:
            lead = next((m for m in members if m.model == chosen), None)
            if lead is None:
                continue
        else:
            lead = members[0]
        if method == "wbf":
            box = _weighted_box(members)
            total = sum(outputs[m.model].weight_for(class_name) * m.score for m in members)
            score = total / max(able_weight, 1e-12)
        else:
            box, score = lead.box, lead.score
        with_mask = next((m for m in members if m.mask is not None), None)
        support = tuple(
            Support(model=outputs[m.model].model, score=m.score, mask=m is with_mask) for m in members
        )
        mask = None if with_mask is None else with_mask.mask
        fused.append(_Fused(box, min(score, 1.0), lead.class_id, class_name, support, mask))
    return sorted(fused, key=lambda f: -f.score)


def box_mask(box: npt.NDArray[np.float64], width: int, height: int) -> Rle:
    """A compressed COCO RLE filling ``box`` (xyxy pixels, clipped to the frame)."""
    from pycocotools import mask as mask_utils

    x1, y1, x2, y2 = (float(v) for v in box)
    x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
    y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
    grid = np.zeros((height, width), np.uint8, order="F")
    grid[int(round(y1)) : int(round(y2)), int(round(x1)) : int(round(x2))] = 1
    rle = mask_utils.encode(grid)
    counts = rle["counts"]
    return {"size": [height, width], "counts": counts.decode() if isinstance(counts, bytes) else counts}


def _detections(
    fused: list[_Fused], outputs: Sequence[ModelOutput], method: FusionMethod, iou_threshold: float
) -> Detections:
    first = outputs[0].detections
    width, height = first.image_width, first.image_height
    masks: tuple[Rle, ...] | None = None
    if any(f.mask is not None for f in fused):
        masks = tuple(f.mask if f.mask is not None else box_mask(f.box, width, height) for f in fused)
    provenance = Provenance(
        model="+".join(out.model for out in outputs),
        version="+".join(out.detections.provenance.version for out in outputs),
        settings={
            "fusion": method,
            "iou": iou_threshold,
            "models": [
                {**out.detections.provenance.to_dict(), "name": out.model, "weight": out.weight}
                for out in outputs
            ],
        },
    )
    return Detections(
        boxes=np.array([f.box for f in fused], np.float32).reshape(-1, 4),
        scores=np.array([f.score for f in fused], np.float32),
        class_ids=np.array([f.class_id for f in fused], np.int64),
        class_names=tuple(f.class_name for f in fused),
        image_width=width,
        image_height=height,
        provenance=provenance,
        frame=first.frame,
        masks=masks,
        support=tuple(f.support for f in fused),
    )
