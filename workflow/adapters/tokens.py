"""Task tokens parked in DynamoDB, correlated by InferenceId or labeling-job name.

The task token never rides in an InferenceId (a token is up to 1,024 characters, an InferenceId 64).
Every write that a redelivered message could repeat is conditional, so SNS and EventBridge
at-least-once delivery changes nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

from workflow.domain.run import InferenceRecord

_ser = TypeSerializer()
_de = TypeDeserializer()


def _item(data: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in data.items()}


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    return {k: _de.deserialize(v) for k, v in item.items()}


def _conditional_failed(err: ClientError) -> bool:
    code = err.response.get("Error", {}).get("Code")
    if code == "ConditionalCheckFailedException":
        return True
    if code == "TransactionCanceledException":
        reasons = err.response.get("CancellationReasons", [])
        return any(r.get("Code") == "ConditionalCheckFailed" for r in reasons)
    return False


@dataclass(frozen=True)
class PendingInference:
    inference_id: str
    model: str
    frames: list[str]


@dataclass(frozen=True)
class BatchOutcome:
    """A batch whose inferences have all reported, ready to resume its task."""

    batch_key: str
    batch_id: str
    token: str
    inferences: list[InferenceRecord]

    @property
    def run_id(self) -> str:
        """The run of the batch (its key is ``batch#<run_id>#<batch_id>``)."""
        return self.batch_key.split("#")[1]


class TokenStore:
    def __init__(self, client: Any, table: str, ttl_seconds: int = 31 * 86_400) -> None:
        self.client = client
        self.table = table
        self.ttl_seconds = ttl_seconds

    def _expires(self) -> int:
        return int(time.time()) + self.ttl_seconds

    # --- batches of asynchronous inferences -------------------------------------------------
    def park_batch(self, run_id: str, batch_id: str, token: str, pending: list[PendingInference]) -> str:
        """Store the token of a batch and one item per inference it waits for. Returns the batch key."""
        batch_key = f"batch#{run_id}#{batch_id}"
        expires = self._expires()
        for inf in pending:
            self.client.put_item(
                TableName=self.table,
                Item=_item(
                    {
                        "pk": f"inference#{inf.inference_id}",
                        "batch_key": batch_key,
                        "model": inf.model,
                        "frames": inf.frames,
                        "status": "pending",
                        "expires_at": expires,
                    }
                ),
            )
        self.client.put_item(
            TableName=self.table,
            Item=_item(
                {
                    "pk": batch_key,
                    "batch_id": batch_id,
                    "token": token,
                    "remaining": len(pending),
                    "inference_ids": [p.inference_id for p in pending],
                    "status": "waiting",
                    "expires_at": expires,
                }
            ),
        )
        return batch_key

    def record_inference(
        self, inference_id: str, status: str, output_location: str | None, failure_reason: str | None
    ) -> str | None:
        """Record one notification. Returns the batch key, or None for an unknown inference.

        The inference's status change and the batch's countdown happen in one transaction, once:
        a redelivered notification fails the condition and changes nothing.
        """
        got = self.client.get_item(TableName=self.table, Key=_item({"pk": f"inference#{inference_id}"}))
        if "Item" not in got:
            return None
        batch_key = str(_plain(got["Item"])["batch_key"])
        updates = {
            ":s": status,
            ":pending": "pending",
            ":o": output_location or "",
            ":r": failure_reason or "",
        }
        try:
            self.client.transact_write_items(
                TransactItems=[
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": _item({"pk": f"inference#{inference_id}"}),
                            "UpdateExpression": "SET #s = :s, output_location = :o, failure_reason = :r",
                            "ConditionExpression": "#s = :pending",
                            "ExpressionAttributeNames": {"#s": "status"},
                            "ExpressionAttributeValues": _item(updates),
                        }
                    },
                    {
                        "Update": {
                            "TableName": self.table,
                            "Key": _item({"pk": batch_key}),
                            "UpdateExpression": "ADD remaining :minus_one",
                            "ExpressionAttributeValues": _item({":minus_one": -1}),
                        }
                    },
                ]
            )
        except ClientError as err:
            if not _conditional_failed(err):
                raise
        return batch_key

    def claim_completed_batch(self, batch_key: str) -> BatchOutcome | None:
        """If every inference of the batch has reported and nobody resumed it yet, claim it."""
        got = self.client.get_item(TableName=self.table, Key=_item({"pk": batch_key}), ConsistentRead=True)
        if "Item" not in got:
            return None
        batch = _plain(got["Item"])
        if int(batch["remaining"]) > 0 or batch["status"] != "waiting":
            return None
        try:
            self.client.update_item(
                TableName=self.table,
                Key=_item({"pk": batch_key}),
                UpdateExpression="SET #s = :sending",
                ConditionExpression="#s = :waiting",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=_item({":sending": "sending", ":waiting": "waiting"}),
            )
        except ClientError as err:
            if _conditional_failed(err):
                return None
            raise
        records = [self._inference(i) for i in batch["inference_ids"]]
        return BatchOutcome(batch_key, str(batch["batch_id"]), str(batch["token"]), records)

    def release_batch(self, batch_key: str, sent: bool) -> None:
        """After trying to resume: mark sent, or hand the claim back so a retry can resume it."""
        self.client.update_item(
            TableName=self.table,
            Key=_item({"pk": batch_key}),
            UpdateExpression="SET #s = :s",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues=_item({":s": "sent" if sent else "waiting"}),
        )

    def expire_batch(self, run_id: str, batch_id: str, reason: str) -> list[InferenceRecord] | None:
        """Close the token of a batch whose task timed out (nobody may resume it any more) and return
        its inferences as they stand: the ones still pending carry ``reason``. None when the batch
        was never parked or a callback claimed it first."""
        batch_key = f"batch#{run_id}#{batch_id}"
        try:
            got = self.client.update_item(
                TableName=self.table,
                Key=_item({"pk": batch_key}),
                UpdateExpression="SET #s = :expired",
                ConditionExpression="#s = :waiting",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=_item({":expired": "expired", ":waiting": "waiting"}),
                ReturnValues="ALL_NEW",
            )
        except ClientError as err:
            if _conditional_failed(err):
                return None
            raise
        records = []
        for inference_id in _plain(got["Attributes"])["inference_ids"]:
            item = self.client.get_item(
                TableName=self.table, Key=_item({"pk": f"inference#{inference_id}"}), ConsistentRead=True
            )
            data = _plain(item["Item"])
            answered = data["status"] in ("Completed", "Failed")
            records.append(
                InferenceRecord(
                    model=str(data["model"]),
                    inference_id=inference_id,
                    status=data["status"] if answered else "Failed",
                    output_location=data.get("output_location") or None,
                    failure_reason=(data.get("failure_reason") or None) if answered else reason,
                    frames=list(data.get("frames", [])),
                )
            )
        return records

    def _inference(self, inference_id: str) -> InferenceRecord:
        got = self.client.get_item(
            TableName=self.table, Key=_item({"pk": f"inference#{inference_id}"}), ConsistentRead=True
        )
        item = _plain(got["Item"])
        return InferenceRecord(
            model=str(item["model"]),
            inference_id=inference_id,
            status=item["status"],
            output_location=item.get("output_location") or None,
            failure_reason=item.get("failure_reason") or None,
            frames=list(item.get("frames", [])),
        )

    # --- labeling jobs ------------------------------------------------------------------------
    def park_job(self, job_name: str, token: str) -> None:
        self.client.put_item(
            TableName=self.table,
            Item=_item(
                {"pk": f"job#{job_name}", "token": token, "status": "waiting", "expires_at": self._expires()}
            ),
        )

    def job_waiting(self, job_name: str) -> bool:
        """Whether the job's token is parked and not yet claimed."""
        got = self.client.get_item(
            TableName=self.table, Key=_item({"pk": f"job#{job_name}"}), ConsistentRead=True
        )
        return "Item" in got and _plain(got["Item"]).get("status") == "waiting"

    def claim_job(self, job_name: str) -> str | None:
        """The job's token, claimed once; None if unknown or already resumed."""
        try:
            got = self.client.update_item(
                TableName=self.table,
                Key=_item({"pk": f"job#{job_name}"}),
                UpdateExpression="SET #s = :sent",
                ConditionExpression="#s = :waiting",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues=_item({":sent": "sent", ":waiting": "waiting"}),
                ReturnValues="ALL_NEW",
            )
        except ClientError as err:
            if _conditional_failed(err):
                return None
            raise
        return str(_plain(got["Attributes"])["token"])

    # --- review jobs of other backends (Label Studio) ----------------------------------------------
    def link_review(self, key: str, descriptor_uri: str) -> None:
        """Remember where a review job's description lies, by the backend's own key (project id)."""
        self.client.put_item(
            TableName=self.table,
            Item=_item({"pk": f"review#{key}", "descriptor": descriptor_uri, "expires_at": self._expires()}),
        )

    def review_link(self, key: str) -> str | None:
        """The description URI stored by :meth:`link_review`; None for a key nobody linked."""
        got = self.client.get_item(
            TableName=self.table, Key=_item({"pk": f"review#{key}"}), ConsistentRead=True
        )
        return str(_plain(got["Item"])["descriptor"]) if "Item" in got else None
