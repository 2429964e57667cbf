"""ListPage: one listing page of one source: find its frames, claim them, cut them into batches.

Each invocation lists at most ``PAGE_SIZE`` (1,000) keys, so its time and memory do not grow with
the run; the ListSources Map runs one loop of pages per source, sources in parallel. Claims are
conditional ledger writes (16 in flight), so two overlapping runs never label a frame twice. The
page's batches go to ``batches/`` (the LabelBatches Map lists that prefix), its skipped objects
and counters to ``skipped/`` and ``pages/``. A retried page writes the same objects again: the
batch ids are fixed by (source, page, position) and the claims of this run pass their condition.
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from workflow.adapters.run_store import RunStore
from workflow.domain.errors import SourceUnreadable
from workflow.domain.frames import S3Uri, batch_frames, is_frame_key
from workflow.domain.records import PAGE_SIZE, BatchItem, PageCounts, SkippedFrame, batch_id
from workflow.domain.run import ListCursor, RunContext, SourceItem
from workflow.settings import Settings
from workflow.steps.ports import Ledger, ObjectStore

# Ground Truth refuses images over 40 MB (and 100 megapixels: the endpoint checks that on decode).
MAX_FRAME_BYTES = 40 * 2**20
CLAIM_THREADS = 16


def _screen(objects: list[tuple[S3Uri, int]], runs_root: S3Uri) -> tuple[list[str], list[SkippedFrame], int]:
    """The page's candidate frames, what is skipped and why, and how many objects are ignored."""
    frames: list[str] = []
    skipped: list[SkippedFrame] = []
    ignored = 0
    for obj, size in objects:
        if obj.bucket == runs_root.bucket and obj.key.startswith(runs_root.key):
            ignored += 1  # the workflow's own artefacts are never frames
        elif obj.key.endswith("/") and size == 0:
            ignored += 1  # a console-made "folder" marker
        elif not is_frame_key(obj.key):
            skipped.append(
                SkippedFrame(frame=str(obj), reason="not a frame: only .jpg, .jpeg, .png are labeled")
            )
        elif size > MAX_FRAME_BYTES:
            reason = f"image is {size / 2**20:.1f} MiB; Ground Truth accepts at most 40 MiB"
            skipped.append(SkippedFrame(frame=str(obj), reason=reason))
        else:
            frames.append(str(obj))
    return frames, skipped, ignored


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
    candidates, skipped, ignored = _screen(objects, runs_root)
    if cursor.page == 0 and not objects:
        skipped.append(SkippedFrame(frame=source.uri, reason="no objects under this prefix"))
    page = f"s{source.index:04d}-p{cursor.page:06d}"
    with ThreadPoolExecutor(max_workers=CLAIM_THREADS) as pool:
        claims = list(pool.map(lambda f: ledger.claim(f, run.run_id, run.relabel, page), candidates))
    claimed = [c for c in claims if c.claimed]
    skipped += [SkippedFrame(frame=c.frame, reason=c.reason) for c in claims if not c.claimed]
    adjust = {c.frame for c in claimed if c.next_route == "adjust"}
    batches = batch_frames([c.frame for c in claimed], run.batch_size)
    for index, frames in enumerate(batches):
        chosen = [f for f in frames if f in adjust]
        store.put_batch(
            BatchItem(batch_id=batch_id(source.index, cursor.page, index), frames=frames, adjust=chosen)
        )
    more = token is not None
    _write(store, source, cursor.page, len(objects), len(claimed), len(batches), skipped, ignored, more=more)
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
        more=more,
    )
    store.put_page(counts, skipped)
