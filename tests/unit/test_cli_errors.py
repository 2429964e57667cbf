"""Every CLI mistake a person can make: one line naming what is wrong and what to do, a non-zero
exit, and no output folder for a run that never started."""

from __future__ import annotations

from pathlib import Path

import pytest

from workflow.cli.main import main


@pytest.fixture
def frames(tmp_path: Path) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(b"\xff\xd8\xff")
    return folder


def bad_profile(tmp_path: Path) -> str:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    return str(path)


CASES = [
    (lambda f, t: [str(f), "--batch-size", "0"], "--batch-size 0"),
    (lambda f, t: [str(f), "--batch-size", "501"], "--batch-size 501"),
    (lambda f, t: [str(f), "--max-concurrency", "0"], "--max-concurrency 0"),
    (lambda f, t: [str(f), "--model", "nosuchmodel"], "--model nosuchmodel: unknown model"),
    (lambda f, t: [str(t / "missing")], "no such file or folder"),
    (lambda f, t: ["s3://Bad_Bucket!/x/"], "not an s3:// URI"),
    (lambda f, t: ["s3://"], "not an s3:// URI"),
    (lambda f, t: [str(f), "--profile", bad_profile(t)], "not UTF-8 text"),
    (lambda f, t: [str(f), "--profile", str(t / "none.yaml")], "--profile"),
]


@pytest.mark.parametrize(("argv", "expected"), CASES)
def test_a_bad_command_line_is_one_line_and_creates_nothing(
    argv: object, expected: str, frames: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    status = main(["run", *argv(frames, tmp_path), "--out", str(out)])  # type: ignore[operator]
    err = capsys.readouterr().err.strip()
    assert status != 0
    assert err.startswith("error: ") and expected in err and "\n" not in err, err
    assert not out.exists()


def test_an_s3_source_without_credentials_says_how_to_give_them(
    frames: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    out = tmp_path / "out"
    status = main(["run", "s3://some-bucket/frames/", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert status != 0 and "needs AWS credentials" in err and "\n" not in err, err
    assert not out.exists()
