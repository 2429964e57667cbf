"""Every export format from one real local run (NanoDet on KITTI frames through the state machine),
each loaded back by the real library where it is installed here: pycocotools for COCO and the COCO
results file (``COCO.loadRes``), our reader of the documented YOLO format, Python's XML parser for
CVAT 1.1, the COCO layout FiftyOne's ``COCODetectionDataset`` importer reads (FiftyOne itself is
not installed: its database needs a download). Label Studio's own importer is not run here (its
virtualenv is built by ``make label-studio``); the tasks are checked against its import format."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pycocotools.coco import COCO

from workflow.cli.main import main
from workflow.exports.records import ExportBox, ExportFrame, mask_outline, rle_mask
from workflow.exports.source import LocalRun, S3Run
from workflow.exports.writers import file_name, write_cvat, write_yolo
from workflow.exports.yolo_reader import YoloFormatError, parse_label_line, read_yolo

pytestmark = pytest.mark.slow
FRAMES = ("000000.png", "000008.png")  # the run_out fixture's (conftest.py)


def export(run_out: Path, fmt: str, tmp_path: Path) -> Path:
    target = tmp_path / fmt
    assert main(["export", str(run_out), "--format", fmt, "--out", str(target)]) == 0
    return target


def published(run_out: Path) -> dict[str, Any]:
    return json.loads((run_out / "coco.json").read_text())


def test_coco_loads_in_pycocotools_with_the_published_boxes_and_provenance(
    run_out: Path, tmp_path: Path
) -> None:
    coco = COCO(str(export(run_out, "coco", tmp_path) / "instances.json"))
    source = published(run_out)
    assert len(coco.getImgIds()) == len(FRAMES) == len(source["images"])
    assert len(coco.getAnnIds()) == len(source["annotations"]) > 0
    assert {c["name"] for c in coco.loadCats(coco.getCatIds())} >= {"car", "pedestrian"}
    for image in coco.loadImgs(coco.getImgIds()):
        assert Path(image["file_name"]).is_file(), "file_name is the frame's local file"
        assert image["autolabel"]["route"] in ("auto", "verify", "adjust")
        assert image["autolabel"]["human_reviewed"] is False  # simulated review: no person
    anns = coco.loadAnns(coco.getAnnIds())
    assert any(s["model"] == "nanodet-coco" for a in anns for s in a.get("support", []))


def test_coco_results_are_accepted_by_loadres_and_evaluate(run_out: Path, tmp_path: Path) -> None:
    from pycocotools.cocoeval import COCOeval

    target = export(run_out, "coco-results", tmp_path)
    gt = COCO(str(target / "instances.json"))
    results = json.loads((target / "results.json").read_text())
    assert isinstance(results, list) and results
    assert {"image_id", "category_id", "bbox", "score"} <= set(results[0])
    dt = gt.loadRes(str(target / "results.json"))
    prelabels = json.loads((run_out / "prelabels.coco.json").read_text())
    assert len(dt.getAnnIds()) == len(prelabels["annotations"])
    ev = COCOeval(gt, dt, "bbox")
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    # the simulated reviewer kept every pre-label: the results match the dataset exactly
    assert ev.stats[0] > 0.95


def test_yolo_reads_back_to_the_published_boxes(run_out: Path, tmp_path: Path) -> None:
    target = export(run_out, "yolo", tmp_path)
    data = read_yolo(target)
    source = published(run_out)
    names = {c["id"]: c["name"] for c in source["categories"]}
    assert list(data.names.values()) == [
        c["name"] for c in sorted(source["categories"], key=lambda c: c["id"])
    ]
    assert len(data.images) == len(FRAMES)
    assert all((target / image).exists() for image in data.images)
    for image in source["images"]:
        stem = Path(file_name(image["file_name"])).stem
        objects = data.labels[stem]
        anns = [a for a in source["annotations"] if a["image_id"] == image["id"]]
        assert len(objects) == len(anns)
        for obj, ann in zip(objects, anns, strict=True):
            assert data.names[obj.class_id] == names[ann["category_id"]]
            x, y, w, h = ann["bbox"]
            cx, cy = (x + w / 2) / image["width"], (y + h / 2) / image["height"]
            assert obj.xywh == pytest.approx((cx, cy, w / image["width"], h / image["height"]), abs=2e-3)


def test_yolo_seg_polygons_where_masks_exist(tmp_path: Path) -> None:
    from pycocotools import mask as mask_utils

    mask = np.zeros((40, 60), np.uint8, order="F")
    mask[10:30, 20:50] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    rle = {"size": rle["size"], "counts": rle["counts"].decode()}
    frame = ExportFrame(1, "s3://b/k/a.png", 60, 40, (ExportBox("car", (20, 10, 30, 20), 0.9, (), rle),), ())
    from workflow.exports.records import Category
    from workflow.exports.source import Image

    write_yolo([frame], [Category(1, "car")], tmp_path, lambda uri: Image(uri, None, uri))
    (obj,) = read_yolo(tmp_path).labels["a"]
    assert len(obj.polygon) >= 4
    assert obj.xywh == pytest.approx((35 / 60, 20 / 40, 30 / 60, 20 / 40), abs=1e-6)
    assert mask_outline(rle_mask(rle))[0] == (20.0, 10.0)


def test_yolo_reader_refuses_what_the_format_forbids() -> None:
    with pytest.raises(YoloFormatError, match="normalised"):
        parse_label_line("0 0.5 0.5 1.2 0.1", 3, "x.txt:1")
    with pytest.raises(YoloFormatError, match="not in names"):
        parse_label_line("3 0.5 0.5 0.2 0.1", 3, "x.txt:1")
    with pytest.raises(YoloFormatError, match="5 numbers"):
        parse_label_line("0 0.5 0.5 0.2 0.1 0.3", 3, "x.txt:1")


def test_label_studio_tasks_carry_predictions_scores_and_resolvable_images(
    run_out: Path, tmp_path: Path
) -> None:
    target = export(run_out, "label-studio", tmp_path)
    tasks = json.loads((target / "tasks.json").read_text())
    assert len(tasks) == len(FRAMES)
    config = ET.fromstring((target / "label_config.xml").read_text())
    labels = {e.get("value"): e.get("background") for e in config.iter("Label")}
    assert labels["car"] == "#2acf59"
    for task in tasks:
        url = task["data"]["image"]
        assert url.startswith("/data/local-files/?d=")
        assert Path("/" + url.removeprefix("/data/local-files/?d=")).is_file()
        (prediction,) = task["predictions"]
        assert prediction["model_version"] == "nanodet-coco"
        for region in prediction["result"]:
            assert 0 < region["score"] <= 1
            assert region["value"]["rectanglelabels"][0] in labels
            assert 0 <= region["value"]["x"] <= 100 and 0 < region["value"]["width"] <= 100
            assert region["original_width"] == 1242 or region["original_width"] > 0
        assert "annotations" not in task  # no person reviewed (simulated)


def test_cvat_xml_follows_the_cvat_for_images_1_1_structure(run_out: Path, tmp_path: Path) -> None:
    root = ET.parse(export(run_out, "cvat", tmp_path) / "annotations.xml").getroot()
    assert root.tag == "annotations" and root.findtext("version") == "1.1"
    children = [c.tag for c in root]
    assert children[:2] == ["version", "meta"] and set(children[2:]) == {"image"}
    task = root.find("meta/task")
    assert task is not None and task.findtext("size") == str(len(FRAMES))
    declared = {lab.findtext("name"): lab for lab in task.iter("label")}
    images = root.findall("image")
    assert [int(i.get("id", -1)) for i in images] == list(range(len(FRAMES)))
    boxes = [b for i in images for b in i.findall("box")]
    assert len(boxes) == len(published(run_out)["annotations"])
    for image in images:
        w, h = float(image.get("width", 0)), float(image.get("height", 0))
        for box in image.findall("box"):
            assert box.get("label") in declared
            assert box.get("source") == "auto" and box.get("occluded") == "0"
            xtl, ytl, xbr, ybr = (float(box.get(k, -1)) for k in ("xtl", "ytl", "xbr", "ybr"))
            assert 0 <= xtl < xbr <= w and 0 <= ytl < ybr <= h
            label = declared[box.get("label")]
            names = {a.findtext("name") for a in label.iter("attribute")}
            assert {a.get("name") for a in box.findall("attribute")} <= names


def test_cvat_polygon_for_a_mask(tmp_path: Path) -> None:
    from pycocotools import mask as mask_utils

    from workflow.exports.records import Category
    from workflow.exports.source import Image

    mask = np.zeros((20, 20), np.uint8)
    mask[5:15, 5:10] = 1
    rle = mask_utils.encode(np.asfortranarray(mask))
    rle = {"size": rle["size"], "counts": rle["counts"].decode()}
    frame = ExportFrame(1, "s3://b/k/a.png", 20, 20, (ExportBox("car", (5, 5, 5, 10), None, (), rle),), ())
    write_cvat([frame], [Category(1, "car")], tmp_path, lambda uri: Image(uri, None, uri))
    (polygon,) = ET.parse(tmp_path / "annotations.xml").getroot().iter("polygon")
    points = [tuple(float(v) for v in p.split(",")) for p in polygon.get("points", "").split(";")]
    assert min(p[0] for p in points) == 5 and max(p[0] for p in points) == 10


def test_fiftyone_folder_is_the_coco_detection_layout(run_out: Path, tmp_path: Path) -> None:
    target = export(run_out, "fiftyone", tmp_path)
    coco = COCO(str(target / "labels.json"))
    for image in coco.loadImgs(coco.getImgIds()):
        assert (target / "data" / image["file_name"]).is_file(), "file_name is relative to data/"
    assert all("score" in a or "support" in a for a in coco.loadAnns(coco.getAnnIds()))


def test_s3_run_is_read_shard_by_shard_through_its_index(run_out: Path, tmp_path: Path) -> None:
    """The same published files, laid out as a run's S3 prefix in two shards (moto)."""
    import boto3
    from moto import mock_aws

    from workflow.adapters.s3 import S3Store

    coco, pre = published(run_out), json.loads((run_out / "prelabels.coco.json").read_text())
    report = (run_out / "report-frames.jsonl").read_text().splitlines()
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="data")
        shards = []
        for n, image in enumerate(coco["images"]):
            part = lambda d, fn=image["file_name"]: {  # noqa: E731 - one shard per frame
                **d,
                "images": [{**i, "id": 1} for i in d["images"] if i["file_name"] == fn],
                "annotations": [
                    {**a, "image_id": 1}
                    for a in d["annotations"]
                    if a["image_id"] == next(i["id"] for i in d["images"] if i["file_name"] == fn)
                ],
            }
            keys = {"coco": f"dataset/coco-{n:05d}.json", "prelabels_coco": f"prelabels/coco-{n:05d}.json"}
            client.put_object(Bucket="data", Key=f"runs/r1/{keys['coco']}", Body=json.dumps(part(coco)))
            client.put_object(
                Bucket="data", Key=f"runs/r1/{keys['prelabels_coco']}", Body=json.dumps(part(pre))
            )
            client.put_object(
                Bucket="data", Key=f"runs/r1/report/frames-{n:05d}.jsonl", Body=report[n] + "\n"
            )
            shards.append(
                {
                    "index": n,
                    **{k: f"s3://data/runs/r1/{v}" for k, v in keys.items()},
                    "frame_report": f"s3://data/runs/r1/report/frames-{n:05d}.jsonl",
                }
            )
        client.put_object(
            Bucket="data",
            Key="runs/r1/dataset/index.json",
            Body=json.dumps({"run_id": "r1", "shards": shards}),
        )
        source = S3Run("s3://data/runs/r1/", S3Store(client))
        frames = list(source.frames())
    local = list(LocalRun(run_out).frames())
    assert [f.image_id for f in frames] == [1, 2]
    assert [(f.uri, f.boxes, f.route) for f in frames] == [(f.uri, f.boxes, f.route) for f in local]
