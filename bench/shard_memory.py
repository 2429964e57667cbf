"""PublishShard alone on one shard: the traced heap peak per shard size (part of `make bench-scale`).

A shard is the largest unit any invocation of the fan-in holds (at most ``SHARD_FRAMES`` frames), so
its memory is the one that must fit the function's. The run's records are written as PrepareRun,
ListPage and MergeBatch write them (tests/unit/fan_in_steps.py) for synthetic frames of ``--boxes``
boxes each, review skipped; then one PublishShard runs under ``tracemalloc``. S3 is moto in-process
(its copies of the written objects are in the figure); the ledger is the in-memory fake, so its
settles cost no memory here. Results: stdout and bench-out/shard-memory.json.

    python -m bench.shard_memory --frames 1000,3000 --boxes 63
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BATCH = 100


def measure(frames: int, boxes: int) -> dict[str, Any]:
    import boto3
    import numpy as np
    from moto import mock_aws

    sys.path.insert(0, str(ROOT / "tests" / "unit"))
    from fan_in_steps import merged_batch, run_context  # type: ignore[import-not-found]
    from port_fakes import MemoryLedger  # type: ignore[import-not-found]

    from workflow.adapters.s3 import S3Store
    from workflow.domain.detections import Detections, Provenance
    from workflow.domain.profile import default_profile
    from workflow.domain.records import ShardPlan, batch_id
    from workflow.domain.routing import RouteDecision
    from workflow.settings import Settings
    from workflow.steps.plan import plan_review
    from workflow.steps.publish import publish_shard

    settings = Settings(data_bucket="data", token_table="t", ledger_table="l")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="data")
        s3 = S3Store(client)
        run = run_context(["m"], review="skip", batch_size=BATCH)
        profile = default_profile()
        names = list(profile.taxonomy.names)[:6]
        rng = np.random.default_rng(0)
        for b in range(frames // BATCH):
            batch = []
            for f in range(BATCH):
                xy = rng.uniform(0, 800, (boxes, 2))
                corners = np.hstack([xy, xy + rng.uniform(5, 100, (boxes, 2))]).astype(np.float32)
                dets = Detections(
                    boxes=corners,
                    scores=rng.uniform(0.3, 1, boxes).astype(np.float32),
                    class_ids=np.zeros(boxes, np.int64),
                    class_names=tuple(names[i % len(names)] for i in range(boxes)),
                    image_width=1600,
                    image_height=900,
                    provenance=Provenance(model="m", version="synthetic"),
                    frame=f"s3://frames/{b:04d}/{f:04d}.jpg",
                )
                batch.append((dets, RouteDecision(route="auto", boxes=boxes)))
            merged_batch(s3, run, profile, settings, batch, batch=batch_id(0, b // 10, b % 10))
        manifest = plan_review(run, settings, s3)
        shard = s3.get_json(f"s3://{run.bucket}/{manifest.shards_key}")[0]
        state = {"run": run.model_dump(mode="json"), "reviews": [], "review_error": None}
        gc.collect()
        tracemalloc.start()
        start = time.perf_counter()
        try:
            publish_shard(ShardPlan.model_validate(shard), state, settings, s3, MemoryLedger())
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    return {
        "frames": shard["frames"],
        "boxes_per_frame": boxes,
        "peak_mb": round(peak / 2**20, 1),
        "kb_per_frame": round(peak / 1024 / shard["frames"], 1),
        "seconds_traced": round(time.perf_counter() - start, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", default="1000,3000")
    parser.add_argument("--boxes", type=int, default=63)
    parser.add_argument("--out", default=str(ROOT / "bench-out" / "shard-memory.json"))
    args = parser.parse_args()
    results = []
    for frames in (int(s) for s in args.frames.split(",")):
        row = measure(frames, args.boxes)
        results.append(row)
        print(
            f"PublishShard alone, {row['frames']:>6} frames x {row['boxes_per_frame']} boxes: "
            f"traced peak {row['peak_mb']:.0f} MB ({row['kb_per_frame']:.0f} KB a frame)",
            flush=True,
        )
    from workflow.domain.records import SHARD_FRAMES

    full_mb = results[-1]["kb_per_frame"] * SHARD_FRAMES / 1024
    print(f"a full shard ({SHARD_FRAMES:,} frames) at that density: about {full_mb:.0f} MB")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
