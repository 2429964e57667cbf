"""Overlay pictures and the ``autolabel detect`` command that writes them."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workflow.cli import detect
from workflow.domain.detections import Detections, Provenance
from workflow.domain.parsers import from_local
from workflow.inference.masks import encode_rle
from workflow.inference.overlay import color_of, draw_overlay, place_labels


def _detections(with_mask: bool) -> Detections:
    mask = np.zeros((60, 100), bool)
    mask[20:40, 30:60] = True
    return Detections(
        boxes=np.array([[30, 20, 60, 40]], np.float32),
        scores=np.array([0.87], np.float32),
        class_ids=np.array([2]),
        class_names=("car",),
        image_width=100,
        image_height=60,
        provenance=Provenance("test"),
        masks=(encode_rle(mask),) if with_mask else None,
    )


def test_overlay_tints_the_mask_and_outlines_the_box() -> None:
    # Given a grey 100x60 frame and one car with its mask
    image = np.full((60, 100, 3), 128, np.uint8)
    # When the overlay is drawn
    picture = np.asarray(draw_overlay(image, _detections(with_mask=True)))
    # Then inside the mask the grey is tinted toward the class colour, far outside it is untouched
    tinted = picture[30, 45].astype(int)
    assert np.abs(tinted - 128).max() > 20
    assert np.sign(tinted - 128).tolist() == np.sign(np.asarray(color_of("car", 2)) - 128).tolist()
    assert (picture[55, 5] == 128).all()
    # and the box outline has the class colour, the input frame is not modified
    assert tuple(picture[30, 30]) == color_of("car", 2) == (0x2A, 0xCF, 0x59)  # the taxonomy's car
    assert (image == 128).all()


def test_overlay_refuses_detections_of_another_frame_size() -> None:
    # Given detections for a 100x60 frame, When drawn over a 50x50 image, Then a clear error
    with pytest.raises(ValueError, match="100x60"):
        draw_overlay(np.zeros((50, 50, 3), np.uint8), _detections(with_mask=False))


def test_labels_of_crowded_boxes_never_overlap_nor_leave_the_image() -> None:
    # Given 40 boxes piled up in a 320x120 frame, some at its edges
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    xy = rng.uniform([-20, -20], [300, 110], (40, 2))
    boxes = [[x, y, x + 40, y + 25] for x, y in xy.tolist()]
    draw = ImageDraw.Draw(Image.new("RGB", (320, 120)))
    texts = [f"traffic light {s:.2f}" for s in rng.uniform(0, 1, 40)]
    from workflow.inference.overlay import _font

    # When their labels are placed
    spots = place_labels(draw, texts, boxes, rng.uniform(0, 1, 40).tolist(), (320, 120), _font(11))
    placed = [s for s in spots if s is not None]
    # Then every label is inside the frame, no two overlap, and the crowd still gets several labels
    assert len(placed) >= 6
    assert all(x1 >= 0 and y1 >= 0 and x2 <= 320 and y2 <= 120 for x1, y1, x2, y2 in placed)
    for i, a in enumerate(placed):
        for b in placed[i + 1 :]:
            assert not (a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]), (a, b)


def test_the_legend_band_names_the_classes_in_their_colours() -> None:
    image = np.full((60, 100, 3), 128, np.uint8)
    picture = np.asarray(draw_overlay(image, _detections(with_mask=False)))
    # Then a band is added under the frame, and it holds the car colour (the swatch)
    assert picture.shape[0] > 60 and picture.shape[1] == 100
    band = picture[60:].reshape(-1, 3)
    assert (band == np.array(color_of("car", 2))).all(axis=1).any()
    plain = np.asarray(draw_overlay(image, _detections(with_mask=False), legend=False))
    assert plain.shape == (60, 100, 3)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    detect.add_arguments(parser)
    return parser.parse_args(argv)


def test_detect_command_writes_overlay_and_json(
    shared_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a real KITTI frame, a corrupt file and the NanoDet reference model
    frame = shared_dir / "data/kitti_object/image_2/000008.png"
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    model = shared_dir / "models/nanodet-coco/nanodet-tf2onnx-reference.onnx"
    out = tmp_path / "out"
    # When `autolabel detect` runs on both with flip TTA
    args = _parse([str(frame), str(corrupt), "--model", str(model), "--out", str(out), "--flip-tta"])
    code = detect.run(args)
    # Then the frame gets an overlay (the frame, a legend band under it) and a JSON the parser reads
    width, height = Image.open(out / "000008.overlay.png").size
    assert width == 1242 and 375 < height < 375 + 120
    det = from_local(json.loads((out / "000008.json").read_text()))
    assert det.frame == str(frame) and det.provenance.settings["flip_tta"] is True
    assert "car" in det.class_names
    # and each image gets a line, the corrupt one marked FAILED, and the exit code says so
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith(f"{frame}:") and "car" in line for line in lines)
    assert any(line.startswith(f"{corrupt}: FAILED") for line in lines)
    assert code == 1


def test_detect_command_rejects_bad_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a score threshold outside [0, 1], When detect runs, Then it stops with code 2 and says why
    args = _parse(
        [str(tmp_path / "x.png"), "--model", "nanodet-coco", "--out", str(tmp_path), "--score-threshold", "3"]
    )
    assert detect.run(args) == 2
    assert "score_threshold" in capsys.readouterr().err
