"""Running the workflow locally on a folder or an S3 prefix, and collecting its outputs in a folder."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workflow.domain.coco import merge_coco
from workflow.domain.frames import IMAGE_SUFFIXES, S3Uri
from workflow.domain.groundtruth import OBJECT_DETECTION
from workflow.local.cloud import LocalCloud
from workflow.local.endpoint import Predictor
from workflow.local.workspace import Workspace

if TYPE_CHECKING:
    from workflow.domain.profile import LabelingProfile

INPUT_BUCKET = "autolabel-local-input"


@dataclass
class LocalModel:
    """A model served by a local asynchronous endpoint."""

    name: str
    factory: Callable[[], Predictor]
    endpoint: str | None = None  # the profile's endpoint name; default autolabel-<name>

    @property
    def endpoint_name(self) -> str:
        return self.endpoint or f"autolabel-{self.name}"[:63]


@dataclass
class RunOutcome:
    summary: dict[str, Any]
    status: str
    out_dir: Path
    elapsed_s: float
    execution_arn: str
    state_transitions: int
    lambda_invocations: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    run_id: str = ""
    interrupted: bool = False
    already_labeled: int = 0  # frames skipped because an earlier run labeled them
    workspace: Path | None = None


def upload_folder(cloud: LocalCloud, folder: Path, prefix: str) -> list[str]:
    """Copy every file under ``folder`` into local S3 (non-images too: the workflow reports them)."""
    cloud.s3.create_bucket(Bucket=INPUT_BUCKET)
    uris = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        key = f"{prefix}/{path.relative_to(folder).as_posix()}"
        cloud.s3.put_object(Bucket=INPUT_BUCKET, Key=key, Body=path.read_bytes())
        uris.append(f"s3://{INPUT_BUCKET}/{key}")
    for path, reason in unreadable_links(folder):  # never uploaded: said out loud, not dropped
        print(f"not labeled: {path}: {reason}", file=sys.stderr)
    return uris


def cpu_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


AUTO_BATCH_MIN, AUTO_BATCH_MAX = 8, 64


def auto_batch_size(frames: int, workers: int) -> int:
    """A local run's frames per batch when none is asked for: about two batches per endpoint worker,
    so every worker has one in hand and the last wave is even, from 8 frames (progress a batch at a
    time; a folder of a few frames still splits) to 64 (each batch costs the orchestration about a
    tenth of a second of CPU: a Map child, three functions, a notification, its records)."""
    per_batch = -(-max(frames, 1) // max(2 * workers, 1))
    return max(AUTO_BATCH_MIN, min(AUTO_BATCH_MAX, per_batch))


def source_prefix(source: str | Path) -> str:
    """The local S3 prefix a source's frames get: the same for the same folder (or s3:// prefix) in
    every run, so the frame ledger knows a frame an earlier run labeled."""
    text = source if isinstance(source, str) and source.startswith("s3://") else str(Path(source).resolve())
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text.rstrip("/").rsplit("/", 1)[-1])[:40] or "frames"
    return f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


class Interrupted(Exception):
    """SIGTERM in a local run: handled like Ctrl-C."""


def unreadable_links(folder: Path) -> list[tuple[Path, str]]:
    """Symlinks under ``folder`` that name no file: dangling ones, and links to folders (not followed,
    so a link loop cannot recurse)."""
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_symlink() and not p.is_file()):
        target = os.readlink(path)
        if path.is_dir():
            found.append((path, f"a symlink to a folder ({target}), not followed; copy the frames instead"))
        else:
            found.append((path, f"a dangling or looping symlink (its target {target} cannot be read)"))
    return found


def download_prefix(uri: str, dest: Path) -> Path:
    """Copy frames under a real S3 prefix to a folder (before local mode's moto takes over boto3)."""
    import boto3

    loc = S3Uri.parse(uri)
    client = boto3.client("s3")
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=loc.key):
        for obj in page.get("Contents", []):
            target = dest / obj["Key"][len(loc.key) :].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(loc.bucket, obj["Key"], str(target))
    return dest


class _Progress:
    """Counts frames whose batch has finished, from the records the run writes (pages, counts).

    The records are seen as they are stored (a listener on local S3), not listed at every poll;
    one listing at the start counts what an earlier process of the same run already finished.
    """

    def __init__(self, cloud: LocalCloud, run_id: str, callback: Callable[[int, int], None] | None) -> None:
        self.cloud, self.run_id, self.callback = cloud, run_id, callback
        self.pages: dict[str, int] = {}
        self.done: dict[str, int] = {}
        self._lock = threading.Lock()
        self._prefix = f"runs/{run_id}/"
        if callback is None:
            return
        cloud.object_listeners.append(self._stored)
        for sub in ("pages", "counts"):
            listing = cloud.s3.get_paginator("list_objects_v2").paginate(
                Bucket=cloud.data_bucket, Prefix=f"{self._prefix}{sub}/"
            )
            for page in listing:
                for obj in page.get("Contents", []):
                    body = cloud.s3.get_object(Bucket=cloud.data_bucket, Key=obj["Key"])["Body"].read()
                    self._stored(cloud.data_bucket, obj["Key"], body)

    def _stored(self, bucket: str, key: str, body: bytes) -> None:
        if bucket != self.cloud.data_bucket or not key.startswith(self._prefix):
            return
        sub = key[len(self._prefix) :].split("/", 1)[0]
        seen = {"pages": self.pages, "counts": self.done}.get(sub)
        if seen is None or not key.endswith(".json"):
            return
        try:
            frames = int(json.loads(bytes(body)).get("frames", 0))
        except (ValueError, AttributeError):
            return
        with self._lock:
            seen[key] = frames

    def __call__(self) -> None:
        if self.callback is None:
            return
        with self._lock:
            done, listed = sum(self.done.values()), sum(self.pages.values())
        self.callback(done, max(listed, done))

    def close(self) -> None:
        if self._stored in self.cloud.object_listeners:
            self.cloud.object_listeners.remove(self._stored)


def run_local(
    source: str | Path,
    out_dir: Path,
    models: list[LocalModel],
    *,
    review: str = "simulate",
    batch_size: int | None = None,
    max_concurrency: int = 4,
    progress: Callable[[int, int], None] | None = None,
    overlays: bool = True,
    timeout_s: float = 3600,
    profile: LabelingProfile | None = None,
    label_studio_url: str | None = None,
    label_studio_api_key: str | None = None,
    workspace: Workspace | None = None,
    relabel: bool = False,
    run_id: str | None = None,
    request: dict[str, Any] | None = None,
    command: list[str] | None = None,
    stage: Callable[[str], None] | None = None,
    endpoint_workers: int | None = None,
) -> RunOutcome:
    """Label a folder (or an S3 prefix) through the state machine in local mode; outputs go to ``out_dir``.

    ``review``: ``label-studio`` has people review in Label Studio (a local one started here, or the
    server at ``label_studio_url``); ``groundtruth`` (or ``wait``) has the local Ground Truth wait
    for a reviewed manifest dropped into ``out_dir/review/``; ``simulate`` has a stand-in accept the
    pre-labels (outputs say simulated, no person); ``skip`` publishes the pre-labels without review.
    ``profile`` travels inline in the run request; ``models`` must serve its endpoints (or, when
    they are other models, the profile must map them).

    ``workspace`` keeps the ledger and the runs' records between processes (see
    :mod:`workflow.local.workspace`); without one the run lives in memory only. ``run_id`` and
    ``request`` given together resume that run: the state machine starts again with them and
    finishes only what is missing. Ctrl-C (or SIGTERM) stops the run, writes its partial report
    and returns an outcome with ``interrupted`` set. ``endpoint_workers``: invocations each local
    endpoint runs at once (its MaxConcurrentInvocationsPerInstance; default: one per CPU core, with
    one onnxruntime intra-op thread each, as the CLI sets it).
    """
    say = stage or (lambda _text: None)
    out_dir.mkdir(parents=True, exist_ok=True)
    review_dir = out_dir / "review"
    if review in ("wait", "groundtruth"):
        review = "wait"
        review_dir.mkdir(exist_ok=True)
    original = str(source)
    prefix = source_prefix(source)
    staging: Path | None = None
    if isinstance(source, str) and source.startswith("s3://"):
        say("downloading")
        staging = download_prefix(source, out_dir / ".source")
        source = staging
    folder = Path(source)
    if not folder.is_dir():
        raise FileNotFoundError(f"input folder {folder} does not exist")
    run_id = run_id or f"local-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    studio = _label_studio(review, out_dir, folder, label_studio_url, label_studio_api_key)
    say("starting")
    interrupted = False
    with (
        _interruptible(),
        LocalCloud(
            {m.endpoint_name: m.factory for m in models},
            review_mode="wait" if review == "wait" else "simulate",
            review_dir=review_dir if review == "wait" else None,
            parameters=studio.parameters() if studio else None,
            workspace=workspace,
            max_concurrent_invocations=endpoint_workers or cpu_cores(),
        ) as cloud,
    ):
        if studio:
            cloud.set_environment(studio.environment(f"s3://{INPUT_BUCKET}/{prefix}/"))
        if workspace is not None:
            _release_dead_runs(cloud, workspace, keep=run_id)
        say("uploading")
        uploaded = upload_folder(cloud, folder, prefix)
        if request is None:
            batch_size = batch_size or auto_batch_size(len(uploaded), endpoint_workers or cpu_cores())
            request = _request(run_id, models, profile, review, batch_size, max_concurrency, prefix)
            if relabel:
                request["relabel"] = True
        if workspace is not None:
            workspace.record_run(
                run_id,
                status="running",
                pid=os.getpid(),
                source=original,
                folder=str(folder.resolve()) if staging is None else None,
                out_dir=str(out_dir.resolve()),
                request=request,
                command=command,
                started_at=time.time(),
            )
        arn = cloud.start_run(request, name=run_id)
        say("labeling")
        if review == "wait":
            print(
                f"Waiting for review: when the labeling job starts, {review_dir}/<job>.draft.manifest holds "
                f"the pre-labels in Ground Truth's output format; edit the boxes with any tool and save it "
                f"as {review_dir}/<job>.manifest to resume the run."
            )
        tick = _Progress(cloud, run_id, progress)
        on_poll = _also_export_input(cloud, run_id, out_dir, tick)
        if studio:
            on_poll = _both(on_poll, studio.watch(cloud.s3, cloud.data_bucket, run_id))
        try:
            described = cloud.wait(arn, timeout=timeout_s, poll=0.5, on_poll=on_poll)
        except (KeyboardInterrupt, Interrupted):
            interrupted = True
            say("stopping")
            described = _stop(cloud, arn)
        finally:
            if studio:
                studio.stop()
        if not interrupted:
            tick()
        tick.close()
        say("exporting")  # the execution has ended: what follows reads its records and writes the outputs
        outcome = RunOutcome(
            summary=json.loads(described.get("output") or "{}"),
            status=described["status"],
            out_dir=out_dir,
            elapsed_s=time.monotonic() - started,
            execution_arn=arn,
            state_transitions=cloud.state_transitions(arn),
            lambda_invocations=dict(cloud.invocations),
            error=None
            if described["status"] == "SUCCEEDED"
            else f"{described.get('error')}: {described.get('cause')}",
            run_id=run_id,
            interrupted=interrupted,
            workspace=workspace.root if workspace is not None else None,
        )
        _export(cloud, run_id, out_dir, folder, prefix, original)
    outcome.already_labeled = _already_labeled(out_dir)
    counted = outcome.summary
    if not counted and (out_dir / "report.json").exists():  # a stopped run: its partial report's counts
        counted = json.loads((out_dir / "report.json").read_text())
    if workspace is not None:
        workspace.record_run(
            run_id,
            status="interrupted"
            if interrupted
            else ("succeeded" if outcome.status == "SUCCEEDED" else "failed"),
            ended_at=time.time(),
            elapsed_s=round(outcome.elapsed_s, 2),
            counts={k: counted.get(k) for k in ("frames_found", "labeled", "skipped", "failed")}
            | {"already_labeled": outcome.already_labeled},
            error=outcome.error,
        )
    if overlays and outcome.status == "SUCCEEDED":
        say("overlays")
        _write_overlays(out_dir, folder, original)
    if staging is not None:
        shutil.rmtree(staging, ignore_errors=True)
    outcome.elapsed_s = time.monotonic() - started
    return outcome


class _interruptible:
    """SIGTERM raises :class:`Interrupted` in the main thread while a run waits (Ctrl-C already
    raises KeyboardInterrupt); a second Ctrl-C while stopping leaves at once."""

    def __enter__(self) -> None:
        self.previous = None
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGTERM, self._raise)

    def __exit__(self, *exc: object) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)

    @staticmethod
    def _raise(signum: int, frame: Any) -> None:
        raise Interrupted(f"signal {signum}")


def _stop(cloud: LocalCloud, arn: str) -> dict[str, Any]:
    """Stop the execution as Step Functions' StopExecution does; the status change event has
    ReportFailedRun write the partial report and release the run's frames."""
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, lambda *_: os._exit(130))  # a second Ctrl-C: leave now
    try:
        cloud.sfn.stop_execution(executionArn=arn, error="Interrupted", cause="stopped on this machine")
        deadline = time.monotonic() + 30
        described = dict(cloud.sfn.describe_execution(executionArn=arn))
        while described["status"] == "RUNNING" and time.monotonic() < deadline:
            time.sleep(0.1)  # moto stops the execution's worker asynchronously
            described = dict(cloud.sfn.describe_execution(executionArn=arn))
        if described["status"] == "RUNNING":
            described |= {"status": "ABORTED", "error": "Interrupted", "cause": "stopped on this machine"}
        cloud.emit_status_change(described)
        return described
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _release_dead_runs(cloud: LocalCloud, workspace: Workspace, keep: str) -> None:
    """A run whose process died (SIGKILL, power loss) still holds its frames' claims: record it as
    failed in the ledger, which releases them to the next run (as ReportFailedRun does in AWS)."""
    import boto3

    from workflow.adapters.ledger import FrameLedger

    client = boto3.client("dynamodb", region_name=cloud.sfn.meta.region_name)
    ledger = FrameLedger(client, cloud.environment["LEDGER_TABLE"])
    for record in workspace.runs():
        if record["status"] == "interrupted" and record["run_id"] != keep and not record.get("released"):
            ledger.mark_run(record["run_id"], "failed", "the local process ended before the run did")
            workspace.record_run(record["run_id"], released=True)


def _already_labeled(out_dir: Path) -> int:
    lines = out_dir / "report-frames.jsonl"
    if not lines.exists():
        return 0
    count = 0
    for raw in lines.read_text().splitlines():
        if raw.strip():
            line = json.loads(raw)
            if line.get("status") == "skipped" and str(line.get("reason", "")).startswith("already labeled"):
                count += 1
    return count


def _label_studio(review: str, out_dir: Path, folder: Path, url: str | None, key: str | None) -> Any:
    """The Label Studio session of a ``label-studio`` review (started here), else None."""
    if review != "label-studio":
        return None
    from workflow.local.labelstudio_server import LabelStudioSession

    studio = LabelStudioSession(out_dir, folder, url, key)
    studio.start()
    return studio


def _both(first: Callable[[], None], second: Callable[[], None]) -> Callable[[], None]:
    def poll() -> None:
        first()
        second()

    return poll


def _request(
    run_id: str,
    models: list[LocalModel],
    profile: LabelingProfile | None,
    review: str,
    batch_size: int,
    max_concurrency: int,
    prefix: str | None = None,
) -> dict[str, Any]:
    """The state machine input; a profile's own models are left to PrepareRun to take from it."""
    request: dict[str, Any] = {
        "sources": [f"s3://{INPUT_BUCKET}/{prefix or run_id}/"],
        "batch_size": batch_size,
        "max_concurrency": max_concurrency,
        "review": {"skip": "skip", "label-studio": "label-studio"}.get(review, "groundtruth"),
        "run_id": run_id,
    }
    served = [(m.name, m.endpoint_name) for m in models]
    if profile is not None:
        request["profile"] = profile.to_dict()
        if served == [(m.name, m.endpoint_name) for m in profile.models]:
            return request
    request["models"] = [{"name": name, "endpoint_name": endpoint} for name, endpoint in served]
    return request


def _also_export_input(
    cloud: LocalCloud, run_id: str, out_dir: Path, tick: Callable[[], None]
) -> Callable[[], None]:
    """The progress tick, and the first labeling job's input manifest copied to OUT the moment it is
    stored (a listener on local S3: people start reviewing while the run waits for them), instead
    of asking local S3 for it at every poll."""
    key = f"runs/{run_id}/review/input-000.manifest"
    target = out_dir / "input.manifest"

    def stored(bucket: str, stored_key: str, body: bytes) -> None:
        if bucket == cloud.data_bucket and stored_key == key:
            target.write_bytes(bytes(body))

    cloud.object_listeners.append(stored)
    return tick


_EXPORTS = {
    "report.json": "report.json",
    "report.html": "report.html",
    "dataset/stats.json": "stats.json",
    "dataset/scorecard.json": "scorecard.json",
    "dataset/index.json": "index.json",
    "review/input-000.manifest": "input.manifest",
    "review/label-categories.json": "label-categories.json",
    "review/worker-template.liquid.html": "worker-template.liquid.html",
    "profile.json": "profile.json",
}


def _export(cloud: LocalCloud, run_id: str, out_dir: Path, folder: Path, prefix: str, source: str) -> None:
    """Copy the run's outputs out of local S3 (local S3 is gone when the run ends).

    The dataset's shards are joined into one file each (a local run is small): ``output.manifest``,
    ``coco.json``, ``prelabels.coco.json``, ``segmentation.manifest`` and ``report-frames.jsonl`` (one
    report line per frame: labeled, failed or skipped, with the reason). Frames are named by their
    path relative to the input folder (or their original ``s3://`` URI), see :func:`point_at_files`;
    ``frames-map.json`` says which local S3 prefix stood for them in the run's records, and where
    the segmentation label maps (copied to ``segmentation/``) were.
    """
    run_prefix = f"runs/{run_id}/"

    def get(key: str) -> bytes | None:
        try:
            return bytes(cloud.s3.get_object(Bucket=cloud.data_bucket, Key=key)["Body"].read())
        except cloud.s3.exceptions.NoSuchKey:
            return None

    def body(uri: str) -> bytes:
        loc = S3Uri.parse(uri)
        return bytes(cloud.s3.get_object(Bucket=loc.bucket, Key=loc.key)["Body"].read())

    for key, name in _EXPORTS.items():
        data = get(run_prefix + key)
        if data is not None:
            (out_dir / name).write_bytes(data)
    index_data = get(run_prefix + "dataset/index.json")
    if index_data is not None:
        index = json.loads(index_data)
        shards = index["shards"]
        for field_name, name in (
            ("output_manifest", "output.manifest"),
            ("segmentation_manifest", "segmentation.manifest"),
        ):
            parts = [body(s[field_name]) for s in shards if s.get(field_name)]
            if parts or field_name == "output_manifest":
                (out_dir / name).write_bytes(b"".join(parts))
        for field_name, name in (("coco", "coco.json"), ("prelabels_coco", "prelabels.coco.json")):
            merged = merge_coco((json.loads(body(s[field_name])) for s in shards), f"run {run_id}")
            (out_dir / name).write_text(json.dumps(merged))
        lines = [body(s["frame_report"]) for s in shards]
        for uri in index.get("skipped", []):
            skipped = json.loads(body(uri))
            lines.append("".join(json.dumps({**x, "status": "skipped"}) + "\n" for x in skipped).encode())
        (out_dir / "report-frames.jsonl").write_bytes(b"".join(lines))
    pages = cloud.s3.get_paginator("list_objects_v2").paginate(
        Bucket=cloud.data_bucket, Prefix=run_prefix + "segmentation/"
    )
    label_maps = [o["Key"] for page in pages for o in page.get("Contents", []) if o["Key"].endswith(".png")]
    for key in label_maps:
        target = out_dir / "segmentation" / key.rsplit("/", 1)[-1]
        target.parent.mkdir(exist_ok=True)
        target.write_bytes(cloud.s3.get_object(Bucket=cloud.data_bucket, Key=key)["Body"].read())
    mapping = {
        "s3_prefix": f"s3://{INPUT_BUCKET}/{prefix}/",
        "frames_named": frame_base(source) or "relative to local_folder",
        "local_folder": str(folder.resolve()),
        "segmentation_prefix": f"s3://{cloud.data_bucket}/{run_prefix}segmentation/",
        "segmentation_folder": str((out_dir / "segmentation").resolve()),
    }
    (out_dir / "frames-map.json").write_text(json.dumps(mapping, indent=2))
    point_at_files(out_dir, prefix, source)


# What a local run writes for people and tools names each frame where it really is.
_POINTED = (
    "coco.json",
    "prelabels.coco.json",
    "report.json",
    "report-frames.jsonl",
    "output.manifest",
    "input.manifest",
    "segmentation.manifest",
)


def frame_base(source: str) -> str:
    """What the frames' local S3 prefix becomes in the outputs: nothing for a folder (paths relative
    to it), the original prefix for an s3:// source."""
    return source.rstrip("/") + "/" if source.startswith("s3://") else ""


def point_at_files(out_dir: Path, prefix: str, source: str) -> None:
    """Rewrite the local S3 URIs of the input frames in the exported files: ``a/b.jpg`` (relative
    to the input folder) or the original ``s3://`` URI. The URIs are plain JSON strings, so the
    prefix is replaced as text (it holds no character JSON escapes)."""
    local = f"s3://{INPUT_BUCKET}/{prefix}/"
    base = frame_base(source)
    for name in _POINTED:
        path = out_dir / name
        if path.exists():
            text = path.read_text(encoding="utf-8")
            if local in text:
                path.write_text(text.replace(local, base), encoding="utf-8")


def local_path(frame: str, folder: Path, source: str) -> Path:
    """The file of a frame as the outputs name it (see :func:`point_at_files`)."""
    base = frame_base(source)
    return folder / frame[len(base) :] if base and frame.startswith(base) else folder / frame


def _write_overlays(out_dir: Path, folder: Path, source: str) -> None:
    """Overlay images of the published labels on the original frames, at the frame's path relative
    to the input folder (``overlays/sub/a.jpg``; the frame's own format), so two frames never share one."""
    from workflow.domain.errors import FrameError
    from workflow.domain.groundtruth import parse_output_line
    from workflow.inference.images import decode_image
    from workflow.inference.overlay import save_overlay

    manifest = out_dir / "output.manifest"
    if not manifest.exists():
        return
    target = out_dir / "overlays"
    target.mkdir(exist_ok=True)
    root = folder.resolve()
    for raw in manifest.read_text().splitlines():
        line = json.loads(raw)
        attribute = _label_attribute(line)
        frame = parse_output_line(line, attribute)
        if frame.failed:
            continue
        path = local_path(frame.source_ref, folder, source)
        if not path.exists() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        try:
            relative = path.resolve().relative_to(root)
        except ValueError:
            continue
        try:
            image = decode_image(path.read_bytes(), str(path))
        except FrameError:
            continue
        save_overlay(image, frame.to_detections(), target / relative)


def _label_attribute(line: dict[str, Any]) -> str:
    """The label attribute of a manifest line: the reviewed one if present, else the pre-label."""
    boxes = [
        k[: -len("-metadata")]
        for k, meta in line.items()
        if k.endswith("-metadata") and isinstance(meta, dict) and meta.get("type") == OBJECT_DETECTION
    ]
    reviewed = [a for a in boxes if a != "prelabel"]  # a verification verdict holds no boxes: not chosen
    return reviewed[0] if reviewed else boxes[0]
