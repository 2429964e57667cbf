"""Texts spooled to a temporary file as they are made, read back in chunks to be streamed out.

PublishShard builds objects (a shard's COCO annotations, its output manifest) whose size grows with
the shard's boxes: a 10,000-frame shard at 63 boxes a frame is hundreds of MB of JSON text. Held in
memory, that text (and the copies a single ``PutObject`` body needs) is what bounds the function's
memory; spooled to the function's ephemeral storage (``/tmp``) and streamed to S3 as a multipart
upload, it costs the memory of one read chunk and one part.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from types import TracebackType

CHUNK_BYTES = 1 << 20


class TextSpool:
    """An append-only sequence of texts on disk, written joined by ``separator`` and each followed
    by ``terminator`` (``TextSpool(terminator=b"\\n")`` is JSON lines, ``TextSpool(separator=b",")``
    the inside of a JSON array)."""

    def __init__(self, separator: bytes = b"", terminator: bytes = b"", directory: str | None = None) -> None:
        self._file = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 (closed by close())
        self._separator, self._terminator = separator, terminator
        self._count = 0
        self.size = 0

    def append(self, text: str) -> None:
        data = text.encode()
        if self._count and self._separator:
            data = self._separator + data
        data += self._terminator
        self._file.write(data)
        self._count += 1
        self.size += len(data)

    def __len__(self) -> int:
        return self._count

    def chunks(self, size: int = CHUNK_BYTES) -> Iterator[bytes]:
        """Everything appended so far, from the start, in chunks of at most ``size`` bytes."""
        self._file.flush()
        self._file.seek(0)
        while chunk := self._file.read(size):
            yield chunk
        self._file.seek(0, 2)  # appends go on at the end

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> TextSpool:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
