"""Frames: S3 URIs, which objects are frames, and how frames are cut into batches."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from workflow.domain.errors import InvalidS3Uri

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")


@dataclass(frozen=True, order=True)
class S3Uri:
    """An ``s3://bucket/key`` address."""

    bucket: str
    key: str

    @classmethod
    def parse(cls, uri: str) -> S3Uri:
        """Parse ``s3://bucket/key``; raise :class:`InvalidS3Uri` with the reason otherwise."""
        if not isinstance(uri, str) or not uri.startswith("s3://"):
            raise InvalidS3Uri(f"not an s3:// URI: {uri!r}")
        bucket, _, key = uri[5:].partition("/")
        if not _BUCKET_RE.match(bucket) or ".." in bucket:
            raise InvalidS3Uri(f"invalid bucket name {bucket!r} in {uri!r}")
        return cls(bucket, key)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    def join(self, *parts: str) -> S3Uri:
        key = "/".join(p.strip("/") for p in (self.key, *parts) if p.strip("/"))
        return S3Uri(self.bucket, key)


def is_frame_key(key: str) -> bool:
    """True for keys whose suffix names an image format the models accept."""
    return key.lower().endswith(IMAGE_SUFFIXES)


def batch_frames(frames: Sequence[str], batch_size: int) -> list[list[str]]:
    """Cut frames into consecutive batches of at most ``batch_size``."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [list(frames[i : i + batch_size]) for i in range(0, len(frames), batch_size)]


def batch_id(index: int) -> str:
    return f"b{index:06d}"


def inference_id(run_id: str, batch: str, model: str, extra: str = "") -> str:
    """A deterministic InferenceId (<= 64 printable chars) so retried invocations reuse it.

    The Step Functions task token never rides in it (tokens are up to 1024 characters).
    """
    digest = hashlib.sha256(f"{run_id}|{batch}|{model}|{extra}".encode()).hexdigest()[:40]
    return f"{batch}-{digest}"


def dedupe_preserving_order(items: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for item in items:
        if item not in seen:
            seen.add(item)
            out.append(item)
    return out
