"""Exports of a run's published dataset into the formats other tools load.

A run's dataset is published in shards (``dataset/index.json`` lists them); :mod:`.source` reads
them one at a time (a local run's OUT folder, or ``s3://.../runs/<id>/``) and joins each shard's
final labels, machine pre-labels and report lines into :class:`.records.ExportFrame` records; the
writers in :mod:`.writers` stream those frames into COCO, a COCO results file, YOLO, Label Studio
tasks, CVAT for images 1.1 and a FiftyOne-importable COCO folder. Memory holds one shard.
"""
