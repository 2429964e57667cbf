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
the run report. The sidecars themselves are not frames (counted as ignored). A chunk that is
missing or damaged (a truncated line, a record of the wrong shape) costs only the records it lacks:
those frames are labeled without lineage, and the page's counts name the chunk, why, and how many
frames (``PageCounts.lineage_problems``; FinishRun's report lists them).
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from pydantic import ValidationError

from workflow.adapters.run_store import RunStore
from workflow.domain.errors import ObjectMissing, ObjectUnreadable, SourceUnreadable
from workflow.domain.frames import S3Uri, batch_frames, is_frame_key
from workflow.domain.lineage import (
    SELECTION_FILE,
    FrameLineage,
    LogSelection,
    is_lineage_key,
    lineage_key,
    parse_lineage_chunk,
)
from workflow.domain.records import (
    EXAMPLES,
    PAGE_SIZE,
    BatchItem,
    LineageProblem,
    PageCounts,
    SkippedFrame,
    batch_id,
    claim_page,
)
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


def frame_lineage(
    frames: list[str], s3: ObjectStore
) -> tuple[dict[str, dict[str, Any]], list[LineageProblem]]:
    """The lineage records of the frames extracted from drive logs, read from their chunks (each
    chunk once), and the chunks that are missing, unreadable or damaged, with why and how many of
    ``frames`` they left without a record. Lineage is metadata: such a frame is labeled all the
    same, without its record, and the run's report names the chunk."""
    wanted: dict[str, dict[str, str]] = {}  # chunk URI -> frame file name -> frame URI
    for frame in frames:
        loc = S3Uri.parse(frame)
        key = lineage_key(loc.key)
        if key is not None:
            wanted.setdefault(str(S3Uri(loc.bucket, key)), {})[loc.key.rpartition("/")[2]] = frame
    if not wanted:
        return {}, []

    def read(chunk: str) -> tuple[dict[str, FrameLineage], list[str]]:
        try:
            return parse_lineage_chunk(s3.get_bytes(chunk))
        except ObjectMissing:
            return {}, ["the chunk is missing"]
        except ObjectUnreadable as err:
            return {}, [f"the chunk cannot be read: {err.code}"]

    found: dict[str, dict[str, Any]] = {}
    problems: list[LineageProblem] = []
    with ThreadPoolExecutor(max_workers=CLAIM_THREADS) as pool:
        for chunk, (records, damage) in zip(wanted, pool.map(read, list(wanted)), strict=True):
            names = wanted[chunk]
            without = 0
            for name, frame in names.items():
                record = records.get(name)
                if record is None:
                    without += 1
                else:
                    found[frame] = record.published()
            if without and not damage:
                damage = ["it holds no record of these frames"]
            if damage:
                shown = "; ".join(damage[:EXAMPLES])
                more = (
                    f"; and {len(damage) - EXAMPLES} more damaged line(s)" if len(damage) > EXAMPLES else ""
                )
                problems.append(LineageProblem(chunk=chunk, reason=shown + more, frames=without))
    return found, problems


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
    page = claim_page(source.index, cursor.page)
    changed = run.labeling_version if run.relabel_changed else ""
    claims = ledger.claim_many(candidates, run.run_id, run.relabel, page, changed, threads=CLAIM_THREADS)
    claimed = [c for c in claims if c.claimed]
    skipped += [SkippedFrame(frame=c.frame, reason=c.reason) for c in claims if not c.claimed]
    adjust = {c.frame for c in claimed if c.next_route == "adjust"}
    batches = batch_frames([c.frame for c in claimed], run.batch_size)
    lineage, lineage_problems = frame_lineage([c.frame for c in claimed], s3)
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
        lineage_problems,
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
    lineage_problems: list[LineageProblem] | None = None,
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
        lineage_problems=lineage_problems or [],
        more=more,
    )
    store.put_page(counts, skipped)
