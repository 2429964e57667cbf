"""Fixtures shared by the whole suite: the real data folder, the real detector, local clouds.

The real frames, models and AWS artefacts live in ``../shared`` (outside the repository); tests
that need them skip with a clear message when the folder is absent.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # moto and the model runtime load only when a test asks for them
    from workflow.local.cloud import LocalCloud
    from workflow.local.endpoint import Predictor

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT / ".." / "shared"
DEFAULT_MODEL = "nanodet-coco"

EndpointFactories = dict[str, Callable[[], "Predictor"]]
Handler = Callable[[dict[str, Any], Any], Any]


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` (real frames in data/, models in models/); skips the test when it is absent."""
    if not (SHARED / "data").is_dir():
        pytest.skip(
            f"real test data not found at {SHARED.resolve()}/data: these tests need the shared "
            "folder beside the repository (../shared/data with KITTI, nuScenes and SageMaker artefacts)"
        )
    return SHARED.resolve()


@pytest.fixture(scope="session")
def detector() -> Predictor:
    """The real COCO NanoDet, loaded once per session (``make model`` provisions it)."""
    from workflow.domain.errors import ModelNotProvisioned
    from workflow.inference.runner import load_detector
    from workflow.inference.settings import InferenceSettings

    # The workflow tests pin the detector settings their routing expectations were written
    # against (whole frame only, threshold 0.3), so tuning the road-frame defaults
    # (bench/quality.py) does not move them.
    try:
        return load_detector(DEFAULT_MODEL, InferenceSettings(tiling=False, score_threshold=0.3))
    except ModelNotProvisioned as exc:
        pytest.skip(f"model {DEFAULT_MODEL} is not provisioned (run `make model`): {exc}")


@pytest.fixture(scope="session")
def detector_factory(detector: Predictor) -> Callable[[], Predictor]:
    """A predictor factory for a local endpoint that hands out the session's one detector."""
    return lambda: detector


class CloudFactory:
    """Starts :class:`LocalCloud` instances one at a time.

    moto, the handler bindings and the environment are process-wide, so a new cloud stops the
    previous one first.
    """

    def __init__(self) -> None:
        self.current: LocalCloud | None = None

    def __call__(self, endpoints: EndpointFactories, **options: Any) -> LocalCloud:
        """A started cloud serving ``endpoints`` (name -> predictor factory); options go to LocalCloud."""
        from workflow.local.cloud import LocalCloud

        self.close()
        cloud = LocalCloud(endpoints, **options)
        cloud.start()
        self.current = cloud
        return cloud

    def close(self) -> None:
        if self.current is not None:
            self.current.stop()
            self.current = None


@pytest.fixture(scope="module")
def local_cloud() -> Iterator[CloudFactory]:
    """Factory of started local clouds; the last one stops when the test module ends.

    Starting a cloud costs seconds, so modules build theirs in a module-scoped fixture.
    """
    factory = CloudFactory()
    yield factory
    factory.close()


@pytest.fixture(scope="session")
def load_function() -> Callable[[str], Handler]:
    """Loads ``functions/<name>/app.py`` by file path, as Lambda and LocalCloud do; returns its handler.

    Call the handler with :class:`workflow.local.cloud.LocalContext` while a LocalCloud is started
    (the handler builds its adapters from the environment the cloud sets).
    """

    def load(name: str) -> Handler:
        path = PROJECT_ROOT / "functions" / name / "app.py"
        spec = importlib.util.spec_from_file_location(f"tests_function_{name}", path)
        assert spec is not None and spec.loader is not None, f"cannot load {path}"
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        handler: Handler = module.lambda_handler
        return handler

    return load


@pytest.fixture(autouse=True)
def _own_workspace(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's local runs keep their state in a workspace of its own, never the user's."""
    monkeypatch.setenv("AUTOLABEL_WORKSPACE", str(tmp_path_factory.mktemp("workspace")))
