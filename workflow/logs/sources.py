"""Which drive logs a path names: a ``.bag`` (split parts grouped), a ``.db3``, an ``.mcap``, a rosbag2
folder (``metadata.yaml``), or a folder holding any of them."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from workflow.domain.errors import ConfigurationError

LOG_SUFFIXES = (".bag", ".db3", ".mcap")
# `rosbag record --split` names the parts <stem>_0.bag, <stem>_1.bag, ...
_SPLIT_PART = re.compile(r"^(?P<stem>.+)_(?P<n>\d+)\.bag$")


@dataclass(frozen=True)
class LogSource:
    """One log: a rosbag2 file or folder, or the parts of one (possibly split) ROS 1 bag."""

    name: str
    paths: tuple[Path, ...]
    uris: dict[Path, str] = field(default_factory=dict, compare=False)

    @property
    def ros1(self) -> bool:
        return self.paths[0].suffix == ".bag"

    def uri(self, path: Path | None = None) -> str:
        """The URI lineage records for ``path`` (one of ``paths``; default the first)."""
        path = path or self.paths[0]
        return self.uris.get(path) or path.resolve().as_uri()


def is_log_path(path: Path) -> bool:
    """True for a log file, a rosbag2 folder, or a folder that holds at least one log."""
    if path.is_file():
        return path.suffix in LOG_SUFFIXES
    if path.is_dir():
        return (path / "metadata.yaml").exists() or any(_log_files(path))
    return False


def _log_files(folder: Path) -> Iterable[Path]:
    """Log files under ``folder``; a rosbag2 folder counts as one entry (itself)."""
    for entry in sorted(folder.iterdir()):
        if entry.is_dir():
            if (entry / "metadata.yaml").exists():
                yield entry
            else:
                yield from _log_files(entry)
        elif entry.suffix in LOG_SUFFIXES:
            yield entry


def discover(paths: Sequence[Path], uris: dict[Path, str] | None = None) -> list[LogSource]:
    """The logs named by ``paths``, in path order; split ROS 1 bags become one log each.

    ``uris`` overrides the file:// URI recorded for a path (the s3:// object a log was downloaded from).
    """
    files: list[Path] = []
    for path in paths:
        if not path.exists():
            raise ConfigurationError(f"{path}: no such file or folder")
        if path.is_dir() and not (path / "metadata.yaml").exists():
            found = list(_log_files(path))
            if not found:
                raise ConfigurationError(f"{path}: holds no .bag, .db3, .mcap or rosbag2 folder")
            files += found
        elif path.is_dir() or path.suffix in LOG_SUFFIXES:
            files.append(path)
        else:
            raise ConfigurationError(f"{path}: not a drive log (expected {', '.join(LOG_SUFFIXES)})")
    return _group(files, uris or {})


def _group(files: list[Path], uris: dict[Path, str]) -> list[LogSource]:
    parts: dict[tuple[Path, str], list[tuple[int, Path]]] = defaultdict(list)
    order: list[tuple[Path, str] | Path] = []
    for f in files:
        m = _SPLIT_PART.match(f.name) if f.is_file() else None
        if m:
            key = (f.parent, m["stem"])
            if key not in parts:
                order.append(key)
            parts[key].append((int(m["n"]), f))
        else:
            order.append(f)
    sources = []
    for item in order:
        if isinstance(item, Path):
            name = item.stem if item.is_file() else item.name
            sources.append(LogSource(name, (item,), uris))
        else:
            members = tuple(p for _, p in sorted(parts[item]))
            name = item[1] if len(members) > 1 else members[0].stem
            sources.append(LogSource(name, members, uris))
    names = [s.name for s in sources]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ConfigurationError(f"several logs share a name, their frames would collide: {repeated}")
    return sources
