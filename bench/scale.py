"""`make bench-scale`: the real state machine in local mode over 10k, 50k and 100k frames.

Each size is a fresh :class:`LocalCloud` (moto in-process) running the real ASL file and the real
handlers over synthetic frame keys (``.jpg``, tiny bodies) in the local S3, review skipped. The
model is a STAND-IN: at start the real NanoDet runs once on a few nuScenes frames (../shared; the
demo photos when it is absent) and the stand-in's ``predict_bytes(data, frame)`` returns one of
those recorded Detections, chosen by a hash of the frame name, re-targeted to the frame, without
decoding the image. So every downstream step handles real detections at fleet counts.

Figures per size:

- ``wall_s``: start of the execution to its end (the upload of the synthetic keys is not counted);
- ``peak_mb``: per step, the traced Python heap peak (``tracemalloc``, numpy included) of that
  step's LARGEST invocation of the run, re-run alone after the run, so that handlers running
  concurrently in other threads do not add to it (moto answers in-process: its side of the
  step's calls is in the figure too);
- ``max_frames_per_invocation``: from the run's records (listing pages' ``listed``, batches'
  frames, shards' ``frames``); PlanReview and FinishRun touch no frame: what they read is in
  ``objects_read``.

    python -m bench.scale                                  # 10k, 50k, 100k
    python -m bench.scale --frames 2000 --batch-size 100   # a quick look
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import gc
import json
import math
import sys
import threading
import time
import tracemalloc
import zlib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED_FRAMES = ROOT / ".." / "shared" / "data" / "nuscenes_cam_front_sequence" / "frames"
MODEL = "nanodet-coco"
ENDPOINT = "autolabel-nanodet-coco"
LOGS = "fleet-logs"
RECORDED_FRAMES = 8
# Steps measured: ASL state name -> template function.
STEPS = {
    "ListPage": "ListPageFunction",
    "InvokeModels": "InvokeModelsFunction",
    "MergeBatch": "MergeBatchFunction",
    "PlanReview": "PlanReviewFunction",
    "PublishShard": "PublishShardFunction",
    "FinishRun": "FinishRunFunction",
}
FLAT_LIMIT = 1.5
# Quotas the extrapolation is held against.
HISTORY_EVENTS = 25_000
LAMBDA_TIMEOUT_S = 900
LAMBDA_MAX_MB = 10_240
SOURCE_PREFIX_FRAMES = 10_000  # synthetic frames per drive-log prefix (one source each)


# --- the model stand-in ---------------------------------------------------------------------------
def recorded_detections() -> tuple[list[Any], str]:
    """Run the real NanoDet once on a few frames; return its Detections and where the frames came from."""
    from workflow.domain.profile import DEFAULT_MIN_SCORE
    from workflow.inference.runner import load_detector
    from workflow.inference.settings import InferenceSettings

    if SHARED_FRAMES.is_dir():
        paths = sorted(SHARED_FRAMES.glob("*.jpg"))[:: max(1, 40 // RECORDED_FRAMES)][:RECORDED_FRAMES]
        origin = f"{len(paths)} nuScenes frames"
    else:
        from workflow.cli.run import demo_frames

        paths = sorted(demo_frames().glob("*.jpg"))
        origin = f"{len(paths)} demo photos (../shared is absent)"
        print("../shared is absent: recording NanoDet detections on the demo photos", file=sys.stderr)
    # The endpoint's default settings, with its score floor raised to the profile's pre-label floor:
    # the candidates under it (up to 300 a frame from 0.05) are dropped by MergeBatch anyway, and
    # carrying them through the stand-in would make the bench measure JSON, not the workflow.
    detector = load_detector(MODEL, InferenceSettings(score_threshold=DEFAULT_MIN_SCORE))
    recorded = [detector.predict_bytes(p.read_bytes(), p.name) for p in paths]
    return recorded, f"{origin} at score >= {DEFAULT_MIN_SCORE}"


class RecordedDetections:
    """Model STAND-IN: one of NanoDet's recorded Detections per frame (by a hash of its name),
    re-targeted to the frame. The image is never decoded."""

    def __init__(self, recorded: list[Any]) -> None:
        self.recorded = recorded
        self.calls = 0
        self._lock = threading.Lock()

    def predict_bytes(self, data: bytes, frame: str) -> Any:
        with self._lock:
            self.calls += 1
        chosen = self.recorded[zlib.crc32(frame.encode()) % len(self.recorded)]
        return dataclasses.replace(chosen, frame=frame)


# --- one run --------------------------------------------------------------------------------------
class Recorder:
    """Wraps the cloud's handlers: keeps a copy of every event of the measured steps."""

    def __init__(self, cloud: Any) -> None:
        self.events: dict[str, list[dict[str, Any]]] = {name: [] for name in STEPS}
        self.seconds: Counter[str] = Counter()
        self._lock = threading.Lock()
        for step, function in STEPS.items():
            cloud.handlers[function] = self._wrap(step, cloud.handlers[function])

    def _wrap(self, step: str, handler: Callable[..., Any]) -> Callable[..., Any]:
        def recorded(event: dict[str, Any], context: Any) -> Any:
            with self._lock:
                self.events[step].append(copy.deepcopy(event))
            start = time.perf_counter()
            try:
                return handler(event, context)
            finally:
                with self._lock:
                    self.seconds[step] += time.perf_counter() - start

        recorded.original = handler  # type: ignore[attr-defined]
        return recorded


def upload(cloud: Any, frames: int) -> list[str]:
    """Synthetic frame keys (tiny bodies) in the local S3, one drive-log prefix per 10,000 frames."""
    from moto.s3.models import s3_backends

    from workflow.local.cloud import ACCOUNT

    cloud.s3.create_bucket(Bucket=LOGS)
    backend = s3_backends[ACCOUNT]["aws"]
    body = b"\xff\xd8\xff\xe0 synthetic frame \xff\xd9"
    prefixes = []
    for i in range(frames):
        prefix = f"drive-{i // SOURCE_PREFIX_FRAMES:04d}"
        if not prefixes or prefixes[-1] != prefix:
            prefixes.append(prefix)
        # Straight into moto's S3 backend: 100,000 PutObject calls through boto3 take minutes.
        backend.put_object(LOGS, f"{prefix}/cam-front/{i:07d}.jpg", body)
    return [f"s3://{LOGS}/{p}/" for p in prefixes]


def _json(cloud: Any, key: str) -> Any:
    return json.loads(cloud.s3.get_object(Bucket=cloud.data_bucket, Key=key)["Body"].read())


def _keys(cloud: Any, prefix: str) -> list[str]:
    pages = cloud.s3.get_paginator("list_objects_v2").paginate(Bucket=cloud.data_bucket, Prefix=prefix)
    return [o["Key"] for page in pages for o in page.get("Contents", [])]


def traced_peak_mb(cloud: Any, function: str, event: dict[str, Any]) -> tuple[float, float]:
    """Re-run one invocation alone under tracemalloc: (peak MB of the traced heap, seconds)."""
    from workflow.local.cloud import LocalContext

    handler = cloud.handlers[function]
    handler = getattr(handler, "original", handler)
    gc.collect()
    tracemalloc.start()
    start = time.perf_counter()
    try:
        handler(copy.deepcopy(event), LocalContext(function))
        elapsed = time.perf_counter() - start
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20, elapsed


def bench_size(frames: int, batch_size: int, max_concurrency: int, recorded: list[Any]) -> dict[str, Any]:
    from workflow.local.cloud import LocalCloud

    model = RecordedDetections(recorded)
    with LocalCloud({ENDPOINT: lambda: model}, max_concurrent_invocations=4) as cloud:
        start = time.perf_counter()
        sources = upload(cloud, frames)
        upload_s = time.perf_counter() - start
        recorder = Recorder(cloud)
        request = {
            "sources": sources,
            "batch_size": batch_size,
            "max_concurrency": max_concurrency,
            "review": "skip",
            "models": [{"name": MODEL, "endpoint_name": ENDPOINT}],
        }
        start = time.perf_counter()
        arn = cloud.start_run(request)
        # local mode labels ~12-20 frames/s here: a 100,000-frame run takes well over an hour
        described = cloud.wait(arn, timeout=max(3600.0, frames * 0.5), poll=0.5)
        wall = time.perf_counter() - start
        if described["status"] != "SUCCEEDED":
            raise RuntimeError(f"{frames} frames: run {described['status']}: {described.get('cause')}")
        summary = json.loads(described["output"])
        # Said now: the re-runs below take a while (PublishShard's full shard under tracemalloc is
        # several times its run), and a run cut off there still leaves its wall time in the log.
        print(
            f"{frames:>7} frames  run {wall:.1f} s ({frames / wall:.0f} frames/s, upload {upload_s:.1f} s); "
            "re-running each step's largest invocation under tracemalloc",
            flush=True,
        )
        run_id = summary["run_id"]
        base = f"runs/{run_id}"
        pages = [_json(cloud, k) for k in _keys(cloud, f"{base}/pages/")]
        batches = {
            k.rsplit("/", 1)[-1].removesuffix(".json"): len(_json(cloud, k)["frames"])
            for k in _keys(cloud, f"{base}/batches/")
        }
        shards = _json(cloud, f"{base}/plan/shards.json")
        counts = _keys(cloud, f"{base}/counts/")
        shard_counts = [k for k in _keys(cloud, f"{base}/dataset/shards/") if k.endswith(".counts.json")]
        report = _json(cloud, f"{base}/report.json")
        calls = dict(cloud.invocations)

        # The largest invocation of each step, from the run's records, and the event that ran it.
        events = recorder.events
        biggest_page = max(pages, key=lambda p: p["listed"])
        largest: dict[str, dict[str, Any]] = {
            "ListPage": next(
                e
                for e in events["ListPage"]
                if e["source"]["index"] == biggest_page["source_index"]
                and (e.get("cursor") or {}).get("page", 0) == biggest_page["page"]
            ),
            "PlanReview": events["PlanReview"][-1],
            "FinishRun": events["FinishRun"][-1],
        }
        biggest_batch = max(batches, key=lambda b: batches[b])
        largest["MergeBatch"] = next(
            e for e in events["MergeBatch"] if e["batch_key"].endswith(f"/{biggest_batch}.json")
        )
        largest["InvokeModels"] = next(
            e for e in events["InvokeModels"] if e["batch_key"].endswith(f"/{biggest_batch}.json")
        )
        biggest_shard = max(shards, key=lambda s: s["frames"])
        largest["PublishShard"] = next(
            e for e in events["PublishShard"] if e["shard"]["index"] == biggest_shard["index"]
        )

        # Re-run each one alone under tracemalloc (moto's state is still there).
        peaks: dict[str, float] = {}
        rerun_s: dict[str, float] = {}
        # MergeBatch skips a batch whose counts exist: delete them so it redoes the work.
        cloud.s3.delete_object(Bucket=cloud.data_bucket, Key=f"{base}/counts/{biggest_batch}.json")
        for step in ("ListPage", "MergeBatch", "PlanReview", "PublishShard", "FinishRun"):
            peaks[step], rerun_s[step] = traced_peak_mb(cloud, STEPS[step], largest[step])
        peaks["InvokeModels"], rerun_s["InvokeModels"] = invoke_models_peak(cloud, largest["InvokeModels"])

    max_frames = {
        "ListPage": max(p["listed"] for p in pages),
        "InvokeModels": max(batches.values()),
        "MergeBatch": max(batches.values()),
        "PublishShard": biggest_shard["frames"],
        "PlanReview": 0,
        "FinishRun": 0,
    }
    return {
        "frames": frames,
        "wall_s": round(wall, 1),
        "peak_mb": {k: round(v, 2) for k, v in peaks.items()},
        "max_frames_per_invocation": max_frames,
        "objects_read": {
            "PlanReview": {"counts": len(counts), "batches_listed": len(batches)},
            "FinishRun": {"shard_counts": len(shard_counts), "pages": len(pages)},
        },
        "invocations": {step: calls.get(fn, 0) for step, fn in STEPS.items()},
        "all_invocations": calls,
        "sources": len(sources),
        "pages": len(pages),
        "batches": len(batches),
        "shards": len(shards),
        "max_pages_per_source": max(Counter(p["source_index"] for p in pages).values()),
        "labeled": report.get("labeled", summary.get("labeled")),
        "failed": report.get("failed", summary.get("failed")),
        "model_calls": model.calls,
        "batch_size": batch_size,
        "max_concurrency": max_concurrency,
        "upload_s": round(upload_s, 1),
        "handler_seconds": {k: round(v, 1) for k, v in recorder.seconds.items()},
        "rerun_s": {k: round(v, 2) for k, v in rerun_s.items()},
    }


def invoke_models_peak(cloud: Any, event: dict[str, Any]) -> tuple[float, float]:
    """InvokeModels alone: it starts the batch's async inferences and parks the task token. The
    endpoint is held back for the measurement (its requests are queued, not run), so only the
    handler's own work is traced; the parked token is of a finished execution and is never used."""
    endpoint = cloud.endpoints[ENDPOINT]
    original = endpoint.invoke_endpoint_async
    answers: list[dict[str, Any]] = []

    def accept_only(**kwargs: Any) -> dict[str, Any]:
        # The endpoint's answer without running the model (it would call back a finished execution).
        inference_id = f"bench-{len(answers)}"
        answer = {
            "InferenceId": inference_id,
            "OutputLocation": f"s3://{cloud.data_bucket}/async/{ENDPOINT}/output/{inference_id}.out",
        }
        answers.append(answer)
        return answer

    endpoint.invoke_endpoint_async = accept_only  # type: ignore[method-assign]
    try:
        return traced_peak_mb(cloud, STEPS["InvokeModels"], event)
    finally:
        endpoint.invoke_endpoint_async = original  # type: ignore[method-assign]


# --- reading the figures --------------------------------------------------------------------------
def flatness(results: list[dict[str, Any]]) -> dict[str, float]:
    small, large = results[0], results[-1]
    return {step: large["peak_mb"][step] / max(small["peak_mb"][step], 1e-6) for step in large["peak_mb"]}


def _slope(results: list[dict[str, Any]], step: str, per: Callable[[dict[str, Any]], int]) -> float:
    """MB per object read, between the smallest and the largest measured run (0 when one run)."""
    first, last = results[0], results[-1]
    span = per(last) - per(first)
    return 0.0 if span <= 0 else max(0.0, (last["peak_mb"][step] - first["peak_mb"][step]) / span)


def extrapolate(results: list[dict[str, Any]], frames: int) -> dict[str, Any]:
    """The shape of a run of ``frames`` frames, from the workflow's constants and the measured runs."""
    from workflow.domain.records import MAX_FRAMES_PER_JOB, PAGE_SIZE, SHARD_FRAMES

    last = results[-1]
    batch = last["batch_size"]
    sources = math.ceil(frames / SOURCE_PREFIX_FRAMES)
    pages_per_source = math.ceil(SOURCE_PREFIX_FRAMES / PAGE_SIZE)
    pages = sources * pages_per_source
    batches = math.ceil(frames / batch)
    shards = math.ceil(frames / SHARD_FRAMES)
    # A source's child execution: ExecutionStarted, StartListing (2), per page a Task (entered,
    # scheduled, started, succeeded, exited) and a Choice (entered, exited), Listed (2), Succeeded.
    loop_events = 1 + 2 + pages_per_source * 7 + 2 + 1
    plan_read = lambda r: r["objects_read"]["PlanReview"]["counts"]  # noqa: E731
    finish_read = lambda r: sum(r["objects_read"]["FinishRun"].values())  # noqa: E731
    plan_mb = last["peak_mb"]["PlanReview"] + _slope(results, "PlanReview", plan_read) * (
        batches - plan_read(last)
    )
    finish_mb = last["peak_mb"]["FinishRun"] + _slope(results, "FinishRun", finish_read) * (
        shards + pages - finish_read(last)
    )
    return {
        "frames": frames,
        "sources": sources,
        "invocations": {
            "ListPage": pages,
            "InvokeModels": batches,
            "MergeBatch": batches,
            "PlanReview": 1,
            "PublishShard": shards,
            "FinishRun": 1,
        },
        "largest_invocation_frames": {
            "ListPage": PAGE_SIZE,
            "InvokeModels": batch,
            "MergeBatch": batch,
            "PublishShard": SHARD_FRAMES,
        },
        "objects_read": {
            "PlanReview": {"batches_listed": batches, "counts": batches},
            "FinishRun": {"shard_counts": shards, "pages": pages},
        },
        "projected_peak_mb": {"PlanReview": round(plan_mb, 1), "FinishRun": round(finish_mb, 1)},
        "child_executions": {
            "ListSources": sources,
            "LabelBatches": batches,
            "PublishShards": shards,
            "total": sources + batches + shards,
        },
        "labeling_jobs_if_reviewed": math.ceil(frames / MAX_FRAMES_PER_JOB),
        "listpage_events_per_source": loop_events,
        "one_prefix_events": math.ceil(frames / PAGE_SIZE) * 7 + 6,
    }


def _commit() -> str:
    """The commit measured (and ``+changes`` when the tree differs from it), so runs compare."""
    import subprocess

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return out.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    return head + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", default="10000,50000,100000")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--max-concurrency", type=int, default=40)
    parser.add_argument("--out", default=str(ROOT / "bench-out" / "scale.json"))
    parser.add_argument("--from-json", help="print the checks and extrapolation of an earlier scale.json")
    args = parser.parse_args()
    if args.from_json:
        results = json.loads(Path(args.from_json).read_text())
        args.batch_size = results[-1]["batch_size"]
        return report(results, args)
    sizes = [int(s) for s in args.frames.split(",") if s.strip()]

    recorded, origin = recorded_detections()
    boxes = sum(len(d) for d in recorded)
    print(
        f"model: stand-in returning NanoDet detections recorded on {origin}, no decoding "
        f"({boxes} boxes over {len(recorded)} recordings, {boxes / len(recorded):.1f} per frame)"
    )
    print(
        "peak_mb: traced Python heap peak (tracemalloc, numpy included) of the step's largest "
        "invocation, re-run alone after the run; moto answers in-process, so its side is included"
    )
    results = []
    commit = _commit()  # the code this process runs (read now: commits made while it runs are not in it)
    for frames in sizes:
        result = bench_size(frames, args.batch_size, args.max_concurrency, recorded)
        result["model"] = f"stand-in returning NanoDet detections recorded on {origin}, no decoding"
        result["commit"] = commit
        results.append(result)
        peaks = "  ".join(f"{k} {v:.1f}" for k, v in result["peak_mb"].items())
        most = "  ".join(f"{k} {v}" for k, v in result["max_frames_per_invocation"].items())
        print(f"{frames:>7} frames  {result['wall_s']:7.1f} s  ({frames / result['wall_s']:.0f} frames/s)")
        print(f"         peak MB: {peaks}")
        print(f"         max frames per invocation: {most}")
        print(f"         objects read: {json.dumps(result['objects_read'])}")
        print(f"         invocations: {json.dumps(result['invocations'])}", flush=True)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
    return report(results, args)


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> int:
    """Print the flatness check and the extrapolation; 1 when a step's peak grows over the limit."""
    ok = True
    if len(results) > 1:
        print(
            f"peak memory from {results[0]['frames']:,} to {results[-1]['frames']:,} frames "
            f"(limit {FLAT_LIMIT}x):"
        )
        for step, ratio in flatness(results).items():
            flat = ratio <= FLAT_LIMIT
            ok &= flat
            print(f"  {step:<13} {ratio:5.2f}x  {'flat' if flat else 'GROWS'}")
    print(
        f"extrapolation at batch size {args.batch_size}, {SOURCE_PREFIX_FRAMES:,} frames per source prefix:"
    )
    extrapolations = [extrapolate(results, n) for n in (1_000_000, 10_000_000)]
    for e in extrapolations:
        print(f"  {e['frames']:>10,} frames, {e['sources']:,} sources:")
        print(f"    invocations {json.dumps(e['invocations'])}")
        print(f"    largest invocation (frames) {json.dumps(e['largest_invocation_frames'])}")
        print(f"    objects read {json.dumps(e['objects_read'])}")
        print(
            "    projected peak MB (linear in objects read, smallest to largest run) "
            f"{json.dumps(e['projected_peak_mb'])}"
        )
        print(f"    child executions {json.dumps(e['child_executions'])}")
        print(
            f"    ListPage loop: {e['listpage_events_per_source']} history events per source "
            f"(limit {HISTORY_EVENTS:,}); all {e['frames']:,} frames under ONE prefix would need "
            f"{e['one_prefix_events']:,}"
        )
    max_prefix = (HISTORY_EVENTS - 6) // 7 * 1000
    print(f"  one source prefix holds at most ~{max_prefix:,} frames before its listing loop hits the limit")
    Path(args.out).with_name("scale-extrapolation.json").write_text(json.dumps(extrapolations, indent=2))
    print(f"results in {args.out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
