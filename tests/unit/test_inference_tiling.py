"""Views of a frame (whole, tiles, mirrored) and the mapping of their boxes to frame pixels."""

from __future__ import annotations

import numpy as np

from workflow.inference.tiling import View, plan_views, tile_origins


def test_tiles_cover_the_frame_with_overlap() -> None:
    # Given a KITTI-wide frame and 416-pixel tiles with 25 % overlap
    origins = tile_origins(1242, 416, 0.25)
    # Then the tiles start at 0, end at the frame edge, and neighbours share >= 104 pixels
    assert origins[0] == 0 and origins[-1] + 416 == 1242
    assert all(b - a <= 416 - 104 for a, b in zip(origins, origins[1:], strict=False))


def test_plan_views_whole_frame_tiles_and_mirrors() -> None:
    # Given tiling and flipping on a 1242x375 frame
    views = plan_views(1242, 375, tile_size=416, overlap=0.25, flip=True)
    # Then the whole frame comes first, tiles are 416x375, and every view has its mirror
    assert views[0] == View(0, 0, 1242, 375)
    tiles = [v for v in views if v.is_tile and not v.flipped]
    assert len(tiles) == 4 and all((v.w, v.h) == (416, 375) for v in tiles)
    assert len(views) == 2 * (1 + len(tiles))


def test_frame_smaller_than_a_tile_has_no_tiles() -> None:
    # Given a 320x240 dash-cam frame and 416-pixel tiles, Then only the whole frame is a view
    assert plan_views(320, 240, tile_size=416) == [View(0, 0, 320, 240)]


def test_tile_boxes_map_to_frame_pixels() -> None:
    # Given a tile at (551, 0) and a box found in it
    view = View(551, 0, 416, 375, is_tile=True)
    # When mapped, Then the box moves by the tile origin
    out = view.to_frame(np.array([[46.59, 176.18, 169.9, 261.14]], np.float32))
    np.testing.assert_allclose(out, [[597.59, 176.18, 720.9, 261.14]], atol=1e-3)


def test_flipped_view_boxes_are_unflipped() -> None:
    # Given a mirrored whole-frame view of width 1242 and a box found in the mirror image
    view = View(0, 0, 1242, 375, flipped=True)
    mirrored = np.array([[1242 - 720.9, 176.18, 1242 - 597.59, 261.14]], np.float32)
    # When mapped, Then it is the box in the original frame
    np.testing.assert_allclose(view.to_frame(mirrored), [[597.59, 176.18, 720.9, 261.14]], atol=1e-3)


def test_crop_of_a_flipped_tile_is_the_mirrored_region() -> None:
    # Given a frame with distinct columns
    frame = np.tile(np.arange(10, dtype=np.uint8)[None, :, None], (4, 1, 3))
    # When a flipped tile [3, 7) is cropped, Then it holds columns 6, 5, 4, 3
    assert View(3, 0, 4, 4, flipped=True).crop(frame)[0, :, 0].tolist() == [6, 5, 4, 3]


def test_boxes_cut_by_an_inner_tile_edge_are_flagged() -> None:
    # Given the middle tile of a wide frame
    view = View(400, 0, 416, 375, is_tile=True)
    boxes = np.array(
        [
            [400.0, 100.0, 500.0, 200.0],  # touches the inner left edge: cut
            [450.0, 100.0, 816.0, 200.0],  # touches the inner right edge: cut
            [450.0, 0.0, 600.0, 375.0],  # touches top and bottom, which are frame edges: whole
        ],
        np.float32,
    )
    # Then only the boxes at inner edges are flagged, and the whole frame never flags any
    assert view.cut_by_edge(boxes, 1242, 375).tolist() == [True, True, False]
    assert not View(0, 0, 1242, 375).cut_by_edge(boxes, 1242, 375).any()


def test_band_tiles_cover_only_the_horizon_band() -> None:
    # Given a 1600x900 road frame, 320 px tiles and the band 0.3..0.75 of the height (270..675)
    views = plan_views(1600, 900, tile_size=320, overlap=0.25, band=(0.3, 0.75))
    tiles = [v for v in views if v.is_tile]
    rows = sorted({v.y0 for v in tiles})
    # Then two rows of tiles span the band exactly, and every column of the frame is covered
    assert rows == [270, 355] and all(v.h == 320 for v in tiles)
    assert min(v.x0 for v in tiles) == 0 and max(v.x0 + v.w for v in tiles) == 1600
    assert len(tiles) == 2 * 7


def test_a_band_lower_than_a_tile_gets_one_centred_row_inside_the_frame() -> None:
    # Given a KITTI frame (375 px high) whose band (112..281) is lower than a 320 px tile
    views = plan_views(1242, 375, tile_size=320, band=(0.3, 0.75))
    # Then one row of tiles, centred on the band as far as the frame allows
    assert sorted({v.y0 for v in views if v.is_tile}) == [36]
    assert plan_views(1242, 300, tile_size=320, band=(0.3, 0.75))[1].y0 == 0
