"""Where LocalCloud does moto's work more cheaply, it must answer as moto (and AWS) answer: a
transaction that is cancelled leaves every item as it was (with a workspace, on disk too), and an
endpoint's read of its frames gives the bytes and errors a GetObject gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from workflow.local.workspace import Workspace

TABLE = "LedgerTable"


def _put(pk: str, status: str) -> dict[str, Any]:
    return {
        "Put": {
            "TableName": TABLE,
            "Item": {"pk": {"S": pk}, "status": {"S": status}},
            "ConditionExpression": "attribute_not_exists(pk)",
        }
    }


def _items(client: Any, keys: str) -> dict[str, str | None]:
    found = {}
    for key in keys:
        item = client.get_item(TableName=TABLE, Key={"pk": {"S": key}}, ConsistentRead=True).get("Item")
        found[key] = None if item is None else item["status"]["S"]
    return found


@pytest.mark.parametrize("persisted", [False, True], ids=["memory", "workspace"])
def test_a_cancelled_transaction_leaves_every_item_as_it_was(
    local_cloud, tmp_path: Path, persisted: bool
) -> None:
    workspace = Workspace(tmp_path / "ws") if persisted else None
    local_cloud({}, workspace=workspace)
    client = boto3.client("dynamodb", region_name="us-east-1")
    client.put_item(TableName=TABLE, Item={"pk": {"S": "a"}, "status": {"S": "old"}})
    # An update moto applies in place, two new items, then a condition that fails.
    update = {
        "Update": {
            "TableName": TABLE,
            "Key": {"pk": {"S": "a"}},
            "UpdateExpression": "SET #s = :n",
            "ExpressionAttributeNames": {"#s": "status"},
            "ExpressionAttributeValues": {":n": {"S": "changed"}},
        }
    }
    check = {
        "ConditionCheck": {
            "TableName": TABLE,
            "Key": {"pk": {"S": "z"}},
            "ConditionExpression": "attribute_exists(pk)",
        }
    }
    with pytest.raises(ClientError) as caught:
        client.transact_write_items(TransactItems=[_put("b", "new"), update, _put("c", "new"), check])
    assert caught.value.response["Error"]["Code"] == "TransactionCanceledException"
    codes = [r["Code"] for r in caught.value.response["CancellationReasons"]]
    assert codes == ["None", "None", "None", "ConditionalCheckFailed"]
    assert _items(client, "abc") == {"a": "old", "b": None, "c": None}
    # The same writes without the failing check all land.
    client.transact_write_items(TransactItems=[_put("b", "new"), update, _put("c", "new")])
    assert _items(client, "abc") == {"a": "changed", "b": "new", "c": "new"}
    if workspace is not None:
        stored = {i["pk"]["S"]: i["status"]["S"] for i in workspace.items(TABLE)}
        assert stored == {"a": "changed", "b": "new", "c": "new"}


def test_an_endpoint_reads_its_frames_as_a_get_object_reads_them(local_cloud) -> None:
    cloud = local_cloud({})
    body = bytes(range(256)) * 300
    cloud.s3.put_object(Bucket=cloud.data_bucket, Key="frames/a.jpg", Body=body)
    assert cloud._read_object(cloud.data_bucket, "frames/a.jpg") == body
    for bucket, key in ((cloud.data_bucket, "frames/missing.jpg"), ("no-such-bucket", "frames/a.jpg")):
        with pytest.raises(ClientError) as direct:
            cloud._read_object(bucket, key)
        with pytest.raises(ClientError) as client:
            cloud.s3.get_object(Bucket=bucket, Key=key)
        assert direct.value.response["Error"] == client.value.response["Error"]
