"""``autolabel endpoint package`` and ``autolabel endpoint upload``: this project's model archive.

``package MODEL --out model.tar.gz`` builds the SageMaker model archive of a known model name or an
``.onnx`` file with the inference settings of the flags (those of ``autolabel detect``);
``upload model.tar.gz --stack NAME`` puts it in the stack's data bucket. Both print the
``sam deploy --parameter-overrides`` once the region is known (``--region``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from workflow.inference.settings import InferenceSettings
from workflow.jumpstart.resolve import JumpStartResolveError, JumpStartUnavailable, format_overrides

ACTIONS = ("package", "upload")
DEFAULT_INSTANCE_TYPE = "ml.c5.xlarge"


def add_arguments(actions: Any) -> None:
    """The ``package`` and ``upload`` sub-commands of ``autolabel endpoint``."""
    from workflow.cli.detect import add_inference_arguments

    package = actions.add_parser(
        "package",
        help="build model.tar.gz (weights, code/inference.py, settings, wheels) for a SageMaker endpoint",
        description="Build a SageMaker model archive of a known model or an .onnx file: the weights, "
        "code/inference.py with the project code it imports, the inference settings, and the Python "
        "dependencies as wheels for the framework container (no network needed at start).",
    )
    package.add_argument("model", help="known model name (e.g. nanodet-coco) or path to an .onnx file")
    package.add_argument("--out", type=Path, default=Path("model.tar.gz"), help="archive to write")
    _add_deploy_arguments(package)
    package.add_argument(
        "--model-data-url", help="where the archive will be uploaded (s3://...), for the printed overrides"
    )
    package.add_argument(
        "--profile",
        type=Path,
        help="package MODEL as this labeling profile names it: its local_model, local_inference settings "
        "(flags override them) and endpoint",
    )
    add_inference_arguments(package)
    upload = actions.add_parser(
        "upload",
        help="upload model.tar.gz to the stack's data bucket and print the sam deploy overrides",
        description="Upload an archive built by `autolabel endpoint package` to the stack's bucket "
        "(s3://<DataBucketName>/models/<endpoint>/<sha>/model.tar.gz) and print the overrides.",
    )
    upload.add_argument("archive", type=Path, help="the model.tar.gz to upload")
    where = upload.add_mutually_exclusive_group(required=True)
    where.add_argument("--stack", help="the deployed stack whose DataBucketName output receives it")
    where.add_argument(
        "--bucket", help="or any bucket in the stack's region (the endpoint role must read it)"
    )
    _add_deploy_arguments(upload)
    upload.add_argument(
        "--model-endpoint-stack",
        action="store_true",
        help="also print the stack's outputs that templates/model-endpoint.yaml takes (needs --stack)",
    )


def _add_deploy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--region", help="region of the stack (resolves the container image URI)")
    parser.add_argument(
        "--instance-type",
        default=DEFAULT_INSTANCE_TYPE,
        help=f"endpoint instance type ({DEFAULT_INSTANCE_TYPE})",
    )
    parser.add_argument("--endpoint-name", help="EndpointName (default: autolabel-<model>)")


def run(args: argparse.Namespace) -> int:
    """Dispatch to ``package`` or ``upload``; 1 on a failure the message explains, 2 on bad input."""
    from workflow.domain.errors import AutolabelError
    from workflow.serving.container import UnsupportedInstanceType, check_instance_type

    try:
        check_instance_type(args.instance_type)
        if args.endpoint_action == "package":
            return _package(args)
        return _upload(args)
    except (AutolabelError, ValidationError, UnsupportedInstanceType, FileNotFoundError) as exc:
        print(f"autolabel endpoint {args.endpoint_action}: {exc}", file=sys.stderr)
        return 2
    except (JumpStartUnavailable, JumpStartResolveError, RuntimeError) as exc:
        print(f"autolabel endpoint {args.endpoint_action}: {exc}", file=sys.stderr)
        return 1


def _package(args: argparse.Namespace) -> int:
    from workflow.cli.detect import settings_from_args
    from workflow.serving.package import build_archive

    model, settings, deploy = _model_and_settings(args, settings_from_args(args))
    config = build_archive(model, settings, args.out, deploy=deploy)
    size_mb = config["archive_bytes"] / 1e6
    print(
        f"wrote {args.out} ({size_mb:.1f} MB): {config['model']} {config['version']}, "
        f"{len(config['wheels'])} wheels for {_platform(config)}",
        file=sys.stderr,
    )
    if args.region and args.model_data_url:
        _print_overrides(config, args, args.model_data_url)
    else:
        print(
            f"next: autolabel endpoint upload {args.out} --stack <stack> --region <region> "
            f"--instance-type {args.instance_type} (prints the sam deploy --parameter-overrides)",
            file=sys.stderr,
        )
    return 0


def _model_and_settings(
    args: argparse.Namespace, settings: InferenceSettings
) -> tuple[str, InferenceSettings, dict[str, str] | None]:
    """The model source, settings and deploy names: from the flags, or the profile's model entry."""
    if args.profile is None:
        return args.model, settings, None
    from workflow.domain.errors import ConfigurationError
    from workflow.domain.profile import load_profile

    profile = load_profile(args.profile)
    entry = next((m for m in profile.models if m.name == args.model), None)
    if entry is None:
        names = ", ".join(m.name for m in profile.models) or "none"
        raise ConfigurationError(f"profile {args.profile} has no model {args.model!r} (it has: {names})")
    if entry.response_format != "autolabel":
        raise ConfigurationError(
            f"profile model {entry.name} answers in the {entry.response_format} format: its endpoint is "
            "not this project's archive (for a JumpStart model, use `autolabel endpoint resolve`)"
        )
    flags = settings.model_dump(include=settings.model_fields_set)
    merged = settings.model_validate({**entry.local_inference, **flags})
    deploy = {"endpoint_name": entry.endpoint_name, "model_name": entry.name}
    return entry.local_model or entry.name, merged, deploy


def _upload(args: argparse.Namespace) -> int:
    import boto3

    from workflow.serving.deploy import (
        archive_key,
        endpoint_name_of,
        stack_bucket,
        stack_values,
        upload_archive,
    )
    from workflow.serving.package import archive_digest, read_archive_config

    if not args.archive.is_file():
        raise FileNotFoundError(f"{args.archive} does not exist: build it with `autolabel endpoint package`")
    if args.model_endpoint_stack and not args.stack:
        print("autolabel endpoint upload: --model-endpoint-stack needs --stack", file=sys.stderr)
        return 2
    config = {**read_archive_config(args.archive), "archive_sha256": archive_digest(args.archive)}
    session = boto3.Session(region_name=args.region)
    bucket = args.bucket or stack_bucket(session.client("cloudformation"), args.stack)
    key = archive_key(config, endpoint_name_of(config, args.endpoint_name))
    url = upload_archive(session.client("s3"), args.archive, bucket, key)
    print(f"uploaded {args.archive} to {url}", file=sys.stderr)
    args.region = args.region or session.region_name
    if not args.region:
        print("autolabel endpoint upload: no region configured: pass --region", file=sys.stderr)
        return 2
    extra = stack_values(session.client("cloudformation"), args.stack) if args.model_endpoint_stack else {}
    _print_overrides(config, args, url, extra)
    return 0


def _print_overrides(
    config: dict[str, Any], args: argparse.Namespace, model_data_url: str, extra: dict[str, str] | None = None
) -> None:
    from workflow.serving.container import resolve_image_uri
    from workflow.serving.deploy import parameter_overrides

    image = resolve_image_uri(args.region, args.instance_type)
    overrides = parameter_overrides(
        config,
        image_uri=image,
        model_data_url=model_data_url,
        instance_type=args.instance_type,
        endpoint_name=args.endpoint_name,
    )
    print(format_overrides({**overrides, **(extra or {})}))


def _platform(config: dict[str, Any]) -> str:
    container = config.get("container", {})
    return f"cp{str(container.get('python_version', '')).replace('.', '')} {container.get('machine', '?')}"


__all__ = ["ACTIONS", "add_arguments", "run"]
