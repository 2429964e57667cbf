"""PublishShard alone on one shard: its memory per shard size (part of `make bench-scale`).

A shard is the largest unit any invocation of the fan-in holds (at most ``SHARD_FRAMES`` frames), so
its memory is the one that must fit the function's. The run's records are written as PrepareRun,
ListPage and MergeBatch write them (tests/unit/fan_in_steps.py) for synthetic frames of ``--boxes``
boxes each, review skipped, into moto's S3 run as a server in a process of its own; then one
PublishShard runs in a fresh process, as the function would, with S3 over HTTP and the ledger the
in-memory fake (its settles cost no memory here). That process reports:

- ``peak_mb``: the traced Python heap peak (``tracemalloc``, numpy included) of the invocation;
- ``peak_rss_mb`` and ``baseline_rss_mb``: the peak resident memory of the process, and its
  resident memory after the imports, before the invocation (what the function's MemorySize must
  hold), measured on a second, untraced invocation of the same shard (tracemalloc's own records
  inflate the resident memory);
- ``written_mb``: the shard's files (output manifest, COCO, machine pre-labels), an upper bound of
  what PublishShard spools to ephemeral storage on the way.

Results: stdout and bench-out/shard-memory.json.

    python -m bench.shard_memory --frames 1000,3000,10000 --boxes 63
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BATCH = 100
BUCKET = "data"


@contextmanager
def moto_server() -> Any:
    """moto's S3 as a server in its own process; yields its endpoint URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("moto's server did not start") from None
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=30)


def s3_client(endpoint: str) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )


def write_run(endpoint: str, frames: int, boxes: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's records for ``frames`` frames of ``boxes`` boxes; returns (shard plan, state)."""
    import numpy as np

    sys.path.insert(0, str(ROOT / "tests" / "unit"))
    from fan_in_steps import merged_batch, run_context, synthetic_frame  # type: ignore[import-not-found]

    from workflow.adapters.s3 import S3Store
    from workflow.domain.profile import default_profile
    from workflow.domain.records import batch_id
    from workflow.settings import Settings
    from workflow.steps.plan import plan_review

    client = s3_client(endpoint)
    client.create_bucket(Bucket=BUCKET)
    s3 = S3Store(client)
    settings = Settings(data_bucket=BUCKET, token_table="t", ledger_table="l")
    run = run_context(["m"], review="skip", batch_size=BATCH)
    profile = default_profile()
    names = list(profile.taxonomy.names)[:6]
    rng = np.random.default_rng(0)
    for b in range(frames // BATCH):
        batch = [synthetic_frame(rng, names, boxes, b, f) for f in range(BATCH)]
        merged_batch(s3, run, profile, settings, batch, batch=batch_id(0, b // 10, b % 10))
    manifest = plan_review(run, settings, s3)
    shard = s3.get_json(f"s3://{run.bucket}/{manifest.shards_key}")[0]
    return shard, {"run": run.model_dump(mode="json"), "reviews": [], "review_error": None}


def publish_child(endpoint: str, shard: dict[str, Any], state: dict[str, Any], trace: bool) -> dict[str, Any]:
    """In this (fresh) process: one PublishShard, under tracemalloc if ``trace`` (whose own records
    inflate the resident memory, so that is measured on an untraced invocation)."""
    import gc
    import resource
    import tracemalloc

    sys.path.insert(0, str(ROOT / "tests" / "unit"))
    from port_fakes import MemoryLedger  # type: ignore[import-not-found]

    from workflow.adapters.s3 import S3Store
    from workflow.domain.records import ShardPlan
    from workflow.settings import Settings
    from workflow.steps.publish import publish_shard

    s3 = S3Store(s3_client(endpoint))
    settings = Settings(data_bucket=BUCKET, token_table="t", ledger_table="l")
    gc.collect()
    baseline = _rss_mb()
    if trace:
        tracemalloc.start()
    start = time.perf_counter()
    try:
        counts = publish_shard(ShardPlan.model_validate(shard), state, settings, s3, MemoryLedger())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    seconds = time.perf_counter() - start
    written = 0
    for name in ("output_manifest", "coco", "prelabels_coco"):
        bucket, key = counts.outputs[name].removeprefix("s3://").split("/", 1)
        written += int(s3.client.head_object(Bucket=bucket, Key=key)["ContentLength"])
    return {
        "peak_mb": peak / 2**20,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "baseline_rss_mb": baseline,
        "written_mb": written / 2**20,
        "seconds": seconds,
    }


def _rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(frames: int, boxes: int) -> dict[str, Any]:
    with moto_server() as endpoint:
        shard, state = write_run(endpoint, frames, boxes)
        # The shard published twice, as a retried invocation would: untraced, then traced.
        plain, traced = (_child(endpoint, shard, state, trace) for trace in (False, True))
    got = traced | {k: plain[k] for k in ("peak_rss_mb", "baseline_rss_mb")}
    got["seconds_traced"] = traced["seconds"]
    return {
        "frames": shard["frames"],
        "boxes_per_frame": boxes,
        "peak_mb": round(got["peak_mb"], 1),
        "kb_per_frame": round(got["peak_mb"] * 1024 / shard["frames"], 1),
        "seconds_traced": round(got["seconds_traced"], 1),
        "peak_rss_mb": round(got["peak_rss_mb"], 1),
        "baseline_rss_mb": round(got["baseline_rss_mb"], 1),
        "written_mb": round(got["written_mb"], 1),
        "seconds": round(plain["seconds"], 1),
        "s3": "moto server, separate process",
    }


def _child(endpoint: str, shard: dict[str, Any], state: dict[str, Any], trace: bool) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.shard_memory", "--child", endpoint]
    child = subprocess.run(
        command + (["--trace"] if trace else []),
        input=json.dumps({"shard": shard, "state": state}),
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    if child.returncode != 0:
        raise RuntimeError(f"PublishShard's process failed:\n{child.stderr[-4000:]}")
    return dict(json.loads(child.stdout.strip().splitlines()[-1]))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", default="1000,3000,10000")
    parser.add_argument("--boxes", type=int, default=63)
    parser.add_argument("--out", default=str(ROOT / "bench-out" / "shard-memory.json"))
    parser.add_argument("--child", metavar="ENDPOINT", help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        given = json.loads(sys.stdin.read())
        print(json.dumps(publish_child(args.child, given["shard"], given["state"], args.trace)))
        return 0
    results = []
    for frames in (int(s) for s in args.frames.split(",")):
        row = measure(frames, args.boxes)
        results.append(row)
        print(
            f"PublishShard alone, {row['frames']:>6} frames x {row['boxes_per_frame']} boxes: "
            f"traced peak {row['peak_mb']:.0f} MB ({row['kb_per_frame']:.1f} KB a frame), "
            f"peak RSS {row['peak_rss_mb']:.0f} MB ({row['baseline_rss_mb']:.0f} MB after the imports), "
            f"files written {row['written_mb']:.0f} MB, {row['seconds']:.0f} s",
            flush=True,
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
