"""``autolabel serve``: the local asynchronous inference endpoint behind the SageMaker runtime API.

Point any boto3 client at it: ``boto3.client("sagemaker-runtime", endpoint_url=URL)``. Inputs are
read from, and outputs written to, the S3 named by ``--aws-endpoint-url`` (a moto server,
LocalStack) or by your AWS credentials; notifications go to that SNS.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable
from typing import Any

import boto3

from workflow.local.endpoint import AsyncEndpointConfig, LocalAsyncEndpoint
from workflow.local.endpoint_http import AsyncInvocationServer
from workflow.serving.toolkit import ArchiveServer

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``autolabel serve``."""
    parser.add_argument("--model", required=True, help="model name (registry) or path to an .onnx file")
    parser.add_argument("--endpoint-name", default="autolabel-local", help="the EndpointName clients use")
    parser.add_argument(
        "--endpoint-config",
        help="read AsyncInferenceConfig from this SageMaker endpoint config instead of the flags below",
    )
    parser.add_argument("--output-path", help="S3OutputPath, s3://bucket/prefix")
    parser.add_argument("--failure-path", help="S3FailurePath, s3://bucket/prefix")
    parser.add_argument("--success-topic", help="SNS topic ARN notified on success")
    parser.add_argument("--error-topic", help="SNS topic ARN notified on failure")
    parser.add_argument("--max-concurrency", type=int, default=4, help="MaxConcurrentInvocationsPerInstance")
    parser.add_argument("--host", default="127.0.0.1", help="listen address (default: loopback only)")
    parser.add_argument("--port", type=int, default=8080, help="listen port (0: any free port)")
    parser.add_argument("--aws-endpoint-url", help="S3/SNS/SageMaker endpoint, e.g. a moto server")
    parser.add_argument("--region", default=None, help="AWS region (default: your AWS configuration)")


def endpoint_config(args: argparse.Namespace, client: Callable[[str], Any]) -> AsyncEndpointConfig:
    """The AsyncInferenceConfig from SageMaker (``--endpoint-config``) or from the flags."""
    if args.endpoint_config:
        described = client("sagemaker").describe_endpoint_config(EndpointConfigName=args.endpoint_config)
        return AsyncEndpointConfig.from_endpoint_config(described)
    if not args.output_path:
        raise SystemExit("autolabel serve: give --output-path (or --endpoint-config)")
    return AsyncEndpointConfig(
        s3_output_path=args.output_path,
        s3_failure_path=args.failure_path,
        success_topic=args.success_topic,
        error_topic=args.error_topic,
        max_concurrent_invocations=args.max_concurrency,
    )


def build_service(args: argparse.Namespace) -> tuple[LocalAsyncEndpoint, AsyncInvocationServer]:
    """The endpoint (model loaded on first request) and its bound, not yet serving, HTTP front."""

    def client(service: str) -> Any:
        return boto3.client(service, region_name=args.region, endpoint_url=args.aws_endpoint_url)

    def load_model() -> ArchiveServer:
        from workflow.serving.package import staged_server

        return staged_server(args.model)  # code/inference.py of the model archive, as SageMaker runs it

    if args.aws_endpoint_url:  # the model's own S3 client (model_fn) reads batch frames there too
        os.environ["AWS_ENDPOINT_URL_S3"] = args.aws_endpoint_url
    config = endpoint_config(args, client)
    endpoint = LocalAsyncEndpoint(args.endpoint_name, client("s3"), client("sns"), config, load_model)
    return endpoint, AsyncInvocationServer({args.endpoint_name: endpoint}, args.host, args.port)


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted, then finish the queued work."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    endpoint, server = build_service(args)
    print(f"endpoint {args.endpoint_name} serving {args.model} at {server.url}")
    print(f'  boto3.client("sagemaker-runtime", endpoint_url="{server.url}").invoke_endpoint_async(')
    print(f'      EndpointName="{args.endpoint_name}", InputLocation="s3://...", ContentType="image/jpeg")')
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("stopping: finishing queued invocations")
    finally:
        server.stop()
        endpoint.close()
    stats = endpoint.stats
    print(f"{stats.completed} completed, {stats.failed} failed")
    return 0
