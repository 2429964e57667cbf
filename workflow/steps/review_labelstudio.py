"""Label Studio as a review backend: start a project for a review job, resume the run when people finish.

StartReview (``label-studio``) turns one manifest part into one Label Studio project (labeling
config from the taxonomy, one task per frame with the pre-labels as predictions), registers a
webhook that carries a shared secret, parks the task token by job name (the same token store as
Ground Truth's jobs) and writes the job's description to S3, linked from the token table by
project id.

The webhook handler checks the secret in constant time before anything else, then treats the
delivery as a hint only: it reads the project's tasks through the API and, once every task has a
submitted or skipped annotation, writes the job's Ground Truth OUTPUT manifest (the one format
Publish and the scorecard read) and resumes the token with the same :class:`ReviewResult` the
Ground Truth callback sends. Duplicate or out-of-order deliveries change nothing: before
completion they find tasks pending, after it the token is already claimed.
"""

from __future__ import annotations

import hmac
import json
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workflow.adapters.callbacks import TaskCallbacks
from workflow.adapters.labeling import job_name
from workflow.adapters.labelstudio import ImageLocator, LabelStudioClient, LabelStudioError
from workflow.adapters.run_store import RunStore, bounded_map
from workflow.adapters.s3 import S3Store
from workflow.adapters.tokens import TokenStore
from workflow.domain.errors import ConfigurationError
from workflow.domain.frames import S3Uri
from workflow.domain.labelstudio import label_config, model_version, pending_tasks, review_task, reviewed_line
from workflow.domain.profile import LabelingProfile
from workflow.domain.records import BATCH_FIELD
from workflow.domain.run import ManifestPart, ManifestResult, ReviewResult, RunContext
from workflow.settings import Settings

SECRET_HEADER = "X-Autolabel-Webhook-Secret"


@dataclass(frozen=True)
class LabelStudioAccess:
    """Where the team's Label Studio is, its API token, and the webhook's shared secret."""

    url: str
    api_token: str
    webhook_secret: str


def label_studio_access(settings: Settings, secrets: Any = None) -> LabelStudioAccess:
    """From the Secrets Manager secret (AWS: JSON ``api_token``, ``webhook_secret``) or the settings."""
    token, secret = settings.label_studio_api_key, settings.label_studio_webhook_secret
    if settings.label_studio_secret_arn:
        raw = secrets.get_secret_value(SecretId=settings.label_studio_secret_arn)["SecretString"]
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ConfigurationError(
                "the Label Studio secret must be JSON: {api_token, webhook_secret}"
            ) from exc
        token, secret = str(data.get("api_token", "")), str(data.get("webhook_secret", ""))
    if not settings.label_studio_url or not token:
        raise ConfigurationError(
            "review backend label-studio needs LABEL_STUDIO_URL and an API token "
            "(LABEL_STUDIO_API_KEY, or the secret LABEL_STUDIO_SECRET_ARN names)"
        )
    if len(secret) < 16:
        raise ConfigurationError("the Label Studio webhook secret must be at least 16 characters")
    return LabelStudioAccess(settings.label_studio_url, token, secret)


def _frame_models(labels: Mapping[str, Any]) -> dict[str, str]:
    """The models (and versions) that labeled a frame, from its stored labels' provenance."""
    provenance = labels.get("provenance") or {}
    members = (provenance.get("settings") or {}).get("models")
    if isinstance(members, list) and members:
        return {str(m.get("name") or m.get("model")): str(m.get("version", "")) for m in members}
    return {str(provenance.get("model") or "unknown"): str(provenance.get("version", ""))}


def _categories(
    part: ManifestPart, manifest: ManifestResult, profile: LabelingProfile, s3: S3Store
) -> list[str]:
    """The job's labels: the part's label categories for adjustment; every reviewed class otherwise
    (a verification part's categories are verdicts; Label Studio has people adjust instead)."""
    if part.task == "adjust":
        uri = part.label_categories_uri or manifest.label_categories_uri
        return [str(entry["label"]) for entry in s3.get_json(uri)["labels"]]
    return list(profile.taxonomy.reviewed_names)


def start_label_studio_review(
    token: str,
    part: ManifestPart,
    run: RunContext,
    manifest: ManifestResult,
    profile: LabelingProfile,
    settings: Settings,
    tokens: TokenStore,
    s3: S3Store,
    client: LabelStudioClient,
    images: ImageLocator,
    webhook_secret: str,
) -> dict[str, Any]:
    """Create (or find, when retried) the job's project and tasks, register the webhook, park the token."""
    if not settings.label_studio_webhook_url:
        raise ConfigurationError("LABEL_STUDIO_WEBHOOK_URL is not set: Label Studio could not resume the run")
    name = job_name(run.run_id, part.index)
    lines = s3.get_lines(part.manifest_uri)
    categories = _categories(part, manifest, profile, s3)
    descriptor = {
        "backend": "label-studio",
        "job_name": name,
        "run_id": run.run_id,
        "label_studio_url": client.url,
        "manifest_uri": part.manifest_uri,
        "output_manifest_uri": f"s3://{run.bucket}/{run.key('review', 'output', name)}"
        "/manifests/output/output.manifest",
        "label_attribute": settings.label_attribute,
        "prelabel_attribute": manifest.prelabel_attribute,
        "categories": categories,
        "frames": len(lines),
    }
    tokens.park_job(name, token)
    project = client.find_project(name)
    if project is None:
        description = (
            f"autolabel run {run.run_id}, review part {part.index} ({part.task}), {len(lines)} frames"
        )
        project = client.create_project(name, label_config(profile.taxonomy, categories), description)
    project_id = int(project["id"])
    descriptor["project_id"] = project_id
    descriptor_uri = s3.put_json(
        S3Uri(run.bucket, run.key("review", "label-studio", f"{name}.json")), descriptor
    )
    tokens.link_review(f"label-studio#{project_id}", descriptor_uri)
    if int(project.get("task_number") or 0) == 0:
        frames = [str(line["source-ref"]) for line in lines]
        for kind, where in images.storages(frames):
            if kind == "localfiles":
                client.add_local_files_storage(project_id, where)
            else:
                bucket, _, prefix = where.partition("/")
                client.add_s3_storage(project_id, bucket, prefix, max(1, images.ttl // 60))
        tasks = _tasks(lines, run, s3, manifest.prelabel_attribute, images)
        client.import_tasks(project_id, tasks)
        versions = Counter(t["predictions"][0]["model_version"] for t in tasks)
        if versions:
            client.use_predictions(project_id, versions.most_common(1)[0][0])
    client.ensure_webhook(project_id, settings.label_studio_webhook_url, {SECRET_HEADER: webhook_secret})
    return {
        "job_name": name,
        "backend": "label-studio",
        "project_id": project_id,
        "url": f"{client.url}/projects/{project_id}",
    }


def _tasks(
    lines: list[dict[str, Any]], run: RunContext, s3: S3Store, prelabel: str, images: ImageLocator
) -> list[dict[str, Any]]:
    store = RunStore(s3, run.bucket, run.run_prefix)
    batches = sorted({str(line.get(BATCH_FIELD, "")) for line in lines} - {""})
    routed = {
        f.frame: f for labels in bounded_map(store.get_labels, batches) if labels for f in labels.frames
    }
    tasks = []
    for line in lines:
        frame = str(line["source-ref"])
        found = routed.get(frame)
        models = _frame_models(found.labels) if found else {}
        score = found.route.min_score if found else None
        tasks.append(review_task(line, prelabel, images.url(frame), model_version(models), score))
    return tasks


# --- the webhook --------------------------------------------------------------------------------
@dataclass(frozen=True)
class WebhookOutcome:
    status_code: int
    outcome: str
    job_name: str | None = None
    pending: int | None = None


def secret_matches(headers: Mapping[str, str], expected: str) -> bool:
    """The shared secret header, compared in constant time (header names are case-insensitive)."""
    given = next((v for k, v in headers.items() if k.lower() == SECRET_HEADER.lower()), "")
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def _project_id(body: Any) -> int | None:
    if not isinstance(body, dict):
        return None
    project = body.get("project")
    if isinstance(project, dict):
        project = project.get("id")
    if project is None:
        annotation = body.get("annotation") or (body.get("annotations") or [{}])[0]
        project = annotation.get("project") if isinstance(annotation, dict) else None
    try:
        return int(project) if project is not None else None
    except (TypeError, ValueError):
        return None


def on_label_studio_webhook(
    headers: Mapping[str, str],
    body: str,
    access: LabelStudioAccess,
    tokens: TokenStore,
    callbacks: TaskCallbacks,
    s3: S3Store,
    client: LabelStudioClient,
) -> WebhookOutcome:
    """Check the secret, confirm completion through the API, write the output manifest, resume the run."""
    if not secret_matches(headers, access.webhook_secret):
        return WebhookOutcome(403, "refused: wrong or missing webhook secret")
    try:
        project_id = _project_id(json.loads(body or "null"))
    except ValueError:
        return WebhookOutcome(400, "the body is not JSON")
    if project_id is None:
        return WebhookOutcome(200, "ignored: no project in the payload")
    link = tokens.review_link(f"label-studio#{project_id}")
    if link is None:
        return WebhookOutcome(200, f"ignored: project {project_id} is no review job of this workflow")
    job = s3.get_json(link)
    if not tokens.job_waiting(job["job_name"]):
        return WebhookOutcome(200, "already resumed", job["job_name"], 0)
    counters = client.project(project_id)
    # Label Studio updates these counters as annotations are saved (measured with 1.23.2); finished
    # counts tasks with a submitted annotation, skipped counts skips, so their sum is at least the tasks
    # done: under the task number the project is surely not done, and listing its tasks can wait.
    done = int(counters.get("finished_task_number") or 0) + int(
        counters.get("skipped_annotations_number") or 0
    )
    if done < int(counters.get("task_number") or 0):
        return WebhookOutcome(200, "waiting", job["job_name"], int(counters["task_number"]) - done)
    tasks = list(client.tasks(project_id))
    waiting = pending_tasks(tasks)
    if waiting or not tasks:
        return WebhookOutcome(200, "waiting", job["job_name"], len(waiting))
    by_frame = {str((t.get("data") or {}).get("frame")): t for t in tasks}
    outputs = [
        reviewed_line(
            line,
            by_frame.get(str(line.get("source-ref"))),
            label_attribute=job["label_attribute"],
            prelabel_attribute=job["prelabel_attribute"],
            job_name=job["job_name"],
            categories=job["categories"],
        )
        for line in s3.get_lines(job["manifest_uri"])
    ]
    s3.put_lines(job["output_manifest_uri"], outputs)
    token = tokens.claim_job(job["job_name"])
    if token is None:
        return WebhookOutcome(200, "already resumed", job["job_name"], 0)
    result = ReviewResult(
        job_name=job["job_name"],
        status="Completed",
        output_manifest_uri=job["output_manifest_uri"],
        label_attribute=job["label_attribute"],
    )
    callbacks.succeed(token, result.model_dump(mode="json"))
    return WebhookOutcome(200, "resumed", job["job_name"], 0)


__all__ = [
    "LabelStudioAccess",
    "LabelStudioError",
    "WebhookOutcome",
    "label_studio_access",
    "on_label_studio_webhook",
    "start_label_studio_review",
]
