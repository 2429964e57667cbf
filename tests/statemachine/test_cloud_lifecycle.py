"""A local cloud that fails to start or to stop still stops moto's mock, so the next cloud in the
process starts clean (before, a half-started cloud left its tables behind and every later cloud
failed with "Table already exists")."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from workflow.local.cloud import REGION, LocalCloud


def _no_model() -> Any:
    raise AssertionError("no model is needed to start and stop a cloud")


def _tables() -> list[str]:
    return list(boto3.client("dynamodb", region_name=REGION).list_tables()["TableNames"])


def test_a_cloud_that_fails_to_start_leaves_nothing_active(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: LocalCloud, resolver: Any) -> str:
        raise RuntimeError("state machine rejected")

    with monkeypatch.context() as patch:
        patch.setattr(LocalCloud, "_create_state_machine", broken)
        with pytest.raises(RuntimeError, match="state machine rejected"), LocalCloud({"m": _no_model}):
            pass
    with LocalCloud({"m": _no_model}) as cloud:  # the tables it creates are new again
        assert cloud.state_machine_arn and len(_tables()) >= 2


def test_a_part_that_fails_to_stop_does_not_keep_the_mock(monkeypatch: pytest.MonkeyPatch) -> None:
    cloud = LocalCloud({"m": _no_model})
    cloud.start()
    assert cloud.labeling is not None

    def stuck() -> None:
        raise TimeoutError("label server did not stop")

    monkeypatch.setattr(cloud.labeling, "stop", stuck)
    with pytest.raises(TimeoutError, match="did not stop"):
        cloud.stop()
    assert cloud._mock is None
    with LocalCloud({"m": _no_model}) as again:
        assert again.state_machine_arn
