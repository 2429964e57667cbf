"""Typed settings, read once from the environment (Lambda) or built by the local runtime / CLI."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from workflow.domain.run import ModelEndpoint


class Settings(BaseModel):
    """Everything a handler needs to know about its environment."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    region: str = "us-east-1"
    data_bucket: str
    runs_prefix: str = "runs"
    token_table: str
    ledger_table: str
    default_models: list[ModelEndpoint] = Field(default_factory=list)
    labeling_role_arn: str = ""
    workteam_arn: str = ""
    prelabel_attribute: str = "prelabel"
    label_attribute: str = "reviewed"
    task_title: str = "Adjust the pre-labeled objects in this driving frame"
    task_description: str = (
        "Move, resize, add or delete boxes so that every object of the listed classes is boxed."
    )
    workers_per_frame: int = Field(1, ge=1, le=9)
    task_time_limit_seconds: int = Field(600, ge=30, le=28_800)
    # Label Studio review backend (see workflow/steps/review_labelstudio.py)
    label_studio_url: str = ""
    label_studio_secret_arn: str = ""  # Secrets Manager: {"api_token": ..., "webhook_secret": ...}
    label_studio_api_key: str = ""  # local mode / CLI (LABEL_STUDIO_API_KEY); AWS reads the secret
    label_studio_webhook_secret: str = ""  # local mode; AWS reads the secret
    label_studio_webhook_url: str = ""
    label_studio_images: Literal["s3-storage", "presigned", "local-files"] = "s3-storage"
    label_studio_local_files: str = ""  # local-files: "s3://bucket/prefix/=/local/folder"
    label_studio_presign_ttl_seconds: int = Field(3600, ge=60, le=604_800)
    # The endpoints InvokeModels may call (the stack's EndpointName and ProfileEndpointNames);
    # empty = not checked (local mode, tests). PrepareRun refuses a run naming any other.
    invokable_endpoints: tuple[str, ...] = ()
    ledger_claim_ttl_seconds: int = 2 * 86_400
    # Claims and settles in transactions of 100 (LEDGER_TRANSACTIONS=true): local mode's choice,
    # where a request costs CPU and no money; on AWS single writes cost half the write units.
    ledger_transactions: bool = False
    token_ttl_seconds: int = 31 * 86_400

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Build from environment variables (the names in template.yaml's Globals)."""
        e = os.environ if env is None else env
        models = json.loads(e.get("DEFAULT_MODELS", "[]"))
        optional = {
            "labeling_role_arn": e.get("LABELING_ROLE_ARN"),
            "workteam_arn": e.get("WORKTEAM_ARN"),
            "prelabel_attribute": e.get("PRELABEL_ATTRIBUTE"),
            "label_attribute": e.get("LABEL_ATTRIBUTE"),
            "task_title": e.get("TASK_TITLE"),
            "task_description": e.get("TASK_DESCRIPTION"),
            "workers_per_frame": e.get("WORKERS_PER_FRAME"),
            "task_time_limit_seconds": e.get("TASK_TIME_LIMIT_SECONDS"),
            "ledger_transactions": e.get("LEDGER_TRANSACTIONS"),
            "label_studio_url": e.get("LABEL_STUDIO_URL"),
            "label_studio_secret_arn": e.get("LABEL_STUDIO_SECRET_ARN"),
            "label_studio_api_key": e.get("LABEL_STUDIO_API_KEY"),
            "label_studio_webhook_secret": e.get("LABEL_STUDIO_WEBHOOK_SECRET"),
            "label_studio_webhook_url": e.get("LABEL_STUDIO_WEBHOOK_URL"),
            "label_studio_images": e.get("LABEL_STUDIO_IMAGES"),
            "label_studio_local_files": e.get("LABEL_STUDIO_LOCAL_FILES"),
            "label_studio_presign_ttl_seconds": e.get("LABEL_STUDIO_PRESIGN_TTL_SECONDS"),
        }
        return cls(
            region=e.get("AWS_REGION") or e.get("AWS_DEFAULT_REGION") or "us-east-1",
            data_bucket=e["DATA_BUCKET"],
            token_table=e["TOKEN_TABLE"],
            ledger_table=e["LEDGER_TABLE"],
            default_models=[ModelEndpoint.model_validate(m) for m in models],
            invokable_endpoints=tuple(
                n.strip() for n in e.get("INVOKABLE_ENDPOINTS", "").split(",") if n.strip()
            ),
            **{k: v for k, v in optional.items() if v},
        )


@lru_cache(maxsize=1)
def settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings.from_env()
