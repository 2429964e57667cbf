"""Build a SageMaker model archive (``model.tar.gz``) that serves a model as the local endpoint does.

Layout (what SageMaker unpacks into ``/opt/ml/model``)::

    model.onnx                  the weights
    serving.json                model name, weights file, inference settings, container, wheels
    code/inference.py           the inference-toolkit entry script (workflow/serving/entry.py)
    code/workflow/...           the project code it imports (domain, inference, serving)
    code/requirements.txt       --no-index --find-links wheels + the pins: no network at start
    code/wheels/*.whl           the Python dependencies, for the container's Python and platform

:func:`stage_model_dir` writes that folder (without wheels, the local endpoint serves it directly);
:func:`build_archive` adds the wheels (``pip download --platform ... --only-binary=:all:``, cached per
requirement set and platform) and packs the tarball.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from workflow.inference.settings import InferenceSettings
from workflow.serving.container import PYTORCH_CONTAINER, Container
from workflow.serving.handler import SERVING_FILE
from workflow.serving.toolkit import CODE_DIR, DEFAULT_PROGRAM

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the workflow package
WEIGHTS_FILE = "model.onnx"
WHEELS_DIR = "wheels"
# The project code code/inference.py imports, relative to the workflow package.
PROJECT_CODE = (
    "__init__.py",
    "domain",
    "inference",
    "serving",
    "models/__init__.py",
    "models/coco_names.py",
)
# What the handler imports at run time (their own dependencies are resolved by pip for the target).
RUNTIME_DISTRIBUTIONS = ("numpy", "onnxruntime", "onnx", "pillow", "pycocotools", "pydantic", "boto3")
COMPLETE_MARKER = "complete.json"


@dataclass(frozen=True)
class StagedModel:
    """A model folder laid out as an unpacked archive."""

    path: Path
    config: dict[str, Any]


def stage_model_dir(
    model: str,
    settings: InferenceSettings | None,
    dest: Path,
    container: Container = PYTORCH_CONTAINER,
) -> StagedModel:
    """Lay out ``dest`` as an unpacked model archive of ``model`` (a known name or an .onnx path).

    The model is loaded once here: that checks the file and fixes the name and version the endpoint
    reports (the same as ``load_detector`` gives locally).
    """
    from workflow.inference.runner import load_detector

    settings = settings or InferenceSettings()
    detector = load_detector(model, settings)
    source = _weights_path(model)
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, dest / WEIGHTS_FILE)
    code = dest / CODE_DIR
    _copy_project_code(code / "workflow")
    shutil.copyfile(PACKAGE_ROOT / "serving" / "entry.py", code / DEFAULT_PROGRAM)
    config = {
        "format": "autolabel",
        "model": detector.name,
        "version": detector.version,
        "weights": WEIGHTS_FILE,
        "settings": settings.model_dump(mode="json"),
        "entry_script": DEFAULT_PROGRAM,
        "container": container.to_dict(),
    }
    (dest / SERVING_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return StagedModel(dest, config)


def _weights_path(model: str) -> Path:
    from workflow.models.registry import resolve_model

    return Path(resolve_model(model))


def _copy_project_code(target: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for item in PROJECT_CODE:
        source = PACKAGE_ROOT / item
        if source.is_dir():
            shutil.copytree(source, target / item, ignore=ignore, dirs_exist_ok=True)
        else:
            (target / item).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target / item)


def runtime_pins() -> list[str]:
    """``name==version`` of the runtime distributions, as installed here (the local endpoint's)."""
    return [f"{name}=={metadata.version(name)}" for name in RUNTIME_DISTRIBUTIONS]


def _constraints() -> str:
    """Every distribution installed here, pinned: the target's transitive dependencies match too."""
    pins = {d.metadata["Name"].lower(): d.version for d in metadata.distributions() if d.metadata["Name"]}
    return "".join(f"{name}=={version}\n" for name, version in sorted(pins.items()))


def wheels_cache(container: Container, pins: list[str], cache: Path | None = None) -> Path:
    """The cache folder of one requirement set on one platform."""
    from workflow.models.registry import cache_dir

    key = hashlib.sha256(json.dumps([container.to_dict(), pins]).encode()).hexdigest()[:16]
    return (cache or cache_dir()) / "wheels" / f"{container.machine}-cp{container.py_version[2:]}-{key}"


def download_wheels(container: Container = PYTORCH_CONTAINER, cache: Path | None = None) -> Path:
    """The wheels of the runtime pins for the container's platform: downloaded once, then reused."""
    pins = runtime_pins()
    folder = wheels_cache(container, pins, cache)
    if (folder / COMPLETE_MARKER).is_file():
        return folder
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    (partial / "constraints.txt").write_text(_constraints(), encoding="utf-8")
    platforms = [arg for p in container.wheel_platforms() for arg in ("--platform", p)]
    command = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--only-binary=:all:", "--implementation", "cp", "--python-version", container.python_version,
        *platforms, "-c", str(partial / "constraints.txt"), "-d", str(partial), *pins,
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"pip download of the runtime wheels failed:\n{done.stderr[-3000:]}")
    (partial / "constraints.txt").unlink()
    wheels = sorted(p.name for p in partial.glob("*.whl"))
    (partial / COMPLETE_MARKER).write_text(json.dumps({"pins": pins, "wheels": wheels}, indent=2))
    if folder.exists():  # another process finished first: keep its copy
        shutil.rmtree(partial)
    else:
        partial.rename(folder)
    return folder


def requirements_text(pins: list[str]) -> str:
    """code/requirements.txt: install the bundled wheels only (pip resolves --find-links beside the file)."""
    return "--no-index\n--find-links wheels\n" + "".join(f"{pin}\n" for pin in pins)


def build_archive(
    model: str,
    settings: InferenceSettings | None,
    out: Path,
    *,
    container: Container = PYTORCH_CONTAINER,
    wheels: Path | None = None,
    deploy: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Write ``out`` (model.tar.gz) for ``model``; returns the archive's serving.json plus size and sha256.

    ``deploy`` (e.g. the endpoint and model name a profile gives it) is recorded for ``upload``.
    """
    wheels = wheels or download_wheels(container)
    with tempfile.TemporaryDirectory(prefix="autolabel-package-") as tmp:
        staged = stage_model_dir(model, settings, Path(tmp), container)
        code = staged.path / CODE_DIR
        shutil.copytree(wheels, code / WHEELS_DIR, ignore=shutil.ignore_patterns(COMPLETE_MARKER))
        pins = json.loads((wheels / COMPLETE_MARKER).read_text())["pins"]
        (code / "requirements.txt").write_text(requirements_text(pins), encoding="utf-8")
        config = {**staged.config, "requirements": pins, "wheels": sorted(os.listdir(code / WHEELS_DIR))}
        if deploy:
            config["deploy"] = dict(deploy)
        (staged.path / SERVING_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        out.parent.mkdir(parents=True, exist_ok=True)
        _pack(staged.path, out)
    return {**config, "archive_bytes": out.stat().st_size, "archive_sha256": _sha256(out)}


def _pack(folder: Path, out: Path) -> None:
    """A tar.gz of the folder's contents at the archive root, with stable order and owner."""

    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        return info

    partial = out.with_name(out.name + ".partial")
    # Wheels and ONNX weights are already compressed: a low level costs little size and much less time.
    with tarfile.open(partial, "w:gz", compresslevel=1) as tar:
        for path in sorted(folder.rglob("*")):
            tar.add(path, arcname=path.relative_to(folder).as_posix(), recursive=False, filter=clean)
    partial.replace(out)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_archive_config(archive: Path) -> dict[str, Any]:
    """The serving.json of a built archive."""
    with tarfile.open(archive, "r:gz") as tar:
        member = tar.extractfile(SERVING_FILE)
        if member is None:
            raise ValueError(f"{archive} has no {SERVING_FILE}: not built by `autolabel endpoint package`")
        config: dict[str, Any] = json.loads(member.read())
    return config


def staged_server(model: str, settings: InferenceSettings | None = None) -> Any:
    """An :class:`~workflow.serving.toolkit.ArchiveServer` of ``model`` staged in a temporary folder.

    This is what local runs serve: the archive's layout and ``code/inference.py``, imported as the
    toolkit imports it (no wheels: this interpreter has the dependencies). The folder goes at exit.
    """
    from workflow.serving.toolkit import ArchiveServer

    return ArchiveServer.from_model_dir(_staged_dir(model, settings))


def staged_workers(model: str, settings: InferenceSettings | None, processes: int) -> Any:
    """The predictor of ``model``'s archive, staged as :func:`staged_server` stages it, in
    ``processes`` worker processes (:mod:`workflow.local.model_workers`): each runs the archive's
    ``model_fn``, as a container's model server runs one per worker. A local endpoint serves it
    through the archive's request functions (:func:`~workflow.serving.toolkit.in_process_server`)
    and reads the batch's frames itself."""
    from workflow.local.model_workers import ArchiveRecipe, ProcessPredictor

    folder = _staged_dir(model, settings)
    return ProcessPredictor(ArchiveRecipe(str(folder)), processes, name=Path(model).stem)


def _staged_dir(model: str, settings: InferenceSettings | None) -> Path:
    import atexit

    folder = Path(tempfile.mkdtemp(prefix="autolabel-model-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    stage_model_dir(model, settings, folder)
    return folder


def archive_digest(archive: Path) -> str:
    """The sha256 of a built archive (names its upload key)."""
    return _sha256(archive)
