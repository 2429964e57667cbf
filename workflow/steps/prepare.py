"""PrepareRun: find the frames to label, skip what must not be sent, cut batches."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from workflow.adapters.ledger import FrameLedger
from workflow.adapters.s3 import S3Store
from workflow.domain.frames import S3Uri, batch_frames, batch_id, dedupe_preserving_order, is_frame_key
from workflow.domain.run import RunContext, RunRequest
from workflow.settings import Settings

# Ground Truth refuses images over 40 MB (and 100 megapixels: the endpoint checks that on decode).
MAX_FRAME_BYTES = 40 * 2**20


@dataclass
class Discovery:
    frames: list[str] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)


def run_id_from(request: RunRequest, execution_name: str) -> str:
    raw = request.run_id or execution_name
    return re.sub(r"[^A-Za-z0-9\-]", "-", raw)[:40].strip("-") or "run"


def discover(request: RunRequest, s3: S3Store, settings: Settings) -> Discovery:
    """List every source; non-image objects and unreadable sources are reported, not sent."""
    found = Discovery()
    runs_root = S3Uri(settings.data_bucket, settings.runs_prefix.strip("/") + "/")
    for source in request.sources:
        uri = S3Uri.parse(source)
        try:
            objects = list(s3.list_objects(uri))
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            found.skipped.append({"frame": source, "reason": f"cannot list source: {code or err}"})
            continue
        if not objects:
            found.skipped.append({"frame": source, "reason": "no objects under this prefix"})
        for obj, size in objects:
            if obj.bucket == runs_root.bucket and obj.key.startswith(runs_root.key):
                continue  # the workflow's own artefacts are never frames
            if obj.key.endswith("/") and size == 0:
                continue  # a console-made "folder" marker
            if not is_frame_key(obj.key):
                found.skipped.append(
                    {"frame": str(obj), "reason": "not a frame: only .jpg, .jpeg, .png are labeled"}
                )
                continue
            if size > MAX_FRAME_BYTES:
                reason = f"image is {size / 2**20:.1f} MiB; Ground Truth accepts at most 40 MiB"
                found.skipped.append({"frame": str(obj), "reason": reason})
                continue
            found.frames.append(str(obj))
    found.frames = dedupe_preserving_order(found.frames)
    return found


def claim_frames(frames: list[str], run_id: str, relabel: bool, ledger: FrameLedger) -> Discovery:
    """Claim frames in the ledger (in parallel); frames another run holds or labeled are skipped."""
    result = Discovery()
    with ThreadPoolExecutor(max_workers=16) as pool:
        claims = list(pool.map(lambda f: ledger.claim(f, run_id, relabel), frames))
    for claim in claims:
        if claim.claimed:
            result.frames.append(claim.frame)
        else:
            result.skipped.append({"frame": claim.frame, "reason": claim.reason})
    return result


def prepare_run(
    request: RunRequest, execution_name: str, settings: Settings, s3: S3Store, ledger: FrameLedger
) -> RunContext:
    """Write the run's batches and skip list to S3 and return the run context for later states."""
    run_id = run_id_from(request, execution_name)
    run_prefix = f"{settings.runs_prefix.strip('/')}/{run_id}"
    models = request.models or settings.default_models
    if not models:
        raise ValueError("no models: give 'models' in the run request or DEFAULT_MODELS in the settings")
    found = discover(request, s3, settings)
    claimed = claim_frames(found.frames, run_id, request.relabel, ledger)
    batches: list[dict[str, Any]] = [
        {"batch_id": batch_id(i), "frames": frames}
        for i, frames in enumerate(batch_frames(claimed.frames, request.batch_size))
    ]
    base = S3Uri(settings.data_bucket, run_prefix)
    s3.put_json(base.join("batches.json"), batches)
    s3.put_json(base.join("skipped.json"), found.skipped + claimed.skipped)
    s3.put_json(base.join("request.json"), request.model_dump(mode="json"))
    return RunContext(
        run_id=run_id,
        bucket=settings.data_bucket,
        run_prefix=run_prefix,
        batches_key=f"{run_prefix}/batches.json",
        batch_count=len(batches),
        frame_count=len(claimed.frames),
        skipped_count=len(found.skipped) + len(claimed.skipped),
        max_concurrency=request.max_concurrency,
        batch_timeout_seconds=request.batch_timeout_seconds,
        review=request.review,
        review_timeout_seconds=request.review_timeout_seconds,
        models=models,
        sources=request.sources,
    )
