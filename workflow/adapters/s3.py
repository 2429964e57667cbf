"""S3 access behind a small interface (boto3)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

from botocore.exceptions import ClientError

from workflow.domain.frames import S3Uri


class S3Store:
    """Reads and writes the objects of a run."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def get_bytes(self, uri: str | S3Uri) -> bytes:
        loc = uri if isinstance(uri, S3Uri) else S3Uri.parse(uri)
        return bytes(self.client.get_object(Bucket=loc.bucket, Key=loc.key)["Body"].read())

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
        body = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
        return self.put_bytes(uri, body.encode(), "application/jsonlines")

    def exists(self, uri: str | S3Uri) -> bool:
        loc = uri if isinstance(uri, S3Uri) else S3Uri.parse(uri)
        try:
            self.client.head_object(Bucket=loc.bucket, Key=loc.key)
            return True
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def list_objects(self, prefix: str | S3Uri) -> Iterator[tuple[S3Uri, int]]:
        """Every object under a prefix, with its size, in key order."""
        loc = prefix if isinstance(prefix, S3Uri) else S3Uri.parse(prefix)
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=loc.key)
        for page in pages:
            for obj in page.get("Contents", []):
                yield S3Uri(loc.bucket, obj["Key"]), int(obj["Size"])
