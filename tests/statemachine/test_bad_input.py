"""Bad input through local mode: a folder of 29 kinds of awkward files, each one's outcome asserted.

The folder is made at test time; ``run_local`` (what ``autolabel run`` calls) uploads it and runs
the real state machine. The model is a stand-in that decodes every frame with the real decoder
(``workflow.inference.images.decode_image``: what the endpoint does) and returns one fixed box, so
each outcome below is the pipeline's and the decoder's, not a model's.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import zlib
from typing import Any

import numpy as np
import pytest
from PIL import Image

from workflow.domain.detections import Detections, Provenance
from workflow.inference.images import decode_image
from workflow.local.runner import LocalModel, run_local


class DecodingStandIn:
    """Decodes each frame for real, then answers one car box the size of a tenth of the frame."""

    def predict_bytes(self, data: bytes, frame: str) -> Detections:
        image = decode_image(data, frame)
        height, width = image.shape[:2]
        return Detections(
            boxes=np.array([[0, 0, max(width / 10, 1), max(height / 10, 1)]], np.float32),
            scores=np.array([0.95], np.float32),
            class_ids=np.array([2], np.int64),
            class_names=("car",),
            image_width=width,
            image_height=height,
            provenance=Provenance(model="nanodet-coco", version="decoding-stand-in"),
            frame=frame,
        )


def encoded(image: Image.Image, fmt: str, **params: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **params)
    return buf.getvalue()


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit grayscale PNG header of width x height over a few KB of zlib'd zeros."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    rows = zlib.compress(b"\0" * ((width // 8 + 1) * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


RGB = Image.new("RGB", (64, 48), (120, 80, 40))
JPEG = encoded(RGB, "JPEG")
# Each kind: (relative path, bytes or a symlink target, expected status or "not uploaded", reason part)
LABELED, FAILED, SKIPPED, REPORTED = "labeled", "failed", "skipped", "not uploaded"


def exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    return encoded(Image.new("RGB", (80, 40), (10, 200, 10)), "JPEG", exif=exif.tobytes())


KINDS: dict[str, tuple[str, bytes | None, str, str]] = {
    "plain jpeg": ("plain.jpg", JPEG, LABELED, ""),
    "png": ("plain.png", encoded(RGB, "PNG"), LABELED, ""),
    "corrupt": ("corrupt.jpg", JPEG[:20] + os.urandom(400) + JPEG[-200:], FAILED, "image"),
    "truncated": ("truncated.png", encoded(RGB, "PNG")[:-60], FAILED, "image"),
    "zero-byte": ("empty.jpg", b"", FAILED, "0 bytes"),
    "text as image": ("notes.jpg", b"these are notes, not pixels\n" * 20, FAILED, "not an image"),
    "decompression bomb": ("bomb.png", png_bomb(60_000, 60_000), FAILED, "ImageTooLarge: decompression bomb"),
    "over 100 megapixels": ("huge.png", png_bomb(12_000, 12_000), FAILED, "pixels exceeds the limit"),
    "16-bit": ("deep.png", encoded(Image.new("I;16", (64, 48), 40000), "PNG"), LABELED, ""),
    "CMYK": ("cmyk.jpg", encoded(Image.new("CMYK", (64, 48), (0, 100, 200, 0)), "JPEG"), LABELED, ""),
    "palette": ("palette.png", encoded(RGB.convert("P"), "PNG"), LABELED, ""),
    "EXIF rotation": ("rotated.jpg", exif_rotated(), LABELED, ""),
    "1x1": ("dot.png", encoded(Image.new("RGB", (1, 1)), "PNG"), LABELED, ""),
    "uppercase extension": ("UPPER.JPG", JPEG, LABELED, ""),
    "hidden file": (".hidden.jpg", JPEG, LABELED, ""),
    "webp": ("other.webp", encoded(RGB, "WEBP"), SKIPPED, "not a frame"),
    "bmp": ("other.bmp", encoded(RGB, "BMP"), SKIPPED, "not a frame"),
    "tiff": ("other.tiff", encoded(RGB, "TIFF"), SKIPPED, "not a frame"),
    "unicode name": ("größe-ñ.jpg", JPEG, LABELED, ""),
    "non-Latin scripts": ("кадр-フレーム-帧-إطار.jpg", JPEG, LABELED, ""),
    "hash in name": ("cam#1.jpg", JPEG, LABELED, ""),
    "percent in name": ("100%.jpg", JPEG, LABELED, ""),
    "plus in name": ("a+b.jpg", JPEG, LABELED, ""),
    "spaces in name": ("front camera 01.jpg", JPEG, LABELED, ""),
    "nested folder": ("deep/er/frame.jpg", JPEG, LABELED, ""),
    "symlink to a frame": ("link.jpg", b"->plain.jpg", LABELED, ""),
    "dangling symlink": ("dangling.jpg", b"->nowhere.jpg", REPORTED, "dangling or looping symlink"),
    "symlink loop": ("loop.jpg", b"->loop.jpg", REPORTED, "dangling or looping symlink"),
    "directory loop": ("deep/up", b"->..", REPORTED, "symlink to a folder"),
}


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, dict[str, Any]], str, Any]:
    folder = tmp_path_factory.mktemp("bad-input")
    for path, body, _, _ in KINDS.values():
        target = folder / path
        target.parent.mkdir(parents=True, exist_ok=True)
        assert body is not None
        if body.startswith(b"->"):
            os.symlink(body[2:].decode(), target)
        else:
            target.write_bytes(body)
    out = tmp_path_factory.mktemp("run") / "out"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        run = run_local(
            folder,
            out,
            [LocalModel(name="nanodet-coco", factory=DecodingStandIn)],
            review="skip",
            overlays=False,
            timeout_s=300,
        )
    sys.stderr.write(err.getvalue())
    lines = [json.loads(x) for x in (out / "report-frames.jsonl").read_text().splitlines() if x.strip()]
    return {line["frame"]: line for line in lines}, err.getvalue(), run


@pytest.mark.parametrize("kind", list(KINDS))
def test_each_kind_of_bad_input_ends_as_expected(
    outcome: tuple[dict[str, dict[str, Any]], str, Any], kind: str
) -> None:
    frames, stderr, run = outcome
    path, _, expected, reason = KINDS[kind]
    assert run.status == "SUCCEEDED", run.error
    if expected == REPORTED:
        # never uploaded (a link that names no file, or a folder link not followed), said on stderr
        assert path not in frames
        said = [line for line in stderr.splitlines() if line.startswith("not labeled:") and path in line]
        assert said and reason in said[0], stderr
        return
    line = frames.get(path)
    assert line is not None, (path, sorted(frames))
    assert line["status"] == expected, line
    if expected != LABELED:
        assert reason in str(line.get("reason")), line


def test_every_file_is_accounted_for_and_the_counts_add_up(
    outcome: tuple[dict[str, dict[str, Any]], str, Any],
) -> None:
    frames, _, run = outcome
    reported = {p for p, _, e, _ in KINDS.values() if e != REPORTED}
    assert set(frames) == reported
    summary = run.summary
    expected = {s: sum(1 for _, _, e, _ in KINDS.values() if e == s) for s in (LABELED, FAILED, SKIPPED)}
    assert (summary["labeled"], summary["failed"], summary["skipped"]) == (
        expected[LABELED],
        expected[FAILED],
        expected[SKIPPED],
    )
    assert summary["lost"] == 0
