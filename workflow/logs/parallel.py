"""One process per camera topic: an 8-camera log extracts on 8 cores.

Selection state is per topic anyway, so topics split cleanly; each process reads the log's GPS and
IMU topics itself (small next to the frames). The per-topic results merge into one LogExtraction.
"""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from workflow.domain.selection import LogSettings
from workflow.logs.extract import LogExtraction, camera_topics, extract_log
from workflow.logs.reader import open_log
from workflow.logs.select import RULES
from workflow.logs.sources import LogSource


def _one_topic(source: LogSource, dest: Path, settings: LogSettings, topic: str) -> LogExtraction:
    return extract_log(source, dest, settings.model_copy(update={"topics": (topic,)}))


def extract_log_parallel(source: LogSource, dest: Path, settings: LogSettings, workers: int) -> LogExtraction:
    """:func:`extract_log` with the camera topics spread over ``workers`` processes."""
    if workers <= 1:
        return extract_log(source, dest, settings)
    with open_log(source) as reader:
        types = {name: info.msgtype or "" for name, info in reader.topics.items()}
    topics = camera_topics(types, settings.topics, source.name)
    if len(topics) == 1:
        return extract_log(source, dest, settings)
    with ProcessPoolExecutor(max_workers=min(workers, len(topics))) as pool:
        parts = list(pool.map(_one_topic, *zip(*[(source, dest, settings, t) for t in topics], strict=True)))
    return merge(parts)


def merge(parts: list[LogExtraction]) -> LogExtraction:
    """Per-topic extractions of one log as one (times: the slowest part's wall time, CPU time summed)."""
    first = parts[0]
    merged = LogExtraction(
        log=first.log,
        files=first.files,
        topics=[t for p in parts for t in p.topics],
        gps_topic=first.gps_topic,
        imu_topic=first.imu_topic,
        records=[r for p in parts for r in p.records],
        rejected=[r for p in parts for r in p.rejected],
        notes=sorted({n for p in parts for n in p.notes}),
        seconds=max(p.seconds for p in parts),
        cpu_seconds=sum(p.cpu_seconds for p in parts),
    )
    topics: dict[str, Any] = {}
    for p in parts:
        topics.update(p.selection["topics"])
    seen = sum(t["seen"] for t in topics.values())
    kept = sum(t["kept"] for t in topics.values())
    merged.selection = {
        "rules": first.selection["rules"],
        "seen": seen,
        "kept": kept,
        "dropped": {rule: sum(t["dropped"][rule] for t in topics.values()) for rule in RULES},
        "reduction": round(1 - kept / seen, 4) if seen else 0.0,
        "topics": topics,
        "rejected": len(merged.rejected),
    }
    return merged
