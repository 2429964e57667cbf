"""The SageMaker framework container an autolabel model archive runs in, and its image URI.

The archive's entry script uses the inference toolkit of SageMaker's PyTorch inference images
(``model_fn``/``input_fn``/``predict_fn``/``output_fn``, ``code/requirements.txt`` installed at start);
the model itself runs on onnxruntime, from wheels built for that image's Python and platform. The image
URI of a region and instance type comes from the SageMaker SDK (``sagemaker.core.image_uris``), run in
this interpreter when installed, otherwise in ``.venv-jumpstart`` (``make jumpstart-sdk``) through
``workflow.jumpstart.resolve.sdk_subprocess``, the one owner of that path. This module imports only
the standard library.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import asdict, dataclass

from workflow.jumpstart.resolve import JumpStartResolveError, print_sdk_result, sdk_importable, sdk_subprocess


@dataclass(frozen=True)
class Container:
    """A framework image family and the wheel platform its Python runs on."""

    framework: str
    version: str
    py_version: str  # the SDK's spelling: py311
    python_version: str  # pip's: 3.11
    machine: str
    glibc: tuple[int, int]  # the image's glibc: manylinux wheels up to this version fit

    def wheel_platforms(self) -> list[str]:
        """``pip download --platform`` values, newest manylinux first."""
        minors = [m for m in range(self.glibc[1], 16, -1)]
        return [f"manylinux_2_{m}_{self.machine}" for m in minors] + [f"manylinux2014_{self.machine}"]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


# pytorch-inference 2.5.1 (py311, Ubuntu 22.04: glibc 2.35), CPU and GPU images; x86_64 instances.
PYTORCH_CONTAINER = Container("pytorch", "2.5.1", "py311", "3.11", "x86_64", (2, 35))
# Graviton families (ml.c6g, ml.c7g, ml.m6g, ml.r7g...): another image and wheel platform (aarch64).
_GRAVITON = re.compile(r"^ml\.[a-z]+\d+g[a-z]*\.")


class UnsupportedInstanceType(ValueError):
    """The archive's wheels do not fit that instance type's image."""


def check_instance_type(instance_type: str) -> None:
    """Refuse instance types this archive's x86_64 wheels cannot run on."""
    if not instance_type.startswith("ml."):
        raise UnsupportedInstanceType(f"{instance_type!r} is not a SageMaker instance type (ml.*)")
    if _GRAVITON.match(instance_type):
        raise UnsupportedInstanceType(
            f"{instance_type} is a Graviton (arm64) instance: this archive's wheels are x86_64; "
            "use an x86_64 type such as ml.c5.xlarge or ml.g4dn.xlarge"
        )


def resolve_image_uri(region: str, instance_type: str, container: Container = PYTORCH_CONTAINER) -> str:
    """The framework image URI for ``region`` and ``instance_type`` (CPU or GPU image, per type)."""
    check_instance_type(instance_type)
    if sdk_importable():
        return image_uri_with_sdk(region, instance_type, container)
    args = ["--region", region, "--instance-type", instance_type]
    return str(sdk_subprocess("workflow.serving.container", args)["image_uri"])


def image_uri_with_sdk(region: str, instance_type: str, container: Container = PYTORCH_CONTAINER) -> str:
    """The image URI from ``sagemaker.core.image_uris.retrieve`` in this process (no AWS call)."""
    from sagemaker.core import image_uris

    try:
        return str(
            image_uris.retrieve(
                framework=container.framework,
                region=region,
                version=container.version,
                py_version=container.py_version,
                instance_type=instance_type,
                image_scope="inference",
            )
        )
    except (ValueError, KeyError) as exc:
        raise JumpStartResolveError(f"{container.framework} {container.version} in {region}: {exc}") from exc


def main(argv: list[str] | None = None) -> int:
    """``python -m workflow.serving.container``: print ``{"image_uri": ...}`` (in-process SDK)."""
    parser = argparse.ArgumentParser(prog="python -m workflow.serving.container", description=__doc__)
    parser.add_argument("--region", required=True)
    parser.add_argument("--instance-type", required=True)
    args = parser.parse_args(argv)
    return print_sdk_result(lambda: {"image_uri": image_uri_with_sdk(args.region, args.instance_type)})


if __name__ == "__main__":
    sys.exit(main())
