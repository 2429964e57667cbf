"""A local Label Studio for ``autolabel run --review label-studio``: start it, log in, hand out its token.

Label Studio runs from its own virtualenv (``make label-studio`` builds it on first use, about
1 GB), on SQLite, with its data in a workspace folder (``OUT/review/label-studio/``), bound to
127.0.0.1 only. Its admin account gets a generated password and a personal access token, kept in
``credentials.json`` (mode 0600) in the workspace so a rerun reuses them. Frames are served from
their own folder (Label Studio's local-files serving; the document root is the folder's parent,
since Label Studio refuses a storage whose path equals the document root). Webhooks may
go to loopback only: Label Studio refuses private and loopback addresses by default (SSRF
protection), so every default-banned range except 127.0.0.0/8 stays banned.

:class:`LabelStudioSession` is what the local runner uses: the server (started, or an existing
one from ``--label-studio-url`` and ``LABEL_STUDIO_API_KEY``), the settings the workflow's
handlers read, and ``OUT/review/label-studio.json`` (URL, projects, token; mode 0600).
"""

from __future__ import annotations

import atexit
import http.cookiejar
import json
import os
import secrets
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
VENV = PROJECT_ROOT / ".venv-labelstudio"
ADMIN = "reviewer@autolabel.local"
# Label Studio's default SSRF-banned ranges (1.23.2 core/utils/io.py), loopback left out.
_BANNED_BUT_LOOPBACK = (
    "0.0.0.0/8,10.0.0.0/8,100.64.0.0/10,169.254.0.0/16,172.16.0.0/12,192.0.0.0/24,192.0.2.0/24,"
    "192.88.99.0/24,192.168.0.0/16,198.18.0.0/15,198.51.100.0/24,203.0.113.0/24,224.0.0.0/4,"
    "233.252.0.0/24,240.0.0.0/4,255.255.255.255/32,::/128,::ffff:0:0/96,64:ff9b::/96,100::/64,"
    "2001:0000::/32,2001:20::/28,2001:db8::/32,2002::/16,fc00::/7,fe80::/10,ff00::/8"
)


class LabelStudioServerError(RuntimeError):
    """The local Label Studio could not be installed, started or logged into."""


def _write_private(path: Path, data: dict[str, Any]) -> None:
    """Write JSON readable by the owner only (it holds a password or a token), whole: written to a
    private temporary file, then renamed, so a script reading it never sees half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, indent=2)
    os.chmod(partial, 0o600)
    os.replace(partial, path)


def ensure_installed(say: Callable[[str], None] = print) -> Path:
    """The ``label-studio`` executable; ``make label-studio`` builds ``.venv-labelstudio`` first if needed."""
    exe = VENV / "bin" / "label-studio"
    if exe.exists() and (VENV / ".installed").exists():
        return exe
    say(
        ">> first use of the Label Studio review backend: installing label-studio into .venv-labelstudio "
        "(make label-studio; about 1 GB, a few minutes)"
    )
    done = subprocess.run(["make", "-C", str(PROJECT_ROOT), "label-studio"], check=False)
    if done.returncode != 0 or not exe.exists():
        raise LabelStudioServerError("make label-studio failed; run it by hand to see why")
    return exe


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalLabelStudio:
    """One Label Studio process on 127.0.0.1 with its data in ``workspace``."""

    def __init__(self, workspace: Path, files_root: Path, port: int | None = None) -> None:
        self.workspace = workspace.resolve()
        self.files_root = files_root.resolve()
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        self.credentials = self._credentials()

    def _credentials(self) -> dict[str, str]:
        path = self.workspace / "credentials.json"
        if path.exists():
            return dict(json.loads(path.read_text()))
        creds = {"username": ADMIN, "password": secrets.token_urlsafe(18)}
        _write_private(path, creds)
        return creds

    def start(self, timeout_s: float = 240.0) -> None:
        exe = ensure_installed()
        data = self.workspace / "data"
        data.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "LABEL_STUDIO_BASE_DATA_DIR": str(data),
            "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
            "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(self.files_root),
            "USE_DEFAULT_BANNED_SUBNETS": "false",
            "USER_ADDITIONAL_BANNED_SUBNETS": _BANNED_BUT_LOOPBACK,
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
        }
        command = [
            str(exe), "start", "--no-browser", "--port", str(self.port), "--internal-host", "127.0.0.1",
            "--username", self.credentials["username"], "--password", self.credentials["password"],
        ]  # fmt: skip
        log = open(self.workspace / "label-studio.log", "ab")  # noqa: SIM115 - the process keeps it
        self.process = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.workspace
        )
        atexit.register(self.stop)  # never leave the server running after this process
        deadline = time.monotonic() + timeout_s
        while not self.healthy():
            if self.process.poll() is not None:
                raise LabelStudioServerError(
                    f"label-studio exited with status {self.process.returncode}; "
                    f"see {self.workspace}/label-studio.log"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise LabelStudioServerError(f"label-studio did not answer /health within {timeout_s:.0f} s")
            time.sleep(1.0)
        if not self.credentials.get("token"):
            self.credentials["token"] = self._create_token()
            _write_private(self.workspace / "credentials.json", self.credentials)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=3) as response:  # noqa: S310
                return bool(json.loads(response.read()).get("status") == "UP")
        except (OSError, ValueError):
            return False

    def _create_token(self) -> str:
        """Log in as the admin (csrf cookie, form POST) and create the personal access token."""
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        opener.open(self.url + "/user/login/", timeout=30).read()

        def csrf() -> str:
            return next(c.value for c in jar if c.name == "csrftoken")

        form = urllib.parse.urlencode(
            {
                "email": self.credentials["username"],
                "password": self.credentials["password"],
                "csrfmiddlewaretoken": csrf(),
            }
        ).encode()
        login = urllib.request.Request(
            self.url + "/user/login/", data=form, headers={"Referer": self.url + "/user/login/"}
        )
        opener.open(login, timeout=30).read()
        request = urllib.request.Request(
            self.url + "/api/token/",
            data=b"",
            method="POST",
            headers={"X-CSRFToken": csrf(), "Referer": self.url},
        )
        try:
            return str(json.loads(opener.open(request, timeout=30).read())["token"])
        except (urllib.error.HTTPError, KeyError, StopIteration) as exc:
            raise LabelStudioServerError(f"could not create a Label Studio API token: {exc}") from exc

    def stop(self, timeout_s: float = 20.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout_s)


class LabelStudioSession:
    """The Label Studio a local run reviews in, and the settings the handlers need to reach it."""

    def __init__(
        self, out_dir: Path, frames: Path, url: str | None = None, api_key: str | None = None
    ) -> None:
        self.review_dir = out_dir / "review"
        self.frames = frames.resolve()
        self.server: LocalLabelStudio | None = None
        self.url, self.token = url, api_key
        self.webhook_secret = secrets.token_urlsafe(32)
        self.projects: dict[str, dict[str, Any]] = {}
        if url and not api_key:
            raise LabelStudioServerError("--label-studio-url needs the API token in LABEL_STUDIO_API_KEY")

    def start(self) -> None:
        if self.url is None:
            self.server = LocalLabelStudio(self.review_dir / "label-studio", self.frames.parent)
            print(f">> starting a local Label Studio on {self.server.url} (data in {self.server.workspace})")
            self.server.start()
            self.url, self.token = self.server.url, self.server.credentials["token"]
        self.write()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def parameters(self) -> dict[str, str]:
        """Template parameters of the local cloud."""
        return {"LabelStudioUrl": str(self.url), "LabelStudioImages": "local-files"}

    def environment(self, frames_prefix: str) -> dict[str, str]:
        """Variables the handlers read beside the template's (local mode: no Secrets Manager secret)."""
        root = str(self.frames.parent)
        if self.server is None:  # an existing server: its document root, if the caller says it
            root = os.environ.get("LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT", root)
        return {
            "LABEL_STUDIO_API_KEY": str(self.token),
            "LABEL_STUDIO_WEBHOOK_SECRET": self.webhook_secret,
            "LABEL_STUDIO_LOCAL_FILES": f"{frames_prefix}={self.frames}={root}",
        }

    def write(self) -> Path:
        """``OUT/review/label-studio.json``: what scripts need to drive the review (mode 0600)."""
        data: dict[str, Any] = {
            "url": self.url,
            "api_token": self.token,
            "projects": list(self.projects.values()),
        }
        if self.server is not None:
            data |= {
                "username": self.server.credentials["username"],
                "password": self.server.credentials["password"],
            }
        path = self.review_dir / "label-studio.json"
        _write_private(path, data)
        return path

    def notice_projects(self, descriptors: list[dict[str, Any]]) -> None:
        """Record new review projects, print where to open them, and rewrite the connection file."""
        new = [d for d in descriptors if d["job_name"] not in self.projects]
        for d in new:
            url = f"{self.url}/projects/{d['project_id']}/data"
            self.projects[d["job_name"]] = {
                "job_name": d["job_name"],
                "project_id": d["project_id"],
                "url": url,
                "frames": d["frames"],
            }
            who = (
                f" (log in as {self.server.credentials['username']}; "
                f"password in {self.review_dir}/label-studio.json)"
                if self.server
                else ""
            )
            print(f"Review {d['frames']} frames in Label Studio: {url}{who}", flush=True)
        if new:
            self.write()

    def watch(self, s3: Any, bucket: str, run_id: str) -> Callable[[], None]:
        """A poll hook for the runner: notices the run's review projects (their descriptions in S3)."""
        prefix = f"runs/{run_id}/review/label-studio/"

        def poll() -> None:
            listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
            if len(listed) == len(self.projects):
                return
            found = [json.loads(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()) for o in listed]
            self.notice_projects(found)

        return poll
