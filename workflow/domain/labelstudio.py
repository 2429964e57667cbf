"""Label Studio review jobs as data: the labeling config, the tasks, and reading the people's boxes back.

A review job of the workflow becomes one Label Studio project. Its labeling config draws
``RectangleLabels`` over the frame, one label per reviewed taxonomy class in the taxonomy's
colour. Each frame of the job's input manifest (Ground Truth's input format, as BuildManifest
writes it) becomes one task whose predictions are the pre-labels: one rectangle region per box,
x/y/width/height in PERCENT of the image, a score per region, a task-level score from routing
(so people can sort least confident first) and a ``model_version`` naming the models.

When people are done, every task is read back into a Ground Truth OUTPUT-manifest line (the
format Publish and the scorecard read for every backend): the latest submitted annotation's
boxes in pixels, ``adjustment-status`` from a comparison with the pre-labels and
``human-annotated: "yes"``, because a person submitted it. A task people skipped, or one whose
annotation cannot be read, becomes a failed line naming the reason; nothing is dropped.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

from workflow.domain.errors import AutolabelError
from workflow.domain.groundtruth import (
    ImageSize,
    ManifestFormatError,
    ReviewedBox,
    failed_output_line,
    output_manifest_line,
    parse_output_line,
    same_boxes,
)
from workflow.domain.taxonomy import Taxonomy

FROM_NAME = "label"
TO_NAME = "image"
TaskState = Literal["pending", "submitted", "skipped"]


class LabelStudioFormatError(AutolabelError):
    """A Label Studio task or annotation that cannot be read as boxes."""


def label_config(taxonomy: Taxonomy, categories: Sequence[str] | None = None) -> str:
    """The project's labeling config: the frame and one rectangle label per reviewed class, in its colour."""
    names = list(categories) if categories is not None else list(taxonomy.reviewed_names)
    if not names:
        raise ValueError("a Label Studio project needs at least one label")
    labels = "\n".join(
        f"    <Label value={quoteattr(n)} background={quoteattr(_colour(taxonomy, n))}/>" for n in names
    )
    return (
        "<View>\n"
        f'  <Image name="{TO_NAME}" value="$image" zoom="true" zoomControl="true"/>\n'
        f'  <RectangleLabels name="{FROM_NAME}" toName="{TO_NAME}" strokeWidth="2">\n'
        f"{labels}\n"
        "  </RectangleLabels>\n"
        "</View>\n"
    )


def _colour(taxonomy: Taxonomy, name: str) -> str:
    return taxonomy.get(name).color if name in taxonomy else "#ffa500"


def local_files_url(relative_path: str) -> str:
    """A Label Studio local-files URL; the path is URL-encoded (a raw ``+`` arrives as a space)."""
    return "/data/local-files/?d=" + quote(relative_path.lstrip("/"), safe="/")


def model_version(models: Mapping[str, str]) -> str:
    """``name@version`` of every model that labeled the frames, sorted, ``+``-joined."""
    parts = [f"{name}@{version}" if version else name for name, version in sorted(models.items())]
    return "+".join(parts) or "unknown"


def _region(box: ReviewedBox, size: ImageSize, index: int) -> dict[str, Any]:
    region: dict[str, Any] = {
        "id": f"pre{index}",
        "from_name": FROM_NAME,
        "to_name": TO_NAME,
        "type": "rectanglelabels",
        "original_width": size.width,
        "original_height": size.height,
        "image_rotation": 0,
        "value": {
            "x": 100.0 * box.left / size.width,
            "y": 100.0 * box.top / size.height,
            "width": 100.0 * box.width / size.width,
            "height": 100.0 * box.height / size.height,
            "rotation": 0,
            "rectanglelabels": [box.class_name],
        },
    }
    if box.confidence is not None:
        region["score"] = box.confidence
    return region


def review_task(
    line: Mapping[str, Any],
    prelabel_attribute: str,
    image_url: str,
    version: str,
    score: float | None,
) -> dict[str, Any]:
    """One Label Studio task for one input-manifest line, its pre-labels as a prediction.

    ``score`` is the task-level prediction score (routing's least box score; None: the least
    region score, 1.0 for a frame without boxes), what the Data Manager sorts by.
    """
    frame = parse_output_line(dict(line), prelabel_attribute)
    if frame.image_size is None:
        raise ManifestFormatError(f"{frame.source_ref}: the pre-label has no image size")
    size = frame.image_size
    regions = [_region(b, size, i) for i, b in enumerate(frame.boxes)]
    if score is None:
        scores = [b.confidence for b in frame.boxes if b.confidence is not None]
        score = min(scores) if scores else 1.0
    return {
        "data": {
            "image": image_url,
            "frame": frame.source_ref,
            "width": size.width,
            "height": size.height,
            "depth": size.depth,
        },
        "predictions": [{"model_version": version, "score": float(score), "result": regions}],
    }


# --- reading the people's work back -----------------------------------------------------------
def _submitted(task: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]


def task_state(task: Mapping[str, Any]) -> TaskState:
    """``submitted`` (a person submitted an annotation), ``skipped`` (only skips), or ``pending``."""
    annotations = task.get("annotations") or []
    if _submitted(task):
        return "submitted"
    return "skipped" if annotations else "pending"


def pending_tasks(tasks: Sequence[Mapping[str, Any]]) -> list[int]:
    """Ids of the tasks nobody has submitted or skipped yet."""
    return [int(t["id"]) for t in tasks if task_state(t) == "pending"]


def latest_annotation(task: Mapping[str, Any]) -> Mapping[str, Any]:
    """The submitted annotation that counts: the most recently updated one."""
    submitted = _submitted(task)
    if not submitted:
        raise LabelStudioFormatError(f"task {task.get('id')} has no submitted annotation")
    return max(submitted, key=lambda a: (str(a.get("updated_at") or ""), int(a.get("id") or 0)))


def _pixels(value: Mapping[str, Any], size: ImageSize, where: str) -> tuple[float, float, float, float]:
    try:
        x, y, w, h = (float(value[k]) for k in ("x", "y", "width", "height"))
        rotation = float(value.get("rotation") or 0.0)
    except (KeyError, TypeError, ValueError) as exc:
        raise LabelStudioFormatError(f"{where}: rectangle without numeric x/y/width/height") from exc
    if not all(map(math.isfinite, (x, y, w, h))) or w < 0 or h < 0:
        raise LabelStudioFormatError(f"{where}: rectangle {value} is not a box")
    if abs(rotation) % 360 > 1e-6:
        raise LabelStudioFormatError(
            f"{where}: a rotated rectangle ({rotation} degrees) is no Ground Truth box"
        )
    # Clip to the frame, as Ground Truth's worker UI does, and round to 1/100 pixel.
    left, top = min(max(x, 0.0), 100.0), min(max(y, 0.0), 100.0)
    right, bottom = min(max(x + w, 0.0), 100.0), min(max(y + h, 0.0), 100.0)
    return (
        round(left * size.width / 100.0, 2),
        round(top * size.height / 100.0, 2),
        round((right - left) * size.width / 100.0, 2),
        round((bottom - top) * size.height / 100.0, 2),
    )


def annotation_boxes(
    annotation: Mapping[str, Any], size: ImageSize, categories: Sequence[str]
) -> list[ReviewedBox]:
    """The rectangles of an annotation in pixels; ``class_id`` is the label's index in ``categories``."""
    boxes = []
    for i, region in enumerate(annotation.get("result") or []):
        if region.get("type") != "rectanglelabels" or region.get("from_name") != FROM_NAME:
            continue
        where = f"annotation {annotation.get('id')} region {i}"
        value = region.get("value") or {}
        labels = value.get("rectanglelabels") or []
        if len(labels) != 1:
            raise LabelStudioFormatError(f"{where}: {len(labels)} labels on one box (one is needed)")
        name = str(labels[0])
        if name not in categories:
            raise LabelStudioFormatError(f"{where}: label {name!r} is not one of {list(categories)}")
        left, top, width, height = _pixels(value, size, where)
        boxes.append(
            ReviewedBox(
                class_id=categories.index(name),
                class_name=name,
                left=left,
                top=top,
                width=width,
                height=height,
            )
        )
    return boxes


def reviewed_line(
    line: Mapping[str, Any],
    task: Mapping[str, Any] | None,
    *,
    label_attribute: str,
    prelabel_attribute: str,
    job_name: str,
    categories: Sequence[str],
    created: datetime | None = None,
) -> dict[str, Any]:
    """The Ground Truth output line of one input line from its Label Studio task (see module docstring)."""
    source = str(line.get("source-ref"))
    if task is None:
        return failed_output_line(dict(line), label_attribute, "the frame has no Label Studio task", job_name)
    state = task_state(task)
    if state != "submitted":
        what = "skipped by the reviewer" if state == "skipped" else "not annotated"
        reason = f"Label Studio task {task.get('id')} was {what}"
        return failed_output_line(dict(line), label_attribute, reason, job_name, created)
    try:
        pre = parse_output_line(dict(line), prelabel_attribute)
        size = pre.image_size or _task_size(task, source)
        boxes = annotation_boxes(latest_annotation(task), size, categories)
    except (LabelStudioFormatError, ManifestFormatError) as exc:
        return failed_output_line(dict(line), label_attribute, f"Label Studio: {exc}", job_name, created)
    before = [b.model_copy(update={"confidence": None}) for b in pre.boxes]
    adjusted = not same_boxes(boxes, before)
    return output_manifest_line(
        dict(line), label_attribute, boxes, job_name, adjusted, image_size=size, created=created
    )


def _task_size(task: Mapping[str, Any], source: str) -> ImageSize:
    data = task.get("data") or {}
    try:
        return ImageSize(
            width=int(data["width"]), height=int(data["height"]), depth=int(data.get("depth", 3))
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise LabelStudioFormatError(f"{source}: the task carries no image size") from exc
