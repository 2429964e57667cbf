"""Cold start: the handlers that move records around import no numpy, Pillow or pycocotools.

Each handler is imported in a fresh interpreter, as Lambda imports it (``LAMBDA_TASK_ROOT`` set,
``POWERTOOLS_TRACE_DISABLED`` as the template's default ``TracingDetail=Invocations`` sets it), and
its ``sys.modules`` is inspected; the template gives the science layer only to the functions that
need it, and the X-Ray SDK is imported only when the handlers are to trace with it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("numpy", "PIL", "pycocotools", "onnxruntime", "moto", "aws_xray_sdk")
NEEDS_SCIENCE = {"merge_batch", "publish_shard"}
# RecordBatchFailure imports light, but merges what the models that answered returned when a batch
# times out (numpy, imported then): its function has the science layer too.
SCIENCE_LAYER = NEEDS_SCIENCE | {"record_batch_failure"}
HANDLERS = sorted(p.parent.name for p in (ROOT / "functions").glob("*/app.py"))

PROBE = """
import importlib.util, json, os, sys
os.environ.update(DATA_BUCKET="b", TOKEN_TABLE="t", LEDGER_TABLE="l", AWS_DEFAULT_REGION="us-east-1",
                  LAMBDA_TASK_ROOT="/var/task", POWERTOOLS_TRACE_DISABLED=sys.argv[2])
spec = importlib.util.spec_from_file_location("app", sys.argv[1])
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
print(json.dumps(sorted(n for n in {heavy} if n in sys.modules)))
"""


def imported_heavy(handler: str, trace_disabled: str = "true") -> list[str]:
    code = PROBE.format(heavy=HEAVY)
    path = ROOT / "functions" / handler / "app.py"
    out = subprocess.run(
        [sys.executable, "-c", code, str(path), trace_disabled],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    )
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("handler", sorted(set(HANDLERS) - NEEDS_SCIENCE))
def test_a_light_handler_imports_no_array_or_image_library(handler: str) -> None:
    # Given a handler that only reads and writes records, when Lambda imports it
    # Then neither numpy, Pillow, pycocotools, onnxruntime, moto nor (tracing left to Lambda) the
    # X-Ray SDK is loaded
    assert imported_heavy(handler) == []


@pytest.mark.parametrize("handler", sorted(NEEDS_SCIENCE))
def test_the_handlers_that_need_arrays_do_import_them(handler: str) -> None:
    # Given MergeBatch (fusion, label maps) and PublishShard (COCO): they import numpy (the probe works)
    heavy = imported_heavy(handler)
    assert "numpy" in heavy
    # and, with the SDK's tracing left to Lambda, no X-Ray SDK either
    assert "aws_xray_sdk" not in heavy


def test_the_x_ray_sdk_is_imported_when_the_handlers_trace_with_it() -> None:
    # Given TracingDetail=AwsCalls (POWERTOOLS_TRACE_DISABLED=false in Lambda): Powertools' Tracer
    # with the X-Ray SDK is built at import (the probe sees it)
    assert "aws_xray_sdk" in imported_heavy("list_page", trace_disabled="false")


def _template() -> dict:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    return yaml.load((ROOT / "template.yaml").read_text(), Loader=Loader)  # noqa: S506 - SafeLoader subclass


def test_only_the_functions_that_need_it_get_the_science_layer() -> None:
    # Given the template's functions and the folders of their code
    resources = _template()["Resources"]
    functions = {
        res["Properties"]["CodeUri"].strip("/").split("/")[-1]: res["Properties"]
        for res in resources.values()
        if res["Type"] == "AWS::Serverless::Function"
    }
    # Then every handler has a function, and exactly MergeBatch, PublishShard and RecordBatchFailure
    # add the science layer
    assert sorted(functions) == HANDLERS
    with_science = {name for name, props in functions.items() if props.get("Layers")}
    assert with_science == SCIENCE_LAYER
    assert "ScienceLayer" in resources and "WorkflowLayer" in resources
