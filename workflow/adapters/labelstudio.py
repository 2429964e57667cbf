"""A small Label Studio REST client (standard library only, so the Lambda layer needs nothing more).

Authentication as Label Studio 1.23 does it: the API token people create in their account
settings is a personal access token, a JWT *refresh* token; ``POST /api/token/refresh`` turns it
into a short-lived access token sent as ``Authorization: Bearer``. An access token that expired
answers 401 and is refreshed once. A legacy token (no dots) is sent as ``Authorization: Token``.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from workflow.domain.errors import AutolabelError

IMPORT_CHUNK = 500
PAGE_SIZE = 100
WEBHOOK_ACTIONS = ("ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED")


class LabelStudioError(AutolabelError):
    """Label Studio answered with an error."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class LabelStudioUnreachable(LabelStudioError):
    """Label Studio could not be reached (down, wrong URL, network)."""


class LabelStudioClient:
    """The few Label Studio API calls the review backend needs."""

    def __init__(self, url: str, api_token: str, timeout_s: float = 30.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise LabelStudioError(f"Label Studio URL {url!r} must start with http:// or https://")
        if not api_token:
            raise LabelStudioError("no Label Studio API token (LABEL_STUDIO_API_KEY or the token secret)")
        self.url = url.rstrip("/")
        self._token = api_token
        self._timeout = timeout_s
        self._access: str | None = None
        self._lock = threading.Lock()

    # --- transport ------------------------------------------------------------------------
    def _send(self, method: str, path: str, body: Any, auth: str | None) -> Any:
        data = None if body is None else json.dumps(body).encode("utf-8")
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if auth:
            request.add_header("Authorization", auth)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310 - http(s) only
                raw = response.read()
        except urllib.error.HTTPError as err:
            detail = err.read()[:500].decode("utf-8", "replace")
            raise LabelStudioError(f"{method} {path}: HTTP {err.code}: {detail}", err.code) from err
        except (urllib.error.URLError, TimeoutError, ConnectionError) as err:
            raise LabelStudioUnreachable(
                f"Label Studio at {self.url} is unreachable ({method} {path}): {err}"
            ) from err
        return json.loads(raw) if raw.strip() else None

    def _authorization(self, refresh: bool = False) -> str:
        if "." not in self._token:  # a legacy token
            return f"Token {self._token}"
        with self._lock:
            if self._access is None or refresh:
                answer = self._send("POST", "/api/token/refresh", {"refresh": self._token}, None)
                self._access = str(answer["access"])
            return f"Bearer {self._access}"

    def request(
        self, method: str, path: str, body: Any = None, params: Mapping[str, Any] | None = None
    ) -> Any:
        """One API call, JSON in and out; an expired access token is refreshed once."""
        if params:
            path += "?" + urllib.parse.urlencode(params)
        try:
            return self._send(method, path, body, self._authorization())
        except LabelStudioError as err:
            if err.status != 401 or "." not in self._token:
                raise
        return self._send(method, path, body, self._authorization(refresh=True))

    # --- projects and tasks -------------------------------------------------------------------
    def find_project(self, title: str) -> dict[str, Any] | None:
        """The project with exactly this title, if any (a retried start finds the one it made)."""
        answer = self.request("GET", "/api/projects", params={"title": title, "page_size": PAGE_SIZE})
        results = answer.get("results", answer) if isinstance(answer, dict) else answer
        return next((p for p in results or [] if p.get("title") == title), None)

    def create_project(self, title: str, label_config: str, description: str = "") -> dict[str, Any]:
        body = {
            "title": title,
            "label_config": label_config,
            "description": description,
            "show_skip_button": True,
            "maximum_annotations": 1,
        }
        return dict(self.request("POST", "/api/projects", body))

    def use_predictions(self, project_id: int, model_version: str) -> dict[str, Any]:
        """Pre-fill each new annotation with the predictions of ``model_version`` (what people adjust)."""
        body = {"model_version": model_version, "show_collab_predictions": True}
        return dict(self.request("PATCH", f"/api/projects/{int(project_id)}", body))

    def project(self, project_id: int) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/projects/{int(project_id)}"))

    def add_local_files_storage(self, project_id: int, path: str) -> dict[str, Any]:
        """A Local Files storage over ``path``: Label Studio serves ``/data/local-files/`` only under one."""
        body = {"project": project_id, "path": path, "title": "frames", "use_blob_urls": False}
        return dict(self.request("POST", "/api/storages/localfiles", body))

    def add_s3_storage(
        self, project_id: int, bucket: str, prefix: str, presign_ttl_minutes: int
    ) -> dict[str, Any]:
        """An S3 storage Label Studio resolves ``s3://`` task URLs with: presigned at view time, expiring."""
        body = {
            "project": project_id,
            "bucket": bucket,
            "prefix": prefix,
            "title": f"s3://{bucket}/{prefix}",
            "presign": True,
            "presign_ttl": presign_ttl_minutes,
            "use_blob_urls": False,
        }
        return dict(self.request("POST", "/api/storages/s3", body))

    def import_tasks(self, project_id: int, tasks: Sequence[Mapping[str, Any]]) -> int:
        """Import tasks (with predictions) in chunks; returns how many were created."""
        created = 0
        for start in range(0, len(tasks), IMPORT_CHUNK):
            chunk = list(tasks[start : start + IMPORT_CHUNK])
            answer = self.request("POST", f"/api/projects/{int(project_id)}/import", chunk)
            created += int(answer.get("task_count", len(chunk)))
        return created

    def tasks(self, project_id: int) -> Iterator[dict[str, Any]]:
        """Every task of the project with its annotations, page by page."""
        page = 1
        while True:
            try:
                answer = self.request(
                    "GET",
                    "/api/tasks",
                    params={
                        "project": int(project_id),
                        "page": page,
                        "page_size": PAGE_SIZE,
                        "fields": "all",
                    },
                )
            except LabelStudioError as err:
                if err.status == 404 and page > 1:  # past the last page
                    return
                raise
            batch = answer.get("tasks", []) if isinstance(answer, dict) else answer
            yield from batch
            total = answer.get("total") if isinstance(answer, dict) else None
            if len(batch) < PAGE_SIZE or (total is not None and page * PAGE_SIZE >= int(total)):
                return
            page += 1

    def webhooks(self, project_id: int) -> list[dict[str, Any]]:
        answer = self.request("GET", "/api/webhooks/", params={"project": int(project_id)})
        return [w for w in answer or [] if w.get("project") == project_id]

    def ensure_webhook(self, project_id: int, url: str, headers: Mapping[str, str]) -> dict[str, Any]:
        """Register the webhook once (a retried start finds it); it carries the shared secret header."""
        for hook in self.webhooks(project_id):
            if hook.get("url") == url:
                return hook
        body = {
            "project": project_id,
            "url": url,
            "send_payload": True,
            "send_for_all_actions": False,
            "actions": list(WEBHOOK_ACTIONS),
            "headers": dict(headers),
            "is_active": True,
        }
        return dict(self.request("POST", "/api/webhooks/", body))


class ImageLocator:
    """Where Label Studio finds a frame: its own location, never a copy.

    ``s3-storage``: the task keeps the ``s3://`` URI and the project gets an S3 storage over the
    frames' prefix, which Label Studio presigns at view time with its own credentials (URLs expire
    after ``presign_ttl_seconds``). ``presigned``: the task holds a URL presigned here (it expires,
    and with a Lambda role's session at the latest). ``local-files``: the frames are files on the
    Label Studio machine; ``local_files`` maps an S3 prefix to the folder (``PREFIX=FOLDER``, the
    folder being Label Studio's local-files document root, or ``PREFIX=FOLDER=ROOT``).
    """

    def __init__(
        self, mode: str, s3_client: Any = None, presign_ttl_seconds: int = 3600, local_files: str = ""
    ) -> None:
        if mode not in ("s3-storage", "presigned", "local-files"):
            raise LabelStudioError(f"unknown Label Studio image mode {mode!r}")
        self.mode = mode
        self._s3 = s3_client
        self.ttl = presign_ttl_seconds
        self._maps: list[tuple[str, str, str]] = []
        for entry in filter(None, local_files.split(";")):
            prefix, _, rest = entry.partition("=")
            folder, _, root = rest.partition("=")
            if not prefix or not folder:
                raise LabelStudioError(f"LABEL_STUDIO_LOCAL_FILES entry {entry!r} is not PREFIX=FOLDER")
            self._maps.append((prefix, folder.rstrip("/"), (root or folder).rstrip("/")))
        if mode == "local-files" and not self._maps:
            raise LabelStudioError("local-files images need LABEL_STUDIO_LOCAL_FILES (PREFIX=FOLDER)")

    def url(self, frame_uri: str) -> str:
        from workflow.domain.labelstudio import local_files_url

        if self.mode == "s3-storage":
            return frame_uri
        if self.mode == "presigned":
            bucket, _, key = frame_uri.removeprefix("s3://").partition("/")
            return str(
                self._s3.generate_presigned_url(
                    "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=self.ttl
                )
            )
        for prefix, folder, root in self._maps:
            if frame_uri.startswith(prefix):
                path = f"{folder}/{frame_uri[len(prefix) :].lstrip('/')}"
                if not (path + "/").startswith(root + "/"):
                    raise LabelStudioError(f"{path} is outside the local-files document root {root}")
                return local_files_url(path[len(root) :])
        raise LabelStudioError(
            f"{frame_uri}: no local folder is mapped for this frame (LABEL_STUDIO_LOCAL_FILES)"
        )

    def storages(self, frame_uris: Sequence[str]) -> list[tuple[str, str]]:
        """(kind, location) of the storages the project needs: S3 buckets/prefixes or local folders."""
        if self.mode == "presigned":
            return []
        if self.mode == "local-files":
            used = {
                folder for prefix, folder, _ in self._maps if any(u.startswith(prefix) for u in frame_uris)
            }
            return [("localfiles", f) for f in sorted(used)]
        by_bucket: dict[str, list[str]] = {}
        for uri in frame_uris:
            bucket, _, key = uri.removeprefix("s3://").partition("/")
            by_bucket.setdefault(bucket, []).append(key.rsplit("/", 1)[0] + "/" if "/" in key else "")
        import os.path

        return [("s3", f"{b}/{os.path.commonprefix(keys)}") for b, keys in sorted(by_bucket.items())]
