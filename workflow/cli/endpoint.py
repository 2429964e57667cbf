"""``autolabel endpoint ...``: the deploy parameters of the stack's model endpoint.

- ``resolve MODEL_ID``: a SageMaker JumpStart model;
- ``package MODEL --out model.tar.gz``: this project's model archive (any known or ONNX model), served
  by a SageMaker PyTorch framework container through ``code/inference.py``, as the local endpoint runs it;
- ``upload model.tar.gz --stack NAME``: puts the archive in the stack's bucket.

Each prints the ``sam deploy --parameter-overrides`` that make the stack host the model (image URI, model
data, entry script, instance type, response format) for one region and instance type. The sagemaker SDK
runs in this interpreter when installed, otherwise in ``.venv-jumpstart`` (``make jumpstart-sdk``).
"""

from __future__ import annotations

import argparse
import json
import sys

from workflow.cli import endpoint_package
from workflow.jumpstart.resolve import (
    LATEST,
    JumpStartArtifacts,
    JumpStartResolveError,
    JumpStartUnavailable,
    format_overrides,
    parameter_overrides,
    resolve_model,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``autolabel endpoint`` and its sub-commands."""
    actions = parser.add_subparsers(dest="endpoint_action", required=True)
    resolve = actions.add_parser(
        "resolve",
        help="turn a JumpStart model id into sam deploy --parameter-overrides",
        description="Turn a SageMaker JumpStart model id into sam deploy --parameter-overrides "
        "(needs AWS credentials: the SDK reads the public JumpStart bucket of the region).",
    )
    resolve.add_argument(
        "model_id", help="JumpStart model id, e.g. mxnet-is-mask-rcnn-fpn-resnet101-v1d-coco"
    )
    resolve.add_argument("--region", required=True, help="region the stack is deployed to")
    resolve.add_argument("--instance-type", required=True, help="endpoint instance type, e.g. ml.g4dn.xlarge")
    resolve.add_argument("--model-version", default=LATEST, help="model version (default: the latest)")
    resolve.add_argument("--endpoint-name", help="EndpointName to create (default: autolabel-<model id>)")
    resolve.add_argument(
        "--json", action="store_true", help="print the resolved artefacts and overrides as JSON"
    )
    endpoint_package.add_arguments(actions)


def run(args: argparse.Namespace) -> int:
    """Resolve the model and print its overrides; 1 when the SDK is missing or rejects the request."""
    if args.endpoint_action in endpoint_package.ACTIONS:
        return endpoint_package.run(args)
    try:
        artifacts = resolve_model(args.model_id, args.region, args.instance_type, args.model_version)
    except (JumpStartUnavailable, JumpStartResolveError) as exc:
        print(f"autolabel endpoint resolve: {exc}", file=sys.stderr)
        return 1
    overrides = parameter_overrides(artifacts, args.endpoint_name)
    if args.json:
        print(json.dumps({"artifacts": artifacts.to_dict(), "parameter_overrides": overrides}, indent=2))
    else:
        print(format_overrides(overrides))
    if not artifacts.prepacked:
        _warn_not_prepacked(artifacts)
        return 1
    return 0


def _warn_not_prepacked(artifacts: JumpStartArtifacts) -> None:
    print(
        f"autolabel endpoint resolve: {artifacts.model_id} {artifacts.model_version} has no prepacked "
        f"artefact: its inference script is the separate tarball {artifacts.script_uri}, while the "
        "template loads the code from model.tar.gz's code/ folder. Repack: put that tarball's files under "
        f"code/ inside {artifacts.model_data_url}, upload the result and pass it as ModelDataUrl.",
        file=sys.stderr,
    )
