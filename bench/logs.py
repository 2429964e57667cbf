"""`make bench` (drive logs): frames extracted per second per core, and what selection keeps.

The logs are written here, with the rosbags writers, from the 40-frame nuScenes front-camera
sequence in ../shared (800x450 JPEG) as a 10 Hz camera topic with a 20-frame stop at a light,
a 5 Hz GPS track and a 50 Hz IMU (``workflow.logs.sample``): 60 camera frames a log, in each
format (.bag, .db3, .mcap) and image type (CompressedImage, raw rgb8 Image). Extraction is one
thread, so frames per CPU-second (``time.process_time``) is the rate per core; each case runs
``REPEATS`` times and the best is kept. The machine's load average is recorded before and after:
CPU time per frame grows on a loaded machine (shared caches, hyper-threads), so read the figure
with it. Results: a table on stdout and bench-out/logs.json.

    python -m bench.logs
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED_FRAMES = ROOT / ".." / "shared" / "data" / "nuscenes_cam_front_sequence" / "frames"
REPEATS = 3
LAPS = 10  # throughput on the drive looped 10 times (600 frames): a log's fixed opening cost amortised
GOAL_PER_CORE = 300.0
SOURCE = (
    "nuScenes CAM_FRONT, 40 keyframes (800x450 JPEG) as a 10 Hz topic with a 20-frame stop; "
    "GPS 5 Hz, IMU 50 Hz; raw = rgb8 Image encoded to JPEG q95 from the message buffer (simplejpeg)"
)
SELECTIONS: dict[str, dict[str, Any]] = {
    "none": {"dedupe": {"enabled": False}},
    "default (phash <= 2 bits)": {},
    "every 5 m + phash": {"min_distance_m": 5.0},
    "every 2nd + 0.3 s + phash": {"every_nth": 2, "min_interval_s": 0.3},
}


def _extract_case(path: Path, selection: dict[str, Any], work: Path) -> dict[str, Any]:
    from workflow.domain.selection import FrameSelection, LogSettings
    from workflow.logs.extract import extract_log
    from workflow.logs.sources import discover

    settings = LogSettings(selection=FrameSelection.model_validate(selection))
    source = discover([path])[0]
    best: dict[str, Any] | None = None
    for _ in range(REPEATS):
        shutil.rmtree(work, ignore_errors=True)
        wall, cpu = time.perf_counter(), time.process_time()
        result = extract_log(source, work, settings)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        seen = result.selection["seen"]
        row = {
            "frames_seen": seen,
            "frames_kept": len(result.records),
            "seconds": round(wall, 4),
            "cpu_seconds": round(cpu, 4),
            "frames_per_s_per_core": round(seen / cpu, 1) if cpu else None,
            "dropped": {k: v for k, v in result.selection["dropped"].items() if v},
            "reduction": result.selection["reduction"],
        }
        if best is None or row["cpu_seconds"] < best["cpu_seconds"]:
            best = row
    assert best is not None
    return best


def _print(kind: str, row: dict[str, Any]) -> None:
    print(
        f"logs {kind:<10} {row['format']:<5} {row['image']:<10} {row['selection']:<26} "
        f"{row['frames_seen']:>4} -> {row['frames_kept']:>4} frames  "
        f"{row['frames_per_s_per_core']:7.1f} frames/s/core  reduction {row['reduction']:.0%}",
        flush=True,
    )


def run_bench(out_dir: Path) -> dict[str, Any]:
    """Throughput per format and image type (looped drive), reduction per selection (one lap)."""
    from workflow.logs.sample import DriveSpec, write_drive_log

    if not SHARED_FRAMES.is_dir():
        print(f"drive-log bench skipped: {SHARED_FRAMES} is absent", file=sys.stderr)
        return {}
    frames = [p.read_bytes() for p in sorted(SHARED_FRAMES.glob("*.jpg"))]
    throughput, reduction = [], []
    load_before = [round(x, 2) for x in os.getloadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for fmt in ("bag", "db3", "mcap"):
            for image in ("compressed", "raw"):
                target = root / (f"{image}.bag" if fmt == "bag" else f"{image}-{fmt}")
                spec = DriveSpec(laps=LAPS)
                (path,) = write_drive_log(target, frames, fmt, image=image, spec=spec)  # type: ignore[arg-type]
                for name in ("none", "default (phash <= 2 bits)"):
                    row = {"format": fmt, "image": image, "selection": name, "laps": LAPS}
                    row.update(_extract_case(path, SELECTIONS[name], root / "out"))
                    throughput.append(row)
                    _print("throughput", row)
                shutil.rmtree(target) if target.is_dir() else target.unlink()
        (path,) = write_drive_log(root / "one-lap-mcap", frames, "mcap", spec=DriveSpec())
        for name, selection in SELECTIONS.items():
            row = {"format": "mcap", "image": "compressed", "selection": name, "laps": 1}
            row.update(_extract_case(path, selection, root / "out"))
            reduction.append(row)
            _print("reduction", row)
    rates = [r["frames_per_s_per_core"] for r in throughput]
    summary = {
        "goal_frames_per_s_per_core": GOAL_PER_CORE,
        "min_frames_per_s_per_core": min(rates),
        "source": SOURCE,
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "throughput": throughput,
        "reduction": reduction,
    }
    out_dir.mkdir(exist_ok=True)
    (out_dir / "logs.json").write_text(json.dumps(summary, indent=2))
    print(
        f"slowest case {min(rates):.0f} frames/s/core (goal {GOAL_PER_CORE:.0f}); load average "
        f"{summary['load_average_before'][0]} -> {summary['load_average_after'][0]} on "
        f"{os.cpu_count()} CPUs; results in {out_dir / 'logs.json'}"
    )
    return summary


def main() -> int:
    run_bench(ROOT / "bench-out")
    return 0


if __name__ == "__main__":
    sys.exit(main())
