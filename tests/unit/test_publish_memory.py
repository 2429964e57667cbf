"""PublishShard spools what grows with a shard's boxes: its memory is not the size of its files.

A shard's two COCO files and its output manifest grow with its frames and boxes (a full shard of
10,000 frames at 63 boxes is hundreds of MB of JSON). The shard being built spools their
annotations and lines to ephemeral storage and PublishShard streams the files up, so the memory
it holds stays a small part of what it writes. Batches are made one at a time here, as PublishShard
reads them (at most 8 ahead), and the files go to disk, so the traced memory is the shard's own.
"""

from __future__ import annotations

import json
import tracemalloc
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from fan_in_steps import run_context, synthetic_frame
from port_fakes import MemoryObjects
from pycocotools.coco import COCO

from workflow.adapters.run_store import RunStore
from workflow.domain.frames import S3Uri
from workflow.domain.profile import default_profile
from workflow.domain.records import BatchLabels, LabeledFrame, batch_id
from workflow.steps.publish import _Review, _Shard, _write_shard

BATCHES, FRAMES, BOXES = 20, 100, 30
RUN = run_context(["m"], review="skip", batch_size=FRAMES)
TAXONOMY = default_profile().taxonomy


class DiskFiles(MemoryObjects):
    """A store whose streamed objects go to disk (so what is written is not traced)."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root

    def put_stream(self, uri: str | S3Uri, chunks: Iterable[bytes], content_type: str) -> int:
        path = self.root / S3Uri.parse(str(uri)).key
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as out:
            for chunk in chunks:
                out.write(chunk)
        return path.stat().st_size


def batches() -> Iterator[BatchLabels]:
    """Synthetic batches of fused, routed frames, made one at a time."""
    names = list(TAXONOMY.names)[:6]
    rng = np.random.default_rng(0)
    for b in range(BATCHES):
        frames = []
        for f in range(FRAMES):
            dets, route = synthetic_frame(rng, names, BOXES, b, f)
            frames.append(LabeledFrame(frame=dets.frame, labels=dets.to_dict(), models=["m"], route=route))
        yield BatchLabels(batch_id=batch_id(0, 0, b), frames=frames)


def test_a_shard_holds_its_annotations_and_lines_on_disk_not_in_memory(tmp_path: Path) -> None:
    # Given a shard of 2,000 frames with 30 boxes each, built batch by batch under tracemalloc
    store = DiskFiles(tmp_path)
    tracemalloc.start()
    try:
        out = _Shard(RUN, TAXONOMY, "prelabel", 0)
        try:
            for labels in batches():
                out.add_batch(labels, _Review(), None)
            # When its files are written
            outputs = _write_shard(RunStore(store, RUN.bucket, RUN.run_prefix), 0, out)  # type: ignore[arg-type]
        finally:
            out.close()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Then the files are whole: every frame and box in both COCO files and in the manifest
    files = {k: tmp_path / S3Uri.parse(outputs[k]).key for k in ("coco", "prelabels_coco", "output_manifest")}
    frames = BATCHES * FRAMES
    for name in ("coco", "prelabels_coco"):
        coco = COCO(str(files[name]))
        assert (len(coco.getImgIds()), len(coco.getAnnIds())) == (frames, frames * BOXES)
    lines = files["output_manifest"].read_text().splitlines()
    assert len(lines) == frames and json.loads(lines[-1])["source-ref"] == "s3://frames/0019/0099.jpg"
    # And the shard's traced peak (one batch being made and read, the per-frame report entries and
    # COCO images) is a small part of those files: holding them would be more than their size
    written = sum(path.stat().st_size for path in files.values())
    assert peak < written / 3, f"peak {peak / 2**20:.1f} MB for {written / 2**20:.1f} MB written"
