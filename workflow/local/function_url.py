"""Local Lambda Function URLs: an HTTP receiver on 127.0.0.1 that hands each request to the bound handler.

A function of the template with ``FunctionUrlConfig`` gets one receiver in local mode. Each
request becomes the event Lambda builds for a Function URL (payload format 2.0: ``headers`` with
lower-case names, ``body``, ``isBase64Encoded``, ``requestContext.http``) and the handler's answer
(``statusCode``, ``headers``, ``body``) becomes the HTTP response, so the handler's code path is the
one it has in AWS. Only loopback is bound: nothing outside this machine can call it.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MAX_BODY = 6 * 1024 * 1024  # Lambda's synchronous payload limit

Invoke = Callable[[str, dict[str, Any]], tuple[str, bool, str]]


def function_url_event(method: str, path: str, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """The Function URL event (payload 2.0) of one HTTP request."""
    raw_path, _, query = path.partition("?")
    try:
        text, encoded = body.decode("utf-8"), False
    except UnicodeDecodeError:
        text, encoded = base64.b64encode(body).decode("ascii"), True
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": {k.lower(): v for k, v in headers.items()},
        "requestContext": {
            "http": {"method": method, "path": raw_path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1"},
            "timeEpoch": int(time.time() * 1000),
        },
        "body": text,
        "isBase64Encoded": encoded,
    }


class FunctionUrlServer:
    """One local Function URL; :attr:`url` is what ``!GetAtt <Fn>Url.FunctionUrl`` resolves to."""

    def __init__(self, function_name: str, invoke: Invoke, host: str = "127.0.0.1", port: int = 0) -> None:
        self.function_name = function_name
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                server._handle(self, "POST")

            def do_GET(self) -> None:  # noqa: N802
                server._handle(self, "GET")

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
                return

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._invoke = invoke
        self.requests = 0
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name=f"url-{function_name}", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self._reply(request, 413, {"content-type": "text/plain"}, b"payload too large")
            return
        body = request.rfile.read(length) if length else b""
        event = function_url_event(method, request.path, dict(request.headers.items()), body)
        self.requests += 1
        payload, failed, _ = self._invoke(self.function_name, event)
        if failed:
            self._reply(request, 502, {"content-type": "application/json"}, payload.encode("utf-8"))
            return
        answer = json.loads(payload)
        if not isinstance(answer, dict) or "statusCode" not in answer:  # Lambda treats it as a JSON body
            self._reply(request, 200, {"content-type": "application/json"}, payload.encode("utf-8"))
            return
        data = answer.get("body") or ""
        raw = base64.b64decode(data) if answer.get("isBase64Encoded") else str(data).encode("utf-8")
        self._reply(request, int(answer["statusCode"]), answer.get("headers") or {}, raw)

    @staticmethod
    def _reply(request: BaseHTTPRequestHandler, status: int, headers: dict[str, str], body: bytes) -> None:
        request.send_response(status)
        for key, value in headers.items():
            request.send_header(key, value)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
