"""ListPage: one listing page of one source: find its frames, claim them, cut them into batches.

Each invocation lists at most ``PAGE_SIZE`` (1,000) keys, so its time and memory do not grow with
the run; the ListSources Map runs one loop of pages per source, sources in parallel. Claims are
conditional ledger writes (16 in flight), so two overlapping runs never label a frame twice. The
page's batches go to ``batches/`` (the LabelBatches Map lists that prefix), its skipped objects
and counters to ``skipped/`` and ``pages/``. A retried page writes the same objects again: the
batch ids are fixed by (source, page, position) and the claims of this run pass their condition.

Frames extracted from drive logs carry their lineage: the page reads the lineage chunks of its own
frames (``workflow.domain.lineage.lineage_key``: a frame's name says which chunk) and puts each
claimed frame's record in its batch; a log's ``selection.json`` goes into the page's counts, for
the run report. The sidecars themselves are not frames (counted as ignored).
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from pydantic import ValidationError

from workflow.adapters.run_store import RunStore
from workflow.domain.errors import ObjectUnreadable, SourceUnreadable
from workflow.domain.frames import S3Uri, batch_frames, is_frame_key
from workflow.domain.lineage import SELECTION_FILE, FrameLineage, LogSelection, is_lineage_key, lineage_key
from workflow.domain.records import PAGE_SIZE, BatchItem, PageCounts, SkippedFrame, batch_id
from workflow.domain.run import ListCursor, RunContext, SourceItem
from workflow.settings import Settings
from workflow.steps.ports import Ledger, ObjectStore

# Ground Truth refuses images over 40 MB (and 100 megapixels: the endpoint checks that on decode).
MAX_FRAME_BYTES = 40 * 2**20
CLAIM_THREADS = 16


def _screen(
    objects: list[tuple[S3Uri, int]], runs_root: S3Uri, s3: ObjectStore | None = None
) -> tuple[list[str], list[SkippedFrame], int, list[dict[str, Any]]]:
    """The page's candidate frames, what is skipped and why, how many objects are ignored, and the
    selection counts of the drive logs whose ``selection.json`` the page holds (read with ``s3``)."""
    frames: list[str] = []
    skipped: list[SkippedFrame] = []
    ignored = 0
    logs: list[dict[str, Any]] = []
    for obj, size in objects:
        if obj.bucket == runs_root.bucket and obj.key.startswith(runs_root.key):
            ignored += 1  # the workflow's own artefacts are never frames
        elif obj.key.endswith("/") and size == 0:
            ignored += 1  # a console-made "folder" marker
        elif is_lineage_key(obj.key) and (selection := _selection(obj, s3)) is not False:
            ignored += 1  # a drive log's lineage chunk or selection counts: read, never labeled
            if selection is not None:
                logs.append(selection)
        elif not is_frame_key(obj.key):
            skipped.append(
                SkippedFrame(frame=str(obj), reason="not a frame: only .jpg, .jpeg, .png are labeled")
            )
        elif size > MAX_FRAME_BYTES:
            reason = f"image is {size / 2**20:.1f} MiB; Ground Truth accepts at most 40 MiB"
            skipped.append(SkippedFrame(frame=str(obj), reason=reason))
        else:
            frames.append(str(obj))
    return frames, skipped, ignored, logs


def _selection(obj: S3Uri, s3: ObjectStore | None) -> dict[str, Any] | None | Literal[False]:
    """A log's selection counts (None for a lineage chunk); False when a ``selection.json`` is not
    one extraction wrote (then it is reported as not a frame, like any other file)."""
    if not obj.key.endswith("/" + SELECTION_FILE) and obj.key != SELECTION_FILE:
        return None
    if s3 is None:
        return False
    try:
        return LogSelection.model_validate(s3.get_json(obj)).model_dump(mode="json")
    except (ObjectUnreadable, ValidationError, ValueError):
        return False


def frame_lineage(frames: list[str], s3: ObjectStore) -> dict[str, dict[str, Any]]:
    """The lineage records of the frames extracted from drive logs, read from their chunks (each
    chunk once); a frame without a record (not extracted, or its chunk is gone) is left out."""
    wanted: dict[str, dict[str, str]] = {}  # chunk URI -> frame file name -> frame URI
    for frame in frames:
        loc = S3Uri.parse(frame)
        key = lineage_key(loc.key)
        if key is not None:
            wanted.setdefault(str(S3Uri(loc.bucket, key)), {})[loc.key.rpartition("/")[2]] = frame
    if not wanted:
        return {}

    def read(chunk: str) -> list[dict[str, Any]]:
        try:
            return s3.get_lines(chunk)
        except (ObjectUnreadable, ValueError):
            return []

    found: dict[str, dict[str, Any]] = {}
    with ThreadPoolExecutor(max_workers=CLAIM_THREADS) as pool:
        for chunk, lines in zip(wanted, pool.map(read, list(wanted)), strict=True):
            names = wanted[chunk]
            for line in lines:
                name = str(line.get("frame", "")).rpartition("/")[2]
                if name in names:
                    try:
                        found[names[name]] = FrameLineage.model_validate(line).published()
                    except ValidationError:
                        continue  # a damaged record: the frame goes on without lineage
    return found


def list_page(
    run: RunContext,
    source: SourceItem,
    cursor: ListCursor,
    settings: Settings,
    s3: ObjectStore,
    ledger: Ledger,
) -> ListCursor:
    """List, screen, claim and batch one page of ``source``; return the cursor of the next page."""
    store = RunStore(s3, run.bucket, run.run_prefix)
    runs_root = S3Uri(settings.data_bucket, settings.runs_prefix.strip("/") + "/")
    try:
        objects, token = s3.list_page(S3Uri.parse(source.uri), cursor.token, PAGE_SIZE)
    except SourceUnreadable as err:
        skipped = [SkippedFrame(frame=source.uri, reason=f"cannot list source: {err.code}")]
        _write(store, source, cursor.page, 0, 0, 0, skipped, 0, more=False)
        return ListCursor(page=cursor.page + 1, token=None, more=False)
    candidates, skipped, ignored, logs = _screen(objects, runs_root, s3)
    if cursor.page == 0 and not objects:
        skipped.append(SkippedFrame(frame=source.uri, reason="no objects under this prefix"))
    page = f"s{source.index:04d}-p{cursor.page:06d}"
    with ThreadPoolExecutor(max_workers=CLAIM_THREADS) as pool:
        changed = run.labeling_version if run.relabel_changed else ""
        claims = list(pool.map(lambda f: ledger.claim(f, run.run_id, run.relabel, page, changed), candidates))
    claimed = [c for c in claims if c.claimed]
    skipped += [SkippedFrame(frame=c.frame, reason=c.reason) for c in claims if not c.claimed]
    adjust = {c.frame for c in claimed if c.next_route == "adjust"}
    batches = batch_frames([c.frame for c in claimed], run.batch_size)
    lineage = frame_lineage([c.frame for c in claimed], s3)
    for index, frames in enumerate(batches):
        chosen = [f for f in frames if f in adjust]
        item = BatchItem(
            batch_id=batch_id(source.index, cursor.page, index),
            frames=frames,
            adjust=chosen,
            lineage={f: lineage[f] for f in frames if f in lineage},
        )
        store.put_batch(item)
    more = token is not None
    _write(
        store,
        source,
        cursor.page,
        len(objects),
        len(claimed),
        len(batches),
        skipped,
        ignored,
        logs,
        more=more,
    )
    return ListCursor(page=cursor.page + 1, token=token, more=more)


def _write(
    store: RunStore,
    source: SourceItem,
    page: int,
    listed: int,
    frames: int,
    batches: int,
    skipped: list[SkippedFrame],
    ignored: int,
    logs: list[dict[str, Any]] | None = None,
    *,
    more: bool,
) -> None:
    reasons = Counter(s.reason.split(" by run ")[0] for s in skipped)
    counts = PageCounts(
        source=source.uri,
        source_index=source.index,
        page=page,
        listed=listed,
        frames=frames,
        batches=batches,
        skipped=len(skipped),
        skipped_reasons=dict(reasons),
        ignored=ignored,
        logs=logs or [],
        more=more,
    )
    store.put_page(counts, skipped)
