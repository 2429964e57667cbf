"""Large frames decoded at reduced size where the model input allows, under a pixel budget."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from workflow.inference.images import PixelBudget, decode_image, decode_reduced
from workflow.local.endpoint import Predictor


def _encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _gradient(width: int, height: int) -> Image.Image:
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    pixels = np.broadcast_to(np.concatenate([x + 0 * y, y + 0 * x, (x + y) / 2], axis=2), (height, width, 3))
    return Image.fromarray(pixels.astype(np.uint8))


def test_a_jpeg_is_decoded_at_the_smallest_dct_scale_that_still_covers_the_fit() -> None:
    data = _encode(_gradient(3200, 1800), "JPEG")
    image, full = decode_reduced(data, "big.jpg", lambda w, h: (740, 416))
    # 1/4 scale (800x450) covers 740x416; 1/8 (400x225) would not
    assert full == (3200, 1800) and image.shape == (450, 800, 3)
    whole = decode_image(data, "big.jpg")
    small = np.asarray(Image.fromarray(whole).resize((800, 450), Image.Resampling.BOX), np.float32)
    assert np.abs(image.astype(np.float32) - small).mean() < 3  # the same picture, smaller


def test_another_format_is_reduced_by_a_whole_factor_after_loading() -> None:
    data = _encode(_gradient(2000, 1000), "PNG")
    image, full = decode_reduced(data, "big.png", lambda w, h: (500, 250))
    assert full == (2000, 1000) and image.shape == (250, 500, 3)
    palette, _ = decode_reduced(
        _encode(_gradient(2000, 1000).convert("P"), "PNG"), "p.png", lambda w, h: (500, 250)
    )
    assert palette.shape == (250, 500, 3)


def test_exif_rotation_is_applied_to_the_reduced_frame_and_the_full_size_is_upright() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 1600x800, shown 800x1600
    data = _encode(_gradient(1600, 800), "JPEG", exif=exif)
    seen: list[tuple[int, int]] = []

    def fit(w: int, h: int) -> tuple[int, int]:
        seen.append((w, h))
        return (200, 400)

    image, full = decode_reduced(data, "phone.jpg", fit)
    assert seen == [(800, 1600)] and full == (800, 1600)
    assert image.shape == (400, 200, 3)  # upright, a quarter of each side
    upright = decode_image(data, "phone.jpg")
    assert np.abs(image[0, 0].astype(int) - upright[0, 0].astype(int)).max() < 30  # the same corner


def test_no_fit_or_a_fit_over_the_frame_decodes_it_whole() -> None:
    data = _encode(_gradient(640, 480), "JPEG")
    assert decode_reduced(data, "a.jpg", None)[0].shape == (480, 640, 3)
    assert decode_reduced(data, "a.jpg", lambda w, h: (416, 416))[0].shape == (480, 640, 3)


def test_the_pixel_budget_holds_decodes_back_until_pixels_are_free() -> None:
    budget = PixelBudget(100)
    first_in, second_in, release = threading.Event(), threading.Event(), threading.Event()

    def first() -> None:
        with budget.hold(80):
            first_in.set()
            release.wait(10)

    def second() -> None:
        first_in.wait(10)
        with budget.hold(50):
            second_in.set()

    a, b = threading.Thread(target=first), threading.Thread(target=second)
    a.start()
    b.start()
    first_in.wait(10)
    assert not second_in.wait(0.2)  # 80 + 50 > 100: the second waits
    release.set()
    a.join(10)
    b.join(10)
    assert second_in.is_set() and budget.held == 0 and budget.peak <= 100
    with budget.hold(10**9):  # a frame over the whole budget still runs (alone)
        assert budget.held == 100


def test_boxes_of_a_reduced_decode_are_in_the_full_frames_pixels(
    shared_dir: Path, detector_factory: Callable[[], Predictor]
) -> None:
    detector = detector_factory()
    road = sorted((shared_dir / "data" / "nuscenes_cam_front_sequence" / "frames").glob("*.jpg"))[0]
    with Image.open(road) as img:
        data = _encode(img.convert("RGB").resize((3200, 1800), Image.Resampling.BICUBIC), "JPEG", quality=92)
    whole = detector.predict(decode_image(data, "big.jpg"), "big.jpg")  # type: ignore[attr-defined]
    reduced = detector.predict_bytes(data, "big.jpg")
    assert (reduced.image_width, reduced.image_height) == (3200, 1800)
    assert len(whole.boxes) > 3

    def iou(a: np.ndarray, b: np.ndarray) -> float:
        ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        inter = ix * iy
        return float(inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter))

    strong = [b for b, s in zip(whole.boxes, whole.scores, strict=True) if s > 0.5]
    assert strong and all(max(iou(b, r) for r in reduced.boxes) > 0.8 for b in strong)


def test_a_dark_16_bit_frame_reduced_keeps_its_16_bit_scale() -> None:
    data = _encode(Image.new("I;16", (2000, 1000), 200), "PNG")  # 200 of 65535: nearly black
    image, _ = decode_reduced(data, "deep.png", lambda w, h: (500, 250))
    assert image.shape == (250, 500, 3) and int(image.max()) == round(200 * 255 / 65535)
    assert int(decode_image(data, "deep.png").max()) == int(image.max())
