"""Writers of one format each: they stream :class:`ExportFrame` records into a folder.

Every writer takes the frames (an iterator, consumed once), the run's categories and a function
that says where a frame's image is (:class:`workflow.exports.source.Image`), and holds at most one
frame's labels (COCO's two arrays go through a temporary file). Provenance rides where the format
has room: per box the models that supported it and their scores, per frame the route it took and
whether a person reviewed it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO, Any
from xml.sax.saxutils import quoteattr

from workflow.exports.records import Category, ExportBox, ExportFrame, mask_outline, rle_mask
from workflow.exports.source import Image

Resolve = Callable[[str], Image]
FORMATS = ("coco", "coco-results", "yolo", "label-studio", "cvat", "fiftyone")


class _JsonArray:
    """Writes a JSON array one element at a time."""

    def __init__(self, f: IO[str]) -> None:
        self.f, self.n = f, 0
        f.write("[")

    def add(self, item: Any) -> None:
        self.f.write(("," if self.n else "") + "\n" + json.dumps(item, separators=(",", ":")))
        self.n += 1

    def close(self) -> None:
        self.f.write("\n]")


def _support(box: ExportBox) -> list[dict[str, Any]]:
    return [{"model": m, "score": s} for m, s in box.support]


def file_name(uri: str) -> str:
    """A flat, unique-enough file name for a frame URI (its last two path parts)."""
    parts = uri.rstrip("/").split("/")
    return "__".join(parts[-2:]) if len(parts) > 3 else parts[-1]


# --- COCO ---------------------------------------------------------------------------------------
def write_coco(
    frames: Iterable[ExportFrame],
    categories: Sequence[Category],
    path: Path,
    resolve: Resolve,
    *,
    image_name: Callable[[ExportFrame], str] | None = None,
    on_frame: Callable[[ExportFrame], None] | None = None,
) -> int:
    """A COCO dataset of the final labels: ``file_name`` the image's path or URL (or ``image_name``),
    each image with its ``autolabel`` provenance, machine boxes with ``score`` and ``support``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ids = {c.name: c.id for c in categories}
    count = 0
    with tempfile.TemporaryFile("w+") as anns_tmp, path.open("w") as out:
        out.write('{"info":{"description":"autolabel export"},"licenses":[],"categories":')
        out.write(json.dumps([{"id": c.id, "name": c.name, "supercategory": "object"} for c in categories]))
        out.write(',"images":')
        images = _JsonArray(out)
        anns = _JsonArray(anns_tmp)
        for frame in frames:
            name = image_name(frame) if image_name else resolve(frame.uri).url
            images.add(
                {
                    "id": frame.image_id,
                    "file_name": name,
                    "width": frame.width,
                    "height": frame.height,
                    "autolabel": {"frame": frame.uri, **frame.provenance()},
                }
            )
            for box in frame.boxes:
                ann: dict[str, Any] = {
                    "id": anns.n + 1,
                    "image_id": frame.image_id,
                    "category_id": ids[box.category],
                    "bbox": [round(v, 2) for v in box.xywh],
                    "area": round(box.xywh[2] * box.xywh[3], 2),
                    "iscrowd": 0,
                }
                if box.rle is not None:
                    ann["segmentation"] = dict(box.rle)
                if box.score is not None:
                    ann["score"] = box.score
                if box.support:
                    ann["support"] = _support(box)
                anns.add(ann)
            if on_frame:
                on_frame(frame)
            count += 1
        images.close()
        anns.close()
        out.write(',"annotations":')
        anns_tmp.seek(0)
        while chunk := anns_tmp.read(1 << 20):
            out.write(chunk)
        out.write("}")
    return count


def write_coco_results(
    frames: Iterable[ExportFrame], categories: Sequence[Category], out: Path, resolve: Resolve
) -> int:
    """``instances.json`` (the dataset, for its image ids) and ``results.json``: the machine
    pre-labels as a COCO results list ``[{image_id, category_id, bbox, score}]`` for ``COCO.loadRes``."""
    out.mkdir(parents=True, exist_ok=True)
    ids = {c.name: c.id for c in categories}
    with (out / "results.json").open("w") as f:
        results = _JsonArray(f)

        def add(frame: ExportFrame) -> None:
            for box in frame.prelabels:
                if box.score is None:
                    continue
                item: dict[str, Any] = {
                    "image_id": frame.image_id,
                    "category_id": ids[box.category],
                    "bbox": [round(v, 2) for v in box.xywh],
                    "score": box.score,
                }
                if box.support:
                    item["support"] = _support(box)
                item["route"] = frame.route
                results.add(item)

        n = write_coco(frames, categories, out / "instances.json", resolve, on_frame=add)
        results.close()
    return n


# --- YOLO ---------------------------------------------------------------------------------------
def _yaml_str(s: str) -> str:
    return json.dumps(s)  # a JSON string is a valid YAML scalar


def _link(image: Image, target: Path) -> str | None:
    """Link a local image into the export (falls back to the path when links are refused)."""
    if image.path is None or not image.path.exists():
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    try:
        os.symlink(image.path, target)
    except OSError:
        return str(image.path)
    return str(target)


def write_yolo(
    frames: Iterable[ExportFrame], categories: Sequence[Category], out: Path, resolve: Resolve
) -> int:
    """Ultralytics YOLO: ``data.yaml`` (class names by index), ``images/`` (links to the frames),
    ``labels/<stem>.txt`` one object a line ``class cx cy w h`` normalised to [0, 1]; an object with
    a mask is written as a ``-seg`` polygon ``class x1 y1 x2 y2 ...`` instead. Frames without a local
    file are listed by URI in ``images.txt``. ``provenance.jsonl`` holds what YOLO has no room for."""
    index = {c.name: i for i, c in enumerate(sorted(categories, key=lambda c: c.id))}
    (out / "labels").mkdir(parents=True, exist_ok=True)
    count = 0
    with (out / "images.txt").open("w") as listing, (out / "provenance.jsonl").open("w") as prov:
        for frame in frames:
            image = resolve(frame.uri)
            name = file_name(frame.uri)
            linked = _link(image, out / "images" / name)
            listed = f"./images/{name}" if linked else image.url
            listing.write(listed + "\n")
            stem = Path(listed.split("?")[0]).stem  # YOLO finds labels by the image's stem
            lines = [_yolo_line(index[b.category], b, frame.width, frame.height) for b in frame.boxes]
            (out / "labels" / f"{stem}.txt").write_text("".join(x + "\n" for x in lines))
            prov.write(
                json.dumps(
                    {
                        "image": name,
                        "frame": frame.uri,
                        **frame.provenance(),
                        "objects": [{"score": b.score, "support": _support(b)} for b in frame.boxes],
                    }
                )
                + "\n"
            )
            count += 1
    names = "\n".join(f"  {i}: {_yaml_str(n)}" for n, i in sorted(index.items(), key=lambda t: t[1]))
    (out / "data.yaml").write_text(
        f"# autolabel export (YOLO); labels/ mirrors images/\npath: {_yaml_str(str(out.resolve()))}\n"
        f"train: images.txt\nval: images.txt\nnc: {len(index)}\nnames:\n{names}\n"
    )
    return count


def _clip01(v: float) -> float:
    return min(1.0, max(0.0, v))


def _yolo_line(cls: int, box: ExportBox, width: int, height: int) -> str:
    if box.rle is not None:
        outline = mask_outline(rle_mask(box.rle))
        if len(outline) >= 3:
            pts = " ".join(f"{_clip01(x / width):.6f} {_clip01(y / height):.6f}" for x, y in outline)
            return f"{cls} {pts}"
    x, y, w, h = box.xywh
    x1, y1 = _clip01(x / width), _clip01(y / height)
    x2, y2 = _clip01((x + w) / width), _clip01((y + h) / height)
    return f"{cls} {(x1 + x2) / 2:.6f} {(y1 + y2) / 2:.6f} {x2 - x1:.6f} {y2 - y1:.6f}"


# --- Label Studio -------------------------------------------------------------------------------
def _ls_region(box: ExportBox, frame: ExportFrame, n: int, prefix: str) -> dict[str, Any]:
    x, y, w, h = box.xywh
    region: dict[str, Any] = {
        "id": f"{prefix}{frame.image_id}-{n}",
        "type": "rectanglelabels",
        "from_name": "label",
        "to_name": "image",
        "original_width": frame.width,
        "original_height": frame.height,
        "image_rotation": 0,
        "value": {
            "x": 100.0 * x / frame.width,
            "y": 100.0 * y / frame.height,
            "width": 100.0 * w / frame.width,
            "height": 100.0 * h / frame.height,
            "rotation": 0,
            "rectanglelabels": [box.category],
        },
    }
    if box.score is not None:
        region["score"] = box.score
    if box.support:
        region["meta"] = {"support": _support(box)}
    return region


def label_studio_config(categories: Sequence[Category]) -> str:
    labels = "\n".join(
        f"    <Label value={quoteattr(c.name)} background={quoteattr(c.color)}/>" for c in categories
    )
    return (
        '<View>\n  <Image name="image" value="$image"/>\n'
        f'  <RectangleLabels name="label" toName="image">\n{labels}\n  </RectangleLabels>\n</View>\n'
    )


def _model_version(frame: ExportFrame) -> str:
    models = sorted({m for b in frame.prelabels for m, _ in b.support})
    return "+".join(models) or "autolabel"


def write_label_studio(
    frames: Iterable[ExportFrame],
    categories: Sequence[Category],
    out: Path,
    resolve: Resolve,
    document_root: str | Path = "/",
) -> int:
    """``tasks.json`` (Label Studio's import format: ``data.image``, ``predictions`` with
    ``model_version``, a task score and per-region ``score``; frames people reviewed also carry their
    labels as an ``annotations`` entry) and ``label_config.xml`` with the taxonomy colours.

    ``data.image`` is the image's URL: a presigned HTTPS URL or ``s3://`` URI (Label Studio serves
    these through a cloud storage connection), or for local runs ``/data/local-files/?d=<path>``
    relative to ``document_root`` (Label Studio's ``LOCAL_FILES_DOCUMENT_ROOT``)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "label_config.xml").write_text(label_studio_config(categories))
    count = 0
    with (out / "tasks.json").open("w") as f:
        tasks = _JsonArray(f)
        for frame in frames:
            image = resolve(frame.uri)
            url = image.url
            if image.path is not None:
                from workflow.domain.labelstudio import local_files_url

                url = local_files_url(os.path.relpath(image.path, document_root))
            scores = [b.score for b in frame.prelabels if b.score is not None]
            task: dict[str, Any] = {
                "data": {"image": url, "frame": frame.uri, **frame.provenance()},
                "predictions": [
                    {
                        "model_version": _model_version(frame),
                        "score": min(scores) if scores else 0.0,
                        "result": [_ls_region(b, frame, n, "p") for n, b in enumerate(frame.prelabels)],
                    }
                ],
            }
            if frame.human_reviewed:
                task["annotations"] = [
                    {"result": [_ls_region(b, frame, n, "a") for n, b in enumerate(frame.boxes)]}
                ]
            tasks.add(task)
            count += 1
        tasks.close()
    return count


# --- CVAT for images 1.1 ------------------------------------------------------------------------
def write_cvat(
    frames: Iterable[ExportFrame], categories: Sequence[Category], out: Path, resolve: Resolve
) -> int:
    """``annotations.xml`` in CVAT for images 1.1: ``<meta><task>`` with the labels (taxonomy colour,
    a ``score`` and a ``models`` text attribute), then one ``<image>`` per frame with ``<box>`` (or a
    ``<polygon>`` for a mask); ``source`` is ``manual`` for frames a person reviewed, else ``auto``.
    ``<meta>`` must come first, so the images go through a temporary file to count them."""
    out.mkdir(parents=True, exist_ok=True)
    count = 0
    with tempfile.TemporaryFile("w+") as body:
        for frame in frames:
            body.write(
                f'  <image id="{frame.image_id - 1}" name={quoteattr(file_name(frame.uri))} '
                f'width="{frame.width}" height="{frame.height}">\n'
            )
            for box in frame.boxes:
                body.write(_cvat_shape(box, frame))
            body.write("  </image>\n")
            count += 1
        labels = "".join(
            f"        <label>\n          <name>{_esc(c.name)}</name>\n"
            f"          <color>{_esc(c.color)}</color>\n"
            "          <type>any</type>\n          <attributes>\n"
            "            <attribute><name>score</name><mutable>False</mutable><input_type>number</input_type>"
            "<default_value>0</default_value><values>0;1;0.0001</values></attribute>\n"
            "            <attribute><name>models</name><mutable>False</mutable><input_type>text</input_type>"
            "<default_value></default_value><values></values></attribute>\n"
            "          </attributes>\n        </label>\n"
            for c in categories
        )
        with (out / "annotations.xml").open("w") as f:
            f.write('<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n  <version>1.1</version>\n')
            f.write(
                "  <meta>\n    <task>\n      <name>autolabel export</name>\n"
                f"      <size>{count}</size>\n      <mode>annotation</mode>\n      <overlap>0</overlap>\n"
                f"      <labels>\n{labels}      </labels>\n    </task>\n  </meta>\n"
            )
            body.seek(0)
            while chunk := body.read(1 << 20):
                f.write(chunk)
            f.write("</annotations>\n")
    return count


def _esc(s: str) -> str:
    return quoteattr(s)[1:-1]


def _cvat_shape(box: ExportBox, frame: ExportFrame) -> str:
    attrs = ""
    if box.score is not None:
        attrs += f'      <attribute name="score">{box.score:.4f}</attribute>\n'
    if box.support:
        models = ",".join(f"{m}:{s:.3f}" for m, s in box.support)
        attrs += f'      <attribute name="models">{_esc(models)}</attribute>\n'
    common = f'label={quoteattr(box.category)} source="{frame.source}" occluded="0" z_order="0"'
    outline = mask_outline(rle_mask(box.rle)) if box.rle is not None else []
    if len(outline) >= 3:
        points = ";".join(f"{x:.2f},{y:.2f}" for x, y in outline)
        return f'    <polygon {common} points="{points}">\n{attrs}    </polygon>\n'
    x, y, w, h = box.xywh
    x2, y2 = min(x + w, frame.width), min(y + h, frame.height)
    return (
        f'    <box {common} xtl="{max(x, 0):.2f}" ytl="{max(y, 0):.2f}" xbr="{x2:.2f}" ybr="{y2:.2f}">\n'
        f"{attrs}    </box>\n"
    )


# --- FiftyOne -----------------------------------------------------------------------------------
def write_fiftyone(
    frames: Iterable[ExportFrame], categories: Sequence[Category], out: Path, resolve: Resolve
) -> int:
    """FiftyOne's ``COCODetectionDataset`` layout: ``data/`` (the images, linked) and ``labels.json``
    (COCO, ``file_name`` relative to ``data/``, with ``score`` per machine box). Import with
    ``fo.Dataset.from_dir(dataset_dir=OUT, dataset_type=fo.types.COCODetectionDataset)``; frames with
    no local file keep their URI as ``file_name`` (give FiftyOne a ``data_path`` it can read)."""

    def name(frame: ExportFrame) -> str:
        image = resolve(frame.uri)
        base = file_name(frame.uri)
        return base if _link(image, out / "data" / base) else image.url

    return write_coco(frames, categories, out / "labels.json", resolve, image_name=name)


WRITERS: dict[str, Callable[[Iterable[ExportFrame], Sequence[Category], Path, Resolve], int]] = {
    "coco": lambda f, c, o, r: write_coco(f, c, o / "instances.json", r),
    "coco-results": write_coco_results,
    "yolo": write_yolo,
    "label-studio": write_label_studio,
    "cvat": write_cvat,
    "fiftyone": write_fiftyone,
}
