"""YOLO-seg prototype masks land in frame pixels, cropped to the box; RLE round trips."""

from __future__ import annotations

import numpy as np

from workflow.inference.letterbox import letterbox_geometry
from workflow.inference.masks import decode_rle, encode_rle, yolo_frame_mask
from workflow.inference.tiling import View


def test_rle_round_trip_keeps_the_mask_and_is_json_ready() -> None:
    # Given an irregular mask
    mask = np.zeros((375, 1242), bool)
    mask[100:200, 300:700] = True
    mask[150, 900] = True
    # When encoded and decoded
    rle = encode_rle(mask)
    # Then counts is a str, the size is [h, w] and the mask comes back unchanged
    assert isinstance(rle["counts"], str) and rle["size"] == [375, 1242]
    assert np.array_equal(decode_rle(rle), mask)


def _protos_with_blob(mh: int, mw: int, region: tuple[int, int, int, int]) -> np.ndarray:
    """One prototype that is strongly positive over ``region`` (x0, y0, x1, y1 in proto pixels)."""
    protos = np.full((1, mh, mw), -10.0, np.float32)
    x0, y0, x1, y1 = region
    protos[0, y0:y1, x0:x1] = 10.0
    return protos


def test_mask_is_unletterboxed_and_cropped_to_the_box() -> None:
    # Given a 1242x375 frame letterboxed into 640x640 (image band at rows 253..446) and 160x160
    # prototypes whose positive blob covers the left half of the image band
    g = letterbox_geometry(1242, 375, 640, 640)
    band_top, band_bottom = g.pad_y / 4, (g.pad_y + g.new_h) / 4
    protos = _protos_with_blob(160, 160, (0, int(band_top), 80, int(np.ceil(band_bottom))))
    box = np.array([500.0, 100.0, 700.0, 300.0], np.float32)  # in frame pixels; straddles x = 621
    # When the detection's frame mask is made
    mask = yolo_frame_mask(np.ones(1, np.float32), protos, box, g, View(0, 0, 1242, 375), 1242, 375)
    # Then it is frame-sized, lies inside the box, and covers the box's part left of x = 621
    assert mask.shape == (375, 1242)
    ys, xs = np.nonzero(mask)
    assert xs.min() >= 500 and xs.max() < 700 and ys.min() >= 100 and ys.max() < 300
    assert abs(int(xs.max()) - 620) <= 3
    assert mask[100:300, 500:615].all()


def test_mask_of_a_flipped_tile_is_mirrored_and_shifted_back() -> None:
    # Given a tile view [400, 816) that was flipped, and a blob over the tile image's left quarter
    view = View(400, 0, 416, 375, flipped=True, is_tile=True)
    g = letterbox_geometry(416, 375, 416, 416)
    protos = _protos_with_blob(104, 104, (0, 0, 26, 104))
    box_in_view = np.array([0.0, 50.0, 200.0, 150.0], np.float32)
    # When the frame mask is made
    mask = yolo_frame_mask(np.ones(1, np.float32), protos, box_in_view, g, view, 1242, 375)
    # Then the blob (view x 0..104) lands at frame x 816-104..816, the tile's right end
    xs = np.nonzero(mask)[1]
    assert abs(int(xs.min()) - (816 - 104)) <= 2 and int(xs.max()) == 815
