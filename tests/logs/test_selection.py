"""Frame selection: every N-th, minimum interval, minimum distance, perceptual-hash near-duplicates."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from log_helpers import FORMATS, LogFactory
from PIL import Image

from workflow.cli.main import main
from workflow.domain.errors import ConfigurationError
from workflow.domain.lineage import FrameLineage, read_lineage
from workflow.domain.profile import default_profile, parse_profile
from workflow.domain.selection import FrameSelection, LogSettings
from workflow.logs.extract import extract_logs
from workflow.logs.hashing import dhash, distance, phash
from workflow.logs.sources import discover

NO_RULES = FrameSelection(dedupe={"enabled": False})


def _extract(
    path: Path, out: Path, selection: FrameSelection, **settings: object
) -> tuple[dict, list[FrameLineage]]:  # type: ignore[type-arg]
    report = extract_logs(discover([path]), out, LogSettings(selection=selection, **settings))  # type: ignore[arg-type]
    records = sorted(read_lineage(out / "frames.jsonl").values(), key=lambda r: r.index)
    return report["logs"][0]["selection"], records


def _noisy_copy(jpeg: bytes, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    px = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"), np.float32)
    buf = io.BytesIO()
    Image.fromarray(np.clip(px + rng.normal(0, 4, px.shape), 0, 255).astype(np.uint8)).save(
        buf, "JPEG", quality=75
    )
    return buf.getvalue()


def test_phash_separates_re_encodes_from_the_next_keyframe(nuscenes_frames: list[bytes]) -> None:
    # Given the real keyframes and noisy JPEG re-encodes of ten of them
    hashes = [phash(f) for f in nuscenes_frames]
    # When hashes are compared
    noisy = [distance(hashes[i], phash(_noisy_copy(nuscenes_frames[i], i))) for i in range(0, 40, 4)]
    consecutive = [distance(a, b) for a, b in zip(hashes, hashes[1:], strict=False)]
    # Then a re-encode stays within 2 bits while distinct consecutive keyframes are at least 4 apart
    assert max(noisy) <= 2 < 4 <= min(consecutive), (noisy, consecutive)


def test_dhash_is_offered_but_confuses_some_distinct_keyframes(nuscenes_frames: list[bytes]) -> None:
    # Given the real keyframes, when difference hashes of consecutive ones are compared
    consecutive = [
        distance(dhash(a), dhash(b)) for a, b in zip(nuscenes_frames, nuscenes_frames[1:], strict=False)
    ]
    # Then some distinct keyframes come within 2 bits: the reason phash is the default method
    assert min(consecutive) <= 2 and max(consecutive) >= 8


@pytest.mark.parametrize("fmt", FORMATS)
def test_default_selection_drops_exactly_the_stopped_cars_repeats(
    drive_log: LogFactory, fmt: str, tmp_path: Path
) -> None:
    # Given a log of 40 real frames and a 20-frame stop at a light (the same view, noisy)
    (path,) = drive_log(fmt)  # type: ignore[arg-type]
    # When it is extracted with the default selection (phash near-duplicates within 2 bits)
    counts, records = _extract(path, tmp_path, FrameSelection())
    # Then the 20 repeats are dropped as near-duplicates and the 40 real frames are kept
    stop = range(drive_log.spec.stop_after, drive_log.spec.stop_after + drive_log.spec.stop_frames)
    assert counts["dropped"]["near_duplicate"] == 20 and counts["kept"] == 40
    assert not {r.index for r in records} & set(stop)


@pytest.mark.parametrize("fmt", FORMATS)
def test_raw_rgb8_logs_hashed_from_a_decimated_view_drop_exactly_the_same_repeats(
    drive_log: LogFactory, fmt: str, tmp_path: Path
) -> None:
    # Given the drive as raw rgb8 frames (encoded straight from the message, hashed from every k-th pixel)
    (path,) = drive_log(fmt, "raw")  # type: ignore[arg-type]
    # When it is extracted with the default selection
    counts, records = _extract(path, tmp_path, FrameSelection())
    # Then the stop's 20 repeats are dropped and the 40 real frames kept, as for its JPEG twin
    stop = range(drive_log.spec.stop_after, drive_log.spec.stop_after + drive_log.spec.stop_frames)
    assert counts["dropped"]["near_duplicate"] == 20 and counts["kept"] == 40
    assert not {r.index for r in records} & set(stop)


def test_raw_bayer_log_selects_the_same_frames_as_its_jpeg_twin(
    drive_log: LogFactory, tmp_path: Path
) -> None:
    # Given the same drive recorded as raw Bayer frames (as the Ford cameras record) in a bag
    (path,) = drive_log("bag", "raw", "bayer_rggb8")
    # When it is extracted with the default selection
    counts, records = _extract(path, tmp_path, FrameSelection())
    # Then the frames are demosaiced to JPEG and the stop's repeats dropped as well
    assert counts["kept"] == 40 and counts["dropped"]["near_duplicate"] == 20
    assert {r.encoding for r in records} == {"bayer_rggb8"} and records[0].frame.endswith(".jpg")


def test_min_distance_keeps_frames_metres_apart_and_none_while_stopped(
    drive_log: LogFactory, tmp_path: Path
) -> None:
    # Given the drive at 8 m/s (0.8 m a frame) with its stop
    (path,) = drive_log("mcap")
    # When frames are kept every 4 m travelled
    counts, records = _extract(path, tmp_path, NO_RULES.model_copy(update={"min_distance_m": 4.0}))
    # Then kept frames lie at least 4 m apart along the track, none from the stop, the rest counted
    travelled = [r.distance_m for r in records]
    assert all(b - a >= 4.0 - 1e-6 for a, b in zip(travelled, travelled[1:], strict=False))  # type: ignore[operator]
    assert counts["kept"] == len(records) == 8  # 40 moving frames x 0.8 m = 32 m: 0, 4, ..., 28 m
    assert counts["dropped"]["min_distance"] == 60 - 8
    stop = range(drive_log.spec.stop_after + 1, drive_log.spec.stop_after + drive_log.spec.stop_frames)
    assert not {r.index for r in records} & set(stop)


def test_every_nth_and_min_interval(drive_log: LogFactory, tmp_path: Path) -> None:
    # Given a 10 Hz camera topic
    (path,) = drive_log("db3")
    # When every 3rd frame is kept, then the 1st, 4th, 7th... are
    counts, records = _extract(path, tmp_path / "a", NO_RULES.model_copy(update={"every_nth": 3}))
    assert [r.index for r in records] == list(range(0, 60, 3)) and counts["dropped"]["every_nth"] == 40
    # When kept frames must be 0.25 s apart, then every 3rd frame (0.3 s) is kept
    counts, records = _extract(path, tmp_path / "b", NO_RULES.model_copy(update={"min_interval_s": 0.25}))
    assert [r.index for r in records] == list(range(0, 60, 3)) and counts["dropped"]["min_interval"] == 40


def test_rules_combine_deterministically_and_every_drop_is_counted(
    drive_log: LogFactory, tmp_path: Path
) -> None:
    # Given all four rules at once
    (path,) = drive_log("bag")
    rules = FrameSelection(every_nth=2, min_interval_s=0.15, min_distance_m=1.0)
    # When the log is extracted twice
    first, records_a = _extract(path, tmp_path / "a", rules)
    second, records_b = _extract(path, tmp_path / "b", rules)
    # Then both runs keep the same frames, and seen = kept + every rule's drops
    assert [r.frame for r in records_a] == [r.frame for r in records_b] and first == second
    assert first["seen"] == 60 == first["kept"] + sum(first["dropped"].values())
    assert first["dropped"]["every_nth"] == 30 and first["dropped"]["min_distance"] > 0


def test_frames_without_a_gps_fix_within_the_skew_follow_without_gps(
    drive_log: LogFactory, tmp_path: Path
) -> None:
    # Given GPS at 5 Hz and camera at 10 Hz, matched with no skew: odd frames have no fix
    (path,) = drive_log("mcap")
    rules = NO_RULES.model_copy(update={"min_distance_m": 0.1, "without_gps": "drop", "gps_min_step_m": 0.0})
    # When frames without a fix are dropped
    counts, records = _extract(path, tmp_path, rules, max_skew_s=0.0)
    # Then they are counted as no_gps, and kept frames all carry their fix
    assert counts["dropped"]["no_gps"] == 30
    assert all(r.gps is not None and r.gps.skew_s == 0.0 for r in records)


def test_profile_carries_the_selection_and_flags_override_it(drive_log: LogFactory, tmp_path: Path) -> None:
    # Given a profile whose logs section keeps a frame every 4 m
    profile = tmp_path / "profile.json"
    data = default_profile().to_dict()
    data["logs"] = {"selection": {"min_distance_m": 4.0, "dedupe": {"enabled": False}}}
    profile.write_text(json.dumps(data))
    (path,) = drive_log("mcap")
    # When `autolabel logs extract --profile` runs, with and without --every-nth on top
    assert main(["logs", "extract", str(path), "--out", str(tmp_path / "a"), "--profile", str(profile)]) == 0
    args = ["--profile", str(profile), "--every-nth", "2"]
    assert main(["logs", "extract", str(path), "--out", str(tmp_path / "b"), *args]) == 0
    # Then the profile's rule applies, and the flag adds to it
    a = json.loads((tmp_path / "a" / "extraction.json").read_text())["logs"][0]["selection"]
    b = json.loads((tmp_path / "b" / "extraction.json").read_text())["logs"][0]["selection"]
    assert a["kept"] == 8 and a["dropped"]["min_distance"] == 52
    assert b["dropped"]["every_nth"] == 30 and b["rules"]["min_distance_m"] == 4.0


def test_a_bad_selection_in_a_profile_is_refused_naming_the_field() -> None:
    # Given a profile with a negative distance, when it is parsed, then the field is named
    data = default_profile().to_dict()
    data["logs"] = {"selection": {"min_distance_m": -1}}
    with pytest.raises(ConfigurationError, match=r"logs\.selection\.min_distance_m"):
        parse_profile(json.dumps(data))
