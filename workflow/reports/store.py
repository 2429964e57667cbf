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


__all__ = ["GALLERY_MAX", "GallerySample", "evenly", "gallery_sample", "spread", "write_report_html"]


class GallerySample:
    """The page's score histogram and which frames of which shards' gallery samples fill its
    gallery, added up shard by shard from the counters; the frames themselves are read when the
    page is written, one shard's sample at a time.

    The gallery holds at most ``GALLERY_MAX`` frames spread evenly over the whole run: each shard
    gives an equal share (a shard with fewer frames leaves its rest to the others), taken evenly
    along its sample; past ``GALLERY_MAX`` shards, one frame from every n-th shard. So the page is
    as big at 10,000 frames as at 10 million, and shows the last drive logs as well as the first."""

    def __init__(self) -> None:
        self.histogram: Counter[str] = Counter()
        self.samples: list[tuple[int, int]] = []  # (shard index, frames in its sample), one per shard
        self._take: list[tuple[int, int]] | None = None

    def add(self, shard: ShardCounts) -> None:
        add_counts(self.histogram, shard.score_histogram)
        if shard.gallery_frames > 0:
            self.samples.append((shard.index, shard.gallery_frames))
            self._take = None

    @property
    def take(self) -> list[tuple[int, int]]:
        """(shard index, frames of its sample shown), in shard order."""
        if self._take is None:
            self._take = spread(sorted(self.samples), GALLERY_MAX)
        return self._take

    @property
    def frames(self) -> int:
        return sum(shown for _, shown in self.take)

    def entries(self, store: RunStore) -> Iterator[dict[str, Any]]:
        for index, shown in self.take:
            sample = store.shard_gallery(index)
            yield from (sample[i] for i in evenly(len(sample), shown))


def spread(samples: list[tuple[int, int]], limit: int) -> list[tuple[int, int]]:
    """Up to ``limit`` frames from ``(shard, available)`` samples (in order): an equal share each,
    what a small sample cannot give going to the others; more samples than ``limit``: one frame
    from each of ``limit`` samples picked evenly along them."""
    if len(samples) > limit:
        samples = [samples[i] for i in evenly(len(samples), limit)]
    shares: dict[int, int] = {}
    left, room = len(samples), limit
    for shard, available in sorted(samples, key=lambda s: s[1]):  # the smallest first
        shares[shard] = min(available, room // left)
        room -= shares[shard]
        left -= 1
    return [(shard, shares[shard]) for shard, _ in samples if shares[shard]]


def evenly(total: int, count: int) -> list[int]:
    """``count`` indices of ``range(total)`` spread evenly (the first always among them)."""
    count = min(count, total)
    return [i * total // count for i in range(count)]


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
