"""report.html's gallery sample: counted from the shards' counters, read one shard's sample at a
time when the page streams out, at most GALLERY_MAX frames, the first shards first."""

from __future__ import annotations

import json
from typing import Any

from port_fakes import MemoryObjects

from workflow.adapters.run_store import RunStore
from workflow.domain.records import ShardCounts
from workflow.reports.store import GALLERY_MAX, GallerySample, gallery_sample, write_report_html


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


def test_the_sample_fills_from_the_first_shards_and_stops_at_the_cap() -> None:
    s3 = CountingObjects()
    store = RunStore(s3, "data", "runs/r1")
    sample = gallery_sample(shards(store, 14, 500))  # 14 shards x 500 = 7,000 frames of samples
    assert sample.frames == GALLERY_MAX == 5000
    assert s3.read == []  # counting reads counters only
    frames = [e["frame"] for e in sample.entries(store)]
    assert (
        len(frames) == 5000 and frames[0] == "s3://in/000/0000.jpg" and frames[-1] == "s3://in/009/0499.jpg"
    )
    assert s3.read == [f"{i:05d}.gallery.json" for i in range(10)]  # shards 10-13 are never read


def test_a_partly_full_shard_adds_only_what_fits() -> None:
    store = RunStore(CountingObjects(), "data", "runs/r1")
    sample = GallerySample()
    for shard in shards(store, 3, 2400):
        sample.add(shard)
    assert sample.take == [(0, 2400), (1, 2400), (2, 200)]
    assert len(list(sample.entries(store))) == 5000


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
