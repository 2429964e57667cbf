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


def test_a_running_cloud_keeps_its_start_out_of_the_collectors_scans() -> None:
    import gc
    import weakref

    assert gc.get_freeze_count() == 0
    with LocalCloud({"m": _no_model}):
        frozen = gc.get_freeze_count()
        assert frozen > 100_000  # moto, botocore's models, the handlers' modules

        class Node:
            pass

        # a cycle made during the run is garbage the collector still finds
        a, b = Node(), Node()
        a.other, b.other = b, a  # type: ignore[attr-defined]
        gone = weakref.ref(a)
        del a, b
        gc.collect()
        assert gone() is None
    assert gc.get_freeze_count() == 0  # stopped: everything is collectable again


def test_a_running_cloud_hands_the_interpreter_lock_over_sooner_and_gives_it_back() -> None:
    import sys

    from workflow.local.cloud import SWITCH_INTERVAL_S

    before = sys.getswitchinterval()
    with LocalCloud({"m": _no_model}):
        assert sys.getswitchinterval() == pytest.approx(min(before, SWITCH_INTERVAL_S))
    assert sys.getswitchinterval() == pytest.approx(before)


def test_a_started_cloud_has_the_handlers_warm() -> None:
    """As a warm Lambda: the SDK clients built, every payload model's validator built, before a run."""
    import sys

    from pydantic import BaseModel

    from workflow.adapters import aws as aws_adapters

    with LocalCloud({"m": _no_model}):
        adapters = aws_adapters.aws()
        assert {"s3", "tokens", "ledger", "callbacks", "endpoints"} <= set(vars(adapters))
        deferred = [
            f"{name}.{value.__name__}"
            for name, module in list(sys.modules.items())
            if name.startswith("workflow.")
            for value in list(vars(module).values())
            if isinstance(value, type)
            and issubclass(value, BaseModel)
            and value.__module__ == name
            and not value.__pydantic_complete__
        ]
        assert deferred == []


def test_moto_error_answers_name_their_service() -> None:
    from workflow.local.cloud import _service_name_from_moto_package

    assert _service_name_from_moto_package("sagemakerruntime") == "sagemaker-runtime"
    assert _service_name_from_moto_package("s3") == "s3"
    assert _service_name_from_moto_package("not-a-service") == "not-a-service"
    with LocalCloud({"m": _no_model}) as cloud:  # a NoSuchKey still reaches boto3 as moto answers it
        s3 = cloud.s3
        with pytest.raises(s3.exceptions.NoSuchKey):
            s3.get_object(Bucket=cloud.data_bucket, Key="missing.jpg")
