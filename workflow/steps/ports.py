"""The ports of the steps: the small interfaces a step needs from the outside world.

The adapters (``workflow.adapters``) implement them on boto3 and turn service error codes into
the typed errors of ``workflow.domain.errors``; a step receives a port, so it never imports
botocore, and its unit tests hand it in-memory fakes (``tests/unit/port_fakes.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from workflow.adapters.ledger import Claim
from workflow.adapters.tokens import BatchOutcome, PendingInference
from workflow.domain.frames import S3Uri


class ObjectStore(Protocol):
    """Objects by s3:// URI. Reads raise ObjectMissing / ObjectUnreadable; listing SourceUnreadable."""

    def get_bytes(self, uri: str | S3Uri) -> bytes: ...
    def get_json(self, uri: str | S3Uri) -> Any: ...
    def get_lines(self, uri: str | S3Uri) -> list[dict[str, Any]]: ...
    def put_bytes(self, uri: str | S3Uri, body: bytes, content_type: str) -> str: ...
    def put_json(self, uri: str | S3Uri, data: Any) -> str: ...
    def put_lines(self, uri: str | S3Uri, lines: list[dict[str, Any]]) -> str: ...
    def put_text_lines(self, uri: str | S3Uri, lines: list[str]) -> str: ...
    def put_stream(self, uri: str | S3Uri, chunks: Iterable[bytes], content_type: str) -> int: ...
    def list_objects(
        self, prefix: str | S3Uri, page_size: int | None = None
    ) -> Iterator[tuple[S3Uri, int]]: ...
    def list_page(
        self, prefix: str | S3Uri, token: str | None = None, max_keys: int = 1000
    ) -> tuple[list[tuple[S3Uri, int]], str | None]: ...


class Ledger(Protocol):
    """The frame ledger: which run holds which frame, and each run's status."""

    def claim(
        self, frame: str, run_id: str, relabel: bool = False, page: str = "", changed_from: str = ""
    ) -> Claim: ...
    def claim_many(
        self,
        frames: list[str],
        run_id: str,
        relabel: bool = False,
        page: str = "",
        changed_from: str = "",
        threads: int = 1,
    ) -> list[Claim]: ...
    def mark_run(self, run_id: str, status: str, detail: str = "") -> None: ...
    def settle(
        self,
        frame: str,
        run_id: str,
        status: str,
        next_route: str = "",
        version: str = "",
        page: str | None = None,
    ) -> None: ...


class Tokens(Protocol):
    """Task tokens parked until a notification (inference) or an event (review job) resumes them."""

    def park_batch(self, run_id: str, batch_id: str, token: str, pending: list[PendingInference]) -> str: ...
    def record_inference(
        self, inference_id: str, status: str, output_location: str | None, failure_reason: str | None
    ) -> str | None: ...
    def claim_completed_batch(self, batch_key: str) -> BatchOutcome | None: ...
    def release_batch(self, batch_key: str, sent: bool) -> None: ...
    def park_job(self, job_name: str, token: str) -> None: ...
    def claim_job(self, job_name: str) -> str | None: ...


class Callbacks(Protocol):
    """SendTaskSuccess / SendTaskFailure; False when the token was already closed."""

    def succeed(self, token: str, output: Any) -> bool: ...
    def fail(self, token: str, error: str, cause: str) -> bool: ...


class EndpointRuntime(Protocol):
    """Asynchronous inference requests; EndpointThrottled when the endpoint refuses for now."""

    def invoke_async(self, params: dict[str, Any]) -> None: ...


class LabelingJobs(Protocol):
    """Ground Truth labeling jobs; ``create`` raises LabelingJobExists for a name already used."""

    def create(self, request: dict[str, Any]) -> str: ...
    def describe(self, name: str) -> dict[str, Any]: ...
