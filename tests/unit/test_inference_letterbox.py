"""Letterbox and squash geometry: model-input boxes map back to ORIGINAL frame pixels exactly."""

from __future__ import annotations

import numpy as np
import pytest

from workflow.inference.letterbox import letterbox_geometry, place, squash_geometry


def test_wide_kitti_frame_is_letterboxed_with_centred_padding() -> None:
    # Given a KITTI-sized frame (1242x375) and a 416x416 model input
    # When the letterbox geometry is computed
    g = letterbox_geometry(1242, 375, 416, 416)
    # Then the aspect is kept (up to rounding to whole pixels) and the pad is split top/bottom
    assert (g.new_w, g.new_h) == (416, 126)
    assert abs(375 * g.scale_x - g.new_h) <= 0.5
    assert g.pad_x == 0 and g.pad_y == (416 - 126) // 2


@pytest.mark.parametrize("fit", [letterbox_geometry, squash_geometry], ids=["letterbox", "squash"])
def test_boxes_round_trip_to_source_pixels(fit) -> None:  # type: ignore[no-untyped-def]
    # Given source boxes and their position in the model input
    g = fit(1242, 375, 416, 416)
    source = np.array([[0.0, 192.37, 402.31, 374.0], [741.18, 168.83, 792.25, 208.43]], np.float32)
    in_input = np.stack(
        [
            source[:, 0] * g.scale_x + g.pad_x,
            source[:, 1] * g.scale_y + g.pad_y,
            source[:, 2] * g.scale_x + g.pad_x,
            source[:, 3] * g.scale_y + g.pad_y,
        ],
        axis=1,
    )
    # When they are mapped back
    back = g.to_source(in_input)
    # Then they are the source boxes again
    np.testing.assert_allclose(back, source, atol=1e-3)


def test_boxes_in_the_padding_are_clipped_to_the_frame() -> None:
    # Given a model box reaching into the letterbox padding above and below the image
    g = letterbox_geometry(1242, 375, 416, 416)
    # When mapped back, Then it is clipped to the frame
    back = g.to_source(np.array([[-10.0, 0.0, 500.0, 416.0]], np.float32))
    np.testing.assert_allclose(back, [[0.0, 0.0, 1242.0, 375.0]])


def test_place_pads_with_the_model_pad_value() -> None:
    # Given a white 300x100 image and a 128x128 input
    image = np.full((100, 300, 3), 255, np.uint8)
    g = letterbox_geometry(300, 100, 128, 128)
    # When it is placed with pad value 114
    canvas = place(image, g, 114)
    # Then the image band is white and the rest is the pad value
    assert canvas.shape == (128, 128, 3)
    assert (canvas[g.pad_y : g.pad_y + g.new_h] == 255).all()
    assert (canvas[: g.pad_y] == 114).all() and (canvas[g.pad_y + g.new_h :] == 114).all()


def test_squash_fills_the_whole_input() -> None:
    # Given a wide image, When squashed, Then no padding remains and the scales differ
    g = squash_geometry(1242, 375, 416, 416)
    canvas = place(np.zeros((375, 1242, 3), np.uint8), g, 114)
    assert (canvas == 0).all()
    assert g.scale_x != pytest.approx(g.scale_y)
