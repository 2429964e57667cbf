"""The Label Studio export imported into a real local Label Studio (``make label-studio``).

The tasks go in through the import API with the exported labeling config; read back, each task
keeps its predictions (model version, per-region score) and its image URL resolves: Label Studio
serves the frame's bytes from its Local Files storage.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from workflow.cli.main import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def frames_dir(run_out: Path) -> Path:
    return Path(json.loads((run_out / "frames-map.json").read_text())["local_folder"])


@pytest.fixture(scope="module")
def studio(frames_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from workflow.local.labelstudio_server import VENV, LocalLabelStudio

    if not (VENV / ".installed").exists():
        pytest.skip("Label Studio is not installed: run `make label-studio` (builds .venv-labelstudio)")
    server = LocalLabelStudio(tmp_path_factory.mktemp("label-studio"), frames_dir.parent)
    server.start()
    yield server
    server.stop()


def test_exported_tasks_import_into_label_studio_with_scores_and_images(
    run_out: Path, frames_dir: Path, studio: object, tmp_path: Path
) -> None:
    from workflow.adapters.labelstudio import LabelStudioClient

    target = tmp_path / "ls"
    argv = ["export", str(run_out), "--format", "label-studio", "--out", str(target)]
    assert main([*argv, "--document-root", str(frames_dir.parent)]) == 0  # storage: a folder under it
    exported = json.loads((target / "tasks.json").read_text())
    client = LabelStudioClient(studio.url, studio.credentials["token"])  # type: ignore[attr-defined]
    project = client.create_project("export check", (target / "label_config.xml").read_text())
    client.add_local_files_storage(project["id"], str(frames_dir))
    assert client.import_tasks(project["id"], exported) == len(exported)
    tasks = list(client.tasks(project["id"]))
    assert len(tasks) == len(exported)
    for task in tasks:
        (prediction,) = task["predictions"]
        assert prediction["model_version"] == "nanodet-coco"
        assert prediction["result"] and all(0 < r["score"] <= 1 for r in prediction["result"])
        request = urllib.request.Request(studio.url + task["data"]["image"])  # type: ignore[attr-defined]
        request.add_header("Authorization", client._authorization())
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310 - the local server
            body = answer.read()
        name = task["data"]["frame"].rsplit("/", 1)[-1]
        assert body == (frames_dir / name).read_bytes()
