"""COCO detection datasets built from machine detections or human-reviewed frames.

Categories come from the taxonomy, with ids fixed by its order (``id = position + 1``), so two
datasets built with the same taxonomy agree on ids. Boxes are COCO ``[x, y, width, height]`` in
pixels; machine-made annotations carry a ``score``; masks ride along as compressed RLE with
``counts`` as a string.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Protocol

from pycocotools import mask as mask_utils

from workflow.domain.detections import Detections, Rle
from workflow.domain.errors import AutolabelError
from workflow.domain.groundtruth import ReviewedFrame
from workflow.domain.taxonomy import Taxonomy

_COMPACT = (",", ":")


class CocoError(AutolabelError):
    """A frame or an annotation cannot go into the COCO dataset as given."""


def _rle_area(rle: Rle) -> float:
    counts = rle["counts"]
    encoded = {"size": list(rle["size"]), "counts": counts.encode() if isinstance(counts, str) else counts}
    return float(mask_utils.area(encoded))


def _rle_json(rle: Rle) -> dict[str, Any]:
    counts = rle["counts"]
    return {
        "size": [int(v) for v in rle["size"]],
        "counts": counts.decode() if isinstance(counts, bytes) else counts,
    }


class AnnotationSink(Protocol):
    """Where a builder keeps its annotations, each as compact JSON text: ``chunks()`` gives them
    back joined by commas (the inside of the ``annotations`` array)."""

    def append(self, text: str) -> None: ...

    def __len__(self) -> int: ...

    def chunks(self) -> Iterator[bytes]: ...


class _MemoryAnnotations:
    """The default sink: the texts in a list (a shard's step gives a file-backed one instead)."""

    def __init__(self) -> None:
        self._texts: list[str] = []

    def append(self, text: str) -> None:
        self._texts.append(text)

    def __len__(self) -> int:
        return len(self._texts)

    def chunks(self) -> Iterator[bytes]:
        yield ",".join(self._texts).encode()


class CocoBuilder:
    """Collects frames and their boxes, then returns one COCO dataset (a dict, its JSON, or the
    JSON as a stream of chunks)."""

    def __init__(self, taxonomy: Taxonomy, description: str = "", sink: AnnotationSink | None = None) -> None:
        self._taxonomy = taxonomy
        self._description = description
        self._images: dict[str, dict[str, Any]] = {}
        # Each annotation is kept as its compact JSON text (about a fifth of the dict's memory), in
        # a list unless a sink is given: a shard of 10,000 frames holds hundreds of thousands.
        self._annotations: AnnotationSink = sink if sink is not None else _MemoryAnnotations()
        self._count = len(self._annotations)  # annotations so far (a frame's go in as one text)
        self.skipped: list[tuple[str, str]] = []  # (frame, reason) of frames left out
        # The last frame added_detections took: (its detections, image, first annotation id, text).
        self._last: tuple[Detections, dict[str, Any], int, str] | None = None

    def category_id(self, name: str) -> int:
        """The stable COCO id of a taxonomy class."""
        try:
            return self._taxonomy.index(name) + 1
        except KeyError as exc:
            raise CocoError(f"class {name!r} is not in the taxonomy; apply a ClassMap first") from exc

    def add_frame(
        self, file_name: str, width: int, height: int, fields: Mapping[str, Any] | None = None
    ) -> int:
        """Register a frame (idempotent per file name) and return its image id. ``fields`` are extra
        keys of the COCO image (e.g. a drive-log frame's ``lineage``); COCO readers keep or ignore them."""
        image = self._images.get(file_name)
        if image is None:
            image = {"id": len(self._images) + 1, "file_name": file_name, "width": width, "height": height}
            image |= {k: v for k, v in (fields or {}).items() if k not in image}
            self._images[file_name] = image
        elif (image["width"], image["height"]) != (width, height):
            raise CocoError(
                f"{file_name}: size {width}x{height} differs from {image['width']}x{image['height']}"
            )
        return int(image["id"])

    def _annotation(
        self, image_id: int, name: str, xywh: tuple[float, ...], extra: dict[str, Any]
    ) -> dict[str, Any]:
        x, y, w, h = map(float, xywh)
        x, y, w, h = round(x, 2), round(y, 2), round(w, 2), round(h, 2)
        self._count += 1
        return {
            "id": self._count,
            "image_id": image_id,
            "category_id": self.category_id(name),
            "bbox": [x, y, w, h],
            "area": round(w * h, 2),
            "iscrowd": 0,
            **extra,
        }

    def _keep(self, annotations: list[dict[str, Any]]) -> str:
        """A frame's annotations as one text: the same bytes as one text each, joined by commas,
        in one encoding call instead of one per box."""
        if not annotations:
            return ""
        text = json.dumps(annotations, separators=_COMPACT)[1:-1]
        self._annotations.append(text)
        return text

    def add_detections(
        self, detections: Detections, file_name: str | None = None, fields: Mapping[str, Any] | None = None
    ) -> int:
        """Add machine detections (taxonomy names) of one frame; ``file_name`` defaults to its URI."""
        name = file_name or detections.frame
        if not name:
            raise CocoError("detections carry no frame URI; pass file_name")
        for class_name in set(detections.class_names):
            self.category_id(class_name)  # refuse before anything of the frame is added
        image_id = self.add_frame(name, detections.image_width, detections.image_height, fields)
        first = self._count + 1
        annotations = []
        scores = detections.scores.tolist()
        for i, (x1, y1, x2, y2) in enumerate(detections.boxes.tolist()):
            extra: dict[str, Any] = {"score": round(scores[i], 5)}
            if detections.support is not None:  # provenance: the models that supported the box
                extra["support"] = [s.to_dict() for s in detections.support[i]]
            if detections.masks is not None:
                rle = detections.masks[i]
                extra |= {"segmentation": _rle_json(rle), "area": round(_rle_area(rle), 2)}
            annotations.append(
                self._annotation(image_id, detections.class_names[i], (x1, y1, x2 - x1, y2 - y1), extra)
            )
        self._last = (detections, self._images[name], first, self._keep(annotations))
        return image_id

    def add_detections_as(
        self, other: CocoBuilder, detections: Detections, fields: Mapping[str, Any] | None = None
    ) -> int:
        """:meth:`add_detections` of the frame ``other`` added last with the same detections (a
        machine-published frame goes into the pre-labels and the dataset): where this builder's
        next ids are the ones ``other`` gave it, its image and annotation text are the same bytes
        and are taken as they are, not built and encoded again."""
        last = other._last
        same_taxonomy = other._taxonomy is self._taxonomy or other._taxonomy == self._taxonomy
        if last is not None and last[0] is detections and same_taxonomy:
            image, first, text = last[1], last[2], last[3]
            name = detections.frame
            expected = {"id": len(self._images) + 1, "file_name": name}
            expected |= {"width": detections.image_width, "height": detections.image_height}
            expected |= {k: v for k, v in (fields or {}).items() if k not in expected}
            if name not in self._images and first == self._count + 1 and image == expected:
                self._images[name] = dict(image)
                if text:
                    self._annotations.append(text)
                self._count += len(detections)
                self._last = (detections, self._images[name], first, text)
                return int(image["id"])
        return self.add_detections(detections, fields=fields)

    def add_reviewed(
        self, frame: ReviewedFrame, file_name: str | None = None, fields: Mapping[str, Any] | None = None
    ) -> int | None:
        """Add a human-reviewed frame; a failed one is left out, listed in :attr:`skipped` (None returned)."""
        name = file_name or frame.source_ref
        if frame.failed or frame.image_size is None:
            self.skipped.append((name, frame.failure_reason or "no label"))
            return None
        for box in frame.boxes:
            self.category_id(box.class_name)
        image_id = self.add_frame(name, frame.image_size.width, frame.image_size.height, fields)
        self._keep(
            [
                self._annotation(image_id, box.class_name, (box.left, box.top, box.width, box.height), {})
                for box in frame.boxes
            ]
        )
        return image_id

    def categories(self) -> list[dict[str, Any]]:
        return [
            {"id": i + 1, "name": c.name, "supercategory": "object"}
            for i, c in enumerate(self._taxonomy.classes)
        ]

    def _head(self) -> dict[str, Any]:
        return {
            "info": {"description": self._description, "version": "1.0"},
            "licenses": [],
            "images": list(self._images.values()),
        }

    def to_dict(self) -> dict[str, Any]:
        """The COCO dataset: ``info``, ``images``, ``annotations``, ``categories``."""
        inside = b"".join(self._annotations.chunks()).decode()
        return self._head() | {
            "annotations": json.loads(f"[{inside}]"),
            "categories": self.categories(),
        }

    def json_chunks(self) -> Iterator[bytes]:
        """The dataset as compact JSON, in chunks, written from the kept annotation texts (no dict
        of every annotation is built again, nor the whole text): joined, the same bytes as
        ``json.dumps(to_dict(), separators=(",", ":"))``."""
        yield json.dumps(self._head(), separators=_COMPACT)[:-1].encode()
        yield b',"annotations":['
        yield from self._annotations.chunks()
        yield b'],"categories":' + json.dumps(self.categories(), separators=_COMPACT).encode() + b"}"

    def to_json(self) -> bytes:
        """:meth:`json_chunks` joined."""
        return b"".join(self.json_chunks())


def merge_coco(datasets: Iterable[dict[str, Any]], description: str = "") -> dict[str, Any]:
    """One COCO dataset from several with the same categories (e.g. a run's shards), ids renumbered."""
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    categories: list[dict[str, Any]] | None = None
    for data in datasets:
        if categories is None:
            categories = data.get("categories", [])
        elif data.get("categories", []) != categories:
            raise CocoError("COCO datasets with different categories cannot be merged")
        ids: dict[int, int] = {}
        for image in data.get("images", []):
            ids[image["id"]] = len(images) + 1
            images.append({**image, "id": ids[image["id"]]})
        for ann in data.get("annotations", []):
            annotations.append({**ann, "id": len(annotations) + 1, "image_id": ids[ann["image_id"]]})
    return {
        "info": {"description": description, "version": "1.0"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories or [],
    }
