"""Frames: S3 URIs, which keys are frames, batching and inference ids."""

from __future__ import annotations

import pytest

from workflow.domain.errors import InvalidS3Uri
from workflow.domain.frames import (
    S3Uri,
    batch_frames,
    batch_id,
    dedupe_preserving_order,
    inference_id,
    is_frame_key,
)


@pytest.mark.parametrize(
    ("uri", "bucket", "key", "printed"),
    [
        (
            "s3://drive-logs/log1/000008.png",
            "drive-logs",
            "log1/000008.png",
            "s3://drive-logs/log1/000008.png",
        ),
        ("s3://drive-logs/log1/", "drive-logs", "log1/", "s3://drive-logs/log1/"),
        ("s3://drive-logs", "drive-logs", "", "s3://drive-logs/"),
        ("s3://my.bucket-1/a b/c.jpg", "my.bucket-1", "a b/c.jpg", "s3://my.bucket-1/a b/c.jpg"),
        ("s3://abc/k", "abc", "k", "s3://abc/k"),
    ],
)
def test_valid_uri_parses_into_bucket_and_key(uri: str, bucket: str, key: str, printed: str) -> None:
    # When an s3:// URI is parsed
    parsed = S3Uri.parse(uri)
    # Then it has the bucket and key, and prints as an s3:// URI again
    assert (parsed.bucket, parsed.key) == (bucket, key)
    assert str(parsed) == printed and S3Uri.parse(printed) == parsed


@pytest.mark.parametrize(
    ("uri", "says"),
    [
        ("https://drive-logs.s3.amazonaws.com/log1/000008.png", "not an s3:// URI"),
        ("/data/log1/000008.png", "not an s3:// URI"),
        ("S3://drive-logs/log1/", "not an s3:// URI"),
        ("s3:/drive-logs/log1/", "not an s3:// URI"),
        ("", "not an s3:// URI"),
        ("s3://", "invalid bucket name"),
        ("s3:///log1/000008.png", "invalid bucket name"),
        ("s3://Drive-Logs/log1/", "invalid bucket name"),
        ("s3://ab/log1/", "invalid bucket name"),
        ("s3://-drive-logs/log1/", "invalid bucket name"),
        ("s3://drive..logs/log1/", "invalid bucket name"),
        ("s3://drive_logs/log1/", "invalid bucket name"),
        ("s3://" + "a" * 64 + "/k", "invalid bucket name"),
    ],
)
def test_wrong_uri_raises_invalid_s3_uri_naming_the_problem(uri: str, says: str) -> None:
    # When a string that is not a valid s3:// URI is parsed
    with pytest.raises(InvalidS3Uri) as raised:
        S3Uri.parse(uri)
    # Then the error says why, and quotes the input
    assert says in str(raised.value) and repr(uri) in str(raised.value)


@pytest.mark.parametrize("value", [None, 42, b"s3://drive-logs/k"])
def test_non_string_raises_invalid_s3_uri(value: object) -> None:
    with pytest.raises(InvalidS3Uri):
        S3Uri.parse(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("base", "parts", "expected"),
    [
        ("s3://b-1/runs", ("r1", "labels/"), "s3://b-1/runs/r1/labels"),
        ("s3://b-1/runs/", ("/r1/",), "s3://b-1/runs/r1"),
        ("s3://b-1", ("review", "input-000.manifest"), "s3://b-1/review/input-000.manifest"),
        ("s3://b-1/runs", ("",), "s3://b-1/runs"),
    ],
)
def test_join_adds_path_parts_with_single_slashes(base: str, parts: tuple[str, ...], expected: str) -> None:
    assert str(S3Uri.parse(base).join(*parts)) == expected


@pytest.mark.parametrize(
    ("key", "is_frame"),
    [
        ("log1/000008.png", True),
        ("log1/000.jpg", True),
        ("log1/IMG_0001.JPEG", True),
        ("log1/CAM_FRONT.JPG", True),
        ("log1/notes.txt", False),
        ("log1/000008.png.bak", False),
        ("log1/scene.bag", False),
        ("log1/", False),
        ("log1/png", False),
    ],
)
def test_only_jpeg_and_png_keys_are_frames(key: str, is_frame: bool) -> None:
    assert is_frame_key(key) is is_frame


@pytest.mark.parametrize(
    ("count", "size", "sizes"),
    [(10, 3, [3, 3, 3, 1]), (6, 2, [2, 2, 2]), (1, 8, [1]), (0, 4, []), (5, 500, [5])],
)
def test_batches_cover_every_frame_once_in_order(count: int, size: int, sizes: list[int]) -> None:
    # Given some frames
    frames = [f"s3://drive-logs/log1/{i:06d}.png" for i in range(count)]
    # When they are cut into batches
    batches = batch_frames(frames, size)
    # Then the batches have the expected sizes and, laid end to end, are the frames in order
    assert [len(b) for b in batches] == sizes
    assert [f for b in batches for f in b] == frames


@pytest.mark.parametrize("size", [0, -1])
def test_batch_size_below_one_is_refused(size: int) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        batch_frames(["s3://drive-logs/a.png"], size)


def test_batch_ids_sort_in_batch_order() -> None:
    ids = [batch_id(i) for i in (0, 1, 9, 10, 123456)]
    assert ids == ["b000000", "b000001", "b000009", "b000010", "b123456"] == sorted(ids)


def test_inference_id_is_deterministic_short_printable_and_distinct() -> None:
    # Given the inputs of several invocations
    cases = [
        ("run-1", "b000000", "nanodet", ""),
        ("run-1", "b000000", "yolo", ""),
        ("run-1", "b000001", "nanodet", ""),
        ("run-2", "b000000", "nanodet", ""),
        ("run-1", "b000000", "nanodet", "s3://drive-logs/log1/000008.png"),
    ]
    # When their inference ids are made twice
    ids = [inference_id(*case) for case in cases]
    # Then a retry gets the same id, different invocations differ, and each fits SageMaker's limits
    assert ids == [inference_id(*case) for case in cases]
    assert len(set(ids)) == len(ids)
    assert all(
        1 <= len(i) <= 64 and i.isprintable() and i.startswith(c[1]) for i, c in zip(ids, cases, strict=True)
    )


def test_dedupe_keeps_the_first_of_each_in_order() -> None:
    assert dedupe_preserving_order(["b", "a", "b", "c", "a"]) == ["b", "a", "c"]
