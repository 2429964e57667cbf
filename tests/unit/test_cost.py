"""The cost model: usage counted from the real ASL and template, priced from the dated table."""

from __future__ import annotations

import io
import json
import math
import re
from contextlib import redirect_stdout
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from workflow.cli.main import main
from workflow.cost import (
    ENDPOINT_IDLE_HOURS_PER_RUN,
    PRICES,
    RunShape,
    estimate,
    function_settings,
    lambda_invocations,
    state_entries,
)
from workflow.domain.prices import task_price
from workflow.local.template import Template

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def definition() -> dict[str, Any]:
    return json.loads((ROOT / "statemachine" / "autolabel.asl.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def settings() -> dict[str, tuple[int, int]]:
    return function_settings(Template(ROOT / "template.yaml").data)


def item(result: Any, service: str) -> Any:
    (found,) = [i for i in result.items if i.service.startswith(service)]
    return found


def test_transitions_of_40_frames_match_the_local_benchmark(definition):
    # Given the bench's run: 40 frames in batches of 8, one model, human review (make bench measured 18)
    shape = RunShape(frames=40, batch_size=8)
    # When the ASL is walked
    entries = state_entries(definition, shape)
    # Then the 8 parent states are entered once and each batch's two states once per batch
    assert sum(entries.values()) == 18
    assert entries["InvokeModels"] == entries["MergeBatch"] == 5
    assert entries["RecordBatchFailure"] == 0
    assert entries["PrepareRun"] == entries["Publish"] == entries["StartReview"] == 1


def test_skipping_review_leaves_out_the_review_states(definition):
    # Given 1,000 frames without review
    shape = RunShape(frames=1000, review="skip")
    # When the ASL is walked
    entries = state_entries(definition, shape)
    # Then NeedsReview goes straight to Publish: 125 batches x 2 + 6 parent states
    assert "ReviewJobs" not in entries and "StartReview" not in entries
    assert sum(entries.values()) == 125 * 2 + 6


def test_a_million_frames_need_one_labeling_job_per_100000(definition):
    # Given a million frames with human review
    shape = RunShape(frames=1_000_000)
    # When the invocations are counted
    calls = lambda_invocations(definition, shape)
    # Then ten jobs start and ten callbacks resume them; every batch is invoked, called back and merged
    assert calls["StartReviewFunction"] == calls["LabelingCallbackFunction"] == 10
    assert calls["InvokeModelsFunction"] == calls["InferenceCallbackFunction"] == calls["MergeBatchFunction"]
    assert calls["InvokeModelsFunction"] == 125_000


def test_per_frame_requests_multiply_the_notifications(definition, settings):
    # Given the same run with one request per batch, then one request per frame (JumpStart)
    batched = estimate(definition, settings, RunShape(frames=800, review="skip"))
    per_frame = estimate(definition, settings, RunShape(frames=800, review="skip", batch_requests=False))
    # When the SNS line items are compared
    # Then there is one notification per batch, then one per frame
    assert item(batched, "SNS").usage == "100 notifications"
    assert item(per_frame, "SNS").usage == "800 notifications"
    assert per_frame.lambda_invocations["InferenceCallbackFunction"] == 800


def test_lambda_cost_uses_the_template_memory_sizes(definition, settings):
    # Given the template's settings, and the same with PublishFunction at twice its memory
    shape = RunShape(frames=1000, review="skip")
    memory, timeout = settings["PublishFunction"]
    doubled = {**settings, "PublishFunction": (memory * 2, timeout)}
    # When both are estimated
    base = item(estimate(definition, settings, shape), "Lambda").usd
    more = item(estimate(definition, doubled, shape), "Lambda").usd
    # Then the difference is Publish's one invocation (1 s + 1 ms per frame) at the extra memory
    publish_seconds = (1000 + 1.0 * 1000) / 1000
    assert more - base == pytest.approx(publish_seconds * memory / 1024 * PRICES.lambda_gb_second_arm)
    assert settings["BuildManifestFunction"][0] == 2048 and settings["MergeBatchFunction"][0] == 1024


def test_endpoint_hours_follow_throughput_and_models(definition, settings):
    # Given 36,000 frames at 10 frames/s, one model then two
    one = estimate(definition, settings, RunShape(frames=36_000, throughput_fps=10))
    two = estimate(definition, settings, RunShape(frames=36_000, throughput_fps=10, models=2))
    # When the endpoint line is read
    hours = 1 + ENDPOINT_IDLE_HOURS_PER_RUN
    # Then one hour of inference plus the start/idle tail, per model, at the table's hourly price
    assert item(one, "SageMaker").usd == pytest.approx(hours * PRICES.instance_hour["ml.c5.xlarge"])
    assert item(two, "SageMaker").usd == pytest.approx(2 * hours * PRICES.instance_hour["ml.c5.xlarge"])


def test_ground_truth_fee_is_tiered_per_labeled_object(definition, settings):
    # Given 60,000 frames reviewed by two private workers each
    result = estimate(definition, settings, RunShape(frames=60_000, review_workers=2))
    # When the Ground Truth line is read
    # Then 50,000 objects at 0.08 and 10,000 at 0.04: a data object is billed once, whatever the workers
    assert item(result, "Ground Truth").usd == pytest.approx(50_000 * 0.08 + 10_000 * 0.04)


def test_public_workforce_is_priced_per_task_and_worker(definition, settings):
    # Given 1,000 frames reviewed by three Mechanical Turk workers each
    result = estimate(definition, settings, RunShape(frames=1000, review_workers=3, workforce="public"))
    # When the workforce line is read
    line = item(result, "Mechanical Turk")
    # Then it is 3,000 tasks at the Ground Truth price table's bounding-box price
    assert line.usd == pytest.approx(3000 * task_price("adjust", "public").usd_per_object_per_worker)


def test_private_review_hours_grow_with_the_boxes_per_frame(definition, settings):
    # Given 3,600 frames with 10 boxes each, then 20, reviewed by paid private workers
    ten = estimate(definition, settings, RunShape(frames=3600, objects_per_frame=10, worker_hourly_usd=20))
    twenty = estimate(definition, settings, RunShape(frames=3600, objects_per_frame=20, worker_hourly_usd=20))
    # When the review hours are compared
    # Then 5 s + 3 s per box per frame: 35 h, then 65 h, priced at the wage
    assert ten.review_hours == pytest.approx(35) and twenty.review_hours == pytest.approx(65)
    assert item(twenty, "Private workforce").usd == pytest.approx(65 * 20)


def test_a_run_too_big_for_one_prepare_run_is_flagged(definition, settings):
    # Given a 100,000-frame run and a 1,000,000-frame run
    small = estimate(definition, settings, RunShape(frames=100_000))
    large = estimate(definition, settings, RunShape(frames=1_000_000))
    # When their warnings are read
    # Then only the large run's PrepareRun is estimated past its 900 s timeout
    assert small.warnings == []
    assert any(w.startswith("PrepareRunFunction") and "900 s" in w for w in large.warnings)


def test_an_instance_type_missing_from_the_table_needs_a_price(definition, settings):
    # Given an instance type the table does not hold
    shape = RunShape(frames=100, instance_type="ml.inf2.xlarge")
    # When it is estimated without, then with an hourly price
    with pytest.raises(ValueError, match="no price for ml.inf2.xlarge"):
        estimate(definition, settings, shape)
    priced = estimate(definition, settings, replace(shape, instance_usd_per_hour=0.99))
    # Then the given price is used
    assert item(priced, "SageMaker").usd == pytest.approx(
        0.99 * (100 / 10 / 3600 + ENDPOINT_IDLE_HOURS_PER_RUN)
    )


def test_a_choice_operator_the_model_cannot_evaluate_is_an_error(definition, settings):
    # Given a state machine whose Choice uses a timestamp comparison
    machine = {
        "StartAt": "When",
        "States": {
            "When": {
                "Type": "Choice",
                "Choices": [
                    {"Variable": "$.run.at", "TimestampEquals": "2026-01-01T00:00:00Z", "Next": "Done"}
                ],
                "Default": "Done",
            },
            "Done": {"Type": "Succeed"},
        },
    }
    # When it is walked, Then the estimate refuses to guess
    with pytest.raises(ValueError, match="operator"):
        state_entries(machine, RunShape(frames=1))


def test_cli_prints_the_table_and_writes_json(tmp_path):
    # Given the CLI with a million frames at the defaults
    out = tmp_path / "cost.json"
    buffer = io.StringIO()
    # When it runs
    with redirect_stdout(buffer):
        code = main(["cost", "--frames", "1000000", "--json", str(out)])
    # Then it prints every service and the JSON total is the sum of its items
    text = buffer.getvalue()
    assert code == 0
    for service in (
        "Step Functions",
        "Lambda",
        "SNS",
        "S3 requests",
        "DynamoDB",
        "SageMaker",
        "Ground Truth",
    ):
        assert service in text
    data = json.loads(out.read_text())
    assert data["total_usd"] == pytest.approx(sum(i["usd"] for i in data["items"]), abs=0.01)
    assert data["state_transitions"] == 250_017 and data["prices"]["region"] == "us-east-1"


def test_readme_quotes_the_cli_figure_for_a_million_frames(tmp_path):
    # Given the README's "Deploy to AWS" cost figure
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    quoted = re.search(r"autolabel cost --frames 1000000\n.*?^total\s+([\d,.]+) USD", readme, re.S | re.M)
    assert quoted, "README shows no `autolabel cost --frames 1000000` output with its total"
    # When the CLI computes the same estimate
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        main(["cost", "--frames", "1000000"])
    total = re.search(r"^total\s+([\d,.]+) USD", buffer.getvalue(), re.M)
    # Then the README's figure is the CLI's
    assert total and quoted.group(1) == total.group(1)
    assert math.isfinite(float(total.group(1).replace(",", "")))
