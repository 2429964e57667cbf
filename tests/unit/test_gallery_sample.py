"""report.html's gallery sample: counted from the shards' counters, read one shard's sample at a
time when the page streams out, at most GALLERY_MAX frames spread evenly over the whole run."""

from __future__ import annotations

import json
from typing import Any

from port_fakes import MemoryObjects

from workflow.adapters.run_store import RunStore
from workflow.domain.records import ShardCounts
from workflow.reports.store import (
    GALLERY_MAX,
    GallerySample,
    evenly,
    gallery_sample,
    spread,
    write_report_html,
)


class CountingObjects(MemoryObjects):
    """MemoryObjects that notes which gallery samples were read, and no presigning client."""

    def __init__(self) -> None:
        super().__init__()
        self.read: list[str] = []
        self.client = None

    def get_bytes(self, uri: Any) -> bytes:
        if str(uri).endswith(".gallery.json"):
            self.read.append(str(uri).rsplit("/", 1)[-1])
        return super().get_bytes(uri)


def entry(shard: int, i: int) -> dict[str, Any]:
    return {
        "frame": f"s3://in/{shard:03d}/{i:04d}.jpg",
        "status": "labeled",
        "objects": 1,
        "classes": ["car"],
    }


def shards(store: RunStore, count: int, per_shard: int) -> list[ShardCounts]:
    out = []
    for index in range(count):
        store.put_shard_gallery(index, [entry(index, i) for i in range(per_shard)])
        out.append(ShardCounts(index=index, labeled=per_shard, gallery_frames=per_shard))
    return out


def test_one_full_shard_fills_the_gallery() -> None:
    # a 10,000-frame run: the page is already as big as it ever gets
    store = RunStore(CountingObjects(), "data", "runs/r1")
    sample = gallery_sample(shards(store, 1, 500))
    assert sample.frames == GALLERY_MAX == 500
    assert sample.take == [(0, 500)]


def test_many_shards_share_the_gallery_evenly_and_every_shard_is_read_once() -> None:
    s3 = CountingObjects()
    store = RunStore(s3, "data", "runs/r1")
    sample = gallery_sample(shards(store, 14, 500))  # 14 shards x 500 = 7,000 frames of samples
    assert s3.read == []  # counting reads counters only
    assert sample.frames == GALLERY_MAX
    shares = [shown for _, shown in sample.take]
    assert len(shares) == 14 and sum(shares) == 500 and max(shares) - min(shares) <= 1
    frames = [e["frame"] for e in sample.entries(store)]
    assert len(frames) == 500 == len(set(frames))
    assert s3.read == [f"{i:05d}.gallery.json" for i in range(14)]  # in shard order, each once
    # each shard's share is taken along its whole sample, not only its start
    last = [f for f in frames if f.startswith("s3://in/013/")]
    assert last[0] == "s3://in/013/0000.jpg" and int(last[-1][-8:-4]) > 400


def test_a_small_shard_leaves_its_share_to_the_others() -> None:
    store = RunStore(CountingObjects(), "data", "runs/r1")
    sample = GallerySample()
    for shard, frames in zip(shards(store, 3, 400), (400, 10, 400), strict=True):
        sample.add(shard.model_copy(update={"gallery_frames": frames}))
    assert sample.take == [(0, 245), (1, 10), (2, 245)]
    assert sample.frames == 500


def test_more_shards_than_gallery_frames_one_frame_from_every_nth_shard() -> None:
    take = spread([(i, 500) for i in range(2000)], 500)
    assert [shown for _, shown in take] == [1] * 500
    assert [shard for shard, _ in take] == list(range(0, 2000, 4))


def test_evenly_spreads_over_the_range_and_never_repeats() -> None:
    assert evenly(10, 5) == [0, 2, 4, 6, 8]
    assert evenly(3, 5) == [0, 1, 2]
    assert evenly(500, 500) == list(range(500))
    assert evenly(0, 5) == []


def test_the_page_streams_every_sampled_frame_into_its_data() -> None:
    s3 = CountingObjects()
    store = RunStore(s3, "data", "runs/r1")
    sample = gallery_sample(shards(store, 3, 40))
    report = {"run_id": "r1", "labeled": 120, "objects_per_class": {"car": 120}}
    uri = write_report_html(store, report, sample, {"car": "#2acf59"})
    page = s3.get_bytes(uri).decode()
    data = json.loads(page.split('id="gallery-data">')[1].split("</script>")[0])
    assert [d["f"] for d in data] == [entry(s, i)["frame"] for s in range(3) for i in range(40)]
    assert "lists" not in page.split('id="gallery"')[1].split("<script")[0]  # every labeled frame is shown
