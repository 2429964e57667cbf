"""The endpoint leaves out the candidates under the profile's lowest threshold and counts them: what
MergeBatch keeps and the dropped counts it reports are the same as when it got every candidate."""

from __future__ import annotations

import numpy as np
import pytest

from workflow.domain.detections import Detections, Provenance
from workflow.domain.parsers import from_local
from workflow.domain.profile import LabelingProfile, default_profile
from workflow.serving.handler import BatchRequest, input_fn
from workflow.serving.protocol import (
    RequestFailed,
    batch_content_type,
    media_parameters,
    predict_one,
    requested_min_score,
)
from workflow.steps.merge import model_output
from workflow.steps.prepare import min_scores

MODEL = "nanodet-coco"


def candidates(n: int = 300, seed: int = 7) -> Detections:
    """NanoDet-like candidates: COCO classes mapped and not, scores from 0.05, some a hair under
    and over the thresholds (0.25, 0.3) so that rounding to 5 places decides them."""
    rng = np.random.default_rng(seed)
    names = ("car", "person", "bench", "truck", "traffic light", "stop sign", "dog")
    scores = rng.uniform(0.05, 0.95, n).astype(np.float32)
    scores[:8] = np.array(
        [0.249996, 0.250004, 0.2499949, 0.25, 0.299996, 0.3000049, 0.3, 0.0500001], np.float32
    )
    xy = rng.uniform(0, 700, (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 90, (n, 2))], axis=1)
    picked = rng.integers(0, len(names), n)
    return Detections(
        boxes=boxes,
        scores=scores,
        class_ids=picked,
        class_names=tuple(names[i] for i in picked),
        image_width=800,
        image_height=450,
        provenance=Provenance(MODEL, "1"),
        frame="s3://logs/a/f.jpg",
    )


class Canned:
    def __init__(self, dets: Detections) -> None:
        self.dets = dets

    def predict_bytes(self, data: bytes, frame: str) -> Detections:
        return self.dets


def profile_with(thresholds: dict[str, float]) -> LabelingProfile:
    data = default_profile().to_dict()
    data["models"][0]["thresholds"] = thresholds
    return LabelingProfile.model_validate(data)


@pytest.mark.parametrize("thresholds", [{}, {"truck": 0.3, "traffic light": 0.15}, {"car": 0.6}])
def test_cut_at_the_endpoint_keeps_and_counts_what_merge_batch_does(thresholds: dict[str, float]) -> None:
    # Given a profile (per-class thresholds over its min_score) and ~300 candidates of one frame
    profile = profile_with(thresholds)
    dets = candidates()
    lowest = min_scores(profile, [m.endpoint() for m in profile.models])[MODEL]
    assert lowest == min([0.25, *thresholds.values()])
    # When the endpoint answers every candidate (an old container), or only those from min-score
    full = from_local(predict_one(Canned(dets), b"", dets.frame))
    answer = predict_one(Canned(dets), b"", dets.frame, lowest)
    cut = from_local(answer)
    kept_all, dropped_all = model_output(full, MODEL, profile)
    kept_cut, dropped_cut = model_output(cut, MODEL, profile, answer["below_min_score"])
    # Then the answer is much smaller, and MergeBatch keeps the same boxes and reports the same counts
    assert len(cut) < len(full) and sum(answer["below_min_score"].values()) == len(full) - len(cut)
    assert kept_cut.detections.to_dict() == kept_all.detections.to_dict()
    assert dropped_cut == dropped_all
    assert sum(dropped_all.values()) + len(kept_all.detections) == len(dets)
    assert any(k.startswith("unmapped:") for k in dropped_all) and any(
        k.startswith("below threshold:") for k in dropped_all
    )


def test_the_cut_decides_each_score_as_it_will_be_read_back() -> None:
    # Given candidates whose scores round to the threshold at 5 places (0.249996 is sent as 0.25)
    dets = candidates()
    answer = predict_one(Canned(dets), b"", dets.frame, 0.25)
    # Then a candidate is answered exactly when the score it is sent with passes min-score
    expected = [np.float32(round(s, 5)) >= np.float32(0.25) for s in dets.scores.tolist()]
    assert len(answer["detections"]) == sum(expected)
    assert [d["score"] for d in answer["detections"]] == [
        round(s, 5) for s, keep in zip(dets.scores.tolist(), expected, strict=True) if keep
    ]
    assert expected[:8] == [True, True, False, True, True, True, True, False]


def test_no_min_score_answers_every_candidate_without_counts() -> None:
    dets = candidates(50)
    answer = predict_one(Canned(dets), b"", dets.frame)
    assert len(answer["detections"]) == 50 and "below_min_score" not in answer
    # A min-score under every candidate still says that nothing was left out
    assert predict_one(Canned(dets), b"", dets.frame, 0.01)["below_min_score"] == {}


def test_min_score_rides_on_the_content_type_and_is_checked() -> None:
    assert batch_content_type(0.0) == "application/json"
    assert batch_content_type(0.25) == "application/json; min-score=0.25"
    assert media_parameters('application/json; Min-Score="0.3"; x=1') == {"min-score": "0.3", "x": "1"}
    assert requested_min_score("application/json; min-score=0.3") == 0.3
    assert requested_min_score("application/json") == 0.0
    request = input_fn(b'["s3://logs/a/f.jpg"]', batch_content_type(0.25))
    assert request == BatchRequest(["s3://logs/a/f.jpg"], 0.25)
    for bad in ("abc", "1.5", "-0.1", "nan"):
        with pytest.raises(RequestFailed, match="min-score"):
            input_fn(b'["s3://logs/a/f.jpg"]', f"application/json; min-score={bad}")
