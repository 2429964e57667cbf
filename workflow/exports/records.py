"""One exported frame: its final boxes (with provenance), its machine pre-labels, its route.

Built from one shard's published files: the dataset COCO (final labels: people's boxes for frames
people adjusted, the pre-labels otherwise), the pre-label COCO (every machine box with its score
and the models that supported it) and the shard's report lines (route, who labeled the frame).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Category:
    id: int  # the run's COCO category id (taxonomy position + 1)
    name: str
    color: str = "#ffa500"


@dataclass(frozen=True)
class ExportBox:
    category: str
    xywh: tuple[float, float, float, float]  # pixels, COCO order
    score: float | None = None  # None: drawn or kept by a person (no machine score)
    support: tuple[tuple[str, float], ...] = ()  # (model, score) of the models that supported it
    rle: Mapping[str, Any] | None = None  # COCO compressed RLE (``counts`` a string)


@dataclass(frozen=True)
class ExportFrame:
    image_id: int  # 1-based, in publication order across shards
    uri: str  # the frame as the workflow read it (s3://...)
    width: int
    height: int
    boxes: tuple[ExportBox, ...]
    prelabels: tuple[ExportBox, ...]
    route: str = ""
    labeled_by: str = ""
    audit: bool = False

    @property
    def human_reviewed(self) -> bool:
        """A person looked at (adjusted or verified) this frame."""
        return self.labeled_by.startswith("people")

    @property
    def source(self) -> str:
        return "manual" if self.human_reviewed else "auto"

    def provenance(self) -> dict[str, Any]:
        return {"route": self.route, "labeled_by": self.labeled_by, "human_reviewed": self.human_reviewed}


@dataclass
class ShardFiles:
    """One shard's published documents, as read."""

    coco: Mapping[str, Any]
    prelabels: Mapping[str, Any]
    report: Sequence[Mapping[str, Any]] = field(default_factory=list)


def _box(ann: Mapping[str, Any], names: Mapping[int, str]) -> ExportBox:
    x, y, w, h = (float(v) for v in ann["bbox"])
    seg = ann.get("segmentation")
    support = tuple((str(s["model"]), float(s["score"])) for s in ann.get("support") or [])
    return ExportBox(
        category=names[int(ann["category_id"])],
        xywh=(x, y, w, h),
        score=None if ann.get("score") is None else float(ann["score"]),
        support=support,
        rle=seg if isinstance(seg, dict) and "counts" in seg else None,
    )


def _iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _with_provenance(box: ExportBox, prelabels: Sequence[ExportBox]) -> ExportBox:
    """A final box without a score (kept by people) takes the support of the pre-label it matches
    (same class, IoU >= 0.9): which models proposed it. A box people drew matches none."""
    if box.score is not None or box.support:
        return box
    same = [(p, _iou(box.xywh, p.xywh)) for p in prelabels if p.category == box.category]
    best = max(same, key=lambda t: t[1], default=None)
    if best is None or best[1] < 0.9:
        return box
    return ExportBox(box.category, box.xywh, None, best[0].support, box.rle or best[0].rle)


def shard_frames(files: ShardFiles, first_id: int) -> Iterator[ExportFrame]:
    """The frames of one shard (those in its dataset COCO: labeled ones), ids from ``first_id``."""
    names = {int(c["id"]): str(c["name"]) for c in files.coco.get("categories", [])}
    pre_ids = {int(i["id"]): str(i["file_name"]) for i in files.prelabels.get("images", [])}
    pre: dict[str, list[ExportBox]] = {}
    for ann in files.prelabels.get("annotations", []):
        pre.setdefault(pre_ids[int(ann["image_id"])], []).append(_box(ann, names))
    final: dict[int, list[ExportBox]] = {}
    for ann in files.coco.get("annotations", []):
        final.setdefault(int(ann["image_id"]), []).append(_box(ann, names))
    report = {str(r["frame"]): r for r in files.report if r.get("status") == "labeled"}
    for n, image in enumerate(files.coco.get("images", [])):
        uri = str(image["file_name"])
        prelabels = tuple(pre.get(uri, []))
        line = report.get(uri, {})
        yield ExportFrame(
            image_id=first_id + n,
            uri=uri,
            width=int(image["width"]),
            height=int(image["height"]),
            boxes=tuple(_with_provenance(b, prelabels) for b in final.get(int(image["id"]), [])),
            prelabels=prelabels,
            route=str(line.get("route", "")),
            labeled_by=str(line.get("labeled_by", "")),
            audit=bool(line.get("audit", False)),
        )


def categories_of(coco: Mapping[str, Any], colors: Mapping[str, str]) -> list[Category]:
    return [
        Category(int(c["id"]), str(c["name"]), colors.get(str(c["name"]), "#ffa500"))
        for c in coco.get("categories", [])
    ]


# --- masks ------------------------------------------------------------------------------------
def rle_mask(rle: Mapping[str, Any]) -> npt.NDArray[np.bool_]:
    from pycocotools import mask as mask_utils

    counts = rle["counts"]
    encoded = {"size": list(rle["size"]), "counts": counts.encode() if isinstance(counts, str) else counts}
    return np.asarray(mask_utils.decode(encoded), dtype=bool)


def mask_outline(mask: npt.NDArray[np.bool_], max_points: int = 64) -> list[tuple[float, float]]:
    """A polygon around a mask: per row, the left edge going down then the right edge coming up.

    Exact for shapes with one run of pixels per row (most vehicle and person masks); a shape with
    holes or several runs in a row is outlined by its row-wise extent. At most ``max_points``
    vertices (rows are sampled evenly). Empty list for an empty mask.
    """
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return []
    if rows.size * 2 > max_points:
        rows = rows[np.linspace(0, rows.size - 1, max_points // 2).round().astype(int)]
    left, right = [], []
    for y in rows:
        xs = np.flatnonzero(mask[y])
        left.append((float(xs[0]), float(y)))
        right.append((float(xs[-1] + 1), float(y)))
    bottom = float(rows[-1] + 1)
    left.append((left[-1][0], bottom))
    right.append((right[-1][0], bottom))
    return left + right[::-1]
