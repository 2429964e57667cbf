"""Taxonomy and class mapping: ids from order, renaming into the taxonomy, counting what is dropped."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from workflow.domain.detections import Detections, Provenance
from workflow.domain.taxonomy import (
    COCO_TO_ADAS,
    DEFAULT_ADAS_TAXONOMY,
    ClassMap,
    Taxonomy,
    TaxonomyClass,
)


def coco_detections(names: list[str]) -> Detections:
    n = len(names)
    return Detections(
        boxes=np.array([[10 * i, 10, 10 * i + 5, 20] for i in range(n)], np.float32).reshape(-1, 4),
        scores=np.linspace(0.9, 0.5, n).astype(np.float32),
        class_ids=np.arange(n),
        class_names=tuple(names),
        image_width=640,
        image_height=480,
        provenance=Provenance(model="nanodet-coco"),
        frame="s3://bucket/frames/0001.jpg",
        masks=tuple({"size": [480, 640], "counts": f"m{i}"} for i in range(n)),
    )


def test_class_id_is_the_position_in_the_taxonomy():
    # Given the default ADAS taxonomy
    taxonomy = DEFAULT_ADAS_TAXONOMY
    # When ids are looked up
    # Then they follow the declared order and unknown names raise
    assert taxonomy.names[:3] == ("car", "truck", "bus")
    assert taxonomy.index("car") == 0
    assert taxonomy.index("pedestrian") == taxonomy.names.index("pedestrian")
    assert "pedestrian" in taxonomy and "person" not in taxonomy
    with pytest.raises(KeyError):
        taxonomy.index("person")


def test_taxonomy_refuses_repeated_names_and_bad_colours():
    # Given class lists with a repeated name, a bad colour, or no class at all
    # When a taxonomy is built
    # Then validation fails
    with pytest.raises(ValidationError, match="repeated"):
        Taxonomy.from_names(["car", "bus", "car"])
    with pytest.raises(ValidationError, match="hex"):
        TaxonomyClass(name="car", color="green")
    with pytest.raises(ValidationError):
        Taxonomy(classes=())


def test_reviewed_names_leave_out_classes_people_do_not_review():
    # Given a taxonomy where traffic lights are machine-only
    taxonomy = Taxonomy(
        classes=(
            TaxonomyClass(name="car", color="#00FF00"),
            TaxonomyClass(name="traffic light", reviewed=False),
            TaxonomyClass(name="pedestrian"),
        )
    )
    # When the reviewed names are asked for
    # Then the machine-only class is absent, order kept, colours normalised
    assert taxonomy.reviewed_names == ("car", "pedestrian")
    assert taxonomy.get("car").color == "#00ff00"


def test_coco_to_adas_renames_and_counts_dropped_classes():
    # Given COCO detections including classes the ADAS taxonomy does not know
    detections = coco_detections(["person", "car", "dog", "stop sign", "dog", "truck", "bench"])
    # When they are mapped into the ADAS taxonomy
    mapped, dropped = COCO_TO_ADAS.apply(detections)
    # Then kept detections carry taxonomy names and ids, and dropped ones are counted per class
    assert mapped.class_names == ("pedestrian", "car", "traffic sign", "truck")
    assert mapped.class_ids.tolist() == [DEFAULT_ADAS_TAXONOMY.index(n) for n in mapped.class_names]
    assert dropped == {"dog": 2, "bench": 1}
    assert np.allclose(mapped.boxes, detections.boxes[[0, 1, 3, 5]])
    assert np.allclose(mapped.scores, detections.scores[[0, 1, 3, 5]])
    assert mapped.masks is not None and [m["counts"] for m in mapped.masks] == ["m0", "m1", "m3", "m5"]
    assert (mapped.frame, mapped.image_width, mapped.provenance) == (
        detections.frame,
        640,
        detections.provenance,
    )


def test_mapping_empty_detections_gives_empty_detections():
    # Given a frame where the model found nothing
    empty = Detections.empty(640, 480, Provenance(model="m"), frame="f.jpg")
    # When mapped
    mapped, dropped = COCO_TO_ADAS.apply(empty)
    # Then nothing is kept and nothing dropped
    assert len(mapped) == 0 and dropped == {}


def test_class_map_targets_must_exist_in_the_taxonomy():
    # Given a map that sends a class to a name the taxonomy lacks
    # When it is built
    # Then validation fails, naming the unknown target
    with pytest.raises(ValidationError, match="lorry"):
        ClassMap(taxonomy=DEFAULT_ADAS_TAXONOMY, mapping={"truck": "lorry"})


def test_identity_map_keeps_taxonomy_names_only():
    # Given detections already named in the taxonomy plus a stranger
    detections = coco_detections(["car", "bus", "zebra"])
    # When the identity map applies
    mapped, dropped = ClassMap.identity(DEFAULT_ADAS_TAXONOMY).apply(detections)
    # Then taxonomy classes stay, the stranger is dropped
    assert mapped.class_names == ("car", "bus") and dropped == {"zebra": 1}
