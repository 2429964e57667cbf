"""Model workers in processes of their own, as a SageMaker container's model server runs them.

A local endpoint serves its model in the same process as the rest of local mode: the state
machine's interpreter, moto, and every Lambda handler. A model call is mostly native code that
lets go of the interpreter lock (onnxruntime's run, the JPEG decoder), but about a seventh of it
(resizing arguments, box decoding, class names) is Python that needs it; in one process the
model's workers and the orchestration take turns on one lock, and a core sits idle while they
wait for it. A :class:`ProcessPredictor` runs the model in child processes instead: each child
loads the model once (``recipe()``, as ``model_fn`` runs once per worker) and answers one frame at
a time; the parent sends the encoded frame and gets the :class:`Detections` back.

- The children are new interpreters (``python -m workflow.local.model_workers``; local mode's
  process has many threads, and a fork could copy a lock some thread holds), started when the
  predictor is made, so they load while the run starts.
- They ignore Ctrl-C (the terminal sends SIGINT to the whole process group): the parent stops
  them when its run ends. If the parent dies, each child's pipe closes and it exits.
- A frame's error comes back as the same error (an unreadable image stays ``InvalidImage`` with
  its frame and reason). A child that dies (killed, out of memory) fails the frame it held with
  ``InferenceFailed`` and is started again for the next frame.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from workflow.domain.detections import Detections
from workflow.domain.errors import InferenceFailed
from workflow.inference.settings import InferenceSettings
from workflow.serving.protocol import Predictor, RequestFailed

Recipe = Callable[[], Predictor]  # picklable: it is called in the child


@dataclass(frozen=True)
class DetectorRecipe:
    """A registry model (or an ``.onnx`` path) with its inference settings."""

    model: str
    settings: InferenceSettings | None = None

    def __call__(self) -> Predictor:
        from workflow.inference.runner import load_detector

        return load_detector(self.model, self.settings)


@dataclass(frozen=True)
class ArchiveRecipe:
    """The predictor of an unpacked model archive, loaded by the archive's own ``model_fn``."""

    model_dir: str

    def __call__(self) -> Predictor:
        from workflow.serving.toolkit import ArchiveServer

        predictor: Predictor = ArchiveServer.from_model_dir(self.model_dir).model.predictor
        return predictor


def _serve(conn_in: Connection, conn_out: Connection) -> None:
    """The child's loop: load the model the first message names, then answer frame after frame."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        path, recipe = conn_in.recv()
        sys.path[:] = list(dict.fromkeys([*sys.path, *path]))
        predictor = recipe()
    except Exception as exc:
        conn_out.send(("failed", f"{type(exc).__name__}: {exc}", time.process_time()))
        return
    conn_out.send(("ready", "", time.process_time()))
    while True:
        try:
            message = conn_in.recv()
        except (EOFError, OSError):  # the parent went away
            return
        if message is None:
            return
        data, frame = message
        try:
            answer: tuple[str, Any] = ("ok", predictor.predict_bytes(data, frame))
        except Exception as exc:
            answer = ("error", _portable(exc, frame))
        conn_out.send((*answer, time.process_time()))


def _portable(exc: Exception, frame: str) -> Exception:
    """The error itself if it survives pickling, else an InferenceFailed that says what it was."""
    try:
        pickle.loads(pickle.dumps(exc))
    except Exception:
        return InferenceFailed(frame, f"{type(exc).__name__}: {exc}")
    return exc


class _Worker:
    """One child process (``python -m workflow.local.model_workers``) and the pipes to it.

    A plain subprocess rather than multiprocessing's spawn: spawn runs the parent's main script
    again in the child, which breaks any script that starts a run without a ``__main__`` guard.
    """

    def __init__(self, recipe: Recipe, name: str) -> None:
        self.name = name
        self.process = subprocess.Popen(
            [sys.executable, "-m", __name__],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        self._to = Connection(os.dup(self.process.stdin.fileno()), readable=False)
        self._from = Connection(os.dup(self.process.stdout.fileno()), writable=False)
        self.process.stdin.close()
        self.process.stdout.close()
        self._to.send((list(sys.path), recipe))
        self._ready: str | None = None
        self.cpu_s = 0.0

    def wait_ready(self) -> None:
        if self._ready is None:
            status, detail, cpu = self._from.recv()
            self.cpu_s = cpu
            self._ready = "" if status == "ready" else detail
        if self._ready:  # the whole invocation fails, as a container whose model_fn fails
            raise RequestFailed("ModelError", f"the model could not be loaded: {self._ready}")

    def predict(self, data: bytes, frame: str) -> Detections:
        self.wait_ready()
        self._to.send((data, frame))
        status, value, cpu = self._from.recv()
        self.cpu_s = cpu
        if status == "error":
            raise value
        result: Detections = value
        return result

    def stop(self, timeout: float) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._to.send(None)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout)
        for conn in (self._to, self._from):
            with contextlib.suppress(OSError):
                conn.close()


class ProcessPredictor:
    """A :class:`Predictor` over ``workers`` child processes, each with the model ``recipe`` loads.

    Callable from many threads at once: each call takes an idle child (a thread per child keeps
    every child busy). ``cpu_seconds`` is the CPU the children have spent, loading included.
    """

    def __init__(self, recipe: Recipe, workers: int, name: str = "model") -> None:
        self._recipe = recipe
        self._name = name
        self._lock = threading.Lock()
        self._closed = False
        self._spent = 0.0  # CPU of children that have ended
        self._all: list[_Worker] = []
        self._idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        for i in range(max(1, workers)):
            worker = self._start(i)
            self._idle.put(worker)

    def _start(self, index: int) -> _Worker:
        worker = _Worker(self._recipe, f"{self._name}-model-{index}")
        with self._lock:
            self._all.append(worker)
        return worker

    def predict_bytes(self, data: bytes, frame: str) -> Detections:
        worker = self._idle.get()
        try:
            return worker.predict(data, frame)
        except (EOFError, OSError) as exc:
            try:
                code: int | None = worker.process.wait(2.0)
            except subprocess.TimeoutExpired:
                code = None
            how = f"killed by signal {-code}" if code and code < 0 else f"exit code {code}"
            worker = self._replace(worker)
            raise InferenceFailed(
                frame, f"the model process ended while it held this frame ({how}); it was started again"
            ) from exc
        finally:
            self._idle.put(worker)

    def _replace(self, dead: _Worker) -> _Worker:
        with self._lock:
            self._spent += dead.cpu_s
            self._all.remove(dead)
            index = len(self._all)
        dead.stop(1.0)
        return self._start(index)

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return [w.process.pid for w in self._all]

    @property
    def cpu_seconds(self) -> float:
        """CPU the children reported with their last answer (the model's own time)."""
        with self._lock:
            return self._spent + sum(w.cpu_s for w in self._all)

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            workers = list(self._all)
        for worker in workers:
            worker.stop(timeout)

    def __enter__(self) -> ProcessPredictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def process_workers_enabled() -> bool:
    """``AUTOLABEL_MODEL_PROCESSES=0`` keeps local models in the run's own process (threads)."""
    return os.environ.get("AUTOLABEL_MODEL_PROCESSES", "1").strip().lower() not in ("0", "false", "no")


def main() -> None:
    """The child: its answers go out on a copy of stdout; stdout itself goes to stderr, so nothing
    a library prints can corrupt them."""
    answers = os.dup(1)
    os.dup2(2, 1)
    _serve(Connection(os.dup(0), writable=False), Connection(answers, readable=False))


if __name__ == "__main__":
    main()
