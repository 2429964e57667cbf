"""A local input folder's symlinks that name no file are reported, never silently dropped."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from workflow.local.runner import upload_folder


class RecordingS3:
    """Only what upload_folder calls: the objects it puts (no AWS needed to see what it uploads)."""

    def __init__(self) -> None:
        self.keys: list[str] = []

    def create_bucket(self, **kwargs: Any) -> None:
        pass

    def put_object(self, Bucket: str, Key: str, Body: bytes) -> None:  # boto3's parameter names
        self.keys.append(Key)


class Cloud:
    def __init__(self) -> None:
        self.s3 = RecordingS3()


def test_dangling_and_looping_symlinks_are_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a folder with a frame, a link to it, a dangling link, a self-loop and a link back up
    folder = tmp_path / "frames"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.jpg").write_bytes(b"\xff\xd8\xff")
    os.symlink("a.jpg", folder / "good.jpg")
    os.symlink("missing.jpg", folder / "dangling.jpg")
    os.symlink("self.jpg", folder / "self.jpg")
    os.symlink("..", folder / "sub" / "up")
    cloud = Cloud()
    # When it is uploaded
    uris = upload_folder(cloud, folder, "run")  # type: ignore[arg-type]
    # Then the two readable frames are uploaded and every other entry is named with its reason
    assert sorted(cloud.s3.keys) == ["run/a.jpg", "run/good.jpg"] and len(uris) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 3, err
    assert any("dangling.jpg" in line and "missing.jpg" in line for line in err)
    assert any("self.jpg" in line and "cannot be read" in line for line in err)
    assert any(
        line.startswith(f"not labeled: {folder / 'sub' / 'up'}: a symlink to a folder") for line in err
    )
