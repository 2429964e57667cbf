"""The SageMaker runtime REST protocol for InvokeEndpointAsync, served on 127.0.0.1.

``boto3.client("sagemaker-runtime", endpoint_url=server.url)`` works against it unchanged:
``POST /endpoints/{EndpointName}/async-invocations`` with the request members in
``X-Amzn-SageMaker-*`` headers and the optional inline payload as the body; the answer is
``202`` with ``{"InferenceId"}`` in the JSON body and ``X-Amzn-SageMaker-OutputLocation`` /
``X-Amzn-SageMaker-FailureLocation`` headers (locations as in botocore's service model).
Errors use the rest-json error shape (``X-Amzn-ErrorType`` header, ``{"message"}`` body).
Requests are not signature-checked: the server only listens on the loopback interface.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections.abc import Mapping
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from botocore.exceptions import ClientError, ParamValidationError

from workflow.local.endpoint import LocalAsyncEndpoint, LocalSageMakerRuntime

log = logging.getLogger(__name__)

_PATH = re.compile(r"^/endpoints/(?P<name>[^/?]+)/async-invocations/?(\?.*)?$")
_STRING_HEADERS = {
    "ContentType": "X-Amzn-SageMaker-Content-Type",
    "Accept": "X-Amzn-SageMaker-Accept",
    "CustomAttributes": "X-Amzn-SageMaker-Custom-Attributes",
    "InferenceId": "X-Amzn-SageMaker-Inference-Id",
    "InputLocation": "X-Amzn-SageMaker-InputLocation",
    "S3OutputPathExtension": "X-Amzn-SageMaker-S3OutputPathExtension",
    "Filename": "X-Amzn-SageMaker-Filename",
}
_INT_HEADERS = {
    "RequestTTLSeconds": "X-Amzn-SageMaker-RequestTTLSeconds",
    "InvocationTimeoutSeconds": "X-Amzn-SageMaker-InvocationTimeoutSeconds",
}


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def request_params(name: str, headers: Message, body: bytes) -> dict[str, Any]:
    """InvokeEndpointAsync keyword arguments from the REST request."""
    params: dict[str, Any] = {"EndpointName": name}
    for member, header in _STRING_HEADERS.items():
        if headers.get(header) is not None:
            params[member] = headers[header]
    for member, header in _INT_HEADERS.items():
        value = headers.get(header)
        if value is not None:
            try:
                params[member] = int(value)
            except ValueError as exc:
                raise ApiError(400, "ValidationError", f"{header} must be an integer, got {value!r}") from exc
    if body:
        params["Body"] = body
    return params


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:  # noqa: N802 - the name http.server dispatches to
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            match = _PATH.match(self.path)
            if not match:
                raise ApiError(404, "UnknownOperationException", f"no operation at POST {self.path}")
            params = request_params(match["name"], self.headers, body)
            answer = self.server.runtime.invoke_endpoint_async(**params)
        except ApiError as exc:
            self._error(exc.status, exc.code, exc.message)
        except ClientError as exc:
            error = exc.response["Error"]
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400))
            self._error(status, str(error["Code"]), str(error["Message"]))
        except ParamValidationError as exc:
            self._error(400, "ValidationError", str(exc))
        except Exception as exc:  # the service answers InternalFailure, never a dropped connection
            log.exception("InvokeEndpointAsync failed")
            self._error(500, "InternalFailure", str(exc))
        else:
            headers = {"X-Amzn-SageMaker-OutputLocation": answer["OutputLocation"]}
            if "FailureLocation" in answer:
                headers["X-Amzn-SageMaker-FailureLocation"] = answer["FailureLocation"]
            self._send(202, {"InferenceId": answer["InferenceId"]}, headers)

    def _error(self, status: int, code: str, message: str) -> None:
        self._send(status, {"message": message}, {"X-Amzn-ErrorType": code})

    def _send(self, status: int, payload: dict[str, Any], headers: Mapping[str, str]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base signature
        log.debug("%s " + format, self.address_string(), *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], endpoints: Mapping[str, LocalAsyncEndpoint]) -> None:
        super().__init__(address, _Handler)
        self.runtime = LocalSageMakerRuntime(endpoints)


class AsyncInvocationServer:
    """An HTTP front for local asynchronous endpoints, keyed by endpoint name."""

    def __init__(
        self, endpoints: Mapping[str, LocalAsyncEndpoint], host: str = "127.0.0.1", port: int = 0
    ) -> None:
        """Bind at once (port 0 picks a free port); :meth:`start` begins serving."""
        self._server = _Server((host, port), endpoints)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The ``endpoint_url`` to give boto3."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> AsyncInvocationServer:
        """Serve in a background thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="sagemaker-runtime", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted."""
        self._server.serve_forever()

    def stop(self) -> None:
        """Stop serving and release the port (the endpoints stay open)."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> AsyncInvocationServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
