"""Reading a log's messages with fewer copies than ``AnyReader.messages`` makes, where that is safe.

``rosbags`` reads an MCAP chunk whole into memory and copies every message record out of it, the
ones of other topics too, before it looks at the record's channel. A pass over a log's GPS and IMU
topics thus copies every camera frame two or three times, and the camera pass copies each frame
again. For one indexed ``.mcap`` file, :class:`MessageStream` maps the file instead and walks each
chunk's records by their headers: a record of another topic is skipped without being touched, and a
wanted message's bytes are a ``memoryview`` of the mapping (no copy) in an uncompressed chunk, or of
the chunk decompressed once in a compressed one. Messages come in the order ``rosbags`` gives (log
time, then chunk, then position in the chunk); a chunk's CRC, when it has one, is checked once per
stream rather than once per pass. ``.db3`` files are read through a memory map too (SQLite's
``mmap_size``), not 4 KB ``pread`` calls. Everything else (ROS 1 bags, rosbag2 folders, MCAP files
without a chunk index) is read by ``AnyReader.messages`` as before.
"""

from __future__ import annotations

import heapq
import itertools
import mmap
import struct
from binascii import crc32
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

_CHUNK_HEAD = struct.Struct("<QQQI")  # message start time, end time, uncompressed size, CRC
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_RECORD = struct.Struct("<BQ")  # opcode, record length
_MESSAGE = struct.Struct("<HIQQ")  # channel id, sequence, log time, publish time
_MESSAGE_OP = 0x05
SQLITE_MMAP_BYTES = 1 << 40  # the whole file: SQLite maps at most this much


class MessageStream:
    """``(connection, log_time_ns, raw)`` of an open ``AnyReader``'s messages, as its ``messages``
    yields them; ``raw`` is ``bytes`` or a read-only ``memoryview``."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader
        self.mcap = _indexed_mcap(reader)
        self._view: memoryview | None = None
        self._verified: set[int] = set()  # chunks whose CRC has been checked
        _map_sqlite(reader)

    def messages(self, connections: Collection[Any]) -> Iterator[tuple[Any, int, bytes | memoryview]]:
        if self.mcap is None or any(c.owner is not self.mcap for c in connections):
            yield from self.reader.messages(connections=list(connections))
            return
        if self._view is None:
            with Path(self.mcap.path).open("rb") as file:  # the mapping keeps its own handle
                self._view = memoryview(mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ))
        channels = {c.id: c for c in connections}
        order = itertools.count()
        sources = [
            self._chunk(chunk, channels, order)
            for chunk in self.mcap.chunks
            if any(chunk.channel_count.get(cid, 0) for cid in channels)
        ]
        for _, _, connection, log_time, raw in heapq.merge(*sources, key=lambda m: (m[0], m[1])):
            if connection is not None:
                yield connection, log_time, raw

    def _chunk(
        self, chunk: Any, channels: dict[int, Any], order: Iterator[int]
    ) -> Iterator[tuple[int, int, Any, int, memoryview | None]]:
        """One chunk's wanted messages in log-time order, after a marker at the chunk's start time
        (so that the merge opens a chunk only when its time comes, as ``rosbags`` does)."""
        yield chunk.message_start_time, -1, None, 0, None
        found: list[tuple[int, int, Any, int, memoryview | None]] = []
        try:
            records = self._records(chunk)
            pos, end = 0, len(records)
            while pos + 9 <= end:
                op, length = _RECORD.unpack_from(records, pos)
                body = pos + 9
                pos = body + length
                if pos > end:
                    raise _error(f"a record of the chunk at offset {chunk.chunk_start_offset} runs past it")
                if op != _MESSAGE_OP or length < _MESSAGE.size:
                    continue
                channel, _, log_time, _ = _MESSAGE.unpack_from(records, body)
                connection = channels.get(channel)
                if connection is not None:
                    data = records[body + _MESSAGE.size : pos]
                    found.append((log_time, next(order), connection, log_time, data))
        except struct.error as exc:  # a chunk header cut short: the log is damaged there
            raise _error(f"the chunk at offset {chunk.chunk_start_offset} is damaged: {exc}") from exc
        found.sort(key=lambda m: m[0])  # stable: records of one time stay in file order
        yield from found

    def _records(self, chunk: Any) -> memoryview:
        """The chunk's records (decompressed where the chunk is), its CRC checked once per stream."""
        view = self._view
        assert view is not None
        pos = chunk.chunk_start_offset + 9
        _, _, size, crc = _CHUNK_HEAD.unpack_from(view, pos)
        pos += _CHUNK_HEAD.size
        (name_length,) = _U32.unpack_from(view, pos)
        compression = bytes(view[pos + 4 : pos + 4 + name_length]).decode()
        pos += 4 + name_length
        (stored,) = _U64.unpack_from(view, pos)
        pos += 8
        data = view[pos : pos + stored]
        if compression:
            from rosbags.rosbag2.storage_mcap import decompress

            self._verified.add(chunk.chunk_start_offset)  # decompress checks the CRC itself
            return memoryview(decompress(bytes(data), compression, size, crc))
        if len(data) != size:
            raise _error(f"chunk at offset {chunk.chunk_start_offset} holds {len(data)} of {size} bytes")
        if crc and chunk.chunk_start_offset not in self._verified:
            if crc32(data) != crc:
                raise _error(f"chunk at offset {chunk.chunk_start_offset}: checksum mismatch")
            self._verified.add(chunk.chunk_start_offset)
        return data


def _error(message: str) -> Exception:
    from rosbags.rosbag2 import ReaderError

    return ReaderError(message)


def _indexed_mcap(reader: Any) -> Any:
    """The McapReader of a reader over one indexed ``.mcap`` file, else None."""
    from rosbags.rosbag2.reader import Reader
    from rosbags.rosbag2.storage_mcap import McapReader

    readers = getattr(reader, "readers", [])
    if len(readers) != 1 or not isinstance(readers[0], Reader):
        return None
    storage = readers[0].storage
    if not isinstance(storage, McapReader) or not storage.chunks or not isinstance(storage.path, Path):
        return None
    return storage


def _map_sqlite(reader: Any) -> None:
    """Let SQLite read each ``.db3`` of the reader through a memory map of the file."""
    for part in getattr(reader, "readers", []):
        for storage in [getattr(part, "storage", None), *getattr(part, "storages", [])]:
            connection = getattr(storage, "dbconn", None)
            if connection is not None and hasattr(connection, "execute"):
                connection.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}").fetchall()
