"""What one run costs in AWS: a pure estimate from the state machine's shape and a dated price table.

Prices are us-east-1 list prices as published on these AWS pricing pages: "AWS Step Functions
Pricing", "AWS Lambda Pricing", "Amazon SNS Pricing", "Amazon S3 Pricing", "Amazon DynamoDB Pricing"
(on-demand), "Amazon SageMaker AI Pricing" (real-time and asynchronous inference instances) and
"Amazon SageMaker Ground Truth Pricing". They were last read for this table in PRICES_AS_OF (this
project's machines cannot reach aws.amazon.com); free tiers are left out. Update the table and its date
before budgeting with it.

Usage is counted, not guessed, where the design fixes it: state transitions by walking the ASL
(parent states once, the Distributed Map's item states once per batch, the review Map's once per
manifest part), Lambda invocations from the same walk plus one callback per notification,
memory sizes from template.yaml. Where only a measurement in AWS could tell (Lambda durations, the
endpoint's frames per second, a reviewer's seconds per box) the numbers are assumptions named below.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from workflow.domain.prices import PRICES_AS_OF as PRICES_AS_OF
from workflow.domain.prices import task_price

PRICES_REGION = "us-east-1"
Workforce = Literal["private", "public"]


@dataclass(frozen=True)
class Prices:
    """USD list prices, us-east-1, as of PRICES_AS_OF (see the module docstring for the pages)."""

    state_transition: float = 0.025 / 1000  # Step Functions Standard, per state transition
    lambda_gb_second_arm: float = 0.0000133334  # Lambda, Arm, first 7.5 billion GB-s a month
    lambda_request: float = 0.20 / 1e6
    sns_publish: float = 0.50 / 1e6  # standard topic, per 64 KB request; deliveries to Lambda are free
    s3_put: float = 0.005 / 1000  # S3 Standard PUT, COPY, POST, LIST requests
    s3_get: float = 0.0004 / 1000  # S3 Standard GET and all other requests
    dynamodb_write: float = 0.625 / 1e6  # on-demand, per write request unit
    dynamodb_read: float = 0.125 / 1e6  # on-demand, per read request unit
    # Ground Truth fee per labeled data object (a frame), tiered by objects labeled in the month.
    ground_truth_tiers: tuple[tuple[float, float], ...] = ((50_000, 0.08), (950_000, 0.04), (math.inf, 0.02))
    instance_hour: dict[str, float] = field(
        default_factory=lambda: {
            "ml.m5.large": 0.115,
            "ml.m5.xlarge": 0.23,
            "ml.c5.large": 0.102,
            "ml.c5.xlarge": 0.204,
            "ml.c5.2xlarge": 0.408,
            "ml.c6i.xlarge": 0.204,
            "ml.g4dn.xlarge": 0.736,
            "ml.g4dn.2xlarge": 1.053,
            "ml.g5.xlarge": 1.408,
            "ml.g5.2xlarge": 1.515,
        }
    )


PRICES = Prices()

# Assumed milliseconds per invocation: (fixed, per unit), units named in _lambda_units. Not measured in AWS.
LAMBDA_MS: dict[str, tuple[float, float]] = {
    "PrepareRunFunction": (500, 1.0),  # per frame: listing + one conditional ledger write, 16 in flight
    "InvokeModelsFunction": (200, 40),  # per request sent (S3 put, token item, InvokeEndpointAsync)
    "InferenceCallbackFunction": (150, 0),
    "MergeBatchFunction": (200, 15),  # per frame and model (read output, map classes, merge)
    "RecordBatchFailureFunction": (150, 0),
    "BuildManifestFunction": (1000, 0.5),  # per frame
    "StartReviewFunction": (400, 0),
    "LabelingCallbackFunction": (300, 0),
    "PublishFunction": (1000, 1.0),  # per frame: dataset writers + one ledger update, 16 in flight
}
LAMBDA_UNITS = {
    "PrepareRunFunction": "frame",
    "InvokeModelsFunction": "request",
    "MergeBatchFunction": "frame per model",
    "BuildManifestFunction": "frame",
    "PublishFunction": "frame",
}
ENDPOINT_IDLE_HOURS_PER_RUN = 20 / 60  # per model: ~5 min to start from zero + ~15 min before scale-in
REVIEW_SECONDS_PER_FRAME = 5.0  # a reviewer looks at the frame
REVIEW_SECONDS_PER_OBJECT = 3.0  # and checks or adjusts each pre-labeled box
GT_OBJECTS_PER_JOB = 100_000
_TOKEN_ITEM_WCU = 2  # the batch item holds a task token (up to 1 KB) and the inference ids


@dataclass(frozen=True)
class RunShape:
    """What the estimate is for."""

    frames: int
    batch_size: int = 8
    models: int = 1
    instance_type: str = "ml.c5.xlarge"
    throughput_fps: float = 10.0  # frames per second one endpoint instance sustains
    review: Literal["human", "skip"] = "human"
    review_workers: int = 1
    objects_per_frame: float = 10.0
    workforce: Workforce = "private"
    worker_hourly_usd: float = 0.0  # private workforce: their wage (0 = report hours only)
    batch_requests: bool = True  # False: one request per frame (JumpStart endpoints)
    instance_usd_per_hour: float | None = None  # overrides the table

    @property
    def batches(self) -> int:
        return math.ceil(self.frames / self.batch_size)

    @property
    def review_parts(self) -> int:
        return math.ceil(self.frames / GT_OBJECTS_PER_JOB) if self.review == "human" else 0

    @property
    def inferences(self) -> int:
        return self.models * (self.batches if self.batch_requests else self.frames)


@dataclass(frozen=True)
class LineItem:
    service: str
    usage: str
    usd: float


@dataclass
class Estimate:
    shape: RunShape
    items: list[LineItem]
    transitions: int
    lambda_invocations: dict[str, int]
    warnings: list[str] = field(default_factory=list)
    review_hours: float = 0.0

    @property
    def total_usd(self) -> float:
        return sum(item.usd for item in self.items)

    @property
    def usd_per_1000_frames(self) -> float:
        return self.total_usd * 1000 / max(self.shape.frames, 1)


# --- the state machine's shape ---------------------------------------------------------------------
def _path_value(doc: Any, path: str) -> Any:
    value = doc
    for part in path.removeprefix("$").strip(".").split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _rule_matches(rule: dict[str, Any], doc: dict[str, Any]) -> bool:
    if "And" in rule:
        return all(_rule_matches(r, doc) for r in rule["And"])
    if "Or" in rule:
        return any(_rule_matches(r, doc) for r in rule["Or"])
    if "Not" in rule:
        return not _rule_matches(rule["Not"], doc)
    value = _path_value(doc, rule["Variable"])
    tests: dict[str, Callable[[Any, Any], bool]] = {
        "StringEquals": lambda v, x: v == x,
        "BooleanEquals": lambda v, x: v is x,
        "NumericEquals": lambda v, x: v is not None and v == x,
        "NumericGreaterThan": lambda v, x: v is not None and v > x,
        "NumericLessThan": lambda v, x: v is not None and v < x,
        "IsPresent": lambda v, x: (v is not None) is x,
    }
    for name, test in tests.items():
        if name in rule:
            return bool(test(value, rule[name]))
    raise ValueError(f"Choice rule {rule} uses an operator the cost model does not evaluate")


def _walk(machine: dict[str, Any], doc: dict[str, Any], items: int, counts: Counter[str]) -> None:
    """Count the state entries of one pass through ``machine`` on its success path."""
    name: str | None = machine["StartAt"]
    while name is not None:
        state = machine["States"][name]
        counts[name] += items
        if state["Type"] == "Map":
            processor = state.get("ItemProcessor") or state["Iterator"]
            per_run = (
                doc["run"]["batch_count"]
                if "ItemReader" in state
                else len(_path_value(doc, state["ItemsPath"]))
            )
            _walk(processor, doc, items * per_run, counts)
        if state["Type"] == "Choice":
            name = next((r["Next"] for r in state["Choices"] if _rule_matches(r, doc)), state.get("Default"))
            continue
        name = None if state.get("End") or state["Type"] in ("Succeed", "Fail") else state["Next"]


def state_entries(definition: dict[str, Any], shape: RunShape) -> Counter[str]:
    """How often each state of the ASL is entered in one successful run of this shape."""
    doc = {
        "run": {"batch_count": shape.batches, "review": shape.review},
        "review_input": {
            "manifest": {
                "frames_to_review": shape.frames if shape.review == "human" else 0,
                "parts": [{}] * max(shape.review_parts, 0),
            }
        },
    }
    counts: Counter[str] = Counter()
    _walk(definition, doc, 1, counts)
    return counts


def lambda_invocations(definition: dict[str, Any], shape: RunShape) -> dict[str, int]:
    """Invocations per function: the Lambda task states' entries plus one callback per notification."""
    functions: Counter[str] = Counter()
    entries = state_entries(definition, shape)
    for machine in _machines(definition):
        for name, state in machine["States"].items():
            target = str(state.get("Parameters", {}).get("FunctionName", ""))
            if target.startswith("${") and target.endswith("Arn}"):
                functions[target[2:-4]] += entries.get(name, 0)
    functions["InferenceCallbackFunction"] += shape.inferences
    functions["LabelingCallbackFunction"] += shape.review_parts
    return dict(functions)


def _machines(definition: dict[str, Any]) -> list[dict[str, Any]]:
    found = [definition]
    for state in definition["States"].values():
        child = state.get("ItemProcessor") or state.get("Iterator")
        if child:
            found += _machines(child)
    return found


def function_settings(template: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """(memory MB, timeout s) of every function of a SAM template, Globals applied."""
    defaults = template.get("Globals", {}).get("Function", {})
    return {
        name: (
            int(res["Properties"].get("MemorySize", defaults.get("MemorySize", 128))),
            int(res["Properties"].get("Timeout", defaults.get("Timeout", 3))),
        )
        for name, res in template["Resources"].items()
        if res["Type"] == "AWS::Serverless::Function"
    }


# --- usage per service ------------------------------------------------------------------------------
def _lambda_units(function: str, shape: RunShape) -> float:
    """The per-invocation unit count that LAMBDA_MS's second number multiplies."""
    requests_per_batch = shape.models * (1 if shape.batch_requests else shape.batch_size)
    return {
        "PrepareRunFunction": shape.frames,
        "InvokeModelsFunction": requests_per_batch,
        "MergeBatchFunction": shape.batch_size * shape.models,
        "BuildManifestFunction": shape.frames,
        "PublishFunction": shape.frames,
    }.get(function, 0)


def _lambda(
    invocations: dict[str, int], settings: dict[str, tuple[int, int]], shape: RunShape, prices: Prices
) -> tuple[LineItem, list[str]]:
    gb_seconds = 0.0
    warnings = []
    for function, count in invocations.items():
        memory_mb, timeout_s = settings[function]
        fixed, per_unit = LAMBDA_MS[function]
        seconds = (fixed + per_unit * _lambda_units(function, shape)) / 1000
        if seconds > timeout_s:
            warnings.append(
                f"{function} is estimated at ~{seconds:,.0f} s for this run, past its {timeout_s} s "
                "timeout: split the frames over several runs"
            )
        gb_seconds += count * seconds * memory_mb / 1024
    requests = sum(invocations.values())
    usd = gb_seconds * prices.lambda_gb_second_arm + requests * prices.lambda_request
    return LineItem("Lambda (arm64)", f"{requests:,} invocations, {gb_seconds:,.0f} GB-s", usd), warnings


def s3_requests(shape: RunShape) -> tuple[int, int]:
    """(PUT/COPY/POST/LIST, GET) requests of one run, the endpoint's and Ground Truth's included."""
    b, m, parts, k = shape.batches, shape.models, shape.review_parts, shape.review_workers
    lists = math.ceil(shape.frames / 1000) + 2 * math.ceil(b / 1000)  # sources, then labels/ twice
    puts = 3 + lists  # PrepareRun: batches.json, skipped.json, request.json
    puts += (m * b if shape.batch_requests else 0) + shape.inferences  # request files, endpoint outputs
    puts += b + parts + 3 + 4  # labels per batch; manifest parts, categories, template, COCO; Publish
    gets = 1 + (shape.inferences if shape.batch_requests else 0) + m * shape.frames  # ItemReader, endpoint
    gets += shape.inferences + 2 * b + 1 + parts  # MergeBatch, BuildManifest + Publish, outputs
    if shape.review == "human":
        # Ground Truth: each worker's browser reads the frame; responses and consolidations are written.
        gets += shape.frames * k + 3 * parts
        puts += shape.frames * (k + 1) + parts
    return puts, gets


def dynamodb_units(shape: RunShape) -> tuple[float, float]:
    """(write, read) request units: frame ledger, task tokens (transactional writes count twice)."""
    inferences, b = shape.inferences, shape.batches
    writes = 2.0 * shape.frames  # ledger claim + settle
    writes += inferences + _TOKEN_ITEM_WCU * b  # park: one item per inference + the batch item
    writes += inferences * 2 * (1 + _TOKEN_ITEM_WCU)  # each notification: a 2-item transaction
    writes += 2 * _TOKEN_ITEM_WCU * b  # claim and release the batch
    writes += 2 * _TOKEN_ITEM_WCU * shape.review_parts  # park and claim each labeling job
    reads = inferences * (0.5 + 1)  # notification: inference item, consistent batch item
    reads += inferences  # the resumed batch reads its inference items
    return writes, reads


def _ground_truth_fee(objects: int, prices: Prices) -> float:
    usd, left = 0.0, float(objects)
    for size, price in prices.ground_truth_tiers:
        taken = min(left, size)
        usd, left = usd + taken * price, left - taken
    return usd


def _review(shape: RunShape, prices: Prices) -> tuple[list[LineItem], float]:
    if shape.review != "human":
        return [], 0.0
    reviews = shape.frames * shape.review_workers
    hours = reviews * (REVIEW_SECONDS_PER_FRAME + REVIEW_SECONDS_PER_OBJECT * shape.objects_per_frame) / 3600
    items = [
        LineItem("Ground Truth", f"{shape.frames:,} labeled objects", _ground_truth_fee(shape.frames, prices))
    ]
    if shape.workforce == "public":
        per_task = task_price("adjust", "public").usd_per_object_per_worker
        items.append(
            LineItem("Mechanical Turk workers", f"{reviews:,} tasks x ${per_task}", reviews * per_task)
        )
    else:
        rate = f"at ${shape.worker_hourly_usd:g}/h" if shape.worker_hourly_usd else "(wage not priced)"
        items.append(
            LineItem(
                "Private workforce", f"{hours:,.0f} worker-hours {rate}", hours * shape.worker_hourly_usd
            )
        )
    return items, hours


def _instance_price(shape: RunShape, prices: Prices) -> float:
    if shape.instance_usd_per_hour is not None:
        return shape.instance_usd_per_hour
    try:
        return prices.instance_hour[shape.instance_type]
    except KeyError:
        known = ", ".join(sorted(prices.instance_hour))
        raise ValueError(
            f"no price for {shape.instance_type} in the table ({known}): "
            "give its hourly price (--instance-usd-per-hour)"
        ) from None


def estimate(
    definition: dict[str, Any],
    settings: dict[str, tuple[int, int]],
    shape: RunShape,
    prices: Prices = PRICES,
) -> Estimate:
    """The cost of one successful run of ``shape`` through the ASL ``definition``.

    ``settings`` maps each function to (memory MB, timeout s), as :func:`function_settings` reads them.
    """
    if shape.frames < 1 or shape.batch_size < 1 or shape.models < 1 or shape.throughput_fps <= 0:
        raise ValueError("frames, batch size, models and throughput must be positive")
    transitions = sum(state_entries(definition, shape).values())
    invocations = lambda_invocations(definition, shape)
    lambda_item, warnings = _lambda(invocations, settings, shape, prices)
    hours = shape.models * (shape.frames / shape.throughput_fps / 3600 + ENDPOINT_IDLE_HOURS_PER_RUN)
    puts, gets = s3_requests(shape)
    writes, reads = dynamodb_units(shape)
    review_items, review_hours = _review(shape, prices)
    items = [
        LineItem(
            "Step Functions (Standard)",
            f"{transitions:,} state transitions",
            transitions * prices.state_transition,
        ),
        lambda_item,
        LineItem("SNS", f"{shape.inferences:,} notifications", shape.inferences * prices.sns_publish),
        LineItem(
            "S3 requests", f"{puts:,} PUT/LIST, {gets:,} GET", puts * prices.s3_put + gets * prices.s3_get
        ),
        LineItem(
            "DynamoDB (on-demand)",
            f"{writes:,.0f} WRU, {reads:,.0f} RRU",
            writes * prices.dynamodb_write + reads * prices.dynamodb_read,
        ),
        LineItem(
            f"SageMaker endpoint ({shape.instance_type})",
            f"{hours:,.1f} instance-hours at {shape.throughput_fps:g} frames/s",
            hours * _instance_price(shape, prices),
        ),
        *review_items,
    ]
    return Estimate(shape, items, transitions, invocations, warnings, review_hours)
