"""Frame selection: the rules of :class:`workflow.domain.selection.FrameSelection`, per camera topic.

Each topic keeps its own state (frames seen, the last kept frame's time, distance and hash). The
cheap rules run before a frame is converted or hashed; near-duplicate removal runs last, on the
frames that survived them. Every drop is counted by its rule.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from workflow.domain.selection import FrameSelection
from workflow.logs.hashing import distance

RULES = ("every_nth", "min_interval", "min_distance", "no_gps", "near_duplicate")


@dataclass
class _TopicState:
    seen: int = 0
    last_time: int | None = None
    last_distance: float | None = None
    last_hash: int | None = None


@dataclass
class Selector:
    """Applies the selection rules frame by frame and counts what each rule dropped."""

    rules: FrameSelection
    state: dict[str, _TopicState] = field(default_factory=dict)
    seen: Counter[str] = field(default_factory=Counter)
    kept: Counter[str] = field(default_factory=Counter)
    dropped: dict[str, Counter[str]] = field(default_factory=dict)

    def _drop(self, topic: str, rule: str) -> str:
        self.dropped.setdefault(topic, Counter())[rule] += 1
        return rule

    def before_decode(self, topic: str, t_ns: int, travelled_m: float | None) -> str | None:
        """The rule that drops this frame by its index, time or position; None to go on."""
        st = self.state.setdefault(topic, _TopicState())
        index = st.seen
        st.seen += 1
        self.seen[topic] += 1
        r = self.rules
        if index % r.every_nth:
            return self._drop(topic, "every_nth")
        if (
            r.min_interval_s > 0
            and st.last_time is not None
            and (t_ns - st.last_time) / 1e9 < r.min_interval_s
        ):
            return self._drop(topic, "min_interval")
        if r.min_distance_m > 0:
            if travelled_m is None:
                if r.without_gps == "drop":
                    return self._drop(topic, "no_gps")
            elif st.last_distance is not None and travelled_m - st.last_distance < r.min_distance_m:
                return self._drop(topic, "min_distance")
        return None

    @property
    def needs_hash(self) -> bool:
        return self.rules.dedupe.enabled

    def is_duplicate(self, topic: str, frame_hash: int) -> bool:
        """True (and counted) when within ``max_distance`` bits of the topic's last kept frame."""
        last = self.state[topic].last_hash
        if last is not None and distance(last, frame_hash) <= self.rules.dedupe.max_distance:
            self._drop(topic, "near_duplicate")
            return True
        return False

    def keep(self, topic: str, t_ns: int, travelled_m: float | None, frame_hash: int | None) -> None:
        """Record the frame as the topic's last kept one."""
        st = self.state[topic]
        st.last_time = t_ns
        if travelled_m is not None:
            st.last_distance = travelled_m
        if frame_hash is not None:
            st.last_hash = frame_hash
        self.kept[topic] += 1

    def report(self) -> dict[str, object]:
        """Per topic and in total: frames seen, kept, and dropped by each rule."""
        topics = {}
        for topic in sorted(self.seen):
            drops = self.dropped.get(topic, Counter())
            topics[topic] = {
                "seen": self.seen[topic],
                "kept": self.kept[topic],
                "dropped": {rule: drops.get(rule, 0) for rule in RULES},
            }
        seen, kept = sum(self.seen.values()), sum(self.kept.values())
        return {
            "rules": self.rules.model_dump(mode="json"),
            "seen": seen,
            "kept": kept,
            "dropped": {rule: sum(t["dropped"][rule] for t in topics.values()) for rule in RULES},  # type: ignore[index]
            "reduction": round(1 - kept / seen, 4) if seen else 0.0,
            "topics": topics,
        }
