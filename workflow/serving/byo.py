"""The bring-your-own container's model server: SageMaker's container contract over the same module.

SageMaker starts a BYO image with ``docker run IMAGE serve``, unpacks ``ModelDataUrl`` into
``/opt/ml/model`` and sends ``GET /ping`` and ``POST /invocations`` to port 8080 (asynchronous
endpoints too: SageMaker reads the request from S3, posts it here and writes the answer to S3).
This server imports ``code/$SAGEMAKER_PROGRAM`` of that archive as the framework containers' toolkit
does (:class:`~workflow.serving.toolkit.ArchiveServer`), so the answers are the same.

    python -m workflow.serving.byo [--model-dir /opt/ml/model] [--port 8080]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from workflow.serving.toolkit import DEFAULT_PROGRAM, ArchiveServer

log = logging.getLogger("autolabel.byo")
MODEL_DIR = "/opt/ml/model"
# Failures of the request itself (4xx); anything else is the model's or the server's (5xx).
CLIENT_ERRORS = {
    "UnsupportedContentType",
    "UnsupportedAccept",
    "InvalidRequest",
    "InvalidImage",
    "ImageTooLarge",
}


def make_server(server: ArchiveServer, host: str = "0.0.0.0", port: int = 8080) -> ThreadingHTTPServer:  # noqa: S104
    """An HTTP server answering /ping and /invocations with ``server`` (bound, not yet serving)."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path != "/ping":
                self._send(404, {"error": f"no route {self.path}"})
                return
            try:
                server.model  # noqa: B018 - loads the model once; a failure answers 500
            except Exception as exc:
                self._send(500, {"error": str(exc)})
                return
            self._send(200, {"status": "healthy"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/invocations":
                self._send(404, {"error": f"no route {self.path}"})
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                answer, content_type = server.invoke(
                    body, self.headers.get("Content-Type"), self.headers.get("Accept")
                )
            except Exception as exc:
                kind, reason = getattr(exc, "kind", type(exc).__name__), getattr(exc, "reason", str(exc))
                status = 400 if kind in CLIENT_ERRORS else 500
                self._send(status, {"error": {"type": kind, "reason": reason}})
                return
            self._send_bytes(200, answer, content_type)

        def _send(self, status: int, document: dict[str, Any]) -> None:
            self._send_bytes(status, json.dumps(document).encode(), "application/json")

        def _send_bytes(self, status: int, data: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
            log.info("%s " + format, self.address_string(), *args)

    return ThreadingHTTPServer((host, port), Handler)


def main(argv: list[str] | None = None) -> int:
    """Serve the archive in ``--model-dir`` until stopped."""
    parser = argparse.ArgumentParser(prog="python -m workflow.serving.byo", description=__doc__)
    parser.add_argument(
        "command", nargs="?", default="serve", choices=["serve"], help="SageMaker passes serve"
    )
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR", MODEL_DIR))
    parser.add_argument("--port", type=int, default=int(os.environ.get("SAGEMAKER_BIND_TO_PORT", "8080")))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    program = os.environ.get("SAGEMAKER_PROGRAM", DEFAULT_PROGRAM)
    server = ArchiveServer.from_model_dir(args.model_dir, program)
    server.model  # noqa: B018 - load before taking traffic: /ping answers only once the model is in
    http = make_server(server, port=args.port)
    log.info("serving %s on port %d", args.model_dir, args.port)
    try:
        http.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        http.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
