"""Ground Truth manifests: the pre-label input format, the output format, checked against real outputs."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from workflow.domain.detections import Detections, Provenance
from workflow.domain.groundtruth import (
    ImageSize,
    InvalidLabelAttributeName,
    ManifestFormatError,
    ReviewedBox,
    TooManyLabelCategories,
    dumps_manifest,
    failed_output_line,
    input_manifest_line,
    label_category_config,
    loads_manifest,
    output_manifest_line,
    parse_output_line,
    same_boxes,
    semantic_segmentation_metadata,
    split_manifest,
    validate_label_attribute_name,
)
from workflow.domain.taxonomy import DEFAULT_ADAS_TAXONOMY, Taxonomy, TaxonomyClass
from workflow.domain.worker_templates import adjustment_ui_template

SAGEMAKER = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "sagemaker"
REAL_BOX_OUTPUTS = {
    "gt_bbox_output_cat-ground-truth.manifest": "cat-ground-truth",
    "gt_bbox_output_aws-yolov5-demo_first3.manifest": "category",
}
CREATED = datetime(2023, 7, 1, 12, 0, 0, 123456, tzinfo=UTC)


def real_output(name: str) -> list[dict[str, Any]]:
    path = SAGEMAKER / name
    if not path.exists():
        pytest.skip(f"real Ground Truth output manifest {path} is absent (shared data not laid out)")
    return loads_manifest(path.read_text())


def adas_detections(frame: str = "s3://drive/frames/000123.png") -> Detections:
    return Detections(
        boxes=np.array([[111.2, 134.0, 172.4, 262.0], [-5.0, 600.0, 80.0, 1090.0], [900, 500, 950, 520]]),
        scores=np.array([0.91, 0.456789, 0.7]),
        class_ids=np.array([0, 4, 8]),
        class_names=("car", "pedestrian", "traffic light"),
        image_width=1920,
        image_height=1080,
        provenance=Provenance(model="nanodet"),
        frame=frame,
    )


def test_input_line_is_the_bounding_box_adjustment_prelabel_format():
    # Given ADAS detections of one frame, one box partly outside the image
    detections = adas_detections()
    # When the input manifest line is written
    line = input_manifest_line(detections.frame, detections, DEFAULT_ADAS_TAXONOMY, created=CREATED)
    # Then it is exactly the documented pre-label format: integer pixels clipped to the frame,
    # class ids indexing the label categories, string class-map keys, objects in box order
    car, ped, light = (
        DEFAULT_ADAS_TAXONOMY.reviewed_names.index(n) for n in ("car", "pedestrian", "traffic light")
    )
    assert line == {
        "source-ref": "s3://drive/frames/000123.png",
        "prelabel": {
            "image_size": [{"width": 1920, "height": 1080, "depth": 3}],
            "annotations": [
                {"class_id": car, "left": 111, "top": 134, "width": 61, "height": 128},
                {"class_id": ped, "left": 0, "top": 600, "width": 80, "height": 480},
                {"class_id": light, "left": 900, "top": 500, "width": 50, "height": 20},
            ],
        },
        "prelabel-metadata": {
            "objects": [{"confidence": 0.91}, {"confidence": 0.4568}, {"confidence": 0.7}],
            "class-map": {str(car): "car", str(ped): "pedestrian", str(light): "traffic light"},
            "type": "groundtruth/object-detection",
            "human-annotated": "no",
            "creation-date": "2023-07-01T12:00:00.123456",
            "job-name": "labeling-job/prelabel",
        },
    }
    assert json.loads(dumps_manifest([line])) == line


def test_input_line_leaves_out_unreviewed_classes_and_refuses_unknown_ones():
    # Given a taxonomy where traffic lights are not reviewed by people
    taxonomy = Taxonomy(
        classes=(
            TaxonomyClass(name="car"),
            TaxonomyClass(name="traffic light", reviewed=False),
            TaxonomyClass(name="pedestrian"),
        )
    )
    # When the pre-label line is written
    line = input_manifest_line("s3://b/f.png", adas_detections(), taxonomy, attribute="auto", created=CREATED)
    # Then only reviewed classes remain and ids index the reviewed categories
    assert line["auto-metadata"]["class-map"] == {"0": "car", "1": "pedestrian"}
    assert [a["class_id"] for a in line["auto"]["annotations"]] == [0, 1]
    # And a class outside the taxonomy (model names not mapped) is an error, not a silent drop
    with pytest.raises(ManifestFormatError, match="ClassMap"):
        input_manifest_line("s3://b/f.png", adas_detections(), Taxonomy.from_names(["car"]))


def test_empty_frame_has_the_real_empty_image_shape():
    # Given a frame with no detection
    empty = Detections.empty(601, 453, Provenance(model="m"), frame="s3://b/0001.jpg")
    # When written
    line = input_manifest_line(empty.frame, empty, DEFAULT_ADAS_TAXONOMY, created=CREATED)
    # Then it has the shape of the real empty-image line: no annotations, objects or class-map entries
    assert line["prelabel"]["annotations"] == []
    assert line["prelabel-metadata"]["objects"] == [] and line["prelabel-metadata"]["class-map"] == {}


@pytest.mark.parametrize("name", ["prelabel", "pre-label2", "a"])
def test_valid_label_attribute_names(name: str):
    # Given names CreateLabelingJob accepts for boxes / When validated / Then no error
    validate_label_attribute_name(name, "bounding-box")


@pytest.mark.parametrize(
    ("name", "task"),
    [
        ("prelabel-metadata", "bounding-box"),
        ("boxes-ref", "bounding-box"),
        ("masks", "semantic-segmentation"),
        ("has space", "bounding-box"),
        ("-lead", "bounding-box"),
        ("x" * 128, "bounding-box"),
    ],
)
def test_invalid_label_attribute_names(name: str, task: Any):
    # Given a name the service refuses / When validated / Then a typed error
    with pytest.raises(InvalidLabelAttributeName):
        validate_label_attribute_name(name, task)


def test_label_category_config_and_its_limit():
    # Given the ADAS taxonomy / When its category file is written / Then the documented format
    assert label_category_config(DEFAULT_ADAS_TAXONOMY) == {
        "document-version": "2018-11-28",
        "labels": [{"label": n} for n in DEFAULT_ADAS_TAXONOMY.reviewed_names],
    }
    # And 51 categories are refused with a typed error, 50 are fine
    assert len(label_category_config([f"c{i}" for i in range(50)])["labels"]) == 50
    with pytest.raises(TooManyLabelCategories):
        label_category_config(Taxonomy.from_names([f"c{i}" for i in range(51)]))


def test_split_manifest_respects_the_per_job_limit():
    # Given 250 lines / When split at 100 / Then three chunks in order, nothing lost
    chunks = split_manifest(list(range(250)), max_lines=100)
    assert [len(c) for c in chunks] == [100, 100, 50]
    assert sum(chunks, []) == list(range(250))
    assert split_manifest([]) == []


def test_real_output_manifests_parse():
    # Given the real 4-line cat job output (line 1 is the empty image)
    lines = real_output("gt_bbox_output_cat-ground-truth.manifest")
    # When parsed
    frames = [parse_output_line(line, "cat-ground-truth") for line in lines]
    # Then the empty image has no boxes, and the boxes carry names and confidences
    assert frames[0].boxes == () and frames[0].image_size == ImageSize(width=601, height=453, depth=3)
    assert frames[1].boxes == (
        ReviewedBox(class_id=0, class_name="Cat", left=237, top=165, width=164, height=157, confidence=0.09),
    )
    assert [len(f.boxes) for f in frames] == [0, 1, 2, 1]
    assert all(f.human_annotated and not f.failed for f in frames)
    assert frames[0].job_name == "labeling-job/cat-ground-truth"


def test_real_fractional_output_parses_to_detections():
    # Given the real output with fractional pixels
    line = real_output("gt_bbox_output_aws-yolov5-demo_first3.manifest")[1]
    # When parsed and turned into Detections
    frame = parse_output_line(line, "category")
    detections = frame.to_detections()
    # Then boxes are xyxy in pixels with their confidences
    assert len(detections) == 3 and detections.class_names == ("Bird",) * 3
    assert detections.boxes[1] == pytest.approx([951.75, 302.25, 951.75 + 72.25, 302.25 + 226.75])
    assert detections.scores.tolist() == pytest.approx([0.88, 0.75, 0.84])
    assert (detections.image_width, detections.image_height) == (1024, 768)


def json_types(value: Any) -> Any:
    """The JSON type signature of a value (int and float are both JSON numbers, except ids)."""
    if isinstance(value, dict):
        return {k: ("integer" if k == "class_id" else json_types(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [json_types(value[0])] if value else []
    if isinstance(value, bool):
        return "boolean"
    return "number" if isinstance(value, int | float) else type(value).__name__


@pytest.mark.parametrize(("name", "attribute"), sorted(REAL_BOX_OUTPUTS.items()))
def test_output_line_has_the_keys_and_json_types_of_real_outputs(name: str, attribute: str):
    # Given each line of a real output manifest
    for real in real_output(name):
        frame = parse_output_line(real, attribute)
        assert frame.image_size is not None
        # When the same label is written by our output writer
        ours = output_manifest_line(
            {"source-ref": real["source-ref"]},
            attribute,
            frame.boxes,
            "job",
            False,
            image_size=frame.image_size,
        )
        # Then keys and JSON types match the real line; adjustment jobs add only adjustment-status
        meta, real_meta = ours[f"{attribute}-metadata"], real[f"{attribute}-metadata"]
        assert set(meta) - set(real_meta) == {"adjustment-status"} and set(real_meta) <= set(meta)
        assert json_types({k: meta[k] for k in real_meta}) == json_types(real_meta)
        assert json_types(ours[attribute]) == json_types(real[attribute])
        assert set(ours) == set(real)
        assert datetime.strptime(meta["creation-date"], "%Y-%m-%dT%H:%M:%S.%f")
        # And the label reads back to the same boxes
        assert parse_output_line(ours, attribute).boxes == frame.boxes


def test_output_line_of_an_adjustment_job():
    # Given an input line with pre-labels and the boxes a reviewer kept
    detections = adas_detections()
    input_line = input_manifest_line(detections.frame, detections, DEFAULT_ADAS_TAXONOMY, created=CREATED)
    prelabels = parse_output_line(input_line, "prelabel")
    assert prelabels.image_size is not None and not prelabels.human_annotated
    # When the adjustment output is written
    out = output_manifest_line(
        input_line, "reviewed", prelabels.boxes[:2], "adas-0001", True, image_size=prelabels.image_size
    )
    # Then the input line is kept and the label added with Ground Truth's metadata
    assert out["prelabel"] == input_line["prelabel"] and out["source-ref"] == input_line["source-ref"]
    meta = out["reviewed-metadata"]
    assert meta["job-name"] == "labeling-job/adas-0001" and meta["human-annotated"] == "yes"
    assert meta["adjustment-status"] == "adjusted" and meta["type"] == "groundtruth/object-detection"
    reviewed = parse_output_line(out, "reviewed")
    assert reviewed.boxes == prelabels.boxes[:2] and reviewed.adjustment_status == "adjusted"


def test_failed_object_reads_as_a_failed_frame():
    # Given an output line of an object Ground Truth could not label
    line = failed_output_line(
        {"source-ref": "s3://b/x.jpg"}, "reviewed", "ClientError: image unreadable", "job"
    )
    # When parsed
    frame = parse_output_line(line, "reviewed")
    # Then it is failed with its reason and no boxes, and asking for detections is an error
    assert frame.failed and frame.failure_reason == "ClientError: image unreadable" and frame.boxes == ()
    with pytest.raises(ManifestFormatError):
        frame.to_detections()


@pytest.mark.parametrize(
    "mutate",
    [
        lambda line: line.pop("source-ref"),
        lambda line: line.pop("prelabel-metadata"),
        lambda line: line["prelabel-metadata"]["class-map"].clear(),
        lambda line: line["prelabel-metadata"]["objects"].pop(),
        lambda line: line["prelabel"]["annotations"][0].pop("left"),
        lambda line: line["prelabel"].__setitem__("image_size", []),
        lambda line: line["prelabel-metadata"].__setitem__("type", "groundtruth/semantic-segmentation"),
    ],
)
def test_malformed_lines_raise_a_typed_error(mutate: Any):
    # Given a valid pre-label line broken in one way
    line = input_manifest_line("s3://b/f.png", adas_detections(), DEFAULT_ADAS_TAXONOMY)
    mutate(line)
    # When parsed / Then ManifestFormatError, never a KeyError or a half-read frame
    with pytest.raises(ManifestFormatError):
        parse_output_line(line, "prelabel")


def test_same_boxes_ignores_order_and_sub_tolerance_moves():
    # Given two labels with the same boxes in another order, one moved by 0.4 px
    a = [
        ReviewedBox(class_id=0, class_name="car", left=1, top=2, width=3, height=4),
        ReviewedBox(class_id=1, class_name="bus", left=10, top=20, width=30, height=40),
    ]
    b = [a[1], a[0].model_copy(update={"left": 1.4})]
    # When compared / Then they are the same; a relabel, a move or a deletion is a change
    assert same_boxes(a, b)
    assert not same_boxes(a, [a[0], a[1].model_copy(update={"class_name": "truck"})])
    assert not same_boxes(a, [a[0], a[1].model_copy(update={"width": 31})])
    assert not same_boxes(a, a[:1])


def test_manifest_text_round_trip_and_errors():
    # Given lines / When dumped and loaded / Then equal, blank lines ignored
    lines = [{"source-ref": "s3://b/1.jpg"}, {"source-ref": "s3://b/2.jpg"}]
    assert loads_manifest(dumps_manifest(lines) + "\n\n") == lines
    # And bad JSON or a non-object line is a typed error naming the line
    with pytest.raises(ManifestFormatError, match="line 2"):
        loads_manifest('{"a": 1}\n{"a": \n')
    with pytest.raises(ManifestFormatError, match="line 1"):
        loads_manifest("[1, 2]\n")


def test_semantic_segmentation_metadata_has_hex_colours():
    # Given the ADAS taxonomy / When segmentation metadata is written
    meta = semantic_segmentation_metadata(DEFAULT_ADAS_TAXONOMY, "seg", confidence=0.9, created=CREATED)
    # Then index 0 is BACKGROUND and every entry has a hex colour (required for adjustment jobs)
    colour_map = meta["internal-color-map"]
    assert colour_map["0"] == {"class-name": "BACKGROUND", "hex-color": "#ffffff", "confidence": 0.9}
    assert colour_map["1"] == {"class-name": "car", "hex-color": "#2acf59", "confidence": 0.9}
    assert len(colour_map) == len(DEFAULT_ADAS_TAXONOMY) + 1
    assert all(re.fullmatch(r"#[0-9a-f]{6}", e["hex-color"]) for e in colour_map.values())
    assert meta["type"] == "groundtruth/semantic-segmentation" and meta["job-name"] == "labeling-job/seg"


class _Attributes(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: dict[str, dict[str, str | None]] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found[tag] = dict(attrs)


def _js_literal_to_json(text: str) -> Any:
    # crowd-bounding-box reads a JS-style literal: bare keys and trailing commas
    quoted = re.sub(r"(\w+):", r'"\1":', text)
    return json.loads(re.sub(r",\s*([}\]])", r"\1", quoted))


def test_worker_template_turns_the_manifest_line_into_initial_boxes():
    # Given the template and a real pre-label line, rendered by a Liquid engine the way Ground Truth
    # does (autoescape, to_json and grant_read_access filters, the line as task.input.manifestLine)
    liquid = pytest.importorskip("liquid", reason="python-liquid renders the worker template")
    template = adjustment_ui_template(
        "prelabel", 'Box every road user {{ "x" }} & sign', ["car", "pedestrian"]
    )
    env = liquid.Environment(autoescape=True)
    env.filters["grant_read_access"] = lambda uri: f"https://signed.example/{uri[5:]}"
    env.filters["to_json"] = json.dumps
    detections = adas_detections()
    line = input_manifest_line(detections.frame, detections, DEFAULT_ADAS_TAXONOMY, created=CREATED)
    labels = list(DEFAULT_ADAS_TAXONOMY.reviewed_names)
    # When rendered
    html_text = env.from_string(template).render(
        task={"input": {"taskObject": line["source-ref"], "labels": labels, "manifestLine": line}}
    )
    # Then the widget shows the frame, the job's labels, and every pre-label box with its class name
    parser = _Attributes()
    parser.feed(html_text)
    box = parser.found["crowd-bounding-box"]
    assert box["name"] == "boundingBox" and box["src"] == "https://signed.example/drive/frames/000123.png"
    assert json.loads(box["labels"] or "") == labels
    assert box["header"] == 'Box every road user {{ "x" }} & sign'
    initial = _js_literal_to_json(box["initial-value"] or "")
    assert initial == [
        {"label": "car", "left": 111, "top": 134, "width": 61, "height": 128},
        {"label": "pedestrian", "left": 0, "top": 600, "width": 80, "height": 480},
        {"label": "traffic light", "left": 900, "top": 500, "width": 50, "height": 20},
    ]


def test_worker_template_with_an_empty_frame_has_no_initial_boxes():
    # Given an empty-frame line rendered through the template
    liquid = pytest.importorskip("liquid", reason="python-liquid renders the worker template")
    env = liquid.Environment(autoescape=True)
    env.filters["grant_read_access"] = lambda uri: uri
    env.filters["to_json"] = json.dumps
    empty = Detections.empty(601, 453, Provenance(model="m"), frame="s3://b/0001.jpg")
    line = input_manifest_line(empty.frame, empty, DEFAULT_ADAS_TAXONOMY)
    # When rendered
    rendered = env.from_string(adjustment_ui_template("prelabel", "h", ["car"])).render(
        task={"input": {"taskObject": "s3://b/0001.jpg", "labels": ["car"], "manifestLine": line}}
    )
    # Then initial-value is an empty list
    parser = _Attributes()
    parser.feed(rendered)
    assert _js_literal_to_json(parser.found["crowd-bounding-box"]["initial-value"] or "") == []


def test_prelabel_entries_are_what_the_box_models_give() -> None:
    """input_manifest_line's pre-labels come straight from the arrays: the same whole pixels
    (clipped to the frame, halves rounded to even), class ids and confidences as the box models."""
    from workflow.domain.groundtruth import _box_entries, _prelabel_entries, boxes_from_detections

    rng = np.random.default_rng(3)
    names = list(DEFAULT_ADAS_TAXONOMY.reviewed_names)
    for _ in range(200):
        n = int(rng.integers(0, 30))
        boxes = rng.uniform(-60, 1700, (n, 4))
        boxes[:, 2:] = boxes[:, :2] + rng.uniform(0, 300, (n, 2))
        boxes[: n // 2] = np.round(boxes[: n // 2] * 2) / 2  # exact halves: round half to even
        dets = Detections(
            boxes=boxes,
            scores=rng.random(n).astype(np.float32),
            class_ids=np.arange(n),
            class_names=[names[int(k)] for k in rng.integers(0, len(names), n)],
            image_width=1600,
            image_height=900,
            provenance=Provenance(model="m"),
        )
        assert _prelabel_entries(dets, names) == _box_entries(boxes_from_detections(dets, names))
    broken = Detections(
        boxes=np.array([[np.nan, 1, 2, 3]]),
        scores=np.array([0.5]),
        class_ids=np.array([0]),
        class_names=[names[0]],
        image_width=10,
        image_height=10,
        provenance=Provenance(model="m"),
    )
    assert _prelabel_entries(broken, names) is None  # the box models' path says what is wrong
