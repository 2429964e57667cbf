"""The frame ledger: which frames an earlier or concurrent run labeled or is labeling.

A run claims each frame with a conditional write, so two overlapping runs never label the same frame,
and a frame labeled once is skipped by later runs (unless asked to relabel). Failed frames and
stale claims (a run that died) can be claimed again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

_ser = TypeSerializer()
_de = TypeDeserializer()


@dataclass(frozen=True)
class Claim:
    frame: str
    claimed: bool
    reason: str = ""
    next_route: str = ""  # what an earlier run asked for this frame (e.g. "adjust" after a rejection)


class FrameLedger:
    def __init__(self, client: Any, table: str, claim_ttl_seconds: int = 2 * 86_400) -> None:
        self.client = client
        self.table = table
        self.claim_ttl_seconds = claim_ttl_seconds

    def claim(self, frame: str, run_id: str, relabel: bool = False) -> Claim:
        """Claim a frame for this run; the Claim says why when another run holds it."""
        now = int(time.time())
        condition = (
            "attribute_not_exists(pk) OR run_id = :run OR #s = :failed"
            " OR (#s = :claimed AND claim_expires < :now)"
        )
        if relabel:
            condition += " OR #s = :labeled"
        values = {":run": run_id, ":failed": "failed", ":claimed": "claimed", ":now": now}
        if relabel:
            values[":labeled"] = "labeled"
        values |= {":exp": now + self.claim_ttl_seconds}
        try:
            # An update, not a put: a hint an earlier run left (next_route) survives the claim, so a
            # retried PrepareRun of this run reads it again.
            old = self.client.update_item(
                TableName=self.table,
                Key={"pk": {"S": frame}},
                UpdateExpression="SET #s = :claimed, run_id = :run, claim_expires = :exp, updated_at = :now",
                ConditionExpression=condition,
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={k: _ser.serialize(v) for k, v in values.items()},
                ReturnValues="ALL_OLD",
            ).get("Attributes", {})
            return Claim(frame, True, next_route=old.get("next_route", {}).get("S", ""))
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
        return Claim(frame, False, self._why_taken(frame))

    def _why_taken(self, frame: str) -> str:
        got = self.client.get_item(TableName=self.table, Key={"pk": {"S": frame}}, ConsistentRead=True)
        item = {k: _de.deserialize(v) for k, v in got.get("Item", {}).items()}
        if item.get("status") == "labeled":
            return f"already labeled by run {item.get('run_id')}"
        return f"being labeled by run {item.get('run_id')}"

    def settle(self, frame: str, run_id: str, status: str, next_route: str = "") -> None:
        """Record the final status (labeled or failed) of a frame this run claimed.

        ``next_route`` asks the next run that claims the frame to send it that way (e.g. ``adjust``
        after people rejected its labels in a verification job).
        """
        values = {":s": {"S": status}, ":run": {"S": run_id}, ":now": {"N": str(int(time.time()))}}
        expression = "SET #s = :s, updated_at = :now"
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
