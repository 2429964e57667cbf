"""Writing a run's ``report.html`` next to its ``report.json`` (FinishRun calls this; stays light)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from workflow.adapters.run_store import RunStore
from workflow.domain.records import ShardCounts, add_counts
from workflow.reports.html import render_report

LOG = logging.getLogger(__name__)
# A presigned URL lives at most 7 days (SigV4); the gallery's frame links expire with it.
LINK_SECONDS = 7 * 24 * 3600


GALLERY_MAX = 5000  # frames in the page's gallery, at most


def report_inputs(shards: Iterable[ShardCounts]) -> tuple[Counter[str], list[Any]]:
    """The page's score histogram and bounded gallery sample, from the shards' counters in one pass."""
    histogram: Counter[str] = Counter()
    gallery: list[Any] = []
    for shard in shards:
        add_gallery(histogram, gallery, shard)
    return histogram, gallery


def add_gallery(histogram: Counter[str], gallery: list[Any], shard: ShardCounts) -> None:
    """Add one shard to the histogram and, while there is room (GALLERY_MAX), to the gallery sample."""
    add_counts(histogram, shard.score_histogram)
    gallery.extend(shard.gallery[: max(GALLERY_MAX - len(gallery), 0)])


def write_report_html(
    store: RunStore,
    report: dict[str, Any],
    histogram: Counter[str],
    gallery: list[Any],
    colors: dict[str, str],
) -> str | None:
    """Render the page (every frame is in the per-shard frame reports; the gallery is a bounded
    sample) and put it at ``report.html``; returns its URI.

    The page is a view of ``report.json`` (already written): a page that cannot be rendered is
    logged with its reason and the run goes on (None returned); S3 errors are raised as usual.
    """
    try:
        page = _render(store, report, histogram, gallery, colors)
    except (KeyError, TypeError, ValueError) as exc:
        LOG.error("report.html of %s not written: %s: %s", store.prefix, type(exc).__name__, exc)
        return None
    return store.s3.put_bytes(store.uri("report.html"), page.encode(), "text/html; charset=utf-8")


def _render(
    store: RunStore,
    report: dict[str, Any],
    histogram: Counter[str],
    gallery: list[Any],
    colors: dict[str, str],
) -> str:
    client = store.s3.client

    def link(frame: str) -> str:
        bucket, _, key = frame.removeprefix("s3://").partition("/")
        try:
            return str(
                client.generate_presigned_url(
                    "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=LINK_SECONDS
                )
            )
        except Exception:  # noqa: BLE001 - a link that cannot be signed stays the frame's URI
            return frame

    return render_report(
        report,
        score_histogram=histogram,
        gallery=gallery,
        image_url=link,
        colors=colors,
        elapsed_s=_elapsed(store),
    )


def _elapsed(store: RunStore) -> float | None:
    """Seconds since PrepareRun wrote the run's request (the run's start), if it is there."""
    uri = store.uri("request.json")
    try:
        head = store.s3.client.head_object(Bucket=uri.bucket, Key=uri.key)
    except Exception:  # noqa: BLE001 - elapsed is shown as unknown
        return None
    return float((datetime.now(UTC) - head["LastModified"]).total_seconds())
