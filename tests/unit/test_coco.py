"""COCO datasets from detections and reviewed frames, loaded back with pycocotools."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from workflow.adapters.spool import TextSpool
from workflow.domain.coco import CocoBuilder, CocoError
from workflow.domain.detections import Detections, Provenance
from workflow.domain.groundtruth import failed_output_line, loads_manifest, parse_output_line
from workflow.domain.taxonomy import DEFAULT_ADAS_TAXONOMY, Taxonomy

SAGEMAKER = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "sagemaker"


def load_coco(dataset: dict[str, Any]) -> COCO:
    coco = COCO()
    coco.dataset = json.loads(json.dumps(dataset))  # what a reader of the written file sees
    coco.createIndex()
    return coco


def detections_with_masks() -> Detections:
    masks = np.zeros((2, 48, 64), dtype=np.uint8)
    masks[0, 10:20, 5:25] = 1  # 200 px
    masks[1, 30:40, 40:45] = 1  # 50 px
    rles = []
    for m in masks:
        rle = mask_utils.encode(np.asfortranarray(m))
        rles.append({"size": rle["size"], "counts": rle["counts"].decode()})
    return Detections(
        boxes=np.array([[5, 10, 25, 20], [40, 30, 45, 40]], np.float32),
        scores=np.array([0.9, 0.6], np.float32),
        class_ids=np.array([0, 4]),
        class_names=("car", "pedestrian"),
        image_width=64,
        image_height=48,
        provenance=Provenance(model="yolo-seg"),
        frame="s3://drive/frames/a.png",
        masks=tuple(rles),
    )


def test_detections_become_a_coco_dataset_pycocotools_reads():
    # Given machine detections with instance masks
    builder = CocoBuilder(DEFAULT_ADAS_TAXONOMY, description="pre-labels")
    # When added and exported
    image_id = builder.add_detections(detections_with_masks())
    dataset = builder.to_dict()
    coco = load_coco(dataset)
    # Then pycocotools sees one image with two scored annotations in xywh, areas from the masks
    assert coco.getImgIds() == [image_id]
    assert coco.imgs[image_id] == {
        "id": image_id,
        "file_name": "s3://drive/frames/a.png",
        "width": 64,
        "height": 48,
    }
    anns = coco.loadAnns(coco.getAnnIds(imgIds=[image_id]))
    assert [a["bbox"] for a in anns] == [[5.0, 10.0, 20.0, 10.0], [40.0, 30.0, 5.0, 10.0]]
    assert [a["area"] for a in anns] == [200.0, 50.0]
    assert [a["score"] for a in anns] == pytest.approx([0.9, 0.6])
    assert all(a["iscrowd"] == 0 and isinstance(a["segmentation"]["counts"], str) for a in anns)
    assert int(coco.annToMask(anns[0]).sum()) == 200
    # And categories are the taxonomy's, with ids fixed by its order
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(DEFAULT_ADAS_TAXONOMY.names)
    assert [a["category_id"] for a in anns] == [1, DEFAULT_ADAS_TAXONOMY.index("pedestrian") + 1]


def test_machine_annotations_evaluate_perfectly_against_themselves():
    # Given a dataset and the same boxes as COCO results
    builder = CocoBuilder(DEFAULT_ADAS_TAXONOMY)
    builder.add_detections(detections_with_masks())
    gt = load_coco(builder.to_dict())
    results = [
        {k: a[k] for k in ("image_id", "category_id", "bbox", "score")} for a in gt.dataset["annotations"]
    ]
    # When COCOeval runs on boxes
    evaluation = COCOeval(gt, gt.loadRes(results), iouType="bbox")
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    # Then AP@[.5:.95] is 1 (the dataset is internally consistent)
    assert evaluation.stats[0] == pytest.approx(1.0)


def test_real_ground_truth_output_becomes_coco():
    # Given the real cat job output, empty image included
    path = SAGEMAKER / "gt_bbox_output_cat-ground-truth.manifest"
    if not path.exists():
        pytest.skip(f"real Ground Truth output manifest {path} is absent")
    frames = [parse_output_line(line, "cat-ground-truth") for line in loads_manifest(path.read_text())]
    builder = CocoBuilder(Taxonomy.from_names(["Cat"]))
    # When the reviewed frames are added
    for frame in frames:
        builder.add_reviewed(frame, file_name=frame.source_ref.rsplit("/", 1)[-1])
    coco = load_coco(builder.to_dict())
    # Then every image is there (the empty one too), boxes are the human boxes, no scores
    assert [img["file_name"] for img in coco.dataset["images"]] == [
        "0001.jpg",
        "0002.jpg",
        "0003.jpg",
        "0004.jpg",
    ]
    assert len(coco.getAnnIds(imgIds=[1])) == 0 and len(coco.dataset["annotations"]) == 4
    first = coco.loadAnns(coco.getAnnIds(imgIds=[2]))[0]
    assert first["bbox"] == [237.0, 165.0, 164.0, 157.0] and first["area"] == 164.0 * 157.0
    assert "score" not in first and "segmentation" not in first


def test_failed_frames_are_listed_not_silently_dropped():
    # Given a reviewed frame that failed in the labeling job
    failed = parse_output_line(
        failed_output_line({"source-ref": "s3://b/x.jpg"}, "r", "ClientError: gone", "j"), "r"
    )
    builder = CocoBuilder(DEFAULT_ADAS_TAXONOMY)
    # When added
    image_id = builder.add_reviewed(failed)
    # Then it is not an image of the dataset but is listed with its reason
    assert image_id is None and builder.to_dict()["images"] == []
    assert builder.skipped == [("s3://b/x.jpg", "ClientError: gone")]


def test_frames_are_registered_once_and_unknown_classes_refused():
    # Given a builder
    builder = CocoBuilder(DEFAULT_ADAS_TAXONOMY)
    # When the same frame is added twice
    # Then it keeps one id; a different size for it is an error
    assert builder.add_frame("a.png", 64, 48) == builder.add_frame("a.png", 64, 48) == 1
    with pytest.raises(CocoError):
        builder.add_frame("a.png", 65, 48)
    # And detections named outside the taxonomy are refused (map them first)
    raw = Detections(
        boxes=np.array([[0, 0, 1, 1]]),
        scores=np.array([0.5]),
        class_ids=np.array([0]),
        class_names=("person",),
        image_width=64,
        image_height=48,
        provenance=Provenance(model="m"),
        frame="b.png",
    )
    with pytest.raises(CocoError, match="person"):
        builder.add_detections(raw)
    assert [img["file_name"] for img in builder.to_dict()["images"]] == ["a.png"]


def test_the_written_json_is_the_dataset_and_pycocotools_reads_it(tmp_path: Path) -> None:
    # Given a builder with masked machine detections and an empty second frame with lineage fields
    builder = CocoBuilder(DEFAULT_ADAS_TAXONOMY, description="shard 0")
    builder.add_detections(detections_with_masks())
    builder.add_frame("s3://drive/frames/b.png", 64, 48, {"lineage": {"topic": "/cam", "log_time_ns": 1}})
    # When it is written as JSON from its kept annotation texts
    written = builder.to_json()
    # Then the bytes are exactly the compact JSON of the dataset
    assert written == json.dumps(builder.to_dict(), separators=(",", ":")).encode()
    # And pycocotools loads the file as it is
    path = tmp_path / "coco.json"
    path.write_bytes(written)
    coco = COCO(str(path))
    assert len(coco.getImgIds()) == 2 and len(coco.getAnnIds()) == 2
    assert coco.imgs[2]["lineage"]["topic"] == "/cam"


def test_an_empty_dataset_is_written_as_valid_json() -> None:
    builder = CocoBuilder(DEFAULT_ADAS_TAXONOMY)
    assert json.loads(builder.to_json())["annotations"] == []


def test_a_builder_spooling_to_disk_streams_the_same_bytes(tmp_path: Path) -> None:
    # Given two builders fed the same frames, one keeping its annotations in memory and one
    # spooling them to a temporary file in a directory of our own
    in_memory = CocoBuilder(DEFAULT_ADAS_TAXONOMY, description="shard 0")
    with TextSpool(separator=b",", directory=str(tmp_path)) as spool:
        spooled = CocoBuilder(DEFAULT_ADAS_TAXONOMY, description="shard 0", sink=spool)
        for builder in (in_memory, spooled):
            builder.add_detections(detections_with_masks())
            builder.add_frame("s3://drive/frames/b.png", 64, 48)
        # When the spooled one is streamed in small chunks
        chunks = list(spooled.json_chunks())
        # Then the stream is the in-memory dataset's exact bytes, cut into several chunks
        assert b"".join(chunks) == in_memory.to_json()
        assert len(chunks) >= 4
        assert spooled.to_dict() == in_memory.to_dict()
        # And the annotations went to disk, not to a list: the frame's two as one text
        assert spool.size > 0 and len(spool) == 1 and len(spooled.to_dict()["annotations"]) == 2
        # And a further annotation after streaming is appended, not written over the start
        spooled.add_frame("s3://drive/frames/c.png", 64, 48)
        in_memory.add_frame("s3://drive/frames/c.png", 64, 48)
        assert spooled.to_json() == in_memory.to_json()


def test_a_text_spool_reads_back_in_chunks_of_the_asked_size(tmp_path: Path) -> None:
    with TextSpool(terminator=b"\n", directory=str(tmp_path)) as spool:
        for i in range(1000):
            spool.append(json.dumps({"i": i}))
        chunks = list(spool.chunks(size=4096))
        assert all(len(c) <= 4096 for c in chunks) and len(chunks) > 1
        lines = b"".join(chunks).decode().splitlines()
        assert [json.loads(line)["i"] for line in lines] == list(range(1000))
        assert spool.size == sum(len(c) for c in chunks)


def _random_frames(count: int, seed: int = 7) -> list[Detections]:
    rng = np.random.default_rng(seed)
    names = [c.name for c in DEFAULT_ADAS_TAXONOMY.classes]
    frames = []
    for i in range(count):
        n = int(rng.integers(0, 25))
        boxes = rng.uniform(-40, 1650, (n, 4))
        boxes[:, 2:] = boxes[:, :2] + rng.uniform(0, 250, (n, 2))
        frames.append(
            Detections(
                boxes=boxes,
                scores=rng.random(n).astype(np.float32),
                class_ids=np.arange(n),
                class_names=[names[int(k)] for k in rng.integers(0, len(names), n)],
                image_width=1600,
                image_height=900,
                provenance=Provenance(model="m"),
                frame=f"s3://drive/frames/{i:04d}.jpg",
            )
        )
    return frames


@pytest.mark.parametrize("left_out", [None, 3, 5])
def test_a_frame_taken_as_another_builder_took_it_is_the_same_bytes(left_out: int | None) -> None:
    """The dataset of a shard takes its machine frames' annotations as the pre-labels encoded them;
    where the two builders' ids part (a frame only in the pre-labels, or another frame in between),
    it encodes them itself: either way the file is what add_detections alone writes."""
    frames = _random_frames(60)
    stand_in = _random_frames(1, seed=99)[0]
    prelabels, dataset = CocoBuilder(DEFAULT_ADAS_TAXONOMY), CocoBuilder(DEFAULT_ADAS_TAXONOMY)
    alone = CocoBuilder(DEFAULT_ADAS_TAXONOMY)
    for i, frame in enumerate(frames):
        fields = {"lineage": {"log": "drive-1", "index": i}} if i % 4 == 0 else None
        prelabels.add_detections(frame, fields=fields)
        if left_out and i % left_out == 1:
            continue  # failed in review: pre-labels only
        if left_out == 5 and i % 10 == 2:  # people's frame in its place (another builder's frame)
            other = Detections(**{**vars(stand_in), "frame": f"s3://drive/frames/people-{i}.jpg"})
            dataset.add_detections(other)
            alone.add_detections(other)
            continue
        dataset.add_detections_as(prelabels, frame, fields=fields)
        alone.add_detections(frame, fields=fields)
    assert b"".join(dataset.json_chunks()) == b"".join(alone.json_chunks())
    assert load_coco(dataset.to_dict()).getAnnIds()  # and it loads
