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
