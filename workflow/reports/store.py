"""Writing a run's ``report.html`` next to its ``report.json`` (FinishRun calls this; stays light)."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from workflow.adapters.run_store import RunStore
from workflow.domain.records import GALLERY_MAX, ShardCounts, add_counts
from workflow.reports.html import render_report_chunks

LOG = logging.getLogger(__name__)
# A presigned URL lives at most 7 days (SigV4); the gallery's frame links expire with it.
LINK_SECONDS = 7 * 24 * 3600


__all__ = ["GALLERY_MAX", "GallerySample", "gallery_sample", "write_report_html"]


class GallerySample:
    """The page's score histogram and which shards' gallery samples fill its gallery (their first
    frames, up to ``GALLERY_MAX`` in all), added up shard by shard from the counters; the frames
    themselves are read when the page is written, one shard's sample at a time."""

    def __init__(self) -> None:
        self.histogram: Counter[str] = Counter()
        self.take: list[tuple[int, int]] = []  # (shard index, frames of its sample shown)
        self.frames = 0

    def add(self, shard: ShardCounts) -> None:
        add_counts(self.histogram, shard.score_histogram)
        room = GALLERY_MAX - self.frames
        if room > 0 and shard.gallery_frames > 0:
            shown = min(room, shard.gallery_frames)
            self.take.append((shard.index, shown))
            self.frames += shown

    def entries(self, store: RunStore) -> Iterator[dict[str, Any]]:
        for index, shown in sorted(self.take):
            yield from store.shard_gallery(index)[:shown]


def gallery_sample(shards: Iterable[ShardCounts]) -> GallerySample:
    """The sample of a run's shards, from their counters in one pass."""
    sample = GallerySample()
    for shard in shards:
        sample.add(shard)
    return sample


def write_report_html(
    store: RunStore, report: dict[str, Any], sample: GallerySample, colors: dict[str, str]
) -> str | None:
    """Render the page (every frame is in the per-shard frame reports; the gallery is a bounded
    sample) and stream it to ``report.html``; returns its URI.

    The page is a view of ``report.json`` (already written): a page that cannot be rendered is
    logged with its reason and the run goes on (None returned, and no page: the upload is not
    completed); S3 errors are raised as usual.
    """
    uri = store.uri("report.html")
    try:
        chunks = (c.encode() for c in _render(store, report, sample, colors))
        store.s3.put_stream(uri, chunks, "text/html; charset=utf-8")
    except (KeyError, TypeError, ValueError) as exc:
        LOG.error("report.html of %s not written: %s: %s", store.prefix, type(exc).__name__, exc)
        return None
    return str(uri)


def _render(
    store: RunStore, report: dict[str, Any], sample: GallerySample, colors: dict[str, str]
) -> Iterator[str]:
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

    return render_report_chunks(
        report,
        score_histogram=sample.histogram,
        gallery=sample.entries(store),
        gallery_count=sample.frames,
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
