"""The cost model's counts against what local mode's Step Functions really runs."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from workflow.cost import RunShape, lambda_invocations, state_entries
from workflow.domain.detections import Detections, Provenance
from workflow.local.cloud import LocalCloud

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ENDPOINT = "autolabel-nanodet-coco"  # template.yaml's EndpointName default
CHILD_FUNCTIONS = ("InvokeModelsFunction", "MergeBatchFunction", "RecordBatchFailureFunction")


class NothingFound:
    """A model that sees no object: the counts do not depend on what a model finds."""

    def predict_bytes(self, data: bytes, frame: str) -> Detections:
        return Detections.empty(64, 48, Provenance(model="nothing-found"), frame)


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), (90, 120, 150)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("review", ["human", "skip"])
def test_local_run_enters_the_states_and_invokes_the_functions_the_cost_model_counts(review):
    # Given 5 frames in batches of 2 (the last batch short), one model, reviewed or not
    shape = RunShape(frames=5, batch_size=2, review=review)
    definition = json.loads((ROOT / "statemachine" / "autolabel.asl.json").read_text(encoding="utf-8"))
    with LocalCloud({ENDPOINT: NothingFound}) as cloud:
        cloud.s3.create_bucket(Bucket="drive-logs")
        for i in range(shape.frames):
            cloud.s3.put_object(Bucket="drive-logs", Key=f"day1/{i:03d}.png", Body=png())
        # When the real state machine runs it in local mode
        arn = cloud.start_run(
            {
                "sources": ["s3://drive-logs/day1/"],
                "batch_size": shape.batch_size,
                "review": review,
                "models": [{"name": "nothing-found", "endpoint_name": ENDPOINT}],
            }
        )
        described = cloud.wait(arn, timeout=120)
        parent = cloud.state_transitions(arn)
        calls = dict(cloud.invocations)
    # Then the parent's states plus each batch's task states are the transitions the model counts
    assert described["status"] == "SUCCEEDED"
    child = sum(calls.get(f, 0) for f in CHILD_FUNCTIONS)
    assert parent + child == sum(state_entries(definition, shape).values())
    # And every function ran as often as the model says (callbacks included)
    expected = {f: n for f, n in lambda_invocations(definition, shape).items() if n}
    assert calls == expected
