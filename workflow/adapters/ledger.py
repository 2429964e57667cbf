"""The frame ledger: which frames an earlier or concurrent run labeled or is labeling.

A run claims each frame with a conditional write, so two overlapping runs never label the same frame,
and a frame labeled once is skipped by later runs (unless asked to relabel). Failed frames and
stale claims (a run that died) can be claimed again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

RUN_STATUS_CACHE_S = 30.0
TRANSACTION_ITEMS = 100  # DynamoDB's most actions in one TransactWriteItems
TRANSACTION_ATTEMPTS = 4  # then what is left goes one write per frame
T = TypeVar("T")
R = TypeVar("R")
_ser = TypeSerializer()
_de = TypeDeserializer()


@dataclass(frozen=True)
class Claim:
    frame: str
    claimed: bool
    reason: str = ""
    next_route: str = ""  # what an earlier run asked for this frame (e.g. "adjust" after a rejection)


class FrameLedger:
    def __init__(
        self, client: Any, table: str, claim_ttl_seconds: int = 2 * 86_400, transactions: bool = False
    ) -> None:
        self.client = client
        self.table = table
        self.claim_ttl_seconds = claim_ttl_seconds
        # claim_many / settle_many in transactions of up to 100 writes, else one write a frame
        self.transactions = transactions
        self._run_status: dict[str, tuple[float, str | None]] = {}

    def claim(
        self, frame: str, run_id: str, relabel: bool = False, page: str = "", changed_from: str = ""
    ) -> Claim:
        """Claim a frame for this run; the Claim says why when another run holds it.

        A frame held by a run that has failed (see :meth:`mark_run`) is taken over: a failed run
        releases its claims by one write of its run record, not one write per frame. With
        ``changed_from`` (this run's labeling version), a frame labeled under another version, or
        under none recorded, is labeled again.
        """
        now = int(time.time())
        fresh, old = self._claim_new(frame, run_id, now, page)
        if fresh is not None:
            return fresh
        return self._claim_held(frame, old, run_id, relabel, page, changed_from, now)

    def claim_many(
        self,
        frames: list[str],
        run_id: str,
        relabel: bool = False,
        page: str = "",
        changed_from: str = "",
        threads: int = 1,
    ) -> list[Claim]:
        """:meth:`claim` for each frame, in order. With ``transactions``, the common case (frames
        the ledger has never seen: a new drive log's) is written in transactions of up to 100
        conditional puts, each with the one condition of :meth:`claim`'s first write. A frame whose
        put fails its condition (the ledger holds it) goes on as :meth:`claim` goes on, with the
        item the transaction returned; the other puts of a cancelled transaction are tried again
        without it.

        DynamoDB bills a transactional write twice a plain one: each claim costs 2 write units
        instead of 1, in 1 request per 100 frames instead of 1 per frame. Local mode, where a request
        costs CPU (a sixth of it this way) and no money, claims so; a stack on AWS claims frame by
        frame. ``threads``: requests in flight at once.
        """
        if not self.transactions:
            return _map(lambda f: self.claim(f, run_id, relabel, page, changed_from), frames, threads)
        unique = list(dict.fromkeys(frames))
        now = int(time.time())
        groups = _groups(unique)
        found: dict[str, Claim] = {}
        held: dict[str, dict[str, Any] | None] = {}
        for claimed, holding in _map(lambda g: self._claim_new_many(g, run_id, now, page), groups, threads):
            found |= {f: Claim(f, True) for f in claimed}
            held |= holding
        rest = _map(
            lambda f: self._claim_held(f, held[f], run_id, relabel, page, changed_from, now),
            list(held),
            threads,
        )
        found |= {c.frame: c for c in rest}
        return [found[f] for f in frames]

    def _claim_new_many(
        self, frames: list[str], run_id: str, now: int, page: str
    ) -> tuple[list[str], dict[str, dict[str, Any] | None]]:
        """The frames of one transaction claimed, and the held ones with the item the ledger holds."""
        refused, left = self._write_each(
            frames,
            lambda f: {
                "Put": {
                    "TableName": self.table,
                    "Item": self._new_item(f, run_id, now, page),
                    "ConditionExpression": "attribute_not_exists(pk)",
                    "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                }
            },
        )
        held: dict[str, dict[str, Any] | None] = {}
        for frame, reason in refused:  # another reason than the condition: the single write decides
            item = reason.get("Item") if reason.get("Code") == "ConditionalCheckFailed" else None
            held[frame] = {k: _de.deserialize(v) for k, v in item.items()} if item else None
        for frame in left:  # what transactions did not settle: one conditional put each, as claim()
            fresh, old = self._claim_new(frame, run_id, now, page)
            if fresh is None:
                held[frame] = old
        return [f for f in frames if f not in held], held

    def _write_each(
        self, entries: list[T], action: Callable[[T], dict[str, Any]]
    ) -> tuple[list[tuple[T, dict[str, Any]]], list[T]]:
        """Each entry's action in one transaction, tried again without the entries whose own action
        was refused (its condition failed, or it was invalid), up to TRANSACTION_ATTEMPTS times.
        Answers the refused entries, each with its cancellation reason, and the entries left
        unwritten (a failure that names no reason per action, or conflicts to the last attempt),
        for the caller to write one by one; every other entry is written."""
        refused: list[tuple[T, dict[str, Any]]] = []
        todo = entries
        for attempt in range(TRANSACTION_ATTEMPTS):
            if not todo:
                break
            try:
                self.client.transact_write_items(TransactItems=[action(e) for e in todo])
                return refused, []
            except ClientError as err:
                reasons = err.response.get("CancellationReasons")
                code = err.response.get("Error", {}).get("Code")
                if (
                    code != "TransactionCanceledException"
                    or not isinstance(reasons, list)
                    or len(reasons) != len(todo)
                ):
                    break
            again = []
            for entry, reason in zip(todo, reasons, strict=True):
                if reason.get("Code") in (None, "None", "TransactionConflict"):
                    again.append(entry)  # not written: another action (or a concurrent writer) cancelled it
                else:
                    refused.append((entry, reason))
            if len(again) == len(todo):  # conflicts only: wait a little before trying again
                time.sleep(0.05 * (attempt + 1))
            todo = again
        return refused, todo

    def _claim_held(
        self,
        frame: str,
        old: dict[str, Any] | None,
        run_id: str,
        relabel: bool,
        page: str,
        changed_from: str,
        now: int,
    ) -> Claim:
        """A frame the ledger already holds (``old``: its item, when known): taken if the conditions
        of :meth:`claim` allow, else the reason it is not."""
        if (settled := self._labeled_elsewhere(old, run_id, relabel, changed_from)) is not None:
            return settled
        # This run's own claim passes again only from the same listing page (a retry, a resumed
        # run): the same frame under two sources of one run is labeled once.
        own = "(run_id = :run AND (attribute_not_exists(claim_page) OR claim_page = :page))"
        condition = (
            f"attribute_not_exists(pk) OR {own} OR #s = :failed OR (#s = :claimed AND claim_expires < :now)"
        )
        if relabel:
            condition += " OR #s = :labeled"
        elif changed_from:
            condition += (
                " OR (#s = :labeled AND (attribute_not_exists(labeled_with) OR labeled_with <> :version))"
            )
        values: dict[str, Any] = {":failed": "failed", ":page": page}
        if relabel or changed_from:
            values[":labeled"] = "labeled"
        if changed_from and not relabel:
            values[":version"] = changed_from
        claim = self._claim_if(frame, run_id, condition, values, now, page)
        if claim is not None:
            return claim
        item = self._item(frame)
        if item.get("run_id") == run_id and item.get("status") == "claimed":
            return Claim(frame, False, "listed twice in this run (under another source); labeled once")
        holder = str(item.get("run_id", ""))
        if item.get("status") == "claimed" and holder and self.run_status(holder) == "failed":
            stolen = self._claim_if(
                frame, run_id, "run_id = :holder AND #s = :claimed", {":holder": holder}, now, page
            )
            if stolen is not None:
                return stolen
            item = self._item(frame)
        if item.get("status") == "labeled":
            same = " with this profile and models" if changed_from else ""
            return Claim(frame, False, f"already labeled by run {item.get('run_id')}{same}")
        return Claim(frame, False, f"being labeled by run {item.get('run_id')}")

    def _claim_new(
        self, frame: str, run_id: str, now: int, page: str
    ) -> tuple[Claim | None, dict[str, Any] | None]:
        """A frame the ledger has never seen (a new drive log's frames: the common case) is claimed
        by a put with the one condition that it is absent: a third of an update's CPU in local mode,
        the same write in DynamoDB. Otherwise the item the ledger holds (returned by the failed
        condition check, so no read is spent on it)."""
        try:
            self.client.put_item(
                TableName=self.table,
                Item=self._new_item(frame, run_id, now, page),
                ConditionExpression="attribute_not_exists(pk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
            return Claim(frame, True), None
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            held = err.response.get("Item")
            return None, {k: _de.deserialize(v) for k, v in held.items()} if isinstance(held, dict) else None

    def _new_item(self, frame: str, run_id: str, now: int, page: str) -> dict[str, Any]:
        item = {
            "pk": frame,
            "status": "claimed",
            "run_id": run_id,
            "claim_expires": now + self.claim_ttl_seconds,
            "updated_at": now,
            "claim_page": page,
        }
        return {k: _ser.serialize(v) for k, v in item.items()}

    @staticmethod
    def _labeled_elsewhere(
        item: dict[str, Any] | None, run_id: str, relabel: bool, changed_from: str
    ) -> Claim | None:
        """The answer for a frame another run labeled, when the claim's condition cannot pass for it
        (not this run's, no relabel, the same labeling version): no second write. Every other case
        goes to the conditional update, which decides."""
        if item is None or item.get("status") != "labeled" or item.get("run_id") == run_id or relabel:
            return None
        if changed_from and item.get("labeled_with") != changed_from:
            return None
        same = " with this profile and models" if changed_from else ""
        return Claim(str(item["pk"]), False, f"already labeled by run {item.get('run_id')}{same}")

    def _claim_if(
        self, frame: str, run_id: str, condition: str, values: dict[str, Any], now: int, page: str
    ) -> Claim | None:
        values = {
            **values,
            ":run": run_id,
            ":exp": now + self.claim_ttl_seconds,
            ":now": now,
            ":claimed": "claimed",
            ":page": page,
        }
        try:
            # An update, not a put: a hint an earlier run left (next_route) survives the claim, so a
            # retried listing of this run reads it again.
            old = self.client.update_item(
                TableName=self.table,
                Key={"pk": {"S": frame}},
                UpdateExpression=(
                    "SET #s = :claimed, run_id = :run, claim_expires = :exp, updated_at = :now,"
                    " claim_page = :page"
                ),
                ConditionExpression=condition,
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={k: _ser.serialize(v) for k, v in values.items()},
                ReturnValues="ALL_OLD",
            ).get("Attributes", {})
            return Claim(frame, True, next_route=old.get("next_route", {}).get("S", ""))
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
        return None

    def _item(self, pk: str) -> dict[str, Any]:
        got = self.client.get_item(TableName=self.table, Key={"pk": {"S": pk}}, ConsistentRead=True)
        return {k: _de.deserialize(v) for k, v in got.get("Item", {}).items()}

    def _settle_put(
        self, frame: str, run_id: str, status: str, next_route: str, version: str, page: str
    ) -> None:
        try:
            self.client.put_item(
                TableName=self.table,
                Item=self._settled_item(frame, run_id, status, next_route, version, page),
                ConditionExpression="run_id = :run",
                ExpressionAttributeValues={":run": {"S": run_id}},
            )
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise

    @staticmethod
    def _settled_item(
        frame: str, run_id: str, status: str, next_route: str, version: str, page: str
    ) -> dict[str, Any]:
        # What the update of settle() leaves, whole: a failed frame keeps no labeled_with (a failed
        # frame is claimed again whatever it was labeled with), no claim_expires, the hint only if given.
        item: dict[str, Any] = {
            "pk": frame,
            "status": status,
            "run_id": run_id,
            "updated_at": int(time.time()),
            "claim_page": page,
        }
        if version and status == "labeled":
            item["labeled_with"] = version
        if next_route:
            item["next_route"] = next_route
        return {k: _ser.serialize(v) for k, v in item.items()}

    def settle_many(
        self, settled: list[tuple[str, str, str, str]], run_id: str, version: str = "", threads: int = 1
    ) -> None:
        """:meth:`settle` (frame, status, next_route, claim page) for each, in transactions of up
        to 100 puts conditioned on this run still holding the frame. A frame another run took over
        is left to it, as :meth:`settle` leaves it; the other puts of a cancelled transaction are
        tried again without it. Twice the write units of single puts (see :meth:`claim_many`)."""
        if not self.transactions:
            _map(lambda e: self._settle_put(e[0], run_id, e[1], e[2], version, e[3]), settled, threads)
            return
        groups = _groups(settled)
        _map(lambda g: self._settle_group(g, run_id, version), groups, threads)

    def _settle_group(self, group: list[tuple[str, str, str, str]], run_id: str, version: str) -> None:
        todo = list({entry[0]: entry for entry in group}.values())  # one write per frame
        refused, left = self._write_each(
            todo,
            lambda e: {
                "Put": {
                    "TableName": self.table,
                    "Item": self._settled_item(e[0], run_id, e[1], e[2], version, e[3]),
                    "ConditionExpression": "run_id = :run",
                    "ExpressionAttributeValues": {":run": {"S": run_id}},
                }
            },
        )
        # A frame another run took over is left to it; any other refusal, the single put decides.
        left += [e for e, reason in refused if reason.get("Code") != "ConditionalCheckFailed"]
        for frame, status, route, page in left:
            self._settle_put(frame, run_id, status, route, version, page)

    # --- run records -----------------------------------------------------------------------------
    def mark_run(self, run_id: str, status: str, detail: str = "") -> None:
        """Record a run's state (``running``, ``succeeded``, ``failed``) under ``run#<run_id>``.

        ``failed`` releases every frame the run still holds as ``claimed``: the next run that
        meets such a frame takes it over (see :meth:`claim`).
        """
        item = {"pk": f"run#{run_id}", "status": status, "updated_at": int(time.time())}
        if detail:
            item["detail"] = detail[:1000]
        self.client.put_item(TableName=self.table, Item={k: _ser.serialize(v) for k, v in item.items()})
        self._run_status.pop(run_id, None)

    def run_status(self, run_id: str) -> str | None:
        """A run's recorded state, cached for ``RUN_STATUS_CACHE_S`` (one listing page meets the same
        holder many times; a resumed run is seen as running again within that time)."""
        now = time.monotonic()
        cached = self._run_status.get(run_id)
        if cached is None or now - cached[0] > RUN_STATUS_CACHE_S:
            cached = (now, self._item(f"run#{run_id}").get("status"))
            self._run_status[run_id] = cached
        return cached[1]

    def settle(
        self,
        frame: str,
        run_id: str,
        status: str,
        next_route: str = "",
        version: str = "",
        page: str | None = None,
    ) -> None:
        """Record the final status (labeled or failed) of a frame this run claimed.

        ``next_route`` asks the next run that claims the frame to send it that way (e.g. ``adjust``
        after people rejected its labels in a verification job). ``version`` (the run's labeling
        version) is recorded on a labeled frame as ``labeled_with``. ``page``, the listing page the
        frame was claimed from, makes the whole item known: it is put (conditioned on this run still
        holding it) rather than updated, the same write in DynamoDB and half the CPU in local mode.
        """
        if page is not None:
            self._settle_put(frame, run_id, status, next_route, version, page)
            return
        values = {":s": {"S": status}, ":run": {"S": run_id}, ":now": {"N": str(int(time.time()))}}
        expression = "SET #s = :s, updated_at = :now"
        if version and status == "labeled":
            expression += ", labeled_with = :version"
            values[":version"] = {"S": version}
        if next_route:
            expression += ", next_route = :next REMOVE claim_expires"
            values[":next"] = {"S": next_route}
        else:
            expression += " REMOVE claim_expires, next_route"
        try:
            self.client.update_item(
                TableName=self.table,
                Key={"pk": {"S": frame}},
                UpdateExpression=expression,
                ConditionExpression="run_id = :run",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=values,
            )
        except ClientError as err:
            # Another run took the frame over after our claim went stale: its record wins.
            if err.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise


def _groups(items: list[T]) -> list[list[T]]:
    """``items`` cut into transactions' worth."""
    return [items[i : i + TRANSACTION_ITEMS] for i in range(0, len(items), TRANSACTION_ITEMS)]


def _map(fn: Callable[[T], R], items: Iterable[T], threads: int) -> list[R]:
    items = list(items)
    if threads <= 1 or len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(max_workers=min(threads, len(items))) as pool:
        return list(pool.map(fn, items))
