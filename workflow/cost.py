"""What one run costs in AWS: a pure estimate from the state machine's shape and a dated price table.

Prices are us-east-1 list prices as published on these AWS pricing pages: "AWS Step Functions
Pricing", "AWS Lambda Pricing", "Amazon SNS Pricing", "Amazon S3 Pricing", "Amazon DynamoDB Pricing"
(on-demand), "Amazon SageMaker AI Pricing" (real-time and asynchronous inference instances) and
"Amazon SageMaker Ground Truth Pricing". They were last read for this table in PRICES_AS_OF (this
project's machines cannot reach aws.amazon.com); free tiers are left out. Update the table and its date
before budgeting with it.

Usage is counted, not guessed, where the design fixes it. State transitions come from walking the
ASL: each Distributed Map's children are as many as its ItemReader reads (sources, the batch objects
under ``batches/``, dataset shards: all cut as ListPage and PlanReview cut them, see
``workflow.domain.records``), each child start is one billed transition, and the ListPage loop runs
once per listing page of its source. Lambda invocations come from the same walk plus one callback
per notification; memory sizes from template.yaml; S3 requests and DynamoDB writes from what each
step reads and writes (see :func:`s3_requests` and :func:`dynamodb_usage`). Where only a
measurement in AWS could tell (Lambda durations, the endpoint's frames per second, a reviewer's
seconds per box) the numbers are assumptions named below.

Each line item is one of three kinds: ``orchestration`` (Step Functions, Lambda, SNS, the
workflow's own S3 requests, DynamoDB), ``inference`` (endpoint instances and the endpoint's S3
reads and writes) and ``review`` (Ground Truth, its S3 traffic, workers).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from workflow.domain.prices import PRICES_AS_OF as PRICES_AS_OF
from workflow.domain.prices import task_price
from workflow.domain.records import (
    GALLERY_MAX,
    LIST_PAGE,
    MAX_FRAMES_PER_JOB,
    PAGE_SIZE,
    SHARD_FRAMES,
)

PRICES_REGION = "us-east-1"
Workforce = Literal["private", "public"]
Kind = Literal["orchestration", "inference", "review"]


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

# Assumed milliseconds per invocation: (fixed, per unit), units named in LAMBDA_UNITS. Not measured in AWS.
LAMBDA_MS: dict[str, tuple[float, float]] = {
    "PrepareRunFunction": (400, 0),  # profile, sources, request: 3 PUTs and the run record
    "ListPageFunction": (300, 1.0),  # one LIST; per frame a conditional ledger write (16 in flight)
    "InvokeModelsFunction": (250, 40),  # per request sent (S3 put, token item, InvokeEndpointAsync)
    "InferenceCallbackFunction": (150, 0),
    "MergeBatchFunction": (300, 15),  # per frame and model (read output, map classes, merge)
    "RecordBatchFailureFunction": (150, 0),
    "PlanReviewFunction": (1000, 1.5),  # per batch: one GET of its counts (16 in flight)
    "AssembleManifestFunction": (500, 3),  # per batch: one GET of its review lines, streamed up
    "StartReviewFunction": (400, 0),
    "LabelingCallbackFunction": (300, 0),
    "CollectReviewFunction": (500, 30),  # per batch: one PUT of its reviewed lines, one after another
    "PublishShardFunction": (1000, 2.0),  # per frame: dataset writers + one ledger settle, 16 in flight
    "FinishRunFunction": (1000, 2.0),  # per page or shard record read (16 in flight)
}
LAMBDA_UNITS = {
    "ListPageFunction": "frame",
    "InvokeModelsFunction": "request",
    "MergeBatchFunction": "frame per model",
    "PlanReviewFunction": "batch",
    "AssembleManifestFunction": "batch",
    "CollectReviewFunction": "batch",
    "PublishShardFunction": "frame",
    "FinishRunFunction": "record",
}
ENDPOINT_IDLE_HOURS_PER_RUN = 20 / 60  # per model: ~5 min to start from zero + ~15 min before scale-in
REVIEW_SECONDS_PER_FRAME = 5.0  # a reviewer looks at the frame
REVIEW_SECONDS_PER_OBJECT = 3.0  # and checks or adjusts each pre-labeled box
_TOKEN_ITEM_WCU = 2  # the batch item holds a task token (up to 1 KB) and the inference ids
# An input-manifest line as AssembleManifest writes it (measured with input_manifest_line: 403 bytes
# without boxes, 1,353 with 10), and the part size of a multipart upload (workflow.adapters.s3).
_LINE_BYTES, _LINE_BYTES_PER_OBJECT = 400, 95
# A COCO image and annotation as CocoBuilder writes them (measured: 85 bytes an image, 115 an
# annotation of one model's box); PublishShard streams its two COCO files up like the manifest.
_COCO_IMAGE_BYTES, _COCO_BYTES_PER_OBJECT = 85, 115
_UPLOAD_PART_BYTES = 8 * 2**20
_LIST_PAGE = 1000  # keys per ListObjectsV2 response
# Step Functions' hard quota of events in one execution's history; the events each state adds
# (a Task: Entered, Scheduled, Started, Succeeded, Exited, plus Submitted when it waits for a token).
HISTORY_EVENTS_LIMIT = 25_000
_EVENTS = {"Task": 5, "Pass": 2, "Choice": 2, "Map": 4, "Succeed": 1, "Fail": 1, "Wait": 2, "Parallel": 2}


@dataclass(frozen=True)
class RunShape:
    """What the estimate is for.

    ``frames`` are spread evenly over ``sources`` (prefixes); ListPage lists ``page_size`` keys an
    invocation and cuts each page into batches; PlanReview packs consecutive batches into labeling
    jobs of at most ``job_frames`` and dataset shards of at most ``shard_frames`` frames. The last
    three default to the workflow's constants (tests set them small).
    """

    frames: int
    batch_size: int = 8
    models: int = 1
    sources: int = 1
    instance_type: str = "ml.c5.xlarge"
    throughput_fps: float = 10.0  # frames per second one endpoint instance sustains
    review: Literal["human", "skip"] = "human"
    review_workers: int = 1
    objects_per_frame: float = 10.0
    workforce: Workforce = "private"
    worker_hourly_usd: float = 0.0  # private workforce: their wage (0 = report hours only)
    batch_requests: bool = True  # False: one request per frame (JumpStart endpoints)
    instance_usd_per_hour: float | None = None  # overrides the table
    page_size: int = PAGE_SIZE
    shard_frames: int = SHARD_FRAMES
    job_frames: int = MAX_FRAMES_PER_JOB

    # --- listing: sources, pages, batches -------------------------------------------------------
    def source_groups(self) -> list[tuple[int, int]]:
        """(sources, frames each): the frames spread over the sources, the first ones one more."""
        each, extra = divmod(self.frames, self.sources)
        groups = [(extra, each + 1), (self.sources - extra, each)]
        return [(n, f) for n, f in groups if n]

    def pages_of(self, frames: int) -> int:
        """Listing pages of a source of ``frames`` keys (an empty source still lists one page)."""
        return max(1, math.ceil(frames / self.page_size))

    def _page_batches(self, frames: int) -> list[tuple[int, int]]:
        """(batch frames, count) of one page of ``frames`` keys."""
        full, rest = divmod(frames, self.batch_size)
        return [(s, n) for s, n in ((self.batch_size, full), (rest, 1 if rest else 0)) if n]

    def batch_runs(self) -> Iterator[tuple[int, int]]:
        """(batch frames, count) runs of every batch in batch-id order (source, page, position)."""
        for count, frames in self.source_groups():
            full, rest = divmod(frames, self.page_size)
            for _ in range(count):
                for _ in range(full):
                    yield from self._page_batches(self.page_size)
                if rest:
                    yield from self._page_batches(rest)

    @property
    def pages(self) -> int:
        return sum(n * self.pages_of(f) for n, f in self.source_groups())

    @cached_property
    def batches(self) -> int:
        return sum(n for _, n in self.batch_runs())

    @property
    def max_batch(self) -> int:
        return min(self.batch_size, self.frames)

    # --- the plan: labeling jobs and shards ------------------------------------------------------
    @cached_property
    def parts(self) -> list[tuple[int, int]]:
        """(frames, batches) of each labeling job (all frames go to one adjustment stream)."""
        return _pack(self.batch_runs(), self.job_frames) if self.review == "human" else []

    @cached_property
    def shards(self) -> list[tuple[int, int]]:
        """(frames, batches) of each dataset shard."""
        return _pack(self.batch_runs(), self.shard_frames)

    @property
    def review_parts(self) -> int:
        return len(self.parts)

    @property
    def frames_to_review(self) -> int:
        return self.frames if self.review == "human" else 0

    @property
    def inferences(self) -> int:
        return self.models * (self.batches if self.batch_requests else self.frames)


def _pack(runs: Iterable[tuple[int, int]], limit: int) -> list[tuple[int, int]]:
    """Consecutive batches packed as PlanReview cuts them (``cut_parts``, ``cut_shards``): a bin
    closes when the next batch would take it past ``limit``; a bin always takes one batch."""
    bins: list[tuple[int, int]] = []
    frames = batches = 0
    for size, count in runs:
        while count:
            if batches and frames + size > limit:
                bins.append((frames, batches))
                frames = batches = 0
            room = max(1, limit // size) if not batches else (limit - frames) // size
            take = min(count, room)
            frames, batches, count = frames + take * size, batches + take, count - take
    if batches:
        bins.append((frames, batches))
    return bins


@dataclass(frozen=True)
class LineItem:
    service: str
    usage: str
    usd: float
    kind: Kind = "orchestration"


@dataclass
class Estimate:
    shape: RunShape
    items: list[LineItem]
    transitions: int
    lambda_invocations: dict[str, int]
    warnings: list[str] = field(default_factory=list)
    review_hours: float = 0.0
    child_executions: dict[str, int] = field(default_factory=dict)

    @property
    def total_usd(self) -> float:
        return sum(item.usd for item in self.items)

    @property
    def orchestration_usd(self) -> float:
        """Everything but the endpoint (instances, its S3 traffic) and review."""
        return sum(item.usd for item in self.items if item.kind == "orchestration")

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


class _Pages:
    """A listing loop's ``more`` flag over one source: true until its last page has been listed."""

    def __init__(self, pages: int) -> None:
        self.left = pages

    def more(self) -> bool:
        self.left -= 1
        return self.left > 0


def _rule_matches(rule: dict[str, Any], doc: dict[str, Any]) -> bool:
    if "And" in rule:
        return all(_rule_matches(r, doc) for r in rule["And"])
    if "Or" in rule:
        return any(_rule_matches(r, doc) for r in rule["Or"])
    if "Not" in rule:
        return not _rule_matches(rule["Not"], doc)
    value = _path_value(doc, rule["Variable"])
    if isinstance(value, _Pages):
        value = value.more()
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


# What each Distributed Map's ItemReader reads, by the path of its Key/Prefix, and how many items.
_ITEM_READERS: dict[str, Callable[[RunShape], list[tuple[int, dict[str, Any]]]]] = {
    # sources.json: one child per source; each lists its pages in a loop (ListPage, MorePages)
    "$.run.sources_key": lambda s: [
        (n, {"cursor": {"more": _Pages(s.pages_of(f))}}) for n, f in s.source_groups()
    ],
    "$.run.batches_prefix": lambda s: [(s.batches, {})],  # one object per batch
    "$.review_input.manifest.shards_key": lambda s: [(len(s.shards), {})],  # plan/shards.json
}


@dataclass
class _Walk:
    """State entries and child executions of one run, and the largest child history per Map."""

    shape: RunShape
    entries: Counter[str] = field(default_factory=Counter)
    children: Counter[str] = field(default_factory=Counter)
    child_events: dict[str, int] = field(default_factory=dict)

    def machine(self, machine: dict[str, Any], doc: dict[str, Any], items: int, into: Counter[str]) -> None:
        """Count the state entries of ``items`` passes through ``machine`` on its success path."""
        name: str | None = machine["StartAt"]
        while name is not None:
            state = machine["States"][name]
            into[name] += items
            if state["Type"] == "Map":
                self.map(name, state, doc, items, into)
            if state["Type"] == "Choice":
                name = next(
                    (r["Next"] for r in state["Choices"] if _rule_matches(r, doc)), state.get("Default")
                )
                continue
            name = None if state.get("End") or state["Type"] in ("Succeed", "Fail") else state["Next"]

    def map(
        self, name: str, state: dict[str, Any], doc: dict[str, Any], items: int, into: Counter[str]
    ) -> None:
        processor = state.get("ItemProcessor") or state["Iterator"]
        distributed = processor.get("ProcessorConfig", {}).get("Mode") == "DISTRIBUTED"
        if "ItemReader" in state:
            params = state["ItemReader"].get("Parameters", {})
            path = params.get("Key.$") or params.get("Prefix.$")
            if path not in _ITEM_READERS:
                raise ValueError(f"Map {name} reads items from {path}: the cost model does not know how many")
            groups = _ITEM_READERS[path](self.shape)
        else:
            groups = [(len(_path_value(doc, state["ItemsPath"]) or []), {})]
        for count, extra in groups:
            if not count:
                continue
            child_doc = {**doc, **extra}
            one: Counter[str] = Counter()
            self.machine(processor, child_doc, 1, one)
            for state_name, n in one.items():
                into[state_name] += n * count * items
            if distributed:
                self.children[name] += count * items
                events = 2 + sum(n * _state_events(processor, s) for s, n in one.items())
                self.child_events[name] = max(self.child_events.get(name, 0), events)


def _state_events(machine: dict[str, Any], name: str) -> int:
    state = _find_state(machine, name)
    events = _EVENTS.get(state["Type"], 2)
    if str(state.get("Resource", "")).endswith(".waitForTaskToken"):
        events += 1
    return events


def _find_state(machine: dict[str, Any], name: str) -> dict[str, Any]:
    for m in _machines(machine):
        if name in m["States"]:
            return dict(m["States"][name])
    raise KeyError(name)


def _walk(definition: dict[str, Any], shape: RunShape) -> _Walk:
    doc = {
        "run": {"review": shape.review},
        "review_input": {
            "manifest": {"frames_to_review": shape.frames_to_review, "parts": [{}] * shape.review_parts}
        },
    }
    walk = _Walk(shape)
    walk.machine(definition, doc, 1, walk.entries)
    return walk


def state_entries(definition: dict[str, Any], shape: RunShape) -> Counter[str]:
    """How often each state of the ASL is entered in one successful run of this shape (every
    execution: the parent and each Distributed Map child)."""
    return _walk(definition, shape).entries


def child_executions(definition: dict[str, Any], shape: RunShape) -> dict[str, int]:
    """Child executions per Distributed Map (each start is billed as one state transition)."""
    return dict(_walk(definition, shape).children)


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
def lambda_units(function: str, shape: RunShape) -> tuple[float, float]:
    """(units over the run, most units in one invocation) that LAMBDA_MS's second number multiplies."""
    per_request = 1 if shape.batch_requests else shape.max_batch
    largest_source = max(f for _, f in shape.source_groups())
    reviewed = sum(b for _, b in shape.parts)
    units = {
        "ListPageFunction": (shape.frames, min(shape.page_size, largest_source)),
        "InvokeModelsFunction": (shape.inferences, shape.models * per_request),
        "MergeBatchFunction": (shape.frames * shape.models, shape.max_batch * shape.models),
        "PlanReviewFunction": (shape.batches, shape.batches),
        "AssembleManifestFunction": (reviewed, max((b for _, b in shape.parts), default=0)),
        "CollectReviewFunction": (reviewed, max((b for _, b in shape.parts), default=0)),
        "PublishShardFunction": (shape.frames, max(f for f, _ in shape.shards)),
        "FinishRunFunction": (shape.pages + len(shape.shards), shape.pages + len(shape.shards)),
    }
    return units.get(function, (0, 0))


def _lambda(
    invocations: dict[str, int], settings: dict[str, tuple[int, int]], shape: RunShape, prices: Prices
) -> tuple[LineItem, list[str]]:
    gb_seconds = 0.0
    warnings = []
    for function, count in invocations.items():
        if not count:
            continue
        memory_mb, timeout_s = settings[function]
        fixed, per_unit = LAMBDA_MS[function]
        total_units, most = lambda_units(function, shape)
        longest = (fixed + per_unit * most) / 1000
        if longest > timeout_s:
            unit = LAMBDA_UNITS[function]
            warnings.append(
                f"{function} is estimated at ~{longest:,.0f} s for its largest invocation "
                f"({most:,.0f} x {unit}), past its {timeout_s} s timeout: split the run"
            )
        gb_seconds += (count * fixed + per_unit * total_units) / 1000 * memory_mb / 1024
    requests = sum(invocations.values())
    usd = gb_seconds * prices.lambda_gb_second_arm + requests * prices.lambda_request
    return LineItem("Lambda (arm64)", f"{requests:,} invocations, {gb_seconds:,.0f} GB-s", usd), warnings


def _lists(keys: int, page: int = _LIST_PAGE) -> int:
    """ListObjectsV2 requests to list ``keys`` objects (one even when there are none)."""
    return max(1, math.ceil(keys / page))


def _records_lists(keys: int) -> int:
    """The LISTs of the run's own records, read ``LIST_PAGE`` keys a page (bounded memory)."""
    return _lists(keys, LIST_PAGE)


def _gallery_reads(shards: Iterable[tuple[int, int]]) -> int:
    """The shard samples report.html's gallery reads: every shard's, up to GALLERY_MAX of them."""
    return min(GALLERY_MAX, sum(1 for frames, _ in shards if frames))


def _upload(size: float) -> int:
    """PUT-class requests of a streamed upload: one PUT, or create + parts + complete."""
    return 1 if size < _UPLOAD_PART_BYTES else 2 + math.ceil(size / _UPLOAD_PART_BYTES)


def s3_requests(shape: RunShape) -> dict[str, tuple[int, int]]:
    """(PUT/COPY/POST/LIST, GET) requests of one run, by who makes them: ``workflow`` (the Lambda
    functions), ``step functions`` (ItemReader, ResultWriter), ``endpoint`` and ``ground truth``."""
    b, m, pages, shards = shape.batches, shape.models, shape.pages, len(shape.shards)
    human = shape.review == "human"
    parts = shape.review_parts
    reviewed_batches = sum(n for _, n in shape.parts)
    # PrepareRun: profile, sources, request.
    puts, gets = 3, 0
    # ListPage, per page: one LIST; its batches; its skipped and page-count records.
    puts += pages + b + 2 * pages
    # InvokeModels, per batch: counts (a 404 unless done), the batch; a request file per model.
    gets += 2 * b
    puts += m * b if shape.batch_requests else 0
    # MergeBatch, per batch: counts (404), batch, profile, every output (JumpStart: each frame's
    # header for its size); labels, counts, and the review lines of the adjustment stream.
    gets += 3 * b + shape.inferences + (0 if shape.batch_requests else m * shape.frames)
    puts += (3 if human else 2) * b
    # InferenceCallback, per batch: the batch's inference records it hands MergeBatch (PUT, then GET).
    puts += b
    gets += b
    # PlanReview: profile, LIST + GET every counts object, LIST the batches; label categories,
    # worker template, one plan per job, the jobs' batch ranges (parts.json), the shard plan.
    gets += 1 + b
    puts += 2 * _records_lists(b) + 2 + parts + 2
    # AssembleManifest, per job: its plan, the review lines of each of its batches; the manifest.
    line_bytes = _LINE_BYTES + _LINE_BYTES_PER_OBJECT * shape.objects_per_frame
    gets += parts + reviewed_batches
    puts += sum(_upload(frames * line_bytes) for frames, _ in shape.parts)
    # StartReview, per job: the run's profile (its review backend).
    gets += parts
    # CollectReview, per job: its plan, the job's output manifest; reviewed lines per batch.
    gets += 2 * parts
    puts += reviewed_batches
    # PublishShard, per shard: profile, the jobs' batch ranges (when reviewed), each batch's labels
    # and reviewed lines; output manifest, COCO, machine pre-labels (each streamed: one PUT, or a
    # multipart upload past 8 MiB), frame report, gallery sample, shard counts.
    gets += shards + b + (shards + b if human else 0)
    coco_bytes = _COCO_IMAGE_BYTES + _COCO_BYTES_PER_OBJECT * shape.objects_per_frame
    puts += sum(_upload(f * line_bytes) + 2 * _upload(f * coco_bytes) + 3 for f, _ in shape.shards)
    # FinishRun: profile, LIST + GET the page and shard counts, the sources and the shard plan (every
    # page and planned shard must have left its record); index, stats, scorecard, report; then
    # report.html (from the same pass): the run's start (HEAD request.json), the first shards'
    # gallery samples, the page itself.
    gets += 1 + pages + shards + 2
    puts += _records_lists(pages) + _records_lists(2 * shards) + (4 if human else 3)  # counts, gallery
    gets += 1 + _gallery_reads(shape.shards)
    puts += 1
    workflow = (puts, gets)
    # Step Functions: ItemReaders (sources.json, LIST batches/, shards.json) and each Distributed
    # Map's ResultWriter (manifest.json and one results file).
    sfn = (_lists(b) + 3 * 2, 2)
    # The endpoint reads each request (and each frame), and writes one output per inference.
    endpoint = (shape.inferences, (shape.inferences if shape.batch_requests else 0) + m * shape.frames)
    found = {"workflow": workflow, "step functions": sfn, "endpoint": endpoint}
    if human:
        # Ground Truth: each worker's browser reads the frame; responses and consolidations are written.
        k = shape.review_workers
        found["ground truth"] = (shape.frames * (k + 1) + parts, shape.frames * k + 3 * parts)
    return found


@dataclass(frozen=True)
class DynamoUsage:
    """Requests and request units of one run (the frame ledger and the task-token table)."""

    write_requests: int
    read_requests: int
    write_units: float
    read_units: float


def dynamodb_usage(shape: RunShape) -> DynamoUsage:
    """Ledger: a conditional claim (ListPage) and settle (PublishShard) per frame, the run record
    written twice (running, succeeded). Tokens: a parked item per inference and per batch, a
    2-item transaction per notification (transactional writes count twice), the batch claimed and
    released, each labeling job parked and claimed; reads of the inference and batch items."""
    inferences, b, parts = shape.inferences, shape.batches, shape.review_parts
    ledger = 2 * shape.frames + 2
    writes = ledger + inferences + b + inferences + 2 * b + 2 * parts
    units = float(ledger)
    units += inferences + _TOKEN_ITEM_WCU * b  # park: one item per inference + the batch item
    units += inferences * 2 * (1 + _TOKEN_ITEM_WCU)  # each notification: a 2-item transaction
    units += 2 * _TOKEN_ITEM_WCU * b  # claim and release the batch
    units += 2 * _TOKEN_ITEM_WCU * parts  # park and claim each labeling job
    # Each notification reads its inference item and the batch item (consistent); the resumed
    # batch reads its inference items (consistent).
    reads = 3 * inferences
    read_units = inferences * (0.5 + 1) + inferences
    return DynamoUsage(writes, reads, units, read_units)


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
        LineItem(
            "Ground Truth",
            f"{shape.frames:,} labeled objects",
            _ground_truth_fee(shape.frames, prices),
            "review",
        )
    ]
    if shape.workforce == "public":
        per_task = task_price("adjust", "public").usd_per_object_per_worker
        items.append(
            LineItem(
                "Mechanical Turk workers", f"{reviews:,} tasks x ${per_task}", reviews * per_task, "review"
            )
        )
    else:
        rate = f"at ${shape.worker_hourly_usd:g}/h" if shape.worker_hourly_usd else "(wage not priced)"
        items.append(
            LineItem(
                "Private workforce",
                f"{hours:,.0f} worker-hours {rate}",
                hours * shape.worker_hourly_usd,
                "review",
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


def _bounds(walk: _Walk, shape: RunShape) -> list[str]:
    """Where the run passes a Step Functions quota: one child execution's history."""
    warnings = []
    for name, events in sorted(walk.child_events.items()):
        if events > HISTORY_EVENTS_LIMIT:
            largest = max(f for _, f in shape.source_groups())
            detail = (
                f" (a source of {largest:,} frames lists {shape.pages_of(largest):,} pages in one child)"
                if name == "ListSources"
                else ""
            )
            warnings.append(
                f"{name}: one child execution records ~{events:,} history events{detail}, past Step "
                f"Functions' {HISTORY_EVENTS_LIMIT:,}-event limit: split it over more prefixes (--sources)"
            )
    return warnings


def _s3_item(service: str, puts: int, gets: int, prices: Prices, kind: Kind) -> LineItem:
    return LineItem(
        service, f"{puts:,} PUT/LIST, {gets:,} GET", puts * prices.s3_put + gets * prices.s3_get, kind
    )


def estimate(
    definition: dict[str, Any],
    settings: dict[str, tuple[int, int]],
    shape: RunShape,
    prices: Prices = PRICES,
) -> Estimate:
    """The cost of one successful run of ``shape`` through the ASL ``definition``.

    ``settings`` maps each function to (memory MB, timeout s), as :func:`function_settings` reads them.
    """
    positive = (shape.frames, shape.batch_size, shape.models, shape.sources, shape.page_size)
    if min(positive) < 1 or shape.throughput_fps <= 0 or min(shape.shard_frames, shape.job_frames) < 1:
        raise ValueError("frames, batch size, models, sources and throughput must be positive")
    walk = _walk(definition, shape)
    transitions = sum(walk.entries.values()) + sum(walk.children.values())
    invocations = lambda_invocations(definition, shape)
    lambda_item, warnings = _lambda(invocations, settings, shape, prices)
    warnings += _bounds(walk, shape)
    hours = shape.models * (shape.frames / shape.throughput_fps / 3600 + ENDPOINT_IDLE_HOURS_PER_RUN)
    s3 = s3_requests(shape)
    wf_puts, wf_gets = (sum(x) for x in zip(s3["workflow"], s3["step functions"], strict=True))
    dynamo = dynamodb_usage(shape)
    review_items, review_hours = _review(shape, prices)
    children = sum(walk.children.values())
    items = [
        LineItem(
            "Step Functions (Standard)",
            f"{transitions:,} state transitions ({children:,} child runs)",
            transitions * prices.state_transition,
        ),
        lambda_item,
        LineItem("SNS", f"{shape.inferences:,} notifications", shape.inferences * prices.sns_publish),
        _s3_item("S3 requests (workflow)", wf_puts, wf_gets, prices, "orchestration"),
        LineItem(
            "DynamoDB (on-demand)",
            f"{dynamo.write_units:,.0f} WRU, {dynamo.read_units:,.0f} RRU",
            dynamo.write_units * prices.dynamodb_write + dynamo.read_units * prices.dynamodb_read,
        ),
        LineItem(
            f"SageMaker endpoint ({shape.instance_type})",
            f"{hours:,.1f} instance-hours at {shape.throughput_fps:g} frames/s",
            hours * _instance_price(shape, prices),
            "inference",
        ),
        _s3_item("S3 requests (endpoint)", *s3["endpoint"], prices, "inference"),
    ]
    if "ground truth" in s3:
        items.append(_s3_item("S3 requests (Ground Truth)", *s3["ground truth"], prices, "review"))
    items += review_items
    return Estimate(
        shape, items, transitions, invocations, warnings, review_hours, child_executions=dict(walk.children)
    )
