"""Cold start as Lambda's python3.12 imports the layer: with and without the layer's own bytecode.

Lambda's runtime cannot use bytecode that another Python version compiled, and the layer is read
only, so a layer built without python3.12 bytecode compiles every module a handler imports at each
cold start (`make build-WorkflowLayer` now compiles it with a local python3.12). This builds the
WorkflowLayer's packages for this machine's platform (the same pins, python3.12) next to a boto3
with bytecode (as the runtime has it), then imports each light handler in fresh python3.12
interpreters that may not write bytecode (a read-only layer): once without the layer's bytecode
and once with it. Results: a table on stdout and bench-out/imports-layer.json (CPU seconds,
medians, and their ratio to `import boto3` alone).

    python -m bench.imports_layer [--repeat 5] [--only list_page,...]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.imports import PROBE

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench-out" / "imports-layer.json"
RUNTIME = ("boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3")


def light_handlers() -> list[str]:
    """The handler folders whose function takes no ScienceLayer (numpy, Pillow, pycocotools), as
    template.yaml declares them."""
    from workflow.local.template import load_template

    light = []
    for resource in load_template(ROOT / "template.yaml")["Resources"].values():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        props = resource["Properties"]
        layers = [getattr(layer, "value", layer) for layer in props.get("Layers", [])]
        if "ScienceLayer" not in layers:
            light.append(Path(props["CodeUri"]).name)
    return sorted(light)


def python312() -> str | None:
    """A python3.12 on this machine, found as the Makefile finds it."""
    candidates = ["python3.12", *map(str, Path.home().glob(".pyenv/versions/3.12*/bin/python3.12"))]
    for candidate in [*candidates, "/usr/bin/python3.12"]:
        path = shutil.which(candidate) or candidate
        try:
            ok = subprocess.run(
                [path, "-c", "import sys; sys.exit(sys.version_info[:2] != (3, 12))"], capture_output=True
            )
        except OSError:
            continue
        if ok.returncode == 0:
            return path
    return None


def _pins(names: list[str]) -> list[str]:
    lock = (ROOT / "requirements.lock").read_text()
    wanted = "|".join(re.escape(n) for n in names)
    return re.findall(rf"^(?:{wanted})==\S+", lock, re.M | re.I)


def _layer_packages() -> list[str]:
    """The WorkflowLayer's package names, read from the Makefile (LAYER_PACKAGES)."""
    text = (ROOT / "Makefile").read_text()
    found = re.search(r"^LAYER_PACKAGES := (.*?)(?<!\\)\n", text, re.M | re.S)
    assert found, "Makefile has no LAYER_PACKAGES"
    return found.group(1).replace("\\\n", " ").split()


def build(py: str, root: Path) -> tuple[Path, Path, Path]:
    """(runtime with bytecode, layer without bytecode, layer with bytecode) under ``root``."""
    runtime, plain, compiled = root / "runtime", root / "layer", root / "layer-bytecode"
    install = [py, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile", "--only-binary=:all:"]
    subprocess.run([*install, "--target", str(runtime), *_pins(list(RUNTIME))], check=True)
    subprocess.run([*install, "--target", str(plain), *_pins(_layer_packages())], check=True)
    layer_modules = re.search(r"^LAYER_MODULES := (.*)$", (ROOT / "Makefile").read_text(), re.M)
    assert layer_modules
    for name in layer_modules.group(1).split():
        source = ROOT / "workflow" / name
        target = plain / "workflow" / name
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    shutil.copytree(plain, compiled)
    quiet = {"stdout": subprocess.DEVNULL, "check": True}
    subprocess.run([py, "-m", "compileall", "-q", "-j", "0", str(runtime)], **quiet)  # type: ignore[call-overload]
    subprocess.run(
        [py, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode", "unchecked-hash", str(compiled)],
        **quiet,  # type: ignore[call-overload]
    )
    return runtime, plain, compiled


def _once(py: str, target: str, path: list[Path]) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))} | {
        "PYTHONPATH": os.pathsep.join(map(str, path)),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    out = subprocess.run(
        [py, "-c", PROBE, target, "true"], capture_output=True, text=True, env=env, cwd="/", check=True
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["cpu_s"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", help="comma-separated handler folders (default: the light ones)")
    args = parser.parse_args(argv)
    py = python312()
    if py is None:
        print("no python3.12 on this machine: the layer import benchmark is skipped", file=sys.stderr)
        return 0
    handlers = args.only.split(",") if args.only else light_handlers()
    with tempfile.TemporaryDirectory() as tmp:
        runtime, plain, compiled = build(py, Path(tmp))
        runs: dict[str, list[float]] = {}
        for _ in range(args.repeat):  # rounds over every target, so load drifts over all alike
            runs.setdefault("boto3", []).append(_once(py, "boto3", [runtime]))
            for handler in handlers:
                app = str(ROOT / "functions" / handler / "app.py")
                for mode, layer in (("source", plain), ("bytecode", compiled)):
                    runs.setdefault(f"{handler}:{mode}", []).append(_once(py, app, [layer, runtime]))
    median = {k: statistics.median(v) for k, v in runs.items()}
    boto3 = median["boto3"]
    rows = [
        {
            "handler": h,
            "cpu_s_without_bytecode": round(median[f"{h}:source"], 3),
            "cpu_s_with_bytecode": round(median[f"{h}:bytecode"], 3),
            "vs_boto3_without_bytecode": round(median[f"{h}:source"] / boto3, 2),
            "vs_boto3_with_bytecode": round(median[f"{h}:bytecode"] / boto3, 2),
        }
        for h in handlers
    ]
    print(f"{py}: import boto3 alone {boto3:.3f} s CPU (median of {args.repeat}, fresh interpreters)")
    print(f"{'handler':24} {'no bytecode':>12} {'x boto3':>8} {'bytecode':>9} {'x boto3':>8}")
    for r in rows:
        print(
            f"{r['handler']:24} {r['cpu_s_without_bytecode']:12.3f} {r['vs_boto3_without_bytecode']:8.2f} "
            f"{r['cpu_s_with_bytecode']:9.3f} {r['vs_boto3_with_bytecode']:8.2f}"
        )
    OUT.parent.mkdir(exist_ok=True)
    figures: dict[str, Any] = {
        "python": py,
        "boto3_cpu_s": round(boto3, 3),
        "repeat": args.repeat,
        "handlers": rows,
    }
    OUT.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"written {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
