"""In-memory fakes of the steps' ports (``workflow.steps.ports``): no moto, no botocore.

Each fake keeps what a step did in plain Python structures, so a unit test of a step reads its
effects directly; the adapters' own moto tests prove the boto3 side of the same ports.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from workflow.adapters.ledger import Claim
from workflow.adapters.tokens import BatchOutcome, PendingInference
from workflow.domain.errors import EndpointThrottled, LabelingJobExists, ObjectMissing, SourceUnreadable
from workflow.domain.frames import S3Uri


def _loc(uri: str | S3Uri) -> S3Uri:
    return uri if isinstance(uri, S3Uri) else S3Uri.parse(uri)


@dataclass
class MemoryObjects:
    """An object store in a dict; ``unlistable`` prefixes raise SourceUnreadable like a denied bucket."""

    objects: dict[str, bytes] = field(default_factory=dict)
    unlistable: dict[str, str] = field(default_factory=dict)  # prefix URI -> error code

    def get_bytes(self, uri: str | S3Uri) -> bytes:
        key = str(_loc(uri))
        if key not in self.objects:
            raise ObjectMissing(key, "NoSuchKey")
        return self.objects[key]

    def get_json(self, uri: str | S3Uri) -> Any:
        return json.loads(self.get_bytes(uri))

    def get_lines(self, uri: str | S3Uri) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.get_bytes(uri).decode().splitlines() if line.strip()]

    def put_bytes(self, uri: str | S3Uri, body: bytes, content_type: str) -> str:
        self.objects[str(_loc(uri))] = body
        return str(_loc(uri))

    def put_json(self, uri: str | S3Uri, data: Any) -> str:
        return self.put_bytes(uri, json.dumps(data).encode(), "application/json")

    def put_lines(self, uri: str | S3Uri, lines: list[dict[str, Any]]) -> str:
        return self.put_bytes(
            uri, "".join(json.dumps(x) + "\n" for x in lines).encode(), "application/jsonlines"
        )

    def put_text_lines(self, uri: str | S3Uri, lines: list[str]) -> str:
        return self.put_bytes(uri, "".join(x + "\n" for x in lines).encode(), "application/jsonlines")

    def put_stream(self, uri: str | S3Uri, chunks: Iterable[bytes], content_type: str) -> int:
        body = b"".join(chunks)
        self.put_bytes(uri, body, content_type)
        return len(body)

    def list_objects(self, prefix: str | S3Uri, page_size: int | None = None) -> Iterator[tuple[S3Uri, int]]:
        start = str(_loc(prefix))
        for key in sorted(k for k in self.objects if k.startswith(start)):
            yield S3Uri.parse(key), len(self.objects[key])

    def list_page(
        self, prefix: str | S3Uri, token: str | None = None, max_keys: int = 1000
    ) -> tuple[list[tuple[S3Uri, int]], str | None]:
        start = str(_loc(prefix))
        if start in self.unlistable:
            raise SourceUnreadable(start, self.unlistable[start])
        listed = list(self.list_objects(prefix))
        offset = int(token or 0)
        page = listed[offset : offset + max_keys]
        return page, str(offset + max_keys) if offset + max_keys < len(listed) else None


@dataclass
class MemoryLedger:
    """Claims by frame: the first run to claim a frame holds it."""

    holders: dict[str, str] = field(default_factory=dict)
    runs: dict[str, str] = field(default_factory=dict)

    def claim(
        self, frame: str, run_id: str, relabel: bool = False, page: str = "", changed_from: str = ""
    ) -> Claim:
        holder = self.holders.setdefault(frame, run_id)
        if holder != run_id:
            return Claim(frame, False, f"already labeled by run {holder}")
        return Claim(frame, True)

    def claim_many(
        self,
        frames: list[str],
        run_id: str,
        relabel: bool = False,
        page: str = "",
        changed_from: str = "",
        threads: int = 1,
    ) -> list[Claim]:
        return [self.claim(f, run_id, relabel, page, changed_from) for f in frames]

    def mark_run(self, run_id: str, status: str, detail: str = "") -> None:
        self.runs[run_id] = status

    def settle(
        self,
        frame: str,
        run_id: str,
        status: str,
        next_route: str = "",
        version: str = "",
        page: str | None = None,
    ) -> None:
        self.holders[frame] = run_id

    def settle_many(
        self, settled: list[tuple[str, str, str, str]], run_id: str, version: str = "", threads: int = 1
    ) -> None:
        for frame, status, route, page in settled:
            self.settle(frame, run_id, status, route, version, page)


@dataclass
class MemoryTokens:
    """Parked task tokens: batches (with their pending inferences) and review jobs."""

    batches: dict[str, tuple[str, list[PendingInference]]] = field(default_factory=dict)
    jobs: dict[str, str] = field(default_factory=dict)

    def park_batch(self, run_id: str, batch_id: str, token: str, pending: list[PendingInference]) -> str:
        key = f"batch#{run_id}#{batch_id}"
        self.batches[key] = (token, list(pending))
        return key

    def record_inference(
        self, inference_id: str, status: str, output_location: str | None, failure_reason: str | None
    ) -> str | None:
        raise NotImplementedError("the callback's countdown is proven on DynamoDB (tests/adapters)")

    def claim_completed_batch(self, batch_key: str) -> BatchOutcome | None:
        raise NotImplementedError

    def release_batch(self, batch_key: str, sent: bool) -> None:
        raise NotImplementedError

    def park_job(self, job_name: str, token: str) -> None:
        self.jobs[job_name] = token

    def claim_job(self, job_name: str) -> str | None:
        return self.jobs.pop(job_name, None)


@dataclass
class RecordingCallbacks:
    succeeded: list[tuple[str, Any]] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)

    def succeed(self, token: str, output: Any) -> bool:
        self.succeeded.append((token, output))
        return True

    def fail(self, token: str, error: str, cause: str) -> bool:
        self.failed.append((token, error, cause))
        return True


@dataclass
class RecordingEndpoints:
    """Async inference requests, kept; ``throttle_after`` requests, it refuses like a busy endpoint."""

    requests: list[dict[str, Any]] = field(default_factory=list)
    throttle_after: int | None = None

    def invoke_async(self, params: dict[str, Any]) -> None:
        if self.throttle_after is not None and len(self.requests) >= self.throttle_after:
            raise EndpointThrottled("ThrottlingException: rate exceeded")
        self.requests.append(dict(params))


@dataclass
class MemoryLabelingJobs:
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    creates: int = 0

    def create(self, request: dict[str, Any]) -> str:
        self.creates += 1
        name = request["LabelingJobName"]
        if name in self.jobs:
            raise LabelingJobExists(name)
        arn = f"arn:aws:sagemaker:us-east-1:123456789012:labeling-job/{name}"
        self.jobs[name] = {**request, "LabelingJobArn": arn, "LabelingJobStatus": "InProgress"}
        return arn

    def describe(self, name: str) -> dict[str, Any]:
        return dict(self.jobs[name])
