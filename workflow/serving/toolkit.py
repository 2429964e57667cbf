"""Run a model archive's entry script as SageMaker's inference toolkit does.

The toolkit puts ``<model_dir>/code`` on ``sys.path``, imports the module ``SAGEMAKER_PROGRAM`` names
(``inference.py``), calls its ``model_fn(model_dir)`` once per worker and, per request,
``output_fn(predict_fn(input_fn(body, content_type), model), accept)``; ``output_fn`` may return
``(body, content_type)``. :class:`ArchiveServer` does exactly that for the local asynchronous
endpoint and the bring-your-own container, so a local run goes through the deployed code path.
:func:`in_process_server` serves a predictor already in memory through the same four functions.
"""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

from workflow.domain.errors import ConfigurationError
from workflow.serving.protocol import (
    RESPONSE_CONTENT_TYPE,
    FrameReader,
    Predictor,
    RequestFailed,
    describe_error,
)

CODE_DIR = "code"
DEFAULT_PROGRAM = "inference.py"
TOOLKIT_FUNCTIONS = ("model_fn", "input_fn", "predict_fn", "output_fn")


def load_entry_module(model_dir: str | Path, program: str = DEFAULT_PROGRAM) -> ModuleType:
    """Import ``<model_dir>/code/<program>`` with ``code/`` on ``sys.path``, as the toolkit does.

    The module gets a name of its own per archive, so several archives can be served in one process
    (the toolkit runs one per container).
    """
    code = Path(model_dir) / CODE_DIR
    script = code / program
    if not script.is_file():
        raise ConfigurationError(f"{script} does not exist: not an unpacked model archive")
    if str(code) not in sys.path:
        sys.path.insert(0, str(code))
    name = f"_autolabel_entry_{abs(hash(str(script.resolve())))}"
    spec = importlib.util.spec_from_file_location(name, script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    missing = [f for f in TOOLKIT_FUNCTIONS if not callable(getattr(module, f, None))]
    if missing:
        raise ConfigurationError(f"{script} does not define {', '.join(missing)}")
    return module


class ArchiveServer:
    """The toolkit's request cycle over an entry module; ``model_fn`` runs on first use."""

    def __init__(self, module: Any, model_dir: str | Path | None, model: Any = None) -> None:
        self.module = module
        self.model_dir = None if model_dir is None else str(model_dir)
        self._model = model
        self._lock = threading.Lock()

    @classmethod
    def from_model_dir(cls, model_dir: str | Path, program: str = DEFAULT_PROGRAM) -> ArchiveServer:
        """Serve the archive unpacked in ``model_dir``."""
        return cls(load_entry_module(model_dir, program), model_dir)

    @property
    def model(self) -> Any:
        with self._lock:
            if self._model is None:
                try:
                    self._model = self.module.model_fn(self.model_dir)
                except Exception as exc:
                    raise RequestFailed("ModelError", f"the model could not be loaded: {exc}") from exc
            return self._model

    def invoke(self, body: bytes, content_type: str | None, accept: str | None) -> tuple[bytes, str]:
        """One request: the response body and content type, or RequestFailed (kind, reason)."""
        model = self.model
        try:
            request = self.module.input_fn(body, content_type)
            prediction = self.module.predict_fn(request, model)
            result = self.module.output_fn(prediction, accept)
        except Exception as exc:  # the toolkit turns any error into a failed invocation
            raise RequestFailed(*_kind_and_reason(exc)) from exc
        answer, content = result if isinstance(result, tuple) else (result, RESPONSE_CONTENT_TYPE)
        return (answer.encode() if isinstance(answer, str) else bytes(answer)), content

    def close(self) -> None:
        """Stop what the loaded model holds (a predictor's worker processes), if anything."""
        with self._lock:
            model = self._model
        close = getattr(getattr(model, "predictor", None), "close", None)
        if callable(close):
            close()


def _kind_and_reason(exc: BaseException) -> tuple[str, str]:
    # An archive's own copy of the project may define its own RequestFailed class: match by shape.
    kind, reason = getattr(exc, "kind", None), getattr(exc, "reason", None)
    if isinstance(kind, str) and isinstance(reason, str):
        return kind, reason
    return describe_error(exc)


def in_process_server(predictor: Predictor, read_frame: FrameReader) -> ArchiveServer:
    """The four functions of :mod:`workflow.serving.handler` over a predictor already loaded."""
    from workflow.serving import handler

    return ArchiveServer(handler, None, handler.ServedModel(predictor, read_frame))
