"""`make bench`: throughput and peak memory of the model, the local endpoint and the whole workflow.

Each measurement runs in its own process so that its peak memory (ru_maxrss) is its own.
Frames: the 40-frame nuScenes front-camera sequence from ../shared (800x450 JPEG) when present,
else the demo photos. Results: a table on stdout and bench-out/results.json.

    python -m bench.run                  # everything
    python -m bench.run --only raw       # one group: raw | endpoint | workflow | decode | logs
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED_FRAMES = ROOT / ".." / "shared" / "data" / "nuscenes_cam_front_sequence" / "frames"
# Each mode pins its settings (the defaults now choose tiling from the frame: that is "auto").
MODES: dict[str, dict[str, Any]] = {
    "squash": {"letterbox": False, "tiling": False},
    "letterbox": {"tiling": False},
    "tiled": {"tiling": True},
    "flip": {"flip_tta": True, "tiling": False},
    "auto": {},
}
MODEL = "nanodet-coco"
WORKFLOW_COPIES = 3
# The comparison again on a folder of 1,000 frames (25 copies): the run's fixed steps (start, the
# first claims, the last batch's merge, publishing) weigh on 120 frames, hardly on a real folder.
FOLDER_COPIES = 25


def frames() -> list[Path]:
    if SHARED_FRAMES.is_dir():
        return sorted(SHARED_FRAMES.glob("*.jpg"))
    from workflow.cli.run import demo_frames

    print("../shared is absent: benchmarking on the two demo photos", file=sys.stderr)
    return sorted(demo_frames().glob("*.jpg"))


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_raw(mode: str) -> dict[str, Any]:
    """Decode + model + post-processing, one frame after another, in this process."""
    from workflow.inference.runner import load_detector
    from workflow.inference.settings import InferenceSettings

    detector = load_detector(MODEL, InferenceSettings(**MODES[mode]))
    data = [(str(p), p.read_bytes()) for p in frames()]
    detector.predict_bytes(data[0][1], data[0][0])  # warm-up: session start, first allocations
    start = time.perf_counter()
    objects = sum(len(detector.predict_bytes(blob, name)) for name, blob in data)
    elapsed = time.perf_counter() - start
    return {
        "path": "raw",
        "mode": mode,
        "frames": len(data),
        "seconds": elapsed,
        "fps": len(data) / elapsed,
        "objects": objects,
        "peak_mb": _peak_mb(),
    }


def bench_endpoint(mode: str, batch_size: int = 8) -> dict[str, Any]:
    """The local asynchronous endpoint: S3 in, S3 out, SNS notifications, batch requests."""
    import boto3
    from moto import mock_aws

    from workflow.inference.runner import load_detector
    from workflow.inference.settings import InferenceSettings
    from workflow.local.endpoint import AsyncEndpointConfig, LocalAsyncEndpoint

    paths = frames()
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        sns = boto3.client("sns", region_name="us-east-1")
        sqs = boto3.client("sqs", region_name="us-east-1")
        s3.create_bucket(Bucket="bench-frames")
        topic = sns.create_topic(Name="bench-done")["TopicArn"]
        queue = sqs.create_queue(QueueName="bench-done")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
        uris = []
        for p in paths:
            s3.put_object(Bucket="bench-frames", Key=f"f/{p.name}", Body=p.read_bytes())
            uris.append(f"s3://bench-frames/f/{p.name}")
        batches = [uris[i : i + batch_size] for i in range(0, len(uris), batch_size)]
        for i, batch in enumerate(batches):
            s3.put_object(Bucket="bench-frames", Key=f"req/{i}.json", Body=json.dumps(batch))
        config = AsyncEndpointConfig(
            s3_output_path="s3://bench-frames/out/",
            s3_failure_path="s3://bench-frames/fail/",
            success_topic=topic,
            error_topic=topic,
            max_concurrent_invocations=2,
        )
        detector = load_detector(MODEL, InferenceSettings(**MODES[mode]))
        with LocalAsyncEndpoint("bench", s3, sns, config, lambda: detector) as endpoint:
            detector.predict_bytes(paths[0].read_bytes(), "warm-up")
            start = time.perf_counter()
            for i in range(len(batches)):
                endpoint.invoke_endpoint_async(
                    EndpointName="bench",
                    InputLocation=f"s3://bench-frames/req/{i}.json",
                    ContentType="application/json",
                    InferenceId=f"bench-{i}",
                )
            received = 0
            while received < len(batches):
                got = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10, WaitTimeSeconds=1)
                received += len(got.get("Messages", []))
            elapsed = time.perf_counter() - start
    return {
        "path": "endpoint",
        "mode": mode,
        "frames": len(paths),
        "seconds": elapsed,
        "fps": len(paths) / elapsed,
        "batch_size": batch_size,
        "peak_mb": _peak_mb(),
    }


def bench_workflow(batch_size: int = 8) -> dict[str, Any]:
    """The whole state machine in local mode, started to published (review accepted by the local GT)."""
    from workflow.inference.runner import load_detector
    from workflow.local.cloud import LocalCloud
    from workflow.local.runner import INPUT_BUCKET

    paths = frames()
    from workflow.inference.settings import InferenceSettings

    detector = lambda: load_detector(MODEL, InferenceSettings(**MODES["letterbox"]))  # noqa: E731
    with LocalCloud({"autolabel-nanodet-coco": detector}) as cloud:
        cloud.s3.create_bucket(Bucket=INPUT_BUCKET)
        # Three copies of each frame: 120 frames amortise the run's fixed steps (PrepareRun, Publish).
        for copy in range(WORKFLOW_COPIES):
            for p in paths:
                cloud.s3.put_object(Bucket=INPUT_BUCKET, Key=f"bench/{copy}-{p.name}", Body=p.read_bytes())
        request = {
            "sources": [f"s3://{INPUT_BUCKET}/bench/"],
            "batch_size": batch_size,
            "max_concurrency": 4,
            "review": "human",
            "models": [{"name": MODEL, "endpoint_name": "autolabel-nanodet-coco"}],
        }
        start = time.perf_counter()
        arn = cloud.start_run(request)
        described = cloud.wait(arn, timeout=900, poll=0.05)
        elapsed = time.perf_counter() - start
        parent = cloud.state_transitions(arn)
        calls = dict(cloud.invocations)
    # Each batch is a child execution whose states are its Lambda tasks: count those measured calls.
    child = sum(
        calls.get(f, 0) for f in ("InvokeModelsFunction", "MergeBatchFunction", "RecordBatchFailureFunction")
    )
    n = len(paths) * WORKFLOW_COPIES
    return {
        "path": "workflow",
        "mode": "letterbox",
        "frames": n,
        "seconds": elapsed,
        "fps": n / elapsed,
        "status": described["status"],
        "batch_size": batch_size,
        "peak_mb": _peak_mb(),
        "state_transitions": parent + child,
        "lambda_invocations": sum(calls.values()),
        "per_1000_frames": {
            "state_transitions": round((parent + child) * 1000 / n),
            "lambda_invocations": round(sum(calls.values()) * 1000 / n),
        },
        "invocations": calls,
    }


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def bench_compare(copies: int = WORKFLOW_COPIES) -> dict[str, Any]:
    """Raw model and the whole local workflow (``run_local``, as ``autolabel run`` runs it) on the
    same frames (``copies`` of the sequence: 120 frames by default) in the same process, one after
    the other: ``raw_fps`` is the best of the raw thread settings tried, ``workflow_fps`` the frames
    over the execution's time (start to end of the state machine), with the run's other stages
    (start, upload, export) beside it."""
    import dataclasses
    import tempfile
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from workflow.inference.runner import load_detector
    from workflow.inference.settings import InferenceSettings
    from workflow.local.model_workers import DetectorRecipe, ProcessPredictor
    from workflow.local.runner import LocalModel, run_local
    from workflow.local.workspace import Workspace

    cores = _cores()
    paths = frames()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "frames"
        folder.mkdir()
        for copy in range(copies):
            for p in paths:
                (folder / f"{copy}-{p.name}").write_bytes(p.read_bytes())
        data = [(str(p), p.read_bytes()) for p in sorted(folder.iterdir())]
        n = len(data)

        raw: list[dict[str, Any]] = []
        for threads, callers in ((None, 1), (1, 1), (1, cores)):
            detector = load_detector(
                MODEL, InferenceSettings(**MODES["letterbox"], intra_op_num_threads=threads)
            )
            detector.predict_bytes(data[0][1], data[0][0])
            start = time.perf_counter()
            with ThreadPoolExecutor(callers) as pool:
                list(pool.map(lambda item, d=detector: d.predict_bytes(item[1], item[0]), data))
            elapsed = time.perf_counter() - start
            raw.append(
                {
                    "intra_op_threads": threads or "onnxruntime default",
                    "callers": callers,
                    "seconds": round(elapsed, 3),
                    "fps": round(n / elapsed, 2),
                }
            )
        # The model alone in worker processes (as the workflow serves it): no interpreter lock shared
        # between the callers, the frames and detections pickled through pipes.
        settings = InferenceSettings(**MODES["letterbox"], intra_op_num_threads=1)
        with ProcessPredictor(DetectorRecipe(MODEL, settings), cores) as workers:
            with ThreadPoolExecutor(cores) as pool:
                list(pool.map(lambda item: workers.predict_bytes(item[1], item[0]), data[:cores]))
                start = time.perf_counter()
                list(pool.map(lambda item: workers.predict_bytes(item[1], item[0]), data))
            elapsed = time.perf_counter() - start
        raw.append(
            {
                "intra_op_threads": 1,
                "callers": cores,
                "processes": cores,
                "seconds": round(elapsed, 3),
                "fps": round(n / elapsed, 2),
            }
        )
        best = max(raw, key=lambda r: r["fps"])

        inference: dict[str, float] = {"seconds": 0.0, "frames": 0, "first": 0.0, "last": 0.0}
        lock = threading.Lock()

        class Timed:
            """The workflow's model, timed per call (summed over the endpoint's workers)."""

            def __init__(self) -> None:
                # As `autolabel run` serves it: one worker process per endpoint worker.
                self.detector = ProcessPredictor(
                    DetectorRecipe(MODEL, InferenceSettings(**MODES["letterbox"], intra_op_num_threads=1)),
                    cores,
                )

            def predict_bytes(self, blob: bytes, frame: str) -> Any:
                start = time.perf_counter()
                try:
                    return self.detector.predict_bytes(blob, frame)
                finally:
                    end = time.perf_counter()
                    with lock:
                        inference["seconds"] += end - start
                        inference["frames"] += 1
                        inference["first"] = inference["first"] or start
                        inference["last"] = max(inference["last"], end)

        from workflow.local.runner import auto_batch_size

        batch = auto_batch_size(n, cores)  # what `autolabel run` picks for this folder on this machine
        model = Timed()
        for warm in range(cores):  # every worker process loaded
            model.predict_bytes(data[warm][1], "warm-up")
        inference.update(seconds=0.0, frames=0, first=0.0, last=0.0)
        stages: dict[str, float] = {}
        cpu: dict[str, float] = {}

        def stage(name: str) -> None:
            stages.setdefault(name, time.perf_counter() - started)
            cpu.setdefault(name, time.process_time() + model.detector.cpu_seconds)

        started = time.perf_counter()
        outcome = run_local(
            str(folder),
            Path(tmp) / "out",
            [LocalModel(MODEL, lambda: model)],
            review="skip",
            batch_size=batch,
            max_concurrency=4,
            overlays=False,
            workspace=Workspace(Path(tmp) / "workspace"),
            stage=stage,
            endpoint_workers=cores,
        )
        total = time.perf_counter() - started
        model.detector.close()
        first_call, last_call = inference["first"] - started, inference["last"] - started

        # The same run with a model that costs nothing: what the orchestration alone takes, and
        # in which functions (wall time summed over concurrent invocations).
        from workflow.local.cloud import LocalCloud

        spent: dict[str, float] = {}
        invoke = LocalCloud._invoke

        def timed(cloud: Any, name: str, event: Any) -> Any:
            t = time.perf_counter()
            try:
                return invoke(cloud, name, event)
            finally:
                with lock:
                    spent[name] = spent.get(name, 0.0) + time.perf_counter() - t

        free = load_detector(MODEL, InferenceSettings(**MODES["letterbox"], intra_op_num_threads=1))
        canned = free.predict_bytes(data[0][1], data[0][0])

        class Free:
            def predict_bytes(self, blob: bytes, frame: str) -> Any:
                return dataclasses.replace(canned, frame=frame)

        LocalCloud._invoke = timed  # type: ignore[method-assign]
        free_stages: dict[str, float] = {}
        free_started = time.perf_counter()
        try:
            run_local(
                str(folder),
                Path(tmp) / "out-free",
                [LocalModel(MODEL, Free)],
                review="skip",
                batch_size=batch,
                max_concurrency=4,
                overlays=False,
                workspace=Workspace(Path(tmp) / "workspace-free"),
                stage=lambda name: free_stages.setdefault(name, time.perf_counter() - free_started),
                endpoint_workers=cores,
            )
        finally:
            LocalCloud._invoke = invoke  # type: ignore[method-assign]
        orchestration = free_stages["exporting"] - free_stages["labeling"]
    assert outcome.status == "SUCCEEDED", outcome.error
    execution = stages["exporting"] - stages["labeling"]
    workflow_fps = n / execution
    model_phase = last_call - first_call
    execution_cpu = cpu["exporting"] - cpu["labeling"]
    return {
        "path": "compare",
        "mode": "letterbox",
        "frames": n,
        "cores": cores,
        "raw_fps": best["fps"],
        "raw_setting": f"{best['callers']} caller(s) x {best['intra_op_threads']} intra-op thread(s)"
        + (f", in {best['processes']} worker processes" if best.get("processes") else ", in this process"),
        "raw_settings_tried": raw,
        "workflow_fps": round(workflow_fps, 2),
        "workflow_over_raw": round(workflow_fps / best["fps"], 3),
        "workflow_setting": f"{cores} endpoint workers x 1 intra-op thread, batch {batch}, 4 batches at once",
        "batch_size": batch,
        "end_to_end_fps": round(n / total, 2),
        "breakdown_s": {
            "start (moto, template, models)": round(stages.get("uploading", 0.0), 2),
            "upload frames": round(stages["labeling"] - stages.get("uploading", 0.0), 2),
            "execution (state machine start to end)": round(execution, 2),
            "of which model calls (summed over workers)": round(inference["seconds"], 2),
            "of which model calls / workers (wall share)": round(inference["seconds"] / cores, 2),
            "export outputs": round(total - stages["exporting"], 2),
            "total": round(total, 2),
        },
        # Where the execution's time goes: before the first frame reaches the model (PrepareRun,
        # ListPage's claims, the first InvokeModels), while the model runs, after its last frame
        # (the last MergeBatch, PublishShard's dataset and ledger writes, FinishRun, noticing the end).
        "execution_phases_s": {
            "head: start to first model call": round(first_call - stages["labeling"], 2),
            "model phase: first to last model call": round(model_phase, 2),
            "tail: last model call to end": round(stages["exporting"] - last_call, 2),
        },
        "model_phase_fps": round(n / model_phase, 2),
        "model_phase_over_raw": round(n / model_phase / best["fps"], 3),
        "execution_cpu_cores_used": round(execution_cpu / execution, 2),
        "orchestration_only": {
            "note": "the same run with a model that returns canned detections at no cost",
            "execution_s": round(orchestration, 2),
            "functions_s (wall, summed over concurrent invocations)": {
                k: round(v, 2) for k, v in sorted(spent.items(), key=lambda kv: -kv[1])
            },
        },
        "labeled": outcome.summary.get("labeled"),
        "state_transitions": outcome.state_transitions,
        "fps": round(workflow_fps, 2),
        "peak_mb": _peak_mb(),
    }


DECODE_THREADS = 3


DECODE_FRAMES = ROOT / "bench-out" / "decode-frames"


def _write_large_frames() -> dict[str, Any]:
    """The decode bench's frames, written once to bench-out/decode-frames/ (in a process of their
    own, so building them weighs on no measurement): a 10000x9999 PNG of one colour (a few KB, 100
    megapixels: under the limit), a 6400x3600 JPEG (a road frame scaled up 8x) and the road frame."""
    import io

    from PIL import Image

    DECODE_FRAMES.mkdir(parents=True, exist_ok=True)
    road = frames()[0]
    with Image.open(road) as img:
        big = img.convert("RGB").resize((img.width * 8, img.height * 8), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    big.save(buf, "JPEG", quality=90)
    (DECODE_FRAMES / "big.jpg").write_bytes(buf.getvalue())
    buf = io.BytesIO()
    Image.new("RGB", (10000, 9999), (90, 90, 90)).save(buf, "PNG")
    (DECODE_FRAMES / "huge.png").write_bytes(buf.getvalue())
    (DECODE_FRAMES / road.name).write_bytes(road.read_bytes())
    return {"path": "decode-frames", "frames": 3}


def _large_frames() -> list[tuple[str, bytes]]:
    order = {"huge.png": 0, "big.jpg": 1}
    paths = sorted(DECODE_FRAMES.iterdir(), key=lambda p: order.get(p.name, 2))
    return [(p.name, p.read_bytes()) for p in paths]


def bench_decode(mode: str) -> dict[str, Any]:
    """Peak memory of decoding large frames, DECODE_THREADS at once, and predicting on them.

    ``<settings>:full`` decodes every frame whole with no budget (what predict_bytes did before);
    ``:budget`` decodes them whole under the pixel budget; ``:bounded`` is today's predict_bytes
    (reduced decode where the model input allows, and the budget). Tiled settings are not
    measured: tiling a 10000 px frame takes minutes here (and its decode is whole, as ``:budget``).
    ``decode_peak_over_baseline_mb``: the peak over the process's peak once the model is loaded
    and the frames' bytes are read."""
    from concurrent.futures import ThreadPoolExecutor

    from workflow.inference import images
    from workflow.inference.runner import load_detector
    from workflow.inference.settings import InferenceSettings

    if mode == "frames":
        return _write_large_frames()
    settings, how = mode.split(":")
    detector = load_detector(MODEL, InferenceSettings(**MODES[settings]))
    data = _large_frames()
    detector.predict_bytes(data[-1][1], data[-1][0])  # warm-up
    baseline = _peak_mb()

    def full(item: tuple[str, bytes]) -> int:
        return len(detector.predict(images.decode_image(item[1], item[0]), item[0]))

    def budget(item: tuple[str, bytes]) -> int:
        with images.DECODE_BUDGET.hold(detector._decode_pixels(item[1])):
            return full(item)

    def bounded(item: tuple[str, bytes]) -> int:
        return len(detector.predict_bytes(item[1], item[0]))

    start = time.perf_counter()
    with ThreadPoolExecutor(DECODE_THREADS) as pool:
        objects = sum(pool.map({"full": full, "budget": budget, "bounded": bounded}[how], data))
    elapsed = time.perf_counter() - start
    return {
        "path": "decode",
        "mode": mode,
        "frames": len(data),
        "seconds": elapsed,
        "fps": len(data) / elapsed,
        "objects": objects,
        "peak_mb": _peak_mb(),
        "decode_peak_over_baseline_mb": round(_peak_mb() - baseline, 1),
        "budget_megapixels": images.DECODE_BUDGET.pixels / 1e6,
        "budget_peak_megapixels": round(images.DECODE_BUDGET.peak / 1e6, 1),
    }


def _child(args: list[str]) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "bench.run", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark {args} failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(lines[-1]))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", choices=("raw", "endpoint", "workflow", "compare", "decode", "logs"))
    parser.add_argument("--one", nargs=2, metavar=("PATH", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.only == "logs":  # drive-log extraction and selection: bench/logs.py, bench-out/logs.json
        return _logs_bench()
    if args.one:
        path, mode = args.one
        benches = {
            "raw": bench_raw,
            "endpoint": bench_endpoint,
            "decode": bench_decode,
            "compare": lambda m: bench_compare(int(m)),
        }
        result = benches.get(path, lambda _m: bench_workflow())(mode)
        print(json.dumps(result))
        return 0
    jobs = [(p, m) for p in ("raw", "endpoint") for m in MODES] + [("workflow", "letterbox")]
    jobs += [("decode", f"letterbox:{how}") for how in ("full", "budget", "bounded")]
    if not args.only or args.only == "decode":
        _child(["--one", "decode", "frames"])
    jobs += [("compare", str(WORKFLOW_COPIES)), ("compare", str(FOLDER_COPIES))]
    results = []
    for path, mode in jobs:
        if args.only and path != args.only:
            continue
        result = _child(["--one", path, mode])
        results.append(result)
        print(
            f"{path:<9} {mode:<10} {result['frames']:>3} frames  {result['fps']:6.1f} frames/s  "
            f"peak {result['peak_mb']:6.0f} MB",
            flush=True,
        )
    _ratios(results)
    out = ROOT / "bench-out"
    out.mkdir(exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2))
    compares = [r for r in results if r["path"] == "compare"]
    compare = next((r for r in compares if r["frames"] == len(frames()) * WORKFLOW_COPIES), None)
    folder = next((r for r in compares if r is not compare), None)
    if compare is not None:
        _write_bench_json(out, compare, results, folder)
    print(f"results in {out / 'results.json'}")
    return _logs_bench() if not args.only else 0


def _write_bench_json(
    out: Path, compare: dict[str, Any], results: list[dict[str, Any]], folder: dict[str, Any] | None
) -> None:
    """bench-out/bench.json: raw and workflow frames per second measured in the same run (the
    120-frame comparison; ``folder``: the same on 1,000 frames, under ``at_1000_frames``)."""
    figures = {
        **_figures(compare),
        **({f"at_{folder['frames']}_frames": _figures(folder)} if folder else {}),
        "other_measurements": [r for r in results if r["path"] != "compare"],
        # 3 large frames decoded at once (a 100 MP PNG, a 23 MP JPEG, a road frame): peak MB over
        # the loaded model; full = whole decodes, no budget (before), bounded = today's predict_bytes
        "decode_peak_over_baseline_mb": {
            r["mode"].split(":")[1]: r["decode_peak_over_baseline_mb"]
            for r in results
            if r["path"] == "decode"
        },
    }
    (out / "bench.json").write_text(json.dumps(figures, indent=2))
    print(
        f"whole local workflow {compare['workflow_fps']:.1f} frames/s = {compare['workflow_over_raw']:.2f}x "
        f"raw {compare['raw_fps']:.1f} frames/s ({compare['raw_setting']}); in {out / 'bench.json'}"
    )
    for name, seconds in compare["breakdown_s"].items():
        print(f"  {name:<46} {seconds:7.2f} s")
    for name, seconds in compare["execution_phases_s"].items():
        print(f"  execution {name:<36} {seconds:7.2f} s")
    busy = f"{compare['execution_cpu_cores_used']:.2f} of {compare['cores']} cores busy"
    print(
        f"  model phase alone: {compare['model_phase_fps']:.1f} frames/s"
        f" = {compare['model_phase_over_raw']:.2f}x raw; {busy}"
    )
    print(f"  orchestration alone (no-cost model): {compare['orchestration_only']['execution_s']:.2f} s")
    if folder is not None:
        print(
            f"on {folder['frames']} frames: whole local workflow {folder['workflow_fps']:.1f} frames/s"
            f" = {folder['workflow_over_raw']:.2f}x raw {folder['raw_fps']:.1f} frames/s; phases (s): "
            + ", ".join(f"{k.split(':')[0]} {v:.2f}" for k, v in folder["execution_phases_s"].items())
        )


def _figures(compare: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in compare.items() if k not in ("path", "fps")}


def _logs_bench() -> int:
    """Drive logs in its own process too (bench/logs.py writes bench-out/logs.json)."""
    return subprocess.run([sys.executable, "-m", "bench.logs"], cwd=ROOT, check=False).returncode


def _ratios(results: list[dict[str, Any]]) -> None:
    by = {(r["path"], r["mode"]): r for r in results}
    for mode in MODES:
        if ("raw", mode) in by and ("endpoint", mode) in by:
            ratio = by[("raw", mode)]["fps"] / by[("endpoint", mode)]["fps"]
            print(f"serving overhead ({mode}): raw/endpoint throughput = {ratio:.2f}")
    if ("raw", "letterbox") in by and ("workflow", "letterbox") in by:
        w = by[("workflow", "letterbox")]
        ratio = by[("raw", "letterbox")]["fps"] / w["fps"]
        print(f"orchestration overhead: raw/workflow throughput = {ratio:.2f}")
        print(
            f"per 1000 frames at batch size {w['batch_size']}: {w['per_1000_frames']['state_transitions']} "
            f"state transitions, {w['per_1000_frames']['lambda_invocations']} Lambda invocations"
        )


if __name__ == "__main__":
    sys.exit(main())
