"""The one canonical detection type of the project.

Every model output (our local ONNX runner, SageMaker JumpStart JSON, Ultralytics exports) is
parsed into :class:`Detections`; every writer (Ground Truth manifests, COCO, overlays) reads it.
Boxes are ``xyxy`` in pixels of the ORIGINAL frame, never of a resized model input.
Masks, when present, are COCO run-length encodings (``{"size": [h, w], "counts": str}``) of the
whole original frame, one per detection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
Rle = dict[str, Any]


@dataclass(frozen=True)
class Provenance:
    """Which model produced the detections, and how it was run."""

    model: str
    version: str = ""
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "version": self.version, "settings": dict(self.settings)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Provenance:
        return cls(
            model=str(data.get("model", "")),
            version=str(data.get("version", "")),
            settings=dict(data.get("settings", {})),
        )


@dataclass(frozen=True)
class Support:
    """One model's vote for a fused detection: which model saw it, with what score.

    ``mask`` is True for the member whose mask the fused detection carries.
    """

    model: str
    score: float
    mask: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "score": round(float(self.score), 5),
            **({"mask": True} if self.mask else {}),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Support:
        return cls(model=str(data["model"]), score=float(data["score"]), mask=bool(data.get("mask", False)))


@dataclass(frozen=True, eq=False)
class Detections:
    """Detections of one frame: N boxes with scores, classes and optional instance masks."""

    boxes: FloatArray  # (N, 4) xyxy, pixels of the original frame
    scores: FloatArray  # (N,)
    class_ids: IntArray  # (N,) ids in the model's own class list
    class_names: tuple[str, ...]  # (N,) name of each detection's class
    image_width: int
    image_height: int
    provenance: Provenance
    frame: str = ""  # the frame's URI (s3://... or a local path)
    masks: tuple[Rle, ...] | None = None  # (N,) COCO RLE over the whole frame, or None
    # (N,) which models supported each detection (fused label sets), or None
    support: tuple[tuple[Support, ...], ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.scores)
        boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", np.asarray(self.scores, dtype=np.float32).reshape(-1))
        object.__setattr__(self, "class_ids", np.asarray(self.class_ids, dtype=np.int64).reshape(-1))
        object.__setattr__(self, "class_names", tuple(self.class_names))
        if not (len(boxes) == n == len(self.class_ids) == len(self.class_names)):
            raise ValueError(
                f"inconsistent detection lengths: boxes={len(boxes)} scores={n} "
                f"class_ids={len(self.class_ids)} class_names={len(self.class_names)}"
            )
        if self.masks is not None and len(self.masks) != n:
            raise ValueError(f"{len(self.masks)} masks for {n} detections")
        if self.support is not None:
            if len(self.support) != n:
                raise ValueError(f"{len(self.support)} support lists for {n} detections")
            object.__setattr__(self, "support", tuple(tuple(s) for s in self.support))
        if self.image_width <= 0 or self.image_height <= 0:
            raise ValueError(f"invalid image size {self.image_width}x{self.image_height}")

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(
        cls, image_width: int, image_height: int, provenance: Provenance, frame: str = ""
    ) -> Detections:
        return cls(
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            class_ids=np.zeros((0,), np.int64),
            class_names=(),
            image_width=image_width,
            image_height=image_height,
            provenance=provenance,
            frame=frame,
        )

    def select(self, keep: npt.NDArray[np.bool_] | npt.NDArray[np.int64]) -> Detections:
        """A new Detections with only the rows chosen by a boolean mask or an index array."""
        idx = np.flatnonzero(keep) if np.asarray(keep).dtype == np.bool_ else np.asarray(keep, np.int64)
        return Detections(
            boxes=self.boxes[idx],
            scores=self.scores[idx],
            class_ids=self.class_ids[idx],
            class_names=tuple(self.class_names[i] for i in idx),
            image_width=self.image_width,
            image_height=self.image_height,
            provenance=self.provenance,
            frame=self.frame,
            masks=None if self.masks is None else tuple(self.masks[i] for i in idx),
            support=None if self.support is None else tuple(self.support[i] for i in idx),
        )

    def sent_scores(self) -> FloatArray:
        """The scores as :meth:`to_dict` writes them and :meth:`from_dict` reads them back (rounded
        to 5 places, float32): a threshold applied before sending keeps exactly what the same
        threshold applied after receiving keeps."""
        return np.array([round(s, 5) for s in self.scores.tolist()], np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; this is also the local runner's response format.

        The arrays are turned into Python numbers once (``tolist``: the same floats ``float()``
        gives element by element; 0.57 ms instead of 0.73 for NanoDet's 219 boxes on a KITTI frame)."""
        rows: list[dict[str, Any]] = []
        columns = zip(
            self.boxes.tolist(), self.scores.tolist(), self.class_ids.tolist(), self.class_names, strict=True
        )
        for i, (box, score, class_id, class_name) in enumerate(columns):
            row: dict[str, Any] = {
                "box": [round(v, 2) for v in box],
                "score": round(score, 5),
                "class_id": class_id,
                "class_name": class_name,
            }
            if self.masks is not None:
                row["mask"] = self.masks[i]
            if self.support is not None:
                row["support"] = [s.to_dict() for s in self.support[i]]
            rows.append(row)
        return {
            "frame": self.frame,
            "image_size": {"width": self.image_width, "height": self.image_height},
            "provenance": self.provenance.to_dict(),
            "detections": rows,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Detections:
        """Inverse of :meth:`to_dict` (the local runner's response format)."""
        rows = data.get("detections", [])
        size = data["image_size"]
        has_masks = bool(rows) and all("mask" in r for r in rows)
        has_support = bool(rows) and all("support" in r for r in rows)
        return cls(
            boxes=np.array([r["box"] for r in rows], np.float32).reshape(-1, 4),
            scores=np.array([r["score"] for r in rows], np.float32),
            class_ids=np.array([r["class_id"] for r in rows], np.int64),
            class_names=tuple(str(r["class_name"]) for r in rows),
            image_width=int(size["width"]),
            image_height=int(size["height"]),
            provenance=Provenance.from_dict(data.get("provenance", {})),
            frame=str(data.get("frame", "")),
            masks=tuple(r["mask"] for r in rows) if has_masks else None,
            support=tuple(tuple(Support.from_dict(s) for s in r["support"]) for r in rows)
            if has_support
            else None,
        )
