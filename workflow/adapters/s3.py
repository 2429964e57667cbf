"""S3 access behind a small interface (boto3)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

from botocore.exceptions import ClientError

from workflow.domain.errors import ObjectMissing, ObjectUnreadable, SourceUnreadable
from workflow.domain.frames import S3Uri

_MISSING = ("NoSuchKey", "404", "NotFound")


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", "")) or str(err)


_TRANSIENT = ("SlowDown", "ServiceUnavailable", "InternalError", "RequestTimeout", "Throttling")


def _transient(err: ClientError) -> bool:
    """Throttling or a server-side error: the prefix is readable, just not right now."""
    status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return _code(err) in _TRANSIENT or status >= 500


# Multipart part size of streamed writes (S3's minimum part is 5 MiB).
PART_BYTES = 8 * 2**20


class S3Store:
    """Reads and writes the objects of a run."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def get_bytes(self, uri: str | S3Uri) -> bytes:
        """The object's bytes; ObjectMissing when it is not there, ObjectUnreadable on other errors."""
        loc = uri if isinstance(uri, S3Uri) else S3Uri.parse(uri)
        try:
            return bytes(self.client.get_object(Bucket=loc.bucket, Key=loc.key)["Body"].read())
        except ClientError as err:
            code = _code(err)
            raise (ObjectMissing if code in _MISSING else ObjectUnreadable)(str(loc), code) from err

    def image_size(self, uri: str | S3Uri) -> tuple[int, int]:
        """(width, height) of an image object, read from its header (a ranged GET, whole object if needed)."""
        from PIL import Image, UnidentifiedImageError

        loc = uri if isinstance(uri, S3Uri) else S3Uri.parse(uri)
        head = self.client.get_object(Bucket=loc.bucket, Key=loc.key, Range="bytes=0-262143")["Body"].read()
        for data in (head, None):
            try:
                with Image.open(io.BytesIO(data if data is not None else self.get_bytes(loc))) as img:
                    return int(img.width), int(img.height)
            except (UnidentifiedImageError, OSError):
                continue  # the header lies past the first 256 KiB (large EXIF): read it all
        raise ValueError(f"{loc}: not an image whose size can be read")

    def get_json(self, uri: str | S3Uri) -> Any:
        return json.loads(self.get_bytes(uri))

    def get_lines(self, uri: str | S3Uri) -> list[dict[str, Any]]:
        text = self.get_bytes(uri).decode("utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def put_bytes(self, uri: str | S3Uri, body: bytes, content_type: str) -> str:
        loc = uri if isinstance(uri, S3Uri) else S3Uri.parse(uri)
        self.client.put_object(Bucket=loc.bucket, Key=loc.key, Body=body, ContentType=content_type)
        return str(loc)

    def put_json(self, uri: str | S3Uri, data: Any) -> str:
        return self.put_bytes(uri, json.dumps(data, separators=(",", ":")).encode(), "application/json")

    def put_lines(self, uri: str | S3Uri, lines: list[dict[str, Any]]) -> str:
        return self.put_text_lines(uri, [json.dumps(line, separators=(",", ":")) for line in lines])

    def put_text_lines(self, uri: str | S3Uri, lines: list[str]) -> str:
        """JSON lines already serialised (one JSON text each, no newline)."""
        return self.put_bytes(uri, "".join(line + "\n" for line in lines).encode(), "application/jsonlines")

    def exists(self, uri: str | S3Uri) -> bool:
        loc = uri if isinstance(uri, S3Uri) else S3Uri.parse(uri)
        try:
            self.client.head_object(Bucket=loc.bucket, Key=loc.key)
            return True
        except ClientError as err:
            if _code(err) in _MISSING:
                return False
            raise ObjectUnreadable(str(loc), _code(err)) from err

    def list_objects(self, prefix: str | S3Uri, page_size: int | None = None) -> Iterator[tuple[S3Uri, int]]:
        """Every object under a prefix, with its size, in key order, one listing page (at most
        ``page_size`` keys, S3's 1,000 by default) at a time."""
        loc = prefix if isinstance(prefix, S3Uri) else S3Uri.parse(prefix)
        config = {"PageSize": page_size} if page_size else {}
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=loc.bucket, Prefix=loc.key, PaginationConfig=config
        )
        for page in pages:
            for obj in page.get("Contents", []):
                yield S3Uri(loc.bucket, obj["Key"]), int(obj["Size"])

    def put_stream(self, uri: str | S3Uri, chunks: Iterable[bytes], content_type: str) -> int:
        """Write an object from a stream of byte chunks in bounded memory; returns its size.

        Up to ``PART_BYTES`` is buffered; a larger object goes up as a multipart upload (aborted
        on error, so no partial object ever appears under the key).
        """
        loc = uri if isinstance(uri, S3Uri) else S3Uri.parse(uri)
        buffer = bytearray()
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []
        size = 0
        try:
            for chunk in chunks:
                buffer += chunk
                size += len(chunk)
                if len(buffer) >= PART_BYTES:
                    if upload_id is None:
                        upload_id = self.client.create_multipart_upload(
                            Bucket=loc.bucket, Key=loc.key, ContentType=content_type
                        )["UploadId"]
                    parts.append(self._upload_part(loc, upload_id, len(parts) + 1, bytes(buffer)))
                    buffer.clear()
            if upload_id is None:
                self.client.put_object(
                    Bucket=loc.bucket, Key=loc.key, Body=bytes(buffer), ContentType=content_type
                )
                return size
            if buffer:
                parts.append(self._upload_part(loc, upload_id, len(parts) + 1, bytes(buffer)))
            self.client.complete_multipart_upload(
                Bucket=loc.bucket, Key=loc.key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
            return size
        except BaseException:
            if upload_id is not None:
                self.client.abort_multipart_upload(Bucket=loc.bucket, Key=loc.key, UploadId=upload_id)
            raise

    def _upload_part(self, loc: S3Uri, upload_id: str, number: int, body: bytes) -> dict[str, Any]:
        answer = self.client.upload_part(
            Bucket=loc.bucket, Key=loc.key, UploadId=upload_id, PartNumber=number, Body=body
        )
        return {"PartNumber": number, "ETag": answer["ETag"]}

    def iter_lines(self, uri: str | S3Uri) -> Iterator[dict[str, Any]]:
        """The JSON lines of an object, streamed (the object is never held whole)."""
        loc = uri if isinstance(uri, S3Uri) else S3Uri.parse(uri)
        body = self.client.get_object(Bucket=loc.bucket, Key=loc.key)["Body"]
        for raw in body.iter_lines():
            if raw.strip():
                yield json.loads(raw)

    def list_page(
        self, prefix: str | S3Uri, token: str | None = None, max_keys: int = 1000
    ) -> tuple[list[tuple[S3Uri, int]], str | None]:
        """One listing page under a prefix (at most ``max_keys``), and the token of the next page;
        SourceUnreadable when the prefix cannot be listed (no bucket, no access)."""
        loc = prefix if isinstance(prefix, S3Uri) else S3Uri.parse(prefix)
        params: dict[str, Any] = {"Bucket": loc.bucket, "Prefix": loc.key, "MaxKeys": max_keys}
        if token:
            params["ContinuationToken"] = token
        try:
            page = self.client.list_objects_v2(**params)
        except ClientError as err:
            if _transient(err):
                raise  # throttling or a 5xx that outlasted the SDK's retries: the state machine retries
            raise SourceUnreadable(str(loc), _code(err)) from err
        objects = [(S3Uri(loc.bucket, o["Key"]), int(o["Size"])) for o in page.get("Contents", [])]
        return objects, page.get("NextContinuationToken") if page.get("IsTruncated") else None
