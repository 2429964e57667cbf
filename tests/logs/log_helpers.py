"""Shared by the drive-log tests: the formats, image kinds and a cached log writer."""

from __future__ import annotations

from pathlib import Path

from workflow.logs.sample import DriveSpec, ImageKind, LogFormat, write_drive_log

FORMATS: tuple[LogFormat, ...] = ("bag", "db3", "mcap")
IMAGES: tuple[ImageKind, ...] = ("compressed", "raw")


class LogFactory:
    """Writes (and caches per session) one drive log per format, image kind and encoding."""

    def __init__(self, root: Path, frames: list[bytes], spec: DriveSpec) -> None:
        self.root, self.frames, self.spec = root, frames, spec
        self.cache: dict[tuple[str, str, str, int], list[Path]] = {}

    def __call__(
        self, fmt: LogFormat, image: ImageKind = "compressed", encoding: str = "rgb8", split: int = 1
    ) -> list[Path]:
        key = (fmt, image, encoding, split)
        if key not in self.cache:
            name = f"drive-{image}-{encoding}-{split}"
            path = self.root / (f"{name}.bag" if fmt == "bag" else f"{name}-{fmt}")
            self.cache[key] = write_drive_log(
                path, self.frames, fmt, image=image, encoding=encoding, spec=self.spec, split=split
            )
        return self.cache[key]
