"""RunStore and S3Store's streamed writes against moto's S3: one owner for a run's objects, jobs'
manifests written in bounded memory (multipart past 8 MiB, aborted on error, never half an object)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from workflow.adapters.run_store import RunStore, bounded_map
from workflow.adapters.s3 import PART_BYTES, S3Store
from workflow.domain.detections import Detections, Provenance
from workflow.domain.records import BatchItem, BatchLabels, FrameFailure, LabeledFrame, batch_id
from workflow.domain.routing import RouteDecision

BUCKET = "autolabel-data"
MIB = 2**20


class Operations:
    """The S3 operations a client made, in order, with the keys they named."""

    def __init__(self, client: Any) -> None:
        self.names: list[str] = []
        self.keys: list[tuple[str, str]] = []
        client.meta.events.register("before-parameter-build.s3", self._record)

    def _record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.names.append(model.name)
        self.keys.append((model.name, str(params.get("Key", ""))))


@pytest.fixture
def client() -> Iterator[Any]:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        yield s3


@pytest.fixture
def store(client: Any) -> RunStore:
    return RunStore(S3Store(client), BUCKET, "runs/run-1")


def chunks(total: int, size: int = MIB) -> Iterator[bytes]:
    """``total`` bytes in chunks of ``size``, each chunk a different byte (so order shows)."""
    for i in range(0, total, size):
        yield bytes([i // size % 251]) * min(size, total - i)


def test_a_stream_over_8_mib_goes_up_as_a_multipart_upload(client: Any) -> None:
    # Given a stream of 9.5 MiB in 1 MiB chunks
    total = 9 * MIB + MIB // 2
    calls = Operations(client)
    # When it is written
    size = S3Store(client).put_stream(f"s3://{BUCKET}/runs/run-1/big.manifest", chunks(total), "text/plain")
    # Then it went up in two parts (8 MiB, then the rest) and is the stream, byte for byte
    assert size == total
    assert calls.names == ["CreateMultipartUpload", "UploadPart", "UploadPart", "CompleteMultipartUpload"]
    body = client.get_object(Bucket=BUCKET, Key="runs/run-1/big.manifest")["Body"].read()
    assert body == b"".join(chunks(total))
    assert PART_BYTES == 8 * MIB


def test_a_small_stream_is_one_put(client: Any) -> None:
    # Given a stream of 3 chunks, 2 MiB in all
    calls = Operations(client)
    # When it is written
    size = S3Store(client).put_stream(f"s3://{BUCKET}/small", chunks(2 * MIB, MIB), "text/plain")
    # Then one PutObject holds it all
    assert (size, calls.names) == (2 * MIB, ["PutObject"])
    assert client.head_object(Bucket=BUCKET, Key="small")["ContentLength"] == 2 * MIB


def test_an_error_mid_stream_aborts_the_upload_and_leaves_no_object(client: Any) -> None:
    # Given a stream that fails after 9 MiB (one part is up already)
    def failing() -> Iterator[bytes]:
        yield from chunks(9 * MIB)
        raise RuntimeError("a fragment could not be read")

    calls = Operations(client)
    # When it is written, Then the stream's error comes through
    with pytest.raises(RuntimeError, match="a fragment could not be read"):
        S3Store(client).put_stream(f"s3://{BUCKET}/runs/run-1/broken.manifest", failing(), "text/plain")
    # And the upload was aborted: no object under the key, no upload left open
    assert calls.names == ["CreateMultipartUpload", "UploadPart", "AbortMultipartUpload"]
    assert client.list_objects_v2(Bucket=BUCKET, Prefix="runs/run-1/").get("KeyCount") == 0
    assert client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", []) == []


def labeled(frame: str, route: str = "adjust") -> LabeledFrame:
    dets = Detections.empty(640, 480, Provenance("m"), frame)
    return LabeledFrame(frame=frame, labels=dets.to_dict(), models=["m"], route=RouteDecision(route=route))


def test_a_batchs_records_round_trip_and_its_counts_are_written_last(client: Any, store: RunStore) -> None:
    # Given a batch of three frames: one to adjust, one auto-accepted, one failed
    name = batch_id(0, 0, 0)
    frames = [f"s3://logs/day1/{i}.png" for i in range(3)]
    store.put_batch(BatchItem(batch_id=name, frames=frames))
    labels = BatchLabels(
        batch_id=name,
        frames=[labeled(frames[0]), labeled(frames[1], "auto")],
        failed=[FrameFailure(frame=frames[2], reason="m: decode failed\ntraceback...")],
    )
    calls = Operations(client)
    # When the batch's labels are put with its review lines
    assert store.batch_done(name) is None
    counts = store.put_labels(labels, 3, {"adjust-g0": [{"source-ref": frames[0]}], "verify": []})
    # Then the review lines, the labels, and last the counts (the batch's commit record) are written;
    # an empty stream writes nothing
    assert [key for op, key in calls.keys if op == "PutObject"] == [
        f"runs/run-1/review-lines/adjust-g0/{name}.jsonl",
        f"runs/run-1/labels/{name}.json",
        f"runs/run-1/counts/{name}.json",
    ]
    # And the counts hold what the planner needs, and say the batch is done
    assert (counts.frames, counts.labeled, counts.failed) == (3, 2, 1)
    assert counts.streams == {"adjust-g0": 1} and counts.routes == {"adjust": 1, "auto": 1}
    assert counts.failure_reasons == {"m: decode failed": 1} and counts.to_people == 1
    assert store.batch_done(name) == counts
    # And the labels and the batch read back as written
    assert store.get_labels(name) == labels and store.get_batch(name).frames == frames
    assert store.get_labels(batch_id(0, 0, 1)) is None


def test_fan_in_reads_come_back_in_batch_order(store: RunStore) -> None:
    # Given 40 batches written in reverse order, each with one review line
    names = [batch_id(0, i // 10, i % 10) for i in range(40)]
    for name in reversed(names):
        store.put_labels(BatchLabels(batch_id=name), 1, {"verify": [{"source-ref": name}]})
    # When their counts and their review lines are read (bounded parallel GETs)
    counts = [c.batch_id for c in store.all_counts()]
    lines = [ls[0]["source-ref"] for ls in store.review_lines("verify", names)]
    # Then both come in batch order
    assert counts == names and lines == names


def test_reviewed_lines_of_a_job_that_returned_none_for_a_batch_are_empty(store: RunStore) -> None:
    # Given a batch whose lines came back from job 0 but not from job 1
    name = batch_id(0, 0, 0)
    store.put_reviewed(name, 0, [{"source-ref": "s3://logs/a.png"}])
    # When its reviewed lines over both jobs are read
    # Then job 0's lines come with their job, and job 1's absence is no error
    assert store.reviewed(name, [0, 1]) == [(0, {"source-ref": "s3://logs/a.png"})]


def test_bounded_map_keeps_order_and_pulls_only_a_window_ahead() -> None:
    # Given a stream of 100 items that counts how many were taken from it
    pulled = 0

    def items() -> Iterator[int]:
        nonlocal pulled
        for x in range(100):
            pulled += 1
            yield x

    # When it is mapped on 2 threads and the first result is read
    results = bounded_map(lambda x: x * x, items(), threads=2)
    first = next(results)
    # Then at most two calls per thread were started ahead (memory holds a window, not the stream)
    assert first == 0 and pulled <= 4
    # And the rest keep the items' order
    assert [first, *results] == [x * x for x in range(100)]
