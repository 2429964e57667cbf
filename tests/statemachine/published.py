"""Reading a finished run's sharded dataset back as one piece (the tests' runs are small).

The workflow publishes shards (``dataset/index.json`` lists them) and per-shard report lines;
``joined`` reads them all and writes the joined output manifest and COCO next to the shards under
``joined/`` (a test-side copy, never read by the workflow), so tests can check one file each.
"""

from __future__ import annotations

import json
from typing import Any

from workflow.domain.coco import merge_coco


def _get(s3: Any, uri: str) -> bytes:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def _lines(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.decode().splitlines() if line.strip()]


def joined(s3: Any, summary: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The run's report with ``frames`` (every frame's line, skipped ones included) and the summary
    with ``outputs.output_manifest`` / ``coco`` / ``segmentation_manifest`` pointing at joined copies."""
    report = json.loads(_get(s3, summary["outputs"]["report"]))
    index = json.loads(_get(s3, summary["outputs"]["index"]))
    frames: list[dict[str, Any]] = []
    for shard in index["shards"]:
        frames += _lines(_get(s3, shard["frame_report"]))
    for uri in index["skipped"]:
        frames += [{**s, "status": "skipped"} for s in json.loads(_get(s3, uri))]
    report["frames"] = frames
    base = summary["outputs"]["index"].rsplit("/dataset/", 1)[0]
    bucket, _, prefix = base.removeprefix("s3://").partition("/")
    outputs = dict(summary["outputs"])
    manifest = b"".join(_get(s3, s["output_manifest"]) for s in index["shards"])
    s3.put_object(Bucket=bucket, Key=f"{prefix}/joined/output.manifest", Body=manifest)
    outputs["output_manifest"] = f"{base}/joined/output.manifest"
    coco = merge_coco(json.loads(_get(s3, s["coco"])) for s in index["shards"])
    s3.put_object(Bucket=bucket, Key=f"{prefix}/joined/coco.json", Body=json.dumps(coco).encode())
    outputs["coco"] = f"{base}/joined/coco.json"
    seg = [_get(s3, s["segmentation_manifest"]) for s in index["shards"] if s.get("segmentation_manifest")]
    if seg:
        s3.put_object(Bucket=bucket, Key=f"{prefix}/joined/segmentation.manifest", Body=b"".join(seg))
        outputs["segmentation_manifest"] = f"{base}/joined/segmentation.manifest"
    return report, {**summary, "outputs": outputs}
