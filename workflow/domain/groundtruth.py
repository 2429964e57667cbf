"""SageMaker Ground Truth manifests for bounding-box adjustment jobs: writers and readers.

Writers produce exactly what Ground Truth reads (the pre-label input manifest, the label
category configuration, the worker UI template) and what it writes (the output manifest of an
adjustment job); readers parse its output manifest into :class:`ReviewedFrame`. Pure code: it
never touches AWS. Formats: the AWS developer guide and real output manifests.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from workflow.domain.errors import AutolabelError
from workflow.domain.taxonomy import Taxonomy

if TYPE_CHECKING:
    from workflow.domain.detections import Detections, Provenance

CREATION_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"
LABEL_CATEGORY_DOCUMENT_VERSION = "2018-11-28"
MAX_BOUNDING_BOX_CATEGORIES = 50  # a label category configuration file of a bounding-box job
# The <crowd-bounding-box> element of a custom worker template (what these jobs use, to show the
# pre-labels through initial-value) documents "Limit: 10 labels" for its labels attribute
# (SageMaker Developer Guide, crowd-bounding-box element reference, read 2026-12-01).
MAX_WORKER_UI_LABELS = 10
MAX_DATA_OBJECTS_PER_JOB = 100_000
OBJECT_DETECTION = "groundtruth/object-detection"
SEMANTIC_SEGMENTATION = "groundtruth/semantic-segmentation"
_ATTRIBUTE_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,126}$")

T = TypeVar("T")
Manifest = list[dict[str, Any]]


class GroundTruthError(AutolabelError):
    """Base of the Ground Truth format errors."""


class ManifestFormatError(GroundTruthError):
    """A manifest line is not in the format Ground Truth reads or writes."""


class TooManyLabelCategories(GroundTruthError):
    """A bounding-box job allows at most 50 label categories."""


class InvalidLabelAttributeName(GroundTruthError):
    """A LabelAttributeName that CreateLabelingJob would refuse."""


class ImageSize(BaseModel):
    """The ``image_size`` entry of a bounding-box label."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    width: int = Field(gt=0)
    height: int = Field(gt=0)
    depth: int = Field(default=3, gt=0)


class ReviewedBox(BaseModel):
    """One box of a Ground Truth label: pixels of the original frame, fractions allowed."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    class_id: int = Field(ge=0)
    class_name: str
    left: float
    top: float
    width: float = Field(ge=0)
    height: float = Field(ge=0)
    confidence: float | None = None

    @property
    def xyxy(self) -> tuple[float, float, float, float]:
        return (self.left, self.top, self.left + self.width, self.top + self.height)


class ReviewedFrame(BaseModel):
    """One line of a Ground Truth output manifest, read for one label attribute."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    source_ref: str
    image_size: ImageSize | None = None  # None when the object failed
    boxes: tuple[ReviewedBox, ...] = ()
    human_annotated: bool = False
    adjustment_status: Literal["adjusted", "unadjusted"] | None = None
    failure_reason: str | None = None
    job_name: str | None = None
    creation_date: str | None = None

    @property
    def failed(self) -> bool:
        return self.failure_reason is not None

    def to_detections(self, provenance: Provenance | None = None) -> Detections:
        """The boxes as :class:`Detections`; a box without a confidence scores 1.0 (a person drew it)."""
        import numpy as np

        from workflow.domain.detections import Detections, Provenance

        if self.image_size is None:
            raise ManifestFormatError(f"{self.source_ref}: failed object, no label ({self.failure_reason})")
        prov = provenance or Provenance(model="groundtruth", version=self.job_name or "")
        return Detections(
            boxes=np.array([b.xyxy for b in self.boxes], np.float32).reshape(-1, 4),
            scores=np.array([1.0 if b.confidence is None else b.confidence for b in self.boxes], np.float32),
            class_ids=np.array([b.class_id for b in self.boxes], np.int64),
            class_names=tuple(b.class_name for b in self.boxes),
            image_width=self.image_size.width,
            image_height=self.image_size.height,
            provenance=prov,
            frame=self.source_ref,
        )


def creation_date(moment: datetime | None = None) -> str:
    """Ground Truth's ``creation-date``: UTC, microseconds, no zone suffix."""
    moment = moment or datetime.now(UTC)
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.strftime(CREATION_DATE_FORMAT)


def metadata_job_name(name: str) -> str:
    """The ``job-name`` value Ground Truth writes: ``labeling-job/<name>``."""
    return name if name.startswith("labeling-job/") else f"labeling-job/{name}"


def validate_label_attribute_name(name: str, task: Literal["bounding-box", "semantic-segmentation"]) -> None:
    """Raise :class:`InvalidLabelAttributeName` for a name CreateLabelingJob refuses for this task."""
    if not _ATTRIBUTE_NAME.match(name):
        raise InvalidLabelAttributeName(f"label attribute {name!r} must match {_ATTRIBUTE_NAME.pattern}")
    if "-metadata" in name:
        raise InvalidLabelAttributeName(f"label attribute {name!r} must not contain '-metadata'")
    if task == "bounding-box" and name.endswith("-ref"):
        raise InvalidLabelAttributeName(f"bounding-box label attribute {name!r} must not end in '-ref'")
    if task == "semantic-segmentation" and not name.endswith("-ref"):
        raise InvalidLabelAttributeName(f"semantic-segmentation label attribute {name!r} must end in '-ref'")


def _number(value: float) -> int | float:
    # Ground Truth writes whole pixels as JSON integers and keeps fractions as they are.
    return int(value) if float(value).is_integer() else value


def _box_entries(
    boxes: Sequence[ReviewedBox],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str]]:
    """(annotations, objects, class-map) of a label, in Ground Truth's key names."""
    annotations: list[dict[str, Any]] = []
    objects: list[dict[str, Any]] = []
    class_map: dict[str, str] = {}
    for box in boxes:
        known = class_map.setdefault(str(box.class_id), box.class_name)
        if known != box.class_name:
            raise ManifestFormatError(f"class_id {box.class_id} names both {known!r} and {box.class_name!r}")
        coords = {k: _number(getattr(box, k)) for k in ("left", "top", "width", "height")}
        annotations.append({"class_id": box.class_id, **coords})
        objects.append({"confidence": box.confidence if box.confidence is not None else 1.0})
    return annotations, objects, class_map


def boxes_from_detections(detections: Detections, label_categories: Sequence[str]) -> list[ReviewedBox]:
    """Detections (already in taxonomy names) as integer-pixel boxes clipped to the frame.

    ``class_id`` is the index of the class in ``label_categories`` (the job's label categories).
    """

    index = {name: i for i, name in enumerate(label_categories)}
    w, h = detections.image_width, detections.image_height
    boxes = []
    for (x1, y1, x2, y2), score, name in zip(
        detections.boxes.tolist(), detections.scores.tolist(), detections.class_names, strict=True
    ):
        if name not in index:
            raise ManifestFormatError(f"class {name!r} is not a label category {list(label_categories)}")
        left, top = round(min(max(x1, 0.0), w)), round(min(max(y1, 0.0), h))
        right, bottom = round(min(max(x2, 0.0), w)), round(min(max(y2, 0.0), h))
        boxes.append(
            ReviewedBox(
                class_id=index[name],
                class_name=name,
                left=left,
                top=top,
                width=max(right - left, 0),
                height=max(bottom - top, 0),
                confidence=round(score, 4),
            )
        )
    return boxes


def _prelabel_entries(
    detections: Detections, label_categories: Sequence[str]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str]] | None:
    """What ``_box_entries(boxes_from_detections(detections, label_categories))`` gives, from the
    arrays at once, with no box model per detection (a shard publishes hundreds of thousands):
    the same whole pixels (clipped, rounded half to even), the same confidences. None when a
    box is not finite or a class is no category (the box models' path reports those)."""
    import numpy as np

    index = {name: i for i, name in enumerate(label_categories)}
    if any(name not in index for name in detections.class_names):
        return None
    boxes = detections.boxes.astype(np.float64)
    if not np.isfinite(boxes).all():
        return None
    w, h = detections.image_width, detections.image_height
    xs = np.rint(np.clip(boxes[:, 0::2], 0.0, w)).astype(np.int64)
    ys = np.rint(np.clip(boxes[:, 1::2], 0.0, h)).astype(np.int64)
    annotations: list[dict[str, Any]] = []
    objects: list[dict[str, Any]] = []
    class_map: dict[str, str] = {}
    for (left, right), (top, bottom), score, name in zip(
        xs.tolist(), ys.tolist(), detections.scores.tolist(), detections.class_names, strict=True
    ):
        class_id = index[name]
        class_map[str(class_id)] = name
        annotations.append(
            {
                "class_id": class_id,
                "left": left,
                "top": top,
                "width": max(right - left, 0),
                "height": max(bottom - top, 0),
            }
        )
        objects.append({"confidence": round(score, 4)})
    return annotations, objects, class_map


def _label(image_size: ImageSize, boxes: Sequence[ReviewedBox], metadata: dict[str, Any]) -> dict[str, Any]:
    return _label_of(image_size, _box_entries(boxes), metadata)


def _label_of(
    image_size: ImageSize,
    entries: tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, str]],
    metadata: dict[str, Any],
) -> dict[str, Any]:
    annotations, objects, class_map = entries
    label = {"image_size": [image_size.model_dump()], "annotations": annotations}
    meta = {"objects": objects, "class-map": class_map, "type": OBJECT_DETECTION, **metadata}
    return {"label": label, "metadata": meta}


def input_manifest_line(
    source_ref: str,
    detections: Detections,
    taxonomy: Taxonomy,
    attribute: str = "prelabel",
    job_name: str = "labeling-job/prelabel",
    created: datetime | None = None,
    depth: int = 3,
) -> dict[str, Any]:
    """One input-manifest line carrying machine pre-labels for a bounding-box adjustment job.

    ``source_ref`` must be the ORIGINAL frame. Detections must use taxonomy names; classes the
    taxonomy marks as not reviewed are left out, since they are no label category of the job.
    """
    import numpy as np

    validate_label_attribute_name(attribute, "bounding-box")
    categories = taxonomy.reviewed_names
    keep = np.array([n in categories for n in detections.class_names], dtype=np.bool_)
    unknown = sorted({n for n in detections.class_names if n not in taxonomy})
    if unknown:
        raise ManifestFormatError(
            f"{source_ref}: classes {unknown} are not in the taxonomy; apply a ClassMap"
        )
    shown = detections if keep.all() else detections.select(keep)
    entries = _prelabel_entries(shown, categories)
    if entries is None:
        entries = _box_entries(boxes_from_detections(shown, categories))
    size = ImageSize(width=detections.image_width, height=detections.image_height, depth=depth)
    meta = {
        "human-annotated": "no",
        "creation-date": creation_date(created),
        "job-name": metadata_job_name(job_name),
    }
    built = _label_of(size, entries, meta)
    return {"source-ref": source_ref, attribute: built["label"], f"{attribute}-metadata": built["metadata"]}


def output_manifest_line(
    input_line: dict[str, Any],
    label_attribute: str,
    boxes: Sequence[ReviewedBox],
    job_name: str,
    adjusted: bool,
    *,
    image_size: ImageSize,
    created: datetime | None = None,
    human_annotated: bool = True,
) -> dict[str, Any]:
    """What Ground Truth writes for one object of an adjustment job: the input line plus the label.

    ``human_annotated=False`` only for a stand-in reviewer (no person looked at the frame).
    """
    meta = {
        "human-annotated": "yes" if human_annotated else "no",
        "creation-date": creation_date(created),
        "job-name": metadata_job_name(job_name),
        "adjustment-status": "adjusted" if adjusted else "unadjusted",
    }
    built = _label(image_size, boxes, meta)
    return {**input_line, label_attribute: built["label"], f"{label_attribute}-metadata": built["metadata"]}


def failed_output_line(
    input_line: dict[str, Any],
    label_attribute: str,
    reason: str,
    job_name: str,
    created: datetime | None = None,
) -> dict[str, Any]:
    """An output line for a data object that could not be labeled: metadata with ``failure-reason``."""
    meta = {
        "type": OBJECT_DETECTION,
        "human-annotated": "no",
        "creation-date": creation_date(created),
        "job-name": metadata_job_name(job_name),
        "failure-reason": reason,
    }
    return {**input_line, f"{label_attribute}-metadata": meta}


def _require(value: Any, kind: type, what: str, source: str) -> Any:
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ManifestFormatError(f"{source}: {what} must be a {kind.__name__}, got {type(value).__name__}")
    return value


def _parse_boxes(label: dict[str, Any], meta: dict[str, Any], source: str) -> tuple[ReviewedBox, ...]:
    annotations = _require(label.get("annotations"), list, "annotations", source)
    class_map = _require(meta.get("class-map", {}), dict, "class-map", source)
    objects = _require(meta.get("objects", []), list, "objects", source)
    if objects and len(objects) != len(annotations):
        raise ManifestFormatError(f"{source}: {len(objects)} objects for {len(annotations)} annotations")
    boxes = []
    for i, ann in enumerate(annotations):
        try:
            name = class_map[str(ann["class_id"])]
            conf = objects[i].get("confidence") if objects else None
            boxes.append(
                ReviewedBox(
                    class_id=int(ann["class_id"]),
                    class_name=str(name),
                    left=ann["left"],
                    top=ann["top"],
                    width=ann["width"],
                    height=ann["height"],
                    confidence=None if conf is None else float(conf),
                )
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ManifestFormatError(f"{source}: annotation {i} is malformed ({exc!r})") from exc
    return tuple(boxes)


def parse_output_line(line: dict[str, Any], label_attribute: str) -> ReviewedFrame:
    """Read one output-manifest line (or a pre-labeled input line) for ``label_attribute``."""
    source = _require(line.get("source-ref"), str, "source-ref", "manifest line")
    meta = line.get(f"{label_attribute}-metadata")
    if not isinstance(meta, dict):
        raise ManifestFormatError(f"{source}: no {label_attribute}-metadata object")
    common = {
        "source_ref": source,
        "human_annotated": meta.get("human-annotated") == "yes",
        "adjustment_status": meta.get("adjustment-status"),
        "job_name": meta.get("job-name"),
        "creation_date": meta.get("creation-date"),
    }
    if "failure-reason" in meta and label_attribute not in line:
        return ReviewedFrame(failure_reason=str(meta["failure-reason"]), **common)
    if meta.get("type", OBJECT_DETECTION) != OBJECT_DETECTION:
        raise ManifestFormatError(f"{source}: {label_attribute} is a {meta.get('type')!r} label, not boxes")
    label = _require(line.get(label_attribute), dict, label_attribute, source)
    sizes = _require(label.get("image_size"), list, "image_size", source)
    if not sizes:
        raise ManifestFormatError(f"{source}: empty image_size")
    reason = meta.get("failure-reason")
    return ReviewedFrame(
        image_size=ImageSize(**sizes[0]),
        boxes=_parse_boxes(label, meta, source),
        failure_reason=None if reason is None else str(reason),
        **common,
    )


def same_boxes(a: Sequence[ReviewedBox], b: Sequence[ReviewedBox], tolerance: float = 0.5) -> bool:
    """Whether two labels hold the same boxes (any order, same classes, coordinates within ``tolerance``)."""
    if len(a) != len(b):
        return False

    def key(box: ReviewedBox) -> tuple[str, float, float, float, float]:
        return (box.class_name, box.left, box.top, box.width, box.height)

    for x, y in zip(sorted(a, key=key), sorted(b, key=key), strict=True):
        if x.class_name != y.class_name:
            return False
        if max(abs(p - q) for p, q in zip(key(x)[1:], key(y)[1:], strict=True)) > tolerance:
            return False
    return True


def label_category_config(categories: Taxonomy | Sequence[str]) -> dict[str, Any]:
    """The label category configuration file of a bounding-box job (reviewed classes of a taxonomy)."""
    names = categories.reviewed_names if isinstance(categories, Taxonomy) else tuple(categories)
    if not names:
        raise GroundTruthError("a labeling job needs at least one label category")
    if len(names) > MAX_BOUNDING_BOX_CATEGORIES:
        raise TooManyLabelCategories(
            f"{len(names)} label categories; a bounding-box job allows at most {MAX_BOUNDING_BOX_CATEGORIES}"
        )
    if len(set(names)) != len(names):
        raise GroundTruthError(f"label categories repeat: {list(names)}")
    return {"document-version": LABEL_CATEGORY_DOCUMENT_VERSION, "labels": [{"label": n} for n in names]}


def split_manifest(lines: Sequence[T], max_lines: int = MAX_DATA_OBJECTS_PER_JOB) -> list[list[T]]:
    """Split a manifest into chunks that each fit one labeling job."""
    if max_lines <= 0:
        raise ValueError("max_lines must be positive")
    return [list(lines[i : i + max_lines]) for i in range(0, len(lines), max_lines)]


def dumps_manifest(lines: Iterable[dict[str, Any]]) -> str:
    """JSON Lines text, one compact object per line, newline-terminated."""
    return "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)


def loads_manifest(text: str) -> Manifest:
    """Parse JSON Lines text; blank lines are skipped, anything else must be a JSON object."""
    lines: Manifest = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ManifestFormatError(f"line {number} is not valid JSON: {exc.msg}") from exc
        if not isinstance(value, dict):
            raise ManifestFormatError(f"line {number} is a JSON {type(value).__name__}, not an object")
        lines.append(value)
    return lines


def semantic_segmentation_metadata(
    taxonomy: Taxonomy,
    job_name: str,
    confidence: float | None = None,
    human_annotated: bool = False,
    created: datetime | None = None,
) -> dict[str, Any]:
    """``<attr>-metadata`` of a semantic-segmentation label: index 0 is BACKGROUND, then the classes.

    Adjustment and verification jobs need ``hex-color`` for every entry.
    """
    entries = [("BACKGROUND", "#ffffff")] + [(c.name, c.color) for c in taxonomy.classes]
    colour_map = {}
    for i, (name, colour) in enumerate(entries):
        entry: dict[str, Any] = {"class-name": name, "hex-color": colour}
        if confidence is not None:
            entry["confidence"] = confidence
        colour_map[str(i)] = entry
    return {
        "internal-color-map": colour_map,
        "type": SEMANTIC_SEGMENTATION,
        "human-annotated": "yes" if human_annotated else "no",
        "creation-date": creation_date(created),
        "job-name": metadata_job_name(job_name),
    }
