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
    LAMBDA_MS,
    PRICES,
    RunShape,
    child_executions,
    dynamodb_usage,
    estimate,
    function_settings,
    lambda_invocations,
    s3_requests,
    state_entries,
)
from workflow.domain.prices import task_price
from workflow.domain.records import BatchCounts, cut_parts, cut_shards
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


def test_a_small_run_enters_each_state_once_per_source_page_batch_part_and_shard(definition):
    # Given 40 frames in batches of 8: one source, one page, 5 batches, one job, one shard
    shape = RunShape(frames=40, batch_size=8)
    # When the ASL is walked
    entries = state_entries(definition, shape)
    # Then the 9 parent states and the job's 3 inline states are entered once, the source's child
    # lists its one page, each batch's child enters 2 states and the shard's child 1
    assert sum(entries.values()) == 9 + 3 + 4 + 5 * 2 + 1
    assert entries["ListPage"] == entries["MorePages"] == entries["StartListing"] == 1
    assert entries["InvokeModels"] == entries["MergeBatch"] == 5
    assert entries["RecordBatchFailure"] == 0
    assert entries["PublishShard"] == entries["StartReview"] == entries["FinishRun"] == 1
    # And every child start is billed too
    assert child_executions(definition, shape) == {"ListSources": 1, "LabelBatches": 5, "PublishShards": 1}
    assert (
        estimate(definition, function_settings(Template(ROOT / "template.yaml").data), shape).transitions
        == 34
    )


def test_each_source_loops_over_its_listing_pages(definition):
    # Given 2,001 frames over two sources (1,001 and 1,000 frames: two pages, then one)
    shape = RunShape(frames=2001, sources=2)
    # When the ASL is walked
    entries = state_entries(definition, shape)
    # Then each source's child starts once and lists each of its pages with one ListPage + MorePages
    assert entries["StartListing"] == entries["Listed"] == 2
    assert entries["ListPage"] == entries["MorePages"] == shape.pages == 3
    assert child_executions(definition, shape)["ListSources"] == 2


def test_batches_are_cut_page_by_page(definition):
    # Given 2,500 frames in batches of 300: pages of 1,000, 1,000 and 500 frames
    shape = RunShape(frames=2500, batch_size=300)
    # When the batches are counted
    # Then each page ends with a short batch: 4 + 4 + 2, not ceil(2,500 / 300) = 9
    assert shape.batches == 10
    assert state_entries(definition, shape)["InvokeModels"] == 10


@pytest.mark.parametrize(
    ("frames", "batch_size", "sources", "page_size"),
    [(25_000, 8, 1, 1000), (10_001, 3, 3, 1000), (12_345, 70, 7, 250), (31, 4, 40, 1000)],
)
def test_jobs_and_shards_are_cut_as_plan_review_cuts_them(frames, batch_size, sources, page_size):
    # Given a run's batches as ListPage writes them, as the records PlanReview reads (with jobs of
    # at most 1,000 frames and shards of at most 300, so that there are many of each)
    shape = RunShape(
        frames=frames,
        batch_size=batch_size,
        sources=sources,
        page_size=page_size,
        job_frames=1000,
        shard_frames=300,
    )
    sizes = [size for size, repeat in shape.batch_runs() for _ in range(repeat)]
    counts = [
        BatchCounts(batch_id=f"b{i:07d}", frames=n, labeled=n, failed=0, streams={"adjust-g0": n})
        for i, n in enumerate(sizes)
    ]
    # When PlanReview's own functions cut them
    parts, shards = cut_parts(counts, limit=1000), cut_shards(counts, limit=300)
    # Then the model has the same jobs and shards, with the same frames and batches
    assert shape.parts == [(p.frames, len(p.batches)) for p in parts]
    assert shape.shards == [(s.frames, len(s.batches)) for s in shards]
    assert sum(sizes) == frames and shape.batches == len(sizes)


def test_skipping_review_leaves_out_the_review_states(definition):
    # Given 1,000 frames without review
    shape = RunShape(frames=1000, review="skip")
    # When the ASL is walked
    entries = state_entries(definition, shape)
    # Then NeedsReview goes straight to PublishShards: 125 batches x 2, the page loop, 8 parent states
    assert "ReviewJobs" not in entries and "StartReview" not in entries
    assert sum(entries.values()) == 125 * 2 + 4 + 1 + 8


def test_a_million_frames_need_one_labeling_job_per_100000(definition):
    # Given a million frames with human review, in batches of 100
    shape = RunShape(frames=1_000_000, batch_size=100)
    # When the invocations are counted
    calls = lambda_invocations(definition, shape)
    # Then ten jobs are assembled, started, called back and collected; 1,000 pages are listed;
    # every batch is invoked, called back and merged; 100 shards of 10,000 frames are published
    for function in ("AssembleManifest", "StartReview", "LabelingCallback", "CollectReview"):
        assert calls[f"{function}Function"] == 10
    assert calls["ListPageFunction"] == 1000
    assert calls["InvokeModelsFunction"] == calls["InferenceCallbackFunction"] == calls["MergeBatchFunction"]
    assert calls["InvokeModelsFunction"] == 10_000
    assert calls["PublishShardFunction"] == 100
    assert calls["PlanReviewFunction"] == calls["FinishRunFunction"] == calls["PrepareRunFunction"] == 1


def test_per_frame_requests_multiply_the_notifications(definition, settings):
    # Given the same run with one request per batch, then one request per frame (JumpStart)
    batched = estimate(definition, settings, RunShape(frames=800, review="skip"))
    per_frame = estimate(definition, settings, RunShape(frames=800, review="skip", batch_requests=False))
    # When the SNS line items are compared
    # Then there is one notification per batch, then one per frame
    assert item(batched, "SNS").usage == "100 notifications"
    assert item(per_frame, "SNS").usage == "800 notifications"
    assert per_frame.lambda_invocations["InferenceCallbackFunction"] == 800


def test_the_ledger_takes_two_conditional_writes_per_frame():
    # Given 10,000 frames in batches of 100, not reviewed
    shape = RunShape(frames=10_000, batch_size=100, review="skip")
    # When the DynamoDB usage is counted
    usage = dynamodb_usage(shape)
    # Then the ledger's claim and settle per frame and the run record twice, plus the tokens of
    # 100 batches (park 2 items, a 2-item transaction per notification, claim, release)
    assert usage.write_requests == 2 * 10_000 + 2 + 100 * 5
    assert usage.write_units == 2 * 10_000 + 2 + 100 * (1 + 2 + 6 + 4)


def test_s3_requests_grow_with_batches_not_frames():
    # Given the same frames in batches of 10, then 100 (no review, so no Ground Truth traffic)
    small, large = (s3_requests(RunShape(frames=100_000, batch_size=b, review="skip")) for b in (10, 100))
    # When the workflow's requests are compared
    # Then 9,000 fewer batches save each batch's PUTs (batch, request, labels, counts, the callback's
    # inference records) and GETs (InvokeModels 2, MergeBatch 3 + the output + the records,
    # PlanReview 1, PublishShard 1), and PlanReview's listings of counts/ and batches/ (100 keys a
    # page: LIST_PAGE) take 100 pages each instead of 10
    assert small["workflow"][0] - large["workflow"][0] == 9000 * 5 + 2 * 90
    assert small["workflow"][1] - large["workflow"][1] == 9000 * 9
    assert "ground truth" not in small


def test_lambda_cost_uses_the_template_memory_sizes(definition, settings):
    # Given the template's settings, and the same with PublishShardFunction at twice its memory
    shape = RunShape(frames=25_000, review="skip")
    memory, timeout = settings["PublishShardFunction"]
    doubled = {**settings, "PublishShardFunction": (memory * 2, timeout)}
    # When both are estimated
    base = item(estimate(definition, settings, shape), "Lambda").usd
    more = item(estimate(definition, doubled, shape), "Lambda").usd
    # Then the difference is 3 shards' fixed time + 2 ms per frame, at the extra memory
    fixed, per_frame = LAMBDA_MS["PublishShardFunction"]
    seconds = (3 * fixed + per_frame * 25_000) / 1000
    assert more - base == pytest.approx(seconds * memory / 1024 * PRICES.lambda_gb_second_arm)
    assert memory == 1769 and settings["MergeBatchFunction"][0] == 1024


def test_orchestration_of_a_million_frames_at_batch_100_stays_under_3_usd(definition, settings):
    # Given a million frames in batches of 100, reviewed
    result = estimate(definition, settings, RunShape(frames=1_000_000, batch_size=100))
    # When the orchestration (all but the endpoint and review) is added up
    orchestration = [i for i in result.items if i.kind == "orchestration"]
    # Then it is under 3 USD, and the ledger's writes (DynamoDB) are its largest part
    assert result.orchestration_usd < 3.0
    assert max(orchestration, key=lambda i: i.usd).service.startswith("DynamoDB")
    assert {i.kind for i in result.items} == {"orchestration", "inference", "review"}


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


def test_a_source_too_long_for_one_child_history_is_flagged(definition, settings):
    # Given 4 million frames in one source (4,000 pages, 7 events each), then over two sources
    one = estimate(definition, settings, RunShape(frames=4_000_000, batch_size=100))
    two = estimate(definition, settings, RunShape(frames=4_000_000, batch_size=100, sources=2))
    # When their warnings are read
    # Then only the single source's child passes the 25,000-event history limit
    assert any(w.startswith("ListSources") and "25,000" in w and "4,000 pages" in w for w in one.warnings)
    assert two.warnings == []


def test_a_run_too_big_for_one_plan_review_is_flagged(definition, settings):
    # Given a million and ten million frames in batches of 8, over enough sources
    small = estimate(definition, settings, RunShape(frames=1_000_000, sources=10))
    large = estimate(definition, settings, RunShape(frames=10_000_000, sources=10))
    # When their warnings are read
    # Then PlanReview, which reads every batch's counts, passes its 900 s timeout only at 10M
    assert small.warnings == []
    assert any(w.startswith("PlanReviewFunction") and "900 s" in w for w in large.warnings)


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


def test_a_map_reading_items_the_model_does_not_know_is_an_error():
    # Given a Distributed Map whose ItemReader reads an object the model has no count for
    machine = {
        "StartAt": "Fan",
        "States": {
            "Fan": {
                "Type": "Map",
                "ItemReader": {
                    "Resource": "arn:aws:states:::s3:getObject",
                    "Parameters": {"Key.$": "$.other"},
                },
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED"},
                    "StartAt": "Step",
                    "States": {"Step": {"Type": "Pass", "End": True}},
                },
                "End": True,
            }
        },
    }
    # When it is walked, Then the estimate says which Map it cannot count
    with pytest.raises(ValueError, match="Map Fan reads items from \\$.other"):
        state_entries(machine, RunShape(frames=1))


def test_cli_prints_the_table_and_writes_json(tmp_path):
    # Given the CLI with a million frames in batches of 100
    out = tmp_path / "cost.json"
    buffer = io.StringIO()
    # When it runs
    with redirect_stdout(buffer):
        code = main(["cost", "--frames", "1000000", "--batch-size", "100", "--json", str(out)])
    # Then it prints every service and the JSON totals are the sums of their items
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
    orchestration = sum(i["usd"] for i in data["items"] if i["kind"] == "orchestration")
    assert data["orchestration_usd"] == pytest.approx(orchestration, abs=0.01)
    assert data["child_executions"] == {"ListSources": 1, "LabelBatches": 10_000, "PublishShards": 100}
    assert data["prices"]["region"] == "us-east-1"


def test_readme_quotes_the_cli_figure_for_a_million_frames_at_batch_100():
    # Given the README's "What it costs" figure
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    command = "autolabel cost --frames 1000000 --batch-size 100"
    quoted = re.search(re.escape(command) + r"\n(.*?)\n```", readme, re.S)
    assert quoted, f"README shows no `{command}` output"
    # When the CLI computes the same estimate
    buffer = io.StringIO()
    with redirect_stdout(buffer):
        main(command.split()[1:])
    # Then the README's table is the CLI's, line for line up to the assumptions
    printed = buffer.getvalue().split("\n\nassumptions:")[0].rstrip("\n")
    assert quoted.group(1).split("\n\nassumptions:")[0].rstrip("\n") == printed
    orchestration = re.search(r"^orchestration\s.*?([\d,.]+) USD$", printed, re.M)
    assert orchestration and math.isfinite(float(orchestration.group(1).replace(",", "")))
