"""Reading a run's published dataset shard by shard: a local run's OUT folder or an S3 run prefix.

An S3 run (``s3://bucket/runs/<id>/``) is read through its ``dataset/index.json``: each shard's
dataset COCO, pre-label COCO and report lines, one shard at a time. A local run's OUT folder holds
the shards joined (``coco.json``, ``prelabels.coco.json``, ``report-frames.jsonl``): one shard.
Frames keep the URIs the workflow read; :meth:`RunSource.image` says where each one can be opened.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflow.exports.records import Category, ExportFrame, ShardFiles, categories_of, shard_frames


class ExportError(ValueError):
    """The run folder or prefix does not hold a published dataset."""


@dataclass(frozen=True)
class Image:
    uri: str  # as the workflow read it
    path: Path | None  # a local file, when there is one
    url: str  # what a browser or tool can open: file path, presigned URL or the s3:// URI


class RunSource:
    run_id: str
    categories: list[Category]

    def shards(self) -> Iterator[ShardFiles]:
        raise NotImplementedError

    def image(self, uri: str) -> Image:
        raise NotImplementedError

    def frames(self) -> Iterator[ExportFrame]:
        """Every labeled frame, shard by shard (memory: one shard)."""
        next_id = 1
        for files in self.shards():
            for frame in shard_frames(files, next_id):
                next_id = frame.image_id + 1
                yield frame


def _colors(profile: Any) -> dict[str, str]:
    taxonomy = profile.get("taxonomy", []) if isinstance(profile, dict) else []
    return {str(c["name"]): str(c.get("color", "#ffa500")) for c in taxonomy if isinstance(c, dict)}


class LocalRun(RunSource):
    """A local run's OUT folder (``autolabel run --out OUT``)."""

    def __init__(self, out_dir: Path) -> None:
        self.out = Path(out_dir)
        if not (self.out / "coco.json").is_file():
            raise ExportError(f"{self.out}: no coco.json, not the OUT folder of a finished local run")
        report = _read_json(self.out / "report.json") or {}
        self.run_id = str(report.get("run_id", self.out.name))
        mapping = _read_json(self.out / "frames-map.json") or {}
        self.prefix = str(mapping.get("s3_prefix", ""))
        self.folder = Path(mapping["local_folder"]) if mapping.get("local_folder") else None
        with (self.out / "coco.json").open() as f:
            categories = json.load(f).get("categories", [])
        self.categories = categories_of(
            {"categories": categories}, _colors(_read_json(self.out / "profile.json"))
        )

    def shards(self) -> Iterator[ShardFiles]:
        report_path = self.out / "report-frames.jsonl"
        report = (
            [json.loads(x) for x in report_path.read_text().splitlines() if x.strip()]
            if report_path.exists()
            else []
        )
        prelabels = _read_json(self.out / "prelabels.coco.json") or {}
        yield ShardFiles(coco=_read_json(self.out / "coco.json"), prelabels=prelabels, report=report)

    def image(self, uri: str) -> Image:
        """A frame named by the run's local S3 URI, or (outputs that point at the files) by its path
        relative to the input folder; an original ``s3://`` URI has no local file."""
        relative = None
        if self.prefix and uri.startswith(self.prefix):
            relative = uri[len(self.prefix) :]
        elif "://" not in uri:
            relative = uri
        if self.folder is not None and relative is not None:
            path = (self.folder / relative).resolve()
            return Image(uri, path, str(path))
        return Image(uri, None, uri)


class S3Run(RunSource):
    """A run's prefix in S3 (``s3://bucket/runs/<id>/``), read through ``dataset/index.json``."""

    def __init__(self, prefix: str, s3: Any, presign_seconds: int = 0) -> None:
        from workflow.adapters.s3 import S3Store
        from workflow.domain.frames import S3Uri

        self.root = S3Uri.parse(prefix.rstrip("/") + "/")
        self.store: S3Store = s3
        self.presign_seconds = presign_seconds
        self.index = self._json("dataset/index.json")
        if not self.index or not self.index.get("shards"):
            raise ExportError(f"{prefix}: no dataset/index.json with shards (did the run finish?)")
        self.run_id = str(self.index.get("run_id", ""))
        first = self.store.get_json(self.index["shards"][0]["coco"])
        try:
            profile = self._json("profile.json")
        except Exception:  # noqa: BLE001 - colours are optional
            profile = None
        self.categories = categories_of(first, _colors(profile))

    def _json(self, key: str) -> Any:
        return self.store.get_json(f"s3://{self.root.bucket}/{self.root.key}{key}")

    def shards(self) -> Iterator[ShardFiles]:
        for shard in self.index["shards"]:
            yield ShardFiles(
                coco=self.store.get_json(shard["coco"]),
                prelabels=self.store.get_json(shard["prelabels_coco"]),
                report=self.store.get_lines(shard["frame_report"]) if shard.get("frame_report") else [],
            )

    def image(self, uri: str) -> Image:
        if self.presign_seconds and uri.startswith("s3://"):
            bucket, _, key = uri.removeprefix("s3://").partition("/")
            url = self.store.client.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=self.presign_seconds
            )
            return Image(uri, None, str(url))
        return Image(uri, None, uri)


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def open_run(location: str, presign_seconds: int = 0) -> RunSource:
    """A local OUT folder, or an ``s3://.../runs/<id>/`` prefix (boto3's default credentials)."""
    if location.startswith("s3://"):
        import boto3

        from workflow.adapters.s3 import S3Store

        return S3Run(location, S3Store(boto3.client("s3")), presign_seconds)
    return LocalRun(Path(location))
