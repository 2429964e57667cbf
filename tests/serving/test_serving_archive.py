"""The model archive as SageMaker gets it: its layout, size and wheels, and its code/inference.py run
as the inference toolkit runs it, answering real frames field for field as the local endpoint does.

The last test runs the archive alone: its wheels install without an index, and its code, in a fresh
interpreter that sees only the standard library, code/ and those wheels, answers as the local endpoint
does. There frames are read with boto3 over HTTP (``AWS_ENDPOINT_URL_S3``) from a small S3 stand-in:
moto cannot serve another process here (its server mode needs flask, which is not installed)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import parse_wheel_filename

from workflow.local.endpoint import AsyncEndpointConfig, LocalAsyncEndpoint
from workflow.serving.container import PYTORCH_CONTAINER
from workflow.serving.package import RUNTIME_DISTRIBUTIONS, staged_server
from workflow.serving.toolkit import load_entry_module

REGION = "us-east-1"
BUCKET = "frames-bucket"
# An upper bound that catches a wheel set gone wrong (e.g. torch pulled in), with room for pins to move.
MAX_ARCHIVE_BYTES = 150 * 1024 * 1024
SCRIPT = Path(__file__).with_name("toolkit_process.py")


def frame_requests(shared_dir: Path) -> tuple[dict[str, bytes], list[tuple[str, str, bytes]]]:
    """Real frames (KITTI, BDD100K, nuScenes), a truncated copy of one, and the requests over them."""
    data = shared_dir / "data"
    kitti = (data / "kitti_object" / "image_2" / "000008.png").read_bytes()
    bdd = next(iter(sorted((data / "bdd100k_yolop_samples").glob("*.jpg")))).read_bytes()
    nuscenes = (data / "nuscenes_cam_front_sequence" / "frames" / "000.jpg").read_bytes()
    objects = {
        "kitti/000008.png": kitti,
        "bdd/frame.jpg": bdd,
        "nuscenes/000.jpg": nuscenes,
        "bad/truncated.jpg": bdd[: len(bdd) // 3],
    }
    uri = {key: f"s3://{BUCKET}/{key}" for key in objects}
    batch = [
        uri["kitti/000008.png"],
        uri["bad/truncated.jpg"],
        uri["bdd/frame.jpg"],
        f"s3://{BUCKET}/missing/frame.jpg",
        uri["nuscenes/000.jpg"],
    ]
    requests = [
        ("single image", "image/png", kitti),
        ("batch with bad frames", "application/json", json.dumps(batch).encode()),
        ("corrupt single image", "image/jpeg", bdd[: len(bdd) // 3]),
        ("unusable batch", "application/json", b'{"frames": 3}'),
    ]
    return objects, requests


def local_endpoint_answers(
    factory: Any, objects: dict[str, bytes], requests: list[tuple[str, str, bytes]]
) -> dict[str, Any]:
    """What the local asynchronous endpoint writes for each request: the answer, or its failure."""
    s3, sns = boto3.client("s3", region_name=REGION), boto3.client("sns", region_name=REGION)
    config = AsyncEndpointConfig(f"s3://{BUCKET}/async/out", f"s3://{BUCKET}/async/failed")
    answers: dict[str, Any] = {}
    with LocalAsyncEndpoint("local", s3, sns, config, factory) as endpoint:
        for name, content_type, body in requests:
            key = f"requests/{name.replace(' ', '-')}"
            s3.put_object(Bucket=BUCKET, Key=key, Body=body)
            started = endpoint.invoke_endpoint_async(
                EndpointName="local", InputLocation=f"s3://{BUCKET}/{key}", ContentType=content_type
            )
            assert endpoint.drain(timeout=300)
            answers[name] = read_outcome(s3, started)
    return answers


def read_outcome(s3: Any, started: dict[str, Any]) -> Any:
    for field, wrap in (("OutputLocation", "ok"), ("FailureLocation", "failed")):
        bucket, _, key = started[field][5:].partition("/")
        try:
            document = json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except s3.exceptions.NoSuchKey:
            continue
        return (
            {"ok": document}
            if wrap == "ok"
            else {"failed": [document["error"][k] for k in ("type", "reason")]}
        )
    raise AssertionError(f"no output and no failure for {started['InferenceId']}")


def toolkit_answers(model_dir: Path, requests: list[tuple[str, str, bytes]]) -> dict[str, Any]:
    """Import code/inference.py as the toolkit does and run its four functions on every request."""
    module = load_entry_module(model_dir)
    model = module.model_fn(str(model_dir))
    answers: dict[str, Any] = {}
    for name, content_type, body in requests:
        try:
            data = module.input_fn(body, content_type)
            text, response_type = module.output_fn(module.predict_fn(data, model), "application/json")
        except Exception as exc:
            answers[name] = {"failed": [exc.kind, exc.reason]}  # type: ignore[attr-defined]
            continue
        assert response_type == "application/json"
        answers[name] = {"ok": json.loads(text)}
    return answers


@pytest.fixture(scope="module")
def moto_frames(shared_dir: Path) -> Iterator[tuple[dict[str, bytes], list[tuple[str, str, bytes]]]]:
    with mock_aws():
        objects, requests = frame_requests(shared_dir)
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket=BUCKET)
        for key, body in objects.items():
            s3.put_object(Bucket=BUCKET, Key=key, Body=body)
        yield objects, requests


@pytest.fixture(scope="module")
def local_answers(moto_frames: Any, detector_factory: Any) -> dict[str, Any]:
    """The local endpoint's answers with the session's detector (the one every workflow test uses)."""
    return local_endpoint_answers(detector_factory, *moto_frames)


def assert_same_answers(found: dict[str, Any], expected: dict[str, Any]) -> None:
    """Equal request by request, and inside each answer field by field (clear messages on a miss)."""
    assert found.keys() == expected.keys()
    for name, answer in expected.items():
        assert found[name].keys() == answer.keys(), name
        if "failed" in answer:
            assert found[name]["failed"] == answer["failed"], name
            continue
        ours, theirs = found[name]["ok"], answer["ok"]
        for got, want in zip(ours.get("results", [ours]), theirs.get("results", [theirs]), strict=True):
            for field in want:
                assert got[field] == want[field], f"{name}: {want.get('frame')} {field}"
            assert got.keys() == want.keys(), name
        assert ours == theirs, name


def test_the_archive_holds_weights_code_settings_and_wheels_for_the_container(archive, unpacked):
    # Given the archive of the default model
    path, built = archive
    # When its members, settings and wheels are read
    with tarfile.open(path, "r:gz") as tar:
        names = set(tar.getnames())
    serving = json.loads((unpacked / "serving.json").read_text())
    requirements = (unpacked / "code" / "requirements.txt").read_text().splitlines()
    wheels = sorted((unpacked / "code" / "wheels").glob("*.whl"))
    # Then weights, entry script, project code and settings sit where SageMaker and the toolkit look
    assert {"model.onnx", "serving.json", "code/inference.py", "code/requirements.txt"} <= names
    assert {"code/workflow/serving/handler.py", "code/workflow/inference/runner.py"} <= names
    assert not any(
        n.startswith(("code/workflow/local", "code/workflow/cli")) or "__pycache__" in n for n in names
    )
    assert serving["model"] == "nanodet-coco" and serving["weights"] == "model.onnx"
    assert serving["settings"]["letterbox"] is True and serving["entry_script"] == "inference.py"
    # And pip installs from the bundled wheels only, one pinned runtime distribution per line
    assert requirements[:2] == ["--no-index", "--find-links wheels"]
    assert sorted(r.split("==")[0] for r in requirements[2:]) == sorted(RUNTIME_DISTRIBUTIONS)
    # And every wheel fits the container's CPython and platform, and every pin has its wheel
    supported = set(cpython_tags((3, 11), platforms=PYTORCH_CONTAINER.wheel_platforms()))
    supported |= set(compatible_tags((3, 11), platforms=PYTORCH_CONTAINER.wheel_platforms()))
    assert Tag("cp311", "cp311", "manylinux_2_28_x86_64") in supported
    for wheel in wheels:
        name, version, _, tags = parse_wheel_filename(wheel.name)
        assert tags & supported, f"{wheel.name} does not install on cp311 {PYTORCH_CONTAINER.machine}"
    pinned = {(w.name.split("-")[0].lower().replace("_", "-"), w.name.split("-")[1]) for w in wheels}
    for pin in requirements[2:]:
        dist, version = pin.split("==")
        assert (dist.lower().replace("_", "-"), version) in pinned, f"no wheel for {pin}"
    assert any(w.name.startswith("onnxruntime-") and "x86_64" in w.name for w in wheels)
    # And its size is the weights plus wheels, well under the bound
    weights = (unpacked / "model.onnx").stat().st_size
    assert weights < built["archive_bytes"] == path.stat().st_size < MAX_ARCHIVE_BYTES


def test_code_inference_py_answers_as_the_local_endpoint_does(unpacked, local_answers, moto_frames):
    # Given real frames in S3 and the local endpoint's answers to a single image, a batch with a
    # truncated and a missing frame, a corrupt image and an unusable batch
    _, requests = moto_frames
    # When code/inference.py of the unpacked archive is imported and its four functions run
    found = toolkit_answers(unpacked, requests)
    # Then every answer matches, field for field: detections, image size, provenance, errors
    assert_same_answers(found, local_answers)
    batch = found["batch with bad frames"]["ok"]["results"]
    assert [("error" in r) for r in batch] == [False, True, False, True, False]
    assert batch[1]["error"]["type"] == "InvalidImage" and batch[3]["error"]["type"] == "NoSuchKey"
    assert "car" in {d["class_name"] for d in batch[0]["detections"]}
    assert found["corrupt single image"]["failed"][0] == "InvalidImage"
    assert found["unusable batch"]["failed"][0] == "InvalidRequest"


def test_local_runs_serve_the_staged_archive_through_the_endpoint(moto_frames, local_answers):
    # Given the model as `autolabel run` / `make demo` serve it: an archive staged in a folder (with the
    # settings of the suite's detector, whose answers it is compared with)
    from workflow.inference.settings import InferenceSettings

    server = staged_server("nanodet-coco", InferenceSettings(tiling=False, score_threshold=0.3))
    # When the local endpoint serves the same requests with it
    found = local_endpoint_answers(lambda: server, *moto_frames)
    # Then it ran code/inference.py of that folder, and answered exactly as before
    assert Path(server.module.__file__).parts[-2:] == ("code", "inference.py")
    assert (Path(server.model_dir) / "serving.json").is_file()
    assert_same_answers(found, local_answers)


def s3_stand_in(objects: dict[str, bytes]) -> ThreadingHTTPServer:
    """GetObject over path-style URLs, with S3's NoSuchKey error for absent keys."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            bucket, _, key = self.path.split("?", 1)[0].lstrip("/").partition("/")
            body = objects.get(key) if bucket == BUCKET else None
            if body is None:
                error = (
                    b"<?xml version='1.0' encoding='UTF-8'?><Error><Code>NoSuchKey</Code>"
                    b"<Message>The specified key does not exist.</Message></Error>"
                )
                self.send_response(404)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(error)))
                self.end_headers()
                self.wfile.write(error)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@pytest.fixture(scope="session")
def installed_wheels(unpacked: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The archive's code/requirements.txt installed as the container does, with no index."""
    target = tmp_path_factory.mktemp("site")
    requirements = unpacked / "code" / "requirements.txt"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-compile",
         "--target", str(target), "-r", str(requirements)],
        capture_output=True, text=True, check=False, env={**os.environ, "PIP_NO_INDEX": "1"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return target


@pytest.fixture(scope="module")
def frames_over_http(moto_frames: Any) -> Iterator[str]:
    objects, _ = moto_frames
    server = s3_stand_in(objects)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_the_archive_alone_answers_as_the_local_endpoint_does(
    unpacked, installed_wheels, frames_over_http, moto_frames, local_answers, tmp_path
):
    # Given the unpacked archive, its wheels installed without an index, and the frames served over HTTP
    _, requests = moto_frames
    requests_file = tmp_path / "requests.json"
    encoded = [[n, t, base64.b64encode(b).decode()] for n, t, b in requests]
    requests_file.write_text(json.dumps(encoded))
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": os.pathsep.join([str(unpacked / "code"), str(installed_wheels)]),
        "AWS_ENDPOINT_URL_S3": frames_over_http,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }
    # When a fresh interpreter without site-packages imports code/inference.py and serves the requests
    done = subprocess.run(
        [sys.executable, "-S", str(SCRIPT), str(unpacked), str(requests_file)],
        capture_output=True, text=True, env=env, cwd=tmp_path, check=False, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    # Then every module came from the archive: the project code from code/, the libraries from its wheels
    origins = report["origins"]
    for name, origin in origins.items():
        home = unpacked / "code" if name.split(".")[0] == "workflow" else installed_wheels
        assert origin is None or Path(origin).is_relative_to(home), f"{name} came from {origin}"
    assert {"workflow.serving.handler", "onnxruntime", "boto3", "numpy"} <= origins.keys()
    # And its answers match the local endpoint's, field for field
    assert_same_answers(report["answers"], local_answers)


def test_the_byo_container_server_answers_as_the_local_endpoint_does(unpacked, moto_frames, local_answers):
    # Given the bring-your-own container's server over the unpacked archive, on a free local port
    from urllib.error import HTTPError
    from urllib.request import Request, urlopen

    from workflow.serving.byo import make_server
    from workflow.serving.toolkit import ArchiveServer

    http = make_server(ArchiveServer.from_model_dir(unpacked), host="127.0.0.1", port=0)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{http.server_address[1]}"
    _, requests = moto_frames
    found: dict[str, Any] = {}
    try:
        # When SageMaker's health check and each request reach it as SageMaker sends them
        with urlopen(f"{url}/ping", timeout=120) as ping:
            assert ping.status == 200
        for name, content_type, body in requests:
            request = Request(f"{url}/invocations", data=body, headers={"Content-Type": content_type})
            try:
                with urlopen(request, timeout=300) as response:
                    found[name] = {"ok": json.loads(response.read())}
            except HTTPError as exc:
                error = json.loads(exc.read())["error"]
                found[name] = {"failed": [error["type"], error["reason"]], "status": exc.code}
    finally:
        http.shutdown()
        http.server_close()
    # Then bad requests are client errors (400), and every answer matches the local endpoint's
    assert found["corrupt single image"].pop("status") == found["unusable batch"].pop("status") == 400
    assert_same_answers(found, local_answers)
