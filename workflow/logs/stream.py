"""Reading a log's messages with fewer copies than ``AnyReader.messages`` makes, where that is safe.

``rosbags`` reads an MCAP chunk whole into memory and copies every message record out of it, the
ones of other topics too, before it looks at the record's channel. A pass over a log's GPS and IMU
topics thus copies every camera frame two or three times, and the camera pass copies each frame
again. For an indexed ``.mcap`` file, :class:`MessageStream` maps the file instead and walks each
chunk's records by their headers: a record of another topic is skipped without being touched, and a
wanted message's bytes are a ``memoryview`` of the mapping (no copy) in an uncompressed chunk, or of
the chunk decompressed once in a compressed one. A ROS 1 bag is read the same way, by its own
index (``rosbags`` reads a chunk whole, then copies the message out of it). Messages come in the
order ``rosbags`` gives (log time, then chunk, then position in the chunk); an MCAP chunk's CRC,
when it has one, is checked once per stream rather than once per pass. ``.db3`` files are read
through a memory map too (SQLite's ``mmap_size``), not 4 KB ``pread`` calls. Everything else
(rosbag2 folders, MCAP files without a chunk index) is read by its ``rosbags`` reader, as
``AnyReader.messages`` reads it.
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
_EMPTY = memoryview(b"")
SQLITE_MMAP_BYTES = 1 << 40  # the whole file: SQLite maps at most this much


class MessageStream:
    """``(connection, log_time_ns, raw)`` of an open ``AnyReader``'s messages, as its ``messages``
    yields them; ``raw`` is ``bytes`` or a read-only ``memoryview``."""

    def __init__(self, reader: Any) -> None:
        self.reader = reader
        self._views: dict[str, memoryview] = {}  # file -> its read-only mapping
        self._verified: set[int] = set()  # MCAP chunks whose CRC has been checked
        _map_sqlite(reader)

    def messages(self, connections: Collection[Any]) -> Iterator[tuple[Any, int, bytes | memoryview]]:
        """The connections' messages in log-time order, file by file merged as ``AnyReader`` does."""
        groups: dict[int, tuple[Any, list[Any]]] = {}
        for connection in connections:
            groups.setdefault(id(connection.owner), (connection.owner, []))[1].append(connection)
        sources = [self._messages(owner, conns) for owner, conns in groups.values()]
        if len(sources) == 1:
            yield from sources[0]
        else:
            yield from heapq.merge(*sources, key=lambda m: m[1])

    def mapped(self, connections: Collection[Any]) -> bool:
        """True when every one of the connections' files is read through a memory map here."""
        return all(_kind(c.owner) is not None for c in connections)

    def _messages(self, owner: Any, connections: list[Any]) -> Iterator[tuple[Any, int, bytes | memoryview]]:
        kind = _kind(owner)
        if kind == "mcap":
            return self._mcap(owner, connections)
        if kind == "ros1":
            return self._ros1(owner, connections)
        return iter(owner.messages(connections=connections))

    def _view(self, path: Path) -> memoryview:
        key = str(path)
        if key not in self._views:
            with path.open("rb") as file:  # the mapping keeps its own handle
                self._views[key] = memoryview(mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ))
        return self._views[key]

    def _mcap(self, storage: Any, connections: list[Any]) -> Iterator[tuple[Any, int, memoryview]]:
        view = self._view(storage.path)
        channels = {c.id: c for c in connections}
        order = itertools.count()
        sources = [
            self._chunk(view, chunk, channels, order)
            for chunk in storage.chunks
            if any(chunk.channel_count.get(cid, 0) for cid in channels)
        ]
        for _, _, connection, log_time, raw in heapq.merge(*sources, key=lambda m: (m[0], m[1])):
            if connection is not None:
                yield connection, log_time, raw

    def _ros1(self, bag: Any, connections: list[Any]) -> Iterator[tuple[Any, int, memoryview]]:
        """A ROS 1 bag's messages by its index (as ``rosbags`` reads them): an uncompressed chunk is
        a view of the mapping, a compressed one is decompressed once; each message is a view."""
        from rosbags.rosbag1 import ReaderError
        from rosbags.rosbag1.reader import decompressors

        view = self._view(bag.path)
        plain = decompressors["none"]
        by_id = {c.id: c for c in bag.connections}
        current: tuple[int, memoryview] = (-1, view[:0])
        for entry in heapq.merge(*[bag.indexes[c.id] for c in connections]):
            if current[0] != entry.chunk_pos:
                chunk = bag.chunks[entry.chunk_pos]
                stored = view[chunk.datapos : chunk.datapos + chunk.datasize]
                if len(stored) != chunk.datasize:
                    raise ReaderError(f"the chunk at offset {entry.chunk_pos} is cut short")
                data = (
                    stored if chunk.decompressor is plain else memoryview(chunk.decompressor(bytes(stored)))
                )
                current = (entry.chunk_pos, data)
            try:
                connection, raw = _ros1_message(current[1], entry.offset, by_id)
            except (struct.error, KeyError, IndexError, ValueError) as exc:
                raise ReaderError(f"the chunk at offset {entry.chunk_pos} is damaged: {exc!r}") from exc
            yield connection, entry.time, raw

    def _chunk(
        self, view: memoryview, chunk: Any, channels: dict[int, Any], order: Iterator[int]
    ) -> Iterator[tuple[int, int, Any, int, memoryview]]:
        """One chunk's wanted messages in log-time order, after a marker at the chunk's start time
        (so that the merge opens a chunk only when its time comes, as ``rosbags`` does)."""
        yield chunk.message_start_time, -1, None, 0, _EMPTY
        found: list[tuple[int, int, Any, int, memoryview]] = []
        try:
            records = self._records(view, chunk)
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

    def _records(self, view: memoryview, chunk: Any) -> memoryview:
        """The chunk's records (decompressed where the chunk is), its CRC checked once per stream."""
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


_ROS1_MSGDATA, _ROS1_CONNECTION = 0x02, 0x07


def _ros1_message(chunk: memoryview, offset: int, by_id: dict[int, Any]) -> tuple[Any, memoryview]:
    """The message data record at ``offset`` of a ROS 1 chunk (after any connection records):
    its connection and a view of its bytes."""
    pos = offset
    while True:
        (size,) = _U32.unpack_from(chunk, pos)
        header = bytes(chunk[pos + 4 : pos + 4 + size])
        pos += 4 + size
        op, conn, at = -1, -1, 0
        while at < len(header):
            (field,) = _U32.unpack_from(header, at)
            name, _, value = header[at + 4 : at + 4 + field].partition(b"=")
            at += 4 + field
            if name == b"op":
                op = value[0]
            elif name == b"conn":
                (conn,) = _U32.unpack_from(value)
        (length,) = _U32.unpack_from(chunk, pos)
        pos += 4
        if op == _ROS1_CONNECTION:
            pos += length
            continue
        if op != _ROS1_MSGDATA or pos + length > len(chunk):
            raise ValueError(f"no message data record at chunk offset {offset}")
        return by_id[conn], chunk[pos : pos + length]


def _kind(owner: Any) -> str | None:
    """How a connection's reader is read here: "mcap" (an indexed .mcap file), "ros1" (a bag), or
    None (by its own ``messages``)."""
    from rosbags.rosbag1 import Reader as Ros1Reader
    from rosbags.rosbag2.storage_mcap import McapReader

    if isinstance(owner, McapReader) and owner.chunks and isinstance(owner.path, Path):
        return "mcap"
    if isinstance(owner, Ros1Reader) and owner.chunks and isinstance(owner.path, Path):
        return "ros1"
    return None


def _error(message: str) -> Exception:
    from rosbags.rosbag2 import ReaderError

    return ReaderError(message)


def _map_sqlite(reader: Any) -> None:
    """Let SQLite read each ``.db3`` of the reader through a memory map of the file."""
    for part in getattr(reader, "readers", []):
        for storage in [getattr(part, "storage", None), *getattr(part, "storages", [])]:
            connection = getattr(storage, "dbconn", None)
            if connection is not None and hasattr(connection, "execute"):
                connection.execute(f"PRAGMA mmap_size={SQLITE_MMAP_BYTES}").fetchall()
