"""SageMaker async endpoints: InvokeEndpointAsync behind the EndpointRuntime port."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from workflow.domain.errors import EndpointThrottled

# Codes that mean "not now": the state machine retries EndpointThrottled with backoff.
THROTTLED = {"ThrottlingException", "ServiceUnavailable", "InternalFailure"}


class SageMakerRuntime:
    """Starts asynchronous inferences (a ``sagemaker-runtime`` client)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def invoke_async(self, params: dict[str, Any]) -> None:
        """InvokeEndpointAsync with the request's parameters; EndpointThrottled when refused for now."""
        try:
            self.client.invoke_endpoint_async(**params)
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in THROTTLED:
                raise EndpointThrottled(str(err)) from err
            raise
