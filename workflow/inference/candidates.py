"""Raw candidate detections of one model run, before merging and NMS."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Candidates:
    """M candidate boxes (xyxy) with their best class, score and optional mask coefficients."""

    boxes: FloatArray  # (M, 4)
    scores: FloatArray  # (M,)
    class_ids: IntArray  # (M,)
    coeffs: FloatArray | None = None  # (M, K) mask coefficients (YOLO-seg), else None

    def __len__(self) -> int:
        return len(self.scores)

    def take(self, idx: IntArray) -> Candidates:
        """The candidates at the given indices."""
        return Candidates(
            self.boxes[idx],
            self.scores[idx],
            self.class_ids[idx],
            None if self.coeffs is None else self.coeffs[idx],
        )


def best_class(class_scores: FloatArray, thresholds: FloatArray) -> tuple[IntArray, IntArray, FloatArray]:
    """Per row, the highest-scoring class among those that pass their own threshold.

    ``class_scores`` is (N, C); ``thresholds`` is (C,) with ``inf`` for classes filtered out.
    Returns the indices of the rows that have such a class, that class and its score.
    """
    # Most rows are background: drop them cheaply before the per-class comparison.
    rough = np.flatnonzero(class_scores.max(axis=1) >= thresholds.min())
    subset = class_scores[rough]
    passing = np.where(subset >= thresholds[None, :], subset, -1.0)
    cls = np.argmax(passing, axis=1)
    score = np.take_along_axis(passing, cls[:, None], axis=1)[:, 0]
    keep = np.flatnonzero(score >= 0.0)
    return rough[keep].astype(np.int64), cls[keep].astype(np.int64), score[keep].astype(np.float32)
