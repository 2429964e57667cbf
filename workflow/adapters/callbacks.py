"""Resuming Step Functions tasks parked on a task token."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

# A token that was already answered (or timed out) is not an error for an at-least-once consumer.
_ALREADY_CLOSED = {"TaskTimedOut", "InvalidToken", "TaskDoesNotExist"}


class TaskCallbacks:
    def __init__(self, sfn_client: Any) -> None:
        self.client = sfn_client

    def succeed(self, token: str, output: Any) -> bool:
        """SendTaskSuccess; False when the token was already closed."""
        return self._send(self.client.send_task_success, taskToken=token, output=json.dumps(output))

    def fail(self, token: str, error: str, cause: str) -> bool:
        """SendTaskFailure (cause is truncated to the API's 32,768 characters)."""
        return self._send(
            self.client.send_task_failure, taskToken=token, error=error[:256], cause=cause[:32_768]
        )

    @staticmethod
    def _send(call: Any, **kwargs: Any) -> bool:
        try:
            call(**kwargs)
            return True
        except ClientError as err:
            if err.response.get("Error", {}).get("Code") in _ALREADY_CLOSED:
                return False
            raise
