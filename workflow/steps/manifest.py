"""BuildManifest: the Ground Truth adjustment job's inputs and the COCO pre-labels."""

from __future__ import annotations

from workflow.adapters.s3 import S3Store
from workflow.domain.coco import CocoBuilder
from workflow.domain.frames import S3Uri
from workflow.domain.groundtruth import (
    input_manifest_line,
    label_category_config,
    split_manifest,
    worker_ui_template,
)
from workflow.domain.run import ManifestPart, ManifestResult, RunContext
from workflow.settings import Settings
from workflow.steps.labels import labeled_frames
from workflow.steps.merge import default_class_map


def build_manifest(run: RunContext, settings: Settings, s3: S3Store) -> ManifestResult:
    """Write the input manifest part(s), label categories, worker template and COCO pre-labels."""
    taxonomy = default_class_map().taxonomy
    labeled, _ = labeled_frames(run, s3)
    lines = [
        input_manifest_line(
            d.frame, d, taxonomy, attribute=settings.prelabel_attribute, job_name=f"{run.run_id}-prelabel"
        )
        for d in labeled
    ]
    base = S3Uri(run.bucket, run.key("review"))
    parts = []
    for index, chunk in enumerate(split_manifest(lines)):
        uri = s3.put_lines(base.join(f"input-{index:03d}.manifest"), chunk)
        parts.append(ManifestPart(index=index, manifest_uri=uri, frames=len(chunk)))
    categories = list(taxonomy.reviewed_names)
    categories_uri = s3.put_json(base.join("label-categories.json"), label_category_config(taxonomy))
    template = worker_ui_template(settings.prelabel_attribute, settings.task_title, categories)
    template_uri = s3.put_bytes(base.join("worker-template.liquid.html"), template.encode(), "text/html")
    coco = CocoBuilder(taxonomy, description=f"machine pre-labels of run {run.run_id}")
    for dets in labeled:
        coco.add_detections(dets)
    s3.put_json(S3Uri(run.bucket, run.key("prelabels.coco.json")), coco.to_dict())
    return ManifestResult(
        parts=parts,
        frames_to_review=len(lines),
        label_categories_uri=categories_uri,
        ui_template_uri=template_uri,
        prelabel_attribute=settings.prelabel_attribute,
        categories=categories,
    )
