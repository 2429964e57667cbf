"""Decoding untrusted image bytes: every bad input becomes a typed error naming the frame."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workflow.domain.errors import FrameError, ImageTooLarge, InvalidImage
from workflow.inference.images import decode_image


def _encode(image: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def test_real_kitti_png_decodes_to_rgb_frame_size(shared_dir: Path) -> None:
    # Given the bytes of a real KITTI frame (1242x375 PNG)
    data = (shared_dir / "data/kitti_object/image_2/000008.png").read_bytes()
    # When it is decoded
    image = decode_image(data, "kitti/000008.png")
    # Then it is an (H, W, 3) uint8 RGB array of the frame's size
    assert image.shape == (375, 1242, 3)
    assert image.dtype == np.uint8


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty object"),
        (b"%PDF-1.7 this is not an image at all", "not an image: cannot identify image file"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "not an image"),
    ],
    ids=["empty", "pdf", "png-signature-only"],
)
def test_non_images_raise_invalid_image(data: bytes, reason: str) -> None:
    # Given bytes that are no image
    # When they are decoded, Then InvalidImage names the frame and the reason
    with pytest.raises(InvalidImage) as info:
        decode_image(data, "s3://bucket/frames/x.jpg")
    assert info.value.frame == "s3://bucket/frames/x.jpg"
    assert reason in info.value.reason


def test_truncated_jpeg_raises_invalid_image() -> None:
    # Given a JPEG cut in half (an interrupted upload)
    rng = np.random.default_rng(0)
    data = _encode(Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)), "JPEG")
    # When it is decoded
    with pytest.raises(InvalidImage) as info:
        decode_image(data[: len(data) // 2], "cut.jpg")
    # Then the reason says it is truncated
    assert "truncated" in info.value.reason


def test_pixel_limit_is_checked_from_the_header() -> None:
    # Given a small PNG and a limit below its pixel count
    data = _encode(Image.new("RGB", (200, 100)))
    # When it is decoded with that limit, Then ImageTooLarge gives the size and the limit
    with pytest.raises(ImageTooLarge) as info:
        decode_image(data, "big.png", max_pixels=19_999)
    assert "200x100" in info.value.reason and "19999" in info.value.reason
    assert isinstance(info.value, FrameError)


def test_byte_limit_is_checked_before_opening() -> None:
    # Given more bytes than allowed
    # When decoded, Then ImageTooLarge says so without looking at the content
    with pytest.raises(ImageTooLarge, match="bytes"):
        decode_image(b"x" * 101, "huge.bin", max_bytes=100)


def test_decompression_bomb_is_our_error_not_pillows() -> None:
    # Given a tiny PNG whose header claims far more pixels than Pillow's own bomb limit
    data = _encode(Image.new("1", (20_000, 20_000)))
    # When decoded with a limit above Pillow's, Then it is still a clean ImageTooLarge
    with pytest.raises(ImageTooLarge):
        decode_image(data, "bomb.png", max_pixels=10**10)
    with pytest.raises(ImageTooLarge, match="400000000 pixels"):
        decode_image(data, "bomb.png")


def test_exif_orientation_is_applied() -> None:
    # Given a 40x20 JPEG marked "rotate 90" in EXIF (orientation 6)
    exif = Image.Exif()
    exif[0x0112] = 6
    data = _encode(Image.new("RGB", (40, 20), (200, 10, 10)), "JPEG", exif=exif)
    # When decoded, Then the frame is upright: 20 wide, 40 high
    assert decode_image(data, "phone.jpg").shape == (40, 20, 3)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (Image.new("L", (4, 3), 77), (77, 77, 77)),
        (Image.new("RGBA", (4, 3), (10, 20, 30, 0)), (10, 20, 30)),
        (Image.new("LA", (4, 3), (90, 255)), (90, 90, 90)),
        (Image.new("CMYK", (4, 3), (0, 0, 0, 0)), (255, 255, 255)),
        (Image.new("RGB", (4, 3), (1, 2, 3)).quantize(), (1, 2, 3)),
    ],
    ids=["gray", "rgba", "gray-alpha", "cmyk", "palette"],
)
def test_modes_convert_to_rgb(image: Image.Image, expected: tuple[int, int, int]) -> None:
    # Given an image in another mode, When decoded, Then it is 8-bit RGB with the same colour
    fmt = "JPEG" if image.mode == "CMYK" else "PNG"
    decoded = decode_image(_encode(image, fmt), f"mode-{image.mode}")
    assert decoded.shape == (3, 4, 3)
    assert np.abs(decoded[1, 1].astype(int) - np.asarray(expected)).max() <= 2


def test_16_bit_png_is_scaled_not_clipped() -> None:
    # Given a 16-bit grayscale PNG with values 0, 32768 and 65535
    wide = np.array([[0, 32768, 65535]], dtype=np.uint16)
    data = _encode(Image.fromarray(wide))
    # When decoded
    decoded = decode_image(data, "depth16.png")
    # Then the values are scaled to 0..255 (not clipped at 255)
    assert decoded[0, :, 0].tolist() == [0, 128, 255]


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF", "BMP", "TIFF"])
def test_damaged_bytes_give_an_image_or_invalid_image_never_another_error(fmt: str) -> None:
    # Given an encoded image damaged in many places (flipped bytes, cut tails)
    rng = np.random.default_rng(7)
    data = _encode(Image.fromarray(rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)), fmt)
    variants = [data[:cut] for cut in range(8, len(data), max(1, len(data) // 25))]
    for position in rng.integers(0, len(data), 40):
        damaged = bytearray(data)
        damaged[position] ^= 0xFF
        variants.append(bytes(damaged))
    # When each is decoded, Then it is an RGB array or an InvalidImage, nothing else
    outcomes = set()
    for variant in variants:
        try:
            outcomes.add(decode_image(variant, "damaged").shape[2])
        except InvalidImage:
            outcomes.add("invalid")
    assert outcomes <= {3, "invalid"} and "invalid" in outcomes
