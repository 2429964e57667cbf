"""The words of the workflow that several modules share, as types (no heavy imports: Lambda handlers
that only move records around import these without numpy).

- a **frame** is one camera image, named by its URI (``s3://...``, or a local path before upload);
- a **batch** is the frames one LabelBatches child labels; a **page** is one listing page of a source;
- a **model** is one detector behind one **endpoint**; its **response format** is how it answers;
- **fusion** makes the models' boxes of a frame one label set; **pooling** pools one model's
  candidates over views of a frame (tiles, flips); **merge** is the MergeBatch step (map, fuse,
  route); **routing** decides where a frame goes (a **route**: auto, verify or adjust);
- a **review** is people checking routed frames in a **review job** (a Ground Truth labeling job);
- a **shard** is one piece of the published dataset.
"""

from __future__ import annotations

from typing import Literal

FusionMethod = Literal["wbf", "nms", "best_model"]
FUSION_METHODS: tuple[FusionMethod, ...] = ("wbf", "nms", "best_model")

# How a model's endpoint answers: this project's JSON, or a JumpStart vision model's verbose JSON.
# The ``response_format`` of ``workflow.domain.profile.ModelEndpoint`` (profile and run input alike).
ResponseFormat = Literal["autolabel", "jumpstart"]
