"""ListPage against moto's S3 and the ledger table of template.yaml: each call lists at most one page of
1,000 keys, claims its frames, writes its batches; what it does not label is skipped with a reason."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends

from workflow.adapters.ledger import Claim, FrameLedger
from workflow.adapters.run_store import RunStore
from workflow.adapters.s3 import S3Store
from workflow.domain.lineage import FrameLineage, LogSelection
from workflow.domain.records import PAGE_SIZE, batch_id
from workflow.domain.run import ListCursor, ModelEndpoint, RunContext, RunRequest, SourceItem
from workflow.local.cloud import DEFAULT_TEMPLATE
from workflow.local.template import Template
from workflow.settings import Settings
from workflow.steps.listing import list_page
from workflow.steps.prepare import prepare_run

DATA, LOGS, LEDGER = "autolabel-data", "drive-logs", "LedgerTable"
SETTINGS = Settings(
    data_bucket=DATA,
    token_table="TokenTable",
    ledger_table=LEDGER,
    default_models=[ModelEndpoint(name="m", endpoint_name="e")],
)


@dataclass
class World:
    client: Any
    s3: S3Store
    ledger: FrameLedger
    listings: list[dict[str, Any]]  # every ListObjectsV2 call's parameters

    def put(self, keys: list[str]) -> None:
        """Frames in the source bucket, put straight into moto's S3 (setup, not the step's calls)."""
        backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
        for key in keys:
            backend.put_object(LOGS, key, b"x")

    def run(self, sources: list[str], name: str = "run-1", batch_size: int = 100) -> RunContext:
        request = RunRequest(sources=sources, batch_size=batch_size)
        return prepare_run(request, name, SETTINGS, self.s3, self.ledger)

    def list_all(self, run: RunContext, source: SourceItem, ledger: Any = None) -> list[ListCursor]:
        """ListPage called as the ListSources Map's loop calls it, until the source has no more pages."""
        cursors = [ListCursor()]
        while cursors[-1].more:
            cursors.append(list_page(run, source, cursors[-1], SETTINGS, self.s3, ledger or self.ledger))
        return cursors[1:]

    def batches(self, run: RunContext) -> dict[str, list[str]]:
        store = RunStore(self.s3, run.bucket, run.run_prefix)
        listed = self.s3.list_objects(f"s3://{DATA}/{run.batches_prefix}")
        names = [uri.key.rsplit("/", 1)[1].removesuffix(".json") for uri, _ in listed]
        return {name: store.get_batch(name).frames for name in names}


class GrantingLedger:
    """A ledger stand-in that grants every claim and counts the claims of each listing page (moto's
    DynamoDB takes ~20 ms a conditional write; the claims' conditions are tested against it below and
    in test_ledger.py)."""

    def __init__(self) -> None:
        self.claims: Counter[str] = Counter()

    def claim(
        self, frame: str, run_id: str, relabel: bool = False, page: str = "", changed_from: str = ""
    ) -> Claim:
        self.claims[page] += 1
        return Claim(frame, True)

    def claim_many(
        self,
        frames: list[str],
        run_id: str,
        relabel: bool = False,
        page: str = "",
        changed_from: str = "",
        threads: int = 1,
    ) -> list[Claim]:
        return [self.claim(f, run_id, relabel, page, changed_from) for f in frames]


@pytest.fixture
def world() -> Iterator[World]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        for bucket in (DATA, LOGS):
            client.create_bucket(Bucket=bucket)
        dynamodb = boto3.client("dynamodb", region_name="us-east-1")
        dynamodb.create_table(**Template(DEFAULT_TEMPLATE).create_table_request(LEDGER))
        listings: list[dict[str, Any]] = []
        client.meta.events.register(
            "before-parameter-build.s3.ListObjectsV2", lambda params, **_: listings.append(dict(params))
        )
        yield World(client, S3Store(client), FrameLedger(dynamodb, LEDGER), listings)


def test_a_prefix_of_2500_keys_is_listed_in_three_calls_of_at_most_1000(world: World) -> None:
    # Given 2,500 frames under one prefix
    keys = [f"day1/{i:05d}.png" for i in range(2500)]
    world.put(keys)
    run = world.run([f"s3://{LOGS}/day1/"])
    ledger = GrantingLedger()
    # When ListPage is called until the source has no more pages
    cursors = world.list_all(run, SourceItem(index=0, uri=f"s3://{LOGS}/day1/"), ledger)
    # Then it took three calls, each listing one page of at most 1,000 keys and claiming only its frames
    assert [(c.page, c.more) for c in cursors] == [(1, True), (2, True), (3, False)]
    assert [p["MaxKeys"] for p in world.listings] == [PAGE_SIZE] * 3
    assert ledger.claims == {"s0000-p000000": 1000, "s0000-p000001": 1000, "s0000-p000002": 500}
    store = RunStore(world.s3, run.bucket, run.run_prefix)
    pages = sorted(store.pages(), key=lambda p: p.page)
    assert [(p.page, p.listed, p.frames, p.batches) for p in pages] == [
        (0, 1000, 1000, 10),
        (1, 1000, 1000, 10),
        (2, 500, 500, 5),
    ]
    # And every frame is in exactly one batch of at most 100, named by source, page and position
    batches = world.batches(run)
    assert len(batches) == 25 and max(len(f) for f in batches.values()) == 100
    assert sorted(f for frames in batches.values() for f in frames) == [f"s3://{LOGS}/{k}" for k in keys]
    assert list(batches)[:2] == [batch_id(0, 0, 0), batch_id(0, 0, 1)]
    assert list(batches)[-1] == batch_id(0, 2, 4)


def test_the_same_frame_under_two_sources_of_one_run_is_claimed_once(world: World) -> None:
    # Given a run over a drive log's folder and, again, one of its frames
    world.put(["day1/000.png", "day1/001.png"])
    run = world.run([f"s3://{LOGS}/day1/", f"s3://{LOGS}/day1/001.png"])
    # When both sources are listed
    world.list_all(run, SourceItem(index=0, uri=f"s3://{LOGS}/day1/"))
    world.list_all(run, SourceItem(index=1, uri=f"s3://{LOGS}/day1/001.png"))
    # Then the frame is in one batch only, and the second source skips it with the reason
    frames = [f for fs in world.batches(run).values() for f in fs]
    assert sorted(frames) == [f"s3://{LOGS}/day1/000.png", f"s3://{LOGS}/day1/001.png"]
    store = RunStore(world.s3, run.bucket, run.run_prefix)
    (skipped,) = store.skipped("0001-000000")
    assert skipped.frame == f"s3://{LOGS}/day1/001.png"
    assert skipped.reason == "listed twice in this run (under another source); labeled once"
    # And a retry of the first source's page claims its frames again (the same page, the same batches)
    again = list_page(
        run, SourceItem(index=0, uri=f"s3://{LOGS}/day1/"), ListCursor(), SETTINGS, world.s3, world.ledger
    )
    assert again.more is False
    assert world.batches(run) == {
        batch_id(0, 0, 0): [f"s3://{LOGS}/day1/000.png", f"s3://{LOGS}/day1/001.png"]
    }


def test_what_is_not_a_frame_is_skipped_with_its_reason_and_markers_are_ignored(world: World) -> None:
    # Given a frame, a text file and a console-made folder marker under the prefix
    world.put(["day1/000.jpg", "day1/notes.txt"])
    world.client.put_object(Bucket=LOGS, Key="day1/", Body=b"")
    run = world.run([f"s3://{LOGS}/day1/"])
    # When the page is listed
    world.list_all(run, SourceItem(index=0, uri=f"s3://{LOGS}/day1/"))
    # Then the frame is batched, the text file skipped with why, the marker ignored
    assert world.batches(run) == {batch_id(0, 0, 0): [f"s3://{LOGS}/day1/000.jpg"]}
    store = RunStore(world.s3, run.bucket, run.run_prefix)
    (skipped,) = store.skipped("0000-000000")
    assert skipped.frame == f"s3://{LOGS}/day1/notes.txt"
    assert skipped.reason == "not a frame: only .jpg, .jpeg, .png are labeled"
    (page,) = store.pages()
    assert (page.listed, page.frames, page.skipped, page.ignored) == (3, 1, 1, 1)
    assert page.skipped_reasons == {"not a frame: only .jpg, .jpeg, .png are labeled": 1}


def test_a_frame_another_running_run_holds_is_skipped_and_an_empty_source_says_so(world: World) -> None:
    # Given a frame another run has claimed, and is still labeling
    world.put(["day1/000.png"])
    first = world.run([f"s3://{LOGS}/day1/"], name="run-a")
    world.list_all(first, SourceItem(index=0, uri=f"s3://{LOGS}/day1/"))
    # When a second run lists it, and an empty prefix
    second = world.run([f"s3://{LOGS}/day1/", f"s3://{LOGS}/empty/"], name="run-b")
    world.list_all(second, SourceItem(index=0, uri=f"s3://{LOGS}/day1/"))
    world.list_all(second, SourceItem(index=1, uri=f"s3://{LOGS}/empty/"))
    # Then the second run has no batch, and says why for both
    assert world.batches(second) == {}
    store = RunStore(world.s3, second.bucket, second.run_prefix)
    assert [s.reason for s in store.skipped("0000-000000")] == ["being labeled by run run-a"]
    assert [s.reason for s in store.skipped("0001-000000")] == ["no objects under this prefix"]


def _record(index: int) -> FrameLineage:
    t = 1_700_000_000_000_000_000 + index * 100_000_000
    return FrameLineage(
        frame=f"drive/cam/{index:06d}-{t:019d}.jpg",
        log_uri=f"s3://{LOGS}/incoming/drive.bag",
        log_name="drive",
        topic="/cam",
        msgtype="sensor_msgs/msg/Image",
        index=index,
        log_time_ns=t + 20_000_000,
        stamp_ns=t,
        encoding="rgb8",
    )


def test_drive_log_frames_get_their_lineage_reading_only_the_chunks_of_each_page(world: World) -> None:
    # Given 2,500 frames extracted from a log, their lineage in three chunks, the log's selection counts
    # and a selection.json that extraction did not write
    records = [_record(i) for i in range(2500)]
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for r in records:
        backend.put_object(LOGS, f"ext/frames/{r.frame}", b"x")
    for chunk in range(3):
        lines = "".join(r.model_dump_json() + "\n" for r in records[chunk * 1000 : (chunk + 1) * 1000])
        backend.put_object(LOGS, f"ext/frames/drive/cam/lineage-{chunk:06d}.jsonl", lines.encode())
    counts = LogSelection(log="drive", seen=3000, kept=2500, dropped={"every_nth": 500})
    backend.put_object(LOGS, "ext/frames/drive/selection.json", counts.model_dump_json().encode())
    backend.put_object(LOGS, "ext/frames/other/selection.json", b'{"mine": true}')
    gets: list[str] = []
    world.client.meta.events.register(
        "before-parameter-build.s3.GetObject",
        lambda params, **_: gets.append(params["Key"]) if params["Bucket"] == LOGS else None,
    )
    run = world.run([f"s3://{LOGS}/ext/frames/"])
    # When the source is listed page by page
    world.list_all(run, SourceItem(index=0, uri=f"s3://{LOGS}/ext/frames/"), GrantingLedger())
    # Then each page read only the lineage chunk of its own frames (and the selection files it listed)
    assert gets == [
        "ext/frames/drive/cam/lineage-000000.jsonl",
        "ext/frames/drive/cam/lineage-000001.jsonl",
        "ext/frames/drive/selection.json",  # the third page: the selection files it lists, then its chunk
        "ext/frames/other/selection.json",
        "ext/frames/drive/cam/lineage-000002.jsonl",
    ]
    # And every frame's batch carries its record; the sidecars are ignored, the stranger is skipped
    store = RunStore(world.s3, run.bucket, run.run_prefix)
    listed = world.s3.list_objects(f"s3://{DATA}/{run.batches_prefix}")
    lineage: dict[str, dict[str, Any]] = {}
    for uri, _ in listed:
        lineage |= store.get_batch(uri.key.rsplit("/", 1)[1].removesuffix(".json")).lineage
    assert len(lineage) == 2500
    frame = f"s3://{LOGS}/ext/frames/{records[1234].frame}"
    assert lineage[frame] == records[1234].published() and lineage[frame]["index"] == 1234
    pages = sorted(store.pages(), key=lambda p: p.page)
    assert [p.ignored for p in pages] == [0, 0, 4] and [p.skipped for p in pages] == [0, 0, 1]
    assert pages[2].logs == [counts.model_dump(mode="json")]
    (skipped,) = store.skipped("0000-000002")
    assert skipped.frame == f"s3://{LOGS}/ext/frames/other/selection.json"


def test_a_damaged_or_missing_lineage_chunk_is_reported_and_its_frames_are_labeled_all_the_same(
    world: World,
) -> None:
    # Given frames of three lineage chunks: the first with a truncated record, a record of the wrong
    # shape and a line that is no record; the second not JSON at all; the third gone
    records = [_record(i) for i in (*range(5), *range(1000, 1005), 2000, 2001)]
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    for r in records:
        backend.put_object(LOGS, f"ext/frames/{r.frame}", b"x")
    lines = [r.model_dump_json() for r in records[:5]]
    lines[1] = lines[1][: len(lines[1]) // 2]  # cut off mid-record, as an interrupted upload leaves it
    lines[2] = lines[2].replace('"log_time_ns":', '"log_time_ns":"soon","was":')
    lines.append("[1, 2]")
    backend.put_object(LOGS, "ext/frames/drive/cam/lineage-000000.jsonl", "\n".join(lines).encode())
    backend.put_object(LOGS, "ext/frames/drive/cam/lineage-000001.jsonl", b"\x89PNG\r\n\x1a\n\x00\x00")
    run = world.run([f"s3://{LOGS}/ext/frames/"])
    # When the source is listed
    world.list_all(run, SourceItem(index=0, uri=f"s3://{LOGS}/ext/frames/"), GrantingLedger())
    # Then every frame is batched, and only the frames with a sound record carry lineage
    store = RunStore(world.s3, run.bucket, run.run_prefix)
    (batch,) = world.batches(run)
    item = store.get_batch(batch)
    assert sorted(item.frames) == sorted(f"s3://{LOGS}/ext/frames/{r.frame}" for r in records)
    frame = f"s3://{LOGS}/ext/frames/{{}}".format
    assert item.lineage == {frame(r.frame): r.published() for r in (records[0], records[3], records[4])}
    # And the page's counts name each chunk, why, and how many of its frames it left without lineage
    (page,) = store.pages()
    assert (page.frames, page.skipped, page.ignored) == (12, 0, 2)
    problems = {p.chunk.rsplit("/", 1)[1]: p for p in page.lineage_problems}
    assert {name: p.frames for name, p in problems.items()} == {
        "lineage-000000.jsonl": 2,
        "lineage-000001.jsonl": 5,
        "lineage-000002.jsonl": 2,
    }
    first = problems["lineage-000000.jsonl"]
    assert first.chunk == f"s3://{LOGS}/ext/frames/drive/cam/lineage-000000.jsonl"
    assert "line 2 is not JSON" in first.reason
    assert f"line 3 (frame {records[2].frame}) is not a lineage record: log_time_ns:" in first.reason
    assert "line 6 is a JSON list, not a lineage record" in first.reason
    assert "not UTF-8 text" in problems["lineage-000001.jsonl"].reason
    assert problems["lineage-000002.jsonl"].reason == "the chunk is missing"
