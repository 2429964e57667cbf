"""Typed errors of the domain. Handlers let them propagate so the ASL's Retry/Catch decides.

Each error that concerns one frame carries the frame and a human-readable reason, so the run
report can say exactly which frame failed and why.
"""

from __future__ import annotations


class AutolabelError(Exception):
    """Base class of every error this project raises on purpose."""


class FrameError(AutolabelError):
    """A problem with one frame; the rest of the run goes on."""

    def __init__(self, frame: str, reason: str) -> None:
        super().__init__(f"{frame}: {reason}")
        self.frame = frame
        self.reason = reason

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # picklable (a model process sends it)
        return type(self), (self.frame, self.reason)


class InvalidImage(FrameError):
    """The object is not a decodable image (corrupt, truncated, not an image at all)."""


class ImageTooLarge(FrameError):
    """The image exceeds a size limit (pixels or bytes)."""


class InferenceFailed(FrameError):
    """The model failed on this frame."""


class InvalidS3Uri(AutolabelError):
    """A string that should be an s3://bucket/key URI is not one."""


class ModelNotProvisioned(AutolabelError):
    """A model file is not in the cache; `make model` provisions it."""


class ConfigurationError(AutolabelError):
    """Settings or a profile are invalid."""


# --- errors of the AWS edge: the adapters raise them, so steps never read ClientError codes -------
class ObjectUnreadable(AutolabelError):
    """An object store read failed (access denied, bucket gone, ...); ``code`` is the service's."""

    def __init__(self, uri: str, code: str) -> None:
        super().__init__(f"cannot read {uri}: {code}")
        self.uri = uri
        self.code = code


class ObjectMissing(ObjectUnreadable):
    """The object is not there (NoSuchKey / 404)."""


class SourceUnreadable(AutolabelError):
    """A source prefix cannot be listed; ``code`` is the service's error code."""

    def __init__(self, source: str, code: str) -> None:
        super().__init__(f"cannot list {source}: {code}")
        self.source = source
        self.code = code


class RunIncomplete(AutolabelError):
    """A listing page or a dataset shard the run planned left no record: its frames would be lost
    silently if the run reported success (a resumed run, same run id, finishes it)."""


class EndpointThrottled(AutolabelError):
    """The endpoint refused the request for now; the state machine retries with backoff."""


class LabelingJobExists(AutolabelError):
    """A labeling job of that name exists already (a retried create)."""

    def __init__(self, job_name: str) -> None:
        super().__init__(f"labeling job {job_name} exists already")
        self.job_name = job_name
