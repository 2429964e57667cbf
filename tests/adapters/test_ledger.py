"""FrameLedger against moto's DynamoDB (the table as template.yaml defines it): a frame is labeled by
one run at a time, skipped once labeled, and free again when it failed or its claim went stale."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import count
from typing import Any
from unittest import mock

import boto3
import pytest
from moto import mock_aws
from moto.dynamodb.responses import DynamoHandler

from workflow.adapters.ledger import Claim, FrameLedger
from workflow.local.cloud import DEFAULT_TEMPLATE
from workflow.local.template import Template

REGION = "us-east-1"
TABLE = "LedgerTable"
_frames = count()


@pytest.fixture(scope="module")
def dynamodb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb", region_name=REGION)
        client.create_table(**Template(DEFAULT_TEMPLATE).create_table_request(TABLE))
        yield client


@pytest.fixture
def ledger(dynamodb: Any) -> FrameLedger:
    return FrameLedger(dynamodb, TABLE)


@pytest.fixture
def atomic_moto_requests() -> Iterator[None]:
    """DynamoDB applies each request atomically; moto 5.2.5 checks a condition and then writes in
    separate Python steps, so two threads can both pass it. Serialising moto's DynamoDB requests
    restores the service's guarantee (and still exposes any read-then-write in our code)."""
    lock = threading.RLock()
    handle = DynamoHandler.call_action

    @functools.wraps(handle)
    def serialised(self: DynamoHandler) -> Any:
        with lock:
            return handle(self)

    with mock.patch.object(DynamoHandler, "call_action", serialised):
        yield


def new_frame() -> str:
    return f"s3://drive-logs/log1/{next(_frames):06d}.jpg"


def test_a_new_frame_is_claimed_and_a_retry_of_the_same_run_claims_it_again(ledger: FrameLedger) -> None:
    # Given a frame no run has seen
    frame = new_frame()
    # When a run claims it, and the same run claims it again (a retried PrepareRun)
    claims = [ledger.claim(frame, "run-a"), ledger.claim(frame, "run-a")]
    # Then both claims hold
    assert claims == [Claim(frame, True), Claim(frame, True)]


@pytest.mark.parametrize(
    ("settled", "relabel", "claimed", "reason"),
    [
        (None, False, False, "being labeled by run run-a"),
        ("labeled", False, False, "already labeled by run run-a"),
        ("labeled", True, True, ""),
        ("failed", False, True, ""),
    ],
    ids=["claimed-by-another-run", "labeled", "labeled-but-relabel", "failed-before"],
)
def test_another_run_claims_a_frame_only_when_free_or_asked_to_relabel(
    ledger: FrameLedger, settled: str | None, relabel: bool, claimed: bool, reason: str
) -> None:
    # Given a frame run-a claimed, and perhaps settled
    frame = new_frame()
    assert ledger.claim(frame, "run-a").claimed
    if settled:
        ledger.settle(frame, "run-a", settled)
    # When run-b claims it
    claim = ledger.claim(frame, "run-b", relabel=relabel)
    # Then it gets the frame, or the reason it cannot
    assert claim == Claim(frame, claimed, reason)


def test_a_stale_claim_is_taken_over_and_the_late_run_cannot_overwrite_it(dynamodb: Any) -> None:
    # Given a frame claimed by a run whose claim expired (it died)
    frame = new_frame()
    assert FrameLedger(dynamodb, TABLE, claim_ttl_seconds=-60).claim(frame, "run-dead").claimed
    ledger = FrameLedger(dynamodb, TABLE)
    # When another run claims it and labels it, and then the late run settles it as failed
    assert ledger.claim(frame, "run-b").claimed
    ledger.settle(frame, "run-b", "labeled")
    ledger.settle(frame, "run-dead", "failed")
    # Then the frame stays labeled by the run that took it over
    assert ledger.claim(frame, "run-c") == Claim(frame, False, "already labeled by run run-b")


@pytest.mark.usefixtures("atomic_moto_requests")
def test_overlapping_runs_claim_each_frame_exactly_once(ledger: FrameLedger) -> None:
    # Given twenty frames
    frames = [new_frame() for _ in range(20)]
    # When two runs claim all of them at the same time
    jobs = [(frame, run) for frame in frames for run in ("run-x", "run-y")]
    with ThreadPoolExecutor(max_workers=8) as pool:
        claims = list(pool.map(lambda job: (job[1], ledger.claim(job[0], job[1])), jobs))
    # Then every frame is claimed by exactly one run, and refused to the other with its name
    winners: dict[str, str] = {}
    for run, claim in claims:
        if claim.claimed:
            assert claim.frame not in winners
            winners[claim.frame] = run
    assert set(winners) == set(frames)
    for run, claim in claims:
        if not claim.claimed:
            assert winners[claim.frame] != run
            assert claim.reason == f"being labeled by run {winners[claim.frame]}"


def test_a_rejected_frame_tells_the_next_run_to_adjust_it_until_it_is_labeled(ledger: FrameLedger) -> None:
    # Given a frame people rejected in run-a's verification job
    frame = new_frame()
    ledger.claim(frame, "run-a")
    ledger.settle(frame, "run-a", "failed", next_route="adjust")
    # When run-b claims it, and a retry of run-b claims it again
    first, retried = ledger.claim(frame, "run-b"), ledger.claim(frame, "run-b")
    # Then both claims carry the hint
    assert (first.claimed, first.next_route) == (True, "adjust")
    assert (retried.claimed, retried.next_route) == (True, "adjust")
    # And once run-b labels it, the hint is gone for a relabeling run
    ledger.settle(frame, "run-b", "labeled")
    assert ledger.claim(frame, "run-c", relabel=True) == Claim(frame, True)


@pytest.mark.parametrize(
    ("holder_status", "claimed", "reason"),
    [("failed", True, ""), ("running", False, "being labeled by run run-holder")],
    ids=["holder-failed", "holder-running"],
)
def test_a_frame_held_by_a_failed_run_is_taken_over_by_the_next_run(
    dynamodb: Any, holder_status: str, claimed: bool, reason: str
) -> None:
    # Given a frame a run claimed (its claim still fresh), and that run's record
    frame = new_frame()
    holder = FrameLedger(dynamodb, TABLE)
    holder.mark_run("run-holder", "running")
    assert holder.claim(frame, "run-holder", page="s0000-p000000").claimed
    holder.mark_run("run-holder", holder_status)
    # When the next run claims it (a ledger of its own: another Lambda)
    claim = FrameLedger(dynamodb, TABLE).claim(frame, "run-next", page="s0000-p000000")
    # Then a failed run's frame is taken over; a running run's is not
    assert claim == Claim(frame, claimed, reason)
    item = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": frame}}, ConsistentRead=True)["Item"]
    assert item["run_id"] == {"S": "run-next" if claimed else "run-holder"}


def test_a_failed_run_that_settles_late_cannot_overwrite_the_run_that_took_its_frame(dynamodb: Any) -> None:
    # Given a frame of a failed run, taken over and labeled by the next run
    frame = new_frame()
    ledger = FrameLedger(dynamodb, TABLE)
    assert ledger.claim(frame, "run-old").claimed
    ledger.mark_run("run-old", "failed")
    assert ledger.claim(frame, "run-new").claimed
    ledger.settle(frame, "run-new", "labeled")
    # When the failed run settles it after all (a shard published late)
    ledger.settle(frame, "run-old", "failed")
    # Then the frame stays labeled by the run that took it over
    assert ledger.claim(frame, "run-3") == Claim(frame, False, "already labeled by run run-new")


def test_one_run_claims_a_frame_from_one_listing_page_only(ledger: FrameLedger) -> None:
    # Given a frame one run claimed from the first page of its first source
    frame = new_frame()
    assert ledger.claim(frame, "run-a", page="s0000-p000000").claimed
    # When the same run meets it again under another source, and the first page is retried
    other = ledger.claim(frame, "run-a", page="s0001-p000000")
    retried = ledger.claim(frame, "run-a", page="s0000-p000000")
    # Then the other source skips it (labeled once) and the retry keeps it
    assert other == Claim(frame, False, "listed twice in this run (under another source); labeled once")
    assert retried == Claim(frame, True)


def test_a_profile_that_asks_relabels_frames_labeled_under_another_version(ledger: FrameLedger) -> None:
    # Given frames run-a labeled under version v1, and one labeled before versions were recorded
    same, old = new_frame(), new_frame()
    for frame, version in ((same, "v1"), (old, "")):
        assert ledger.claim(frame, "run-a").claimed
        ledger.settle(frame, "run-a", "labeled", version=version)
    # When a run of the same version asks to relabel changed frames, it skips the v1 frame
    assert ledger.claim(same, "run-b", changed_from="v1") == Claim(
        same, False, "already labeled by run run-a with this profile and models"
    )
    # And a frame with no recorded version counts as changed
    assert ledger.claim(old, "run-b", changed_from="v1").claimed
    # When the profile or a model changed (v2), the v1 frame is labeled again
    assert ledger.claim(same, "run-c", changed_from="v2").claimed
    ledger.settle(same, "run-c", "labeled", version="v2")
    # And a run that does not ask keeps skipping it, whatever its version
    assert not ledger.claim(same, "run-d").claimed
    assert not ledger.claim(same, "run-e", changed_from="v2").claimed


class CountingClient:
    """The DynamoDB client, with each call's operation noted."""

    def __init__(self, client: Any) -> None:
        self.client, self.calls = client, []

    def __getattr__(self, name: str) -> Any:
        self.calls.append(name)
        return getattr(self.client, name)


def test_a_new_frame_takes_one_put_and_a_frame_labeled_elsewhere_one_write_and_no_read(
    dynamodb: Any,
) -> None:
    counting = CountingClient(dynamodb)
    ledger = FrameLedger(counting, TABLE)  # type: ignore[arg-type]
    frame = new_frame()
    assert ledger.claim(frame, "run-a", page="p1").claimed
    assert counting.calls == ["put_item"]
    item = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": frame}})["Item"]
    assert {k: next(iter(v.values())) for k, v in item.items() if k != "claim_expires"} == {
        "pk": frame,
        "status": "claimed",
        "run_id": "run-a",
        "claim_page": "p1",
        "updated_at": item["updated_at"]["N"],
    }
    ledger.settle(frame, "run-a", "labeled", version="v1")
    counting.calls.clear()
    skipped = ledger.claim(frame, "run-b")
    assert skipped == Claim(frame, False, "already labeled by run run-a")
    assert counting.calls == ["put_item"]  # the failed put returned the item: no update, no read
    # the same run again (a resumed run), another version or relabel: the conditional update decides
    counting.calls.clear()
    assert ledger.claim(frame, "run-c", changed_from="v2").claimed
    assert counting.calls == ["put_item", "update_item"]


def _item(dynamodb: Any, frame: str) -> dict[str, Any]:
    got = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": frame}}, ConsistentRead=True)["Item"]
    return {k: v for k, v in got.items() if k not in ("pk", "updated_at")}


@pytest.mark.parametrize(
    ("status", "next_route", "version"),
    [("labeled", "", "v1"), ("labeled", "", ""), ("failed", "adjust", "v1"), ("failed", "", "")],
)
def test_a_settle_that_knows_the_claim_page_puts_the_item_the_update_leaves(
    dynamodb: Any, ledger: FrameLedger, status: str, next_route: str, version: str
) -> None:
    updated, put = new_frame(), new_frame()
    for frame in (updated, put):
        assert ledger.claim(frame, "run-a", page="s0000-p000003").claimed
    ledger.settle(updated, "run-a", status, next_route, version)
    ledger.settle(put, "run-a", status, next_route, version, page="s0000-p000003")
    assert _item(dynamodb, put) == _item(dynamodb, updated)
    assert _item(dynamodb, put)["status"] == {"S": status} and "claim_expires" not in _item(dynamodb, put)


def test_a_settle_put_never_overwrites_another_runs_claim(dynamodb: Any, ledger: FrameLedger) -> None:
    frame = new_frame()
    assert ledger.claim(frame, "run-b", page="s0000-p000000").claimed
    ledger.settle(frame, "run-a", "labeled", version="v1", page="s0000-p000000")  # run-a lost it
    assert _item(dynamodb, frame)["run_id"] == {"S": "run-b"}
    assert _item(dynamodb, frame)["status"] == {"S": "claimed"}


def _ledger_states(dynamodb: Any) -> tuple[list[str], dict[str, Any]]:
    """Frames in every state a listing meets, and what each asks of a claim by run-new."""
    stale = FrameLedger(dynamodb, TABLE, claim_ttl_seconds=-60)
    old = FrameLedger(dynamodb, TABLE)
    frames = {name: new_frame() for name in ("new", "labeled", "failed", "stale", "held", "own", "dead")}
    old.claim(frames["labeled"], "run-old")
    old.settle(frames["labeled"], "run-old", "labeled", version="v1")
    old.claim(frames["failed"], "run-old")
    old.settle(frames["failed"], "run-old", "failed", next_route="adjust")
    stale.claim(frames["stale"], "run-stale")
    old.claim(frames["held"], "run-busy")
    old.claim(frames["own"], "run-new", page="s0000-p000000")
    old.claim(frames["dead"], "run-dead")
    old.mark_run("run-dead", "failed")
    return list(frames.values()), frames


@pytest.mark.usefixtures("atomic_moto_requests")
@pytest.mark.parametrize(("relabel", "changed_from"), [(False, ""), (True, ""), (False, "v2"), (False, "v1")])
def test_claims_in_transactions_answer_what_one_claim_a_frame_answers(
    dynamodb: Any, relabel: bool, changed_from: str
) -> None:
    # Given two ledgers with frames in every state (new, labeled, failed, stale, held, own, held by
    # a failed run), and among them 110 new frames (two transactions, one cancelled by held frames)
    one, many = _ledger_states(dynamodb), _ledger_states(dynamodb)
    extra_one, extra_many = [new_frame() for _ in range(110)], [new_frame() for _ in range(110)]
    ledger = FrameLedger(dynamodb, TABLE, transactions=True)
    # When one run claims them frame by frame, and the same run claims the twin set all at once
    singly = [ledger.claim(f, "run-new", relabel, "s0000-p000000", changed_from) for f in one[0] + extra_one]
    batched = ledger.claim_many(many[0] + extra_many, "run-new", relabel, "s0000-p000000", changed_from, 4)
    # Then each frame gets the same answer and leaves the same item in the ledger
    twin = dict(zip(one[0] + extra_one, many[0] + extra_many, strict=True))
    assert [(twin[c.frame], c.claimed, c.reason, c.next_route) for c in singly] == [
        (c.frame, c.claimed, c.reason, c.next_route) for c in batched
    ]
    assert sum(c.claimed for c in batched) >= 110
    for a, b in twin.items():
        left, right = _item(dynamodb, a), _item(dynamodb, b)
        assert ("claim_expires" in left) == ("claim_expires" in right)
        left.pop("claim_expires", None), right.pop("claim_expires", None)  # a second apart at most
        assert left == right


@pytest.mark.usefixtures("atomic_moto_requests")
def test_overlapping_runs_claiming_in_transactions_claim_each_frame_exactly_once(dynamodb: Any) -> None:
    ledger = FrameLedger(dynamodb, TABLE, transactions=True)
    # Given 120 frames, listed by two runs at the same time, each in its own order
    frames = [new_frame() for _ in range(120)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        x, y = pool.map(
            lambda job: ledger.claim_many(job[1], job[0], threads=2),
            [("run-x", frames), ("run-y", frames[::-1])],
        )
    # Then every frame is claimed by exactly one of them, and the other is told which
    won = {c.frame: "run-x" for c in x if c.claimed} | {c.frame: "run-y" for c in y if c.claimed}
    assert len(won) == 120 and sum(c.claimed for c in x) + sum(c.claimed for c in y) == 120
    for run, claims in (("run-x", x), ("run-y", y)):
        for claim in claims:
            if not claim.claimed:
                assert won[claim.frame] != run and claim.reason == f"being labeled by run {won[claim.frame]}"


@pytest.mark.usefixtures("atomic_moto_requests")
def test_settles_in_transactions_leave_what_single_settles_leave_and_skip_frames_taken_over(
    dynamodb: Any, ledger: FrameLedger
) -> None:
    batched = FrameLedger(dynamodb, TABLE, transactions=True)
    # Given 130 frames claimed by run-a twice over, one of each set taken over by run-b
    page = "s0000-p000001"
    one, many = [new_frame() for _ in range(130)], [new_frame() for _ in range(130)]
    for frame in one + many:
        assert ledger.claim(frame, "run-a", page=page).claimed
    stale = FrameLedger(dynamodb, TABLE)
    for frame in (one[70], many[70]):
        dynamodb.update_item(
            TableName=TABLE,
            Key={"pk": {"S": frame}},
            UpdateExpression="SET run_id = :b",
            ExpressionAttributeValues={":b": {"S": "run-b"}},
        )
    outcome = [("labeled", "") if i % 3 else ("failed", "adjust") for i in range(130)]
    # When run-a settles one set frame by frame and the other in transactions
    for frame, (status, route) in zip(one, outcome, strict=True):
        stale.settle(frame, "run-a", status, route, "v1", page)
    batched.settle_many(
        [(f, s, r, page) for f, (s, r) in zip(many, outcome, strict=True)], "run-a", "v1", threads=2
    )
    # Then both sets hold the same items, and run-b keeps the frames it took
    for a, b in zip(one, many, strict=True):
        left, right = _item(dynamodb, a), _item(dynamodb, b)
        # a frame run-b holds keeps its claim's expiry: the second it was claimed in, which the
        # two sets need not share on a slow machine (260 claims one after another)
        assert ("claim_expires" in left) == ("claim_expires" in right)
        left.pop("claim_expires", None)
        right.pop("claim_expires", None)
        assert left == right
    assert _item(dynamodb, many[70])["run_id"] == {"S": "run-b"}
    assert _item(dynamodb, many[70])["status"] == {"S": "claimed"}
