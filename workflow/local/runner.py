"""Running the workflow locally on a folder or an S3 prefix, and collecting its outputs in a folder."""

from __future__ import annotations

import json
import os
import shutil
import sys
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
    """Counts frames whose batch has finished, from the records the run writes (pages, counts)."""

    def __init__(self, cloud: LocalCloud, run_id: str, callback: Callable[[int, int], None] | None) -> None:
        self.cloud, self.run_id, self.callback = cloud, run_id, callback
        self.pages: dict[str, int] = {}
        self.done: dict[str, int] = {}

    def _new(self, sub: str, seen: dict[str, int], field: str) -> None:
        bucket = self.cloud.data_bucket
        pages = self.cloud.s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix=f"runs/{self.run_id}/{sub}/"
        )
        for page in pages:
            for obj in page.get("Contents", []):
                if obj["Key"] not in seen:
                    body = self.cloud.s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                    seen[obj["Key"]] = int(json.loads(body).get(field, 0))

    def __call__(self) -> None:
        if self.callback is None:
            return
        self._new("pages", self.pages, "frames")
        self._new("counts", self.done, "frames")
        self.callback(sum(self.done.values()), max(sum(self.pages.values()), sum(self.done.values())))


def run_local(
    source: str | Path,
    out_dir: Path,
    models: list[LocalModel],
    *,
    review: str = "simulate",
    batch_size: int = 8,
    max_concurrency: int = 4,
    progress: Callable[[int, int], None] | None = None,
    overlays: bool = True,
    timeout_s: float = 3600,
    profile: LabelingProfile | None = None,
    label_studio_url: str | None = None,
    label_studio_api_key: str | None = None,
) -> RunOutcome:
    """Label a folder (or an S3 prefix) through the state machine in local mode; outputs go to ``out_dir``.

    ``review``: ``label-studio`` has people review in Label Studio (a local one started here, or the
    server at ``label_studio_url``); ``groundtruth`` (or ``wait``) has the local Ground Truth wait
    for a reviewed manifest dropped into ``out_dir/review/``; ``simulate`` has a stand-in accept the
    pre-labels (outputs say simulated, no person); ``skip`` publishes the pre-labels without review.
    ``profile`` travels inline in the run request; ``models`` must serve its endpoints (or, when
    they are other models, the profile must map them).
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    review_dir = out_dir / "review"
    if review in ("wait", "groundtruth"):
        review = "wait"
        review_dir.mkdir(exist_ok=True)
    staging: Path | None = None
    if isinstance(source, str) and source.startswith("s3://"):
        staging = download_prefix(source, out_dir / ".source")
        source = staging
    folder = Path(source)
    if not folder.is_dir():
        raise FileNotFoundError(f"input folder {folder} does not exist")
    run_id = f"local-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    started = time.monotonic()
    studio = _label_studio(review, out_dir, folder, label_studio_url, label_studio_api_key)
    with LocalCloud(
        {m.endpoint_name: m.factory for m in models},
        review_mode="wait" if review == "wait" else "simulate",
        review_dir=review_dir if review == "wait" else None,
        parameters=studio.parameters() if studio else None,
    ) as cloud:
        if studio:
            cloud.set_environment(studio.environment(f"s3://{INPUT_BUCKET}/{run_id}/"))
        upload_folder(cloud, folder, run_id)
        request = _request(run_id, models, profile, review, batch_size, max_concurrency)
        arn = cloud.start_run(request, name=run_id)
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
            described = cloud.wait(arn, timeout=timeout_s, on_poll=on_poll)
        finally:
            if studio:
                studio.stop()
        tick()
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
        )
        _export(cloud, run_id, out_dir, folder)
    if overlays and outcome.status == "SUCCEEDED":
        _write_overlays(out_dir, folder, run_id)
    if staging is not None:
        shutil.rmtree(staging, ignore_errors=True)
    return outcome


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
) -> dict[str, Any]:
    """The state machine input; a profile's own models are left to PrepareRun to take from it."""
    request: dict[str, Any] = {
        "sources": [f"s3://{INPUT_BUCKET}/{run_id}/"],
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
    def on_poll() -> None:
        tick()
        target = out_dir / "input.manifest"
        if not target.exists():
            key = f"runs/{run_id}/review/input-000.manifest"
            try:
                body = cloud.s3.get_object(Bucket=cloud.data_bucket, Key=key)["Body"].read()
                target.write_bytes(body)
            except cloud.s3.exceptions.NoSuchKey:
                pass

    return on_poll


_EXPORTS = {
    "report.json": "report.json",
    "dataset/stats.json": "stats.json",
    "dataset/scorecard.json": "scorecard.json",
    "dataset/index.json": "index.json",
    "review/input-000.manifest": "input.manifest",
    "review/label-categories.json": "label-categories.json",
    "review/worker-template.liquid.html": "worker-template.liquid.html",
    "profile.json": "profile.json",
}


def _export(cloud: LocalCloud, run_id: str, out_dir: Path, folder: Path) -> None:
    """Copy the run's outputs out of local S3 (local S3 is gone when the run ends).

    The dataset's shards are joined into one file each (a local run is small): ``output.manifest``,
    ``coco.json``, ``prelabels.coco.json``, ``segmentation.manifest`` and ``report-frames.jsonl`` (one
    report line per frame: labeled, failed or skipped, with the reason). Manifests keep the S3 URIs
    the workflow wrote, as in AWS; ``frames-map.json`` says which local folder each URI prefix
    stands for (frames, and the segmentation label maps copied to ``segmentation/``).
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
        "s3_prefix": f"s3://{INPUT_BUCKET}/{run_id}/",
        "local_folder": str(folder.resolve()),
        "segmentation_prefix": f"s3://{cloud.data_bucket}/{run_prefix}segmentation/",
        "segmentation_folder": str((out_dir / "segmentation").resolve()),
    }
    (out_dir / "frames-map.json").write_text(json.dumps(mapping, indent=2))


def local_path(frame_uri: str, folder: Path, run_id: str) -> Path:
    prefix = f"s3://{INPUT_BUCKET}/{run_id}/"
    return folder / frame_uri[len(prefix) :] if frame_uri.startswith(prefix) else Path(frame_uri)


def _write_overlays(out_dir: Path, folder: Path, run_id: str) -> None:
    """Overlay images of the published labels on the original frames."""
    from workflow.domain.errors import FrameError
    from workflow.domain.groundtruth import parse_output_line
    from workflow.inference.images import decode_image
    from workflow.inference.overlay import save_overlay

    manifest = out_dir / "output.manifest"
    if not manifest.exists():
        return
    target = out_dir / "overlays"
    target.mkdir(exist_ok=True)
    for raw in manifest.read_text().splitlines():
        line = json.loads(raw)
        attribute = _label_attribute(line)
        frame = parse_output_line(line, attribute)
        if frame.failed:
            continue
        path = local_path(frame.source_ref, folder, run_id)
        if not path.exists() or path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        try:
            image = decode_image(path.read_bytes(), str(path))
        except FrameError:
            continue
        save_overlay(image, frame.to_detections(), target / f"{path.stem}.jpg")


def _label_attribute(line: dict[str, Any]) -> str:
    """The label attribute of a manifest line: the reviewed one if present, else the pre-label."""
    boxes = [
        k[: -len("-metadata")]
        for k, meta in line.items()
        if k.endswith("-metadata") and isinstance(meta, dict) and meta.get("type") == OBJECT_DETECTION
    ]
    reviewed = [a for a in boxes if a != "prelabel"]  # a verification verdict holds no boxes: not chosen
    return reviewed[0] if reviewed else boxes[0]
