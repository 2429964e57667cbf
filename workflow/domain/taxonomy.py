"""The project's label taxonomy and the mapping from a model's class names into it.

A :class:`Taxonomy` is the ordered list of classes people label. Its order fixes the ids used
everywhere downstream (Ground Truth ``class_id``, COCO ``category_id``), so appending a class
never renumbers the existing ones. A :class:`ClassMap` renames what a model calls a class
(``person``) to the taxonomy's name (``pedestrian``) and drops what the taxonomy does not know.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

if TYPE_CHECKING:
    from workflow.domain.detections import Detections

_HEX_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")


class TaxonomyClass(BaseModel):
    """One class of the taxonomy.

    ``reviewed`` says whether people review this class in the labeling job: classes with
    ``reviewed=False`` stay in the machine-made dataset but are not sent to Ground Truth.
    """

    model_config = ConfigDict(defer_build=True, frozen=True)

    name: str = Field(min_length=1, max_length=256)
    color: str = "#ffffff"
    reviewed: bool = True

    @field_validator("color")
    @classmethod
    def _hex_colour(cls, value: str) -> str:
        if not _HEX_COLOUR.match(value):
            raise ValueError(f"colour {value!r} is not a #rrggbb hex colour")
        return value.lower()


class Taxonomy(BaseModel):
    """An ordered list of uniquely named classes; a class's id is its position."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    classes: tuple[TaxonomyClass, ...] = Field(min_length=1)

    @field_validator("classes")
    @classmethod
    def _unique_names(cls, value: tuple[TaxonomyClass, ...]) -> tuple[TaxonomyClass, ...]:
        repeated = [name for name, n in Counter(c.name for c in value).items() if n > 1]
        if repeated:
            raise ValueError(f"class names repeated in the taxonomy: {repeated}")
        return value

    @classmethod
    def from_names(cls, names: list[str] | tuple[str, ...]) -> Taxonomy:
        """A taxonomy of reviewed classes with default colours."""
        return cls(classes=tuple(TaxonomyClass(name=n) for n in names))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.classes)

    @property
    def reviewed_names(self) -> tuple[str, ...]:
        """The names people review: the label categories of a labeling job, in taxonomy order."""
        return tuple(c.name for c in self.classes if c.reviewed)

    def index(self, name: str) -> int:
        """The class's id (its position); KeyError when the taxonomy has no such class."""
        for i, c in enumerate(self.classes):
            if c.name == name:
                return i
        raise KeyError(f"class {name!r} is not in the taxonomy {list(self.names)}")

    def get(self, name: str) -> TaxonomyClass:
        return self.classes[self.index(name)]

    def __contains__(self, name: object) -> bool:
        return any(c.name == name for c in self.classes)

    def __len__(self) -> int:
        return len(self.classes)


class ClassMap(BaseModel):
    """Model class name -> taxonomy class name. Classes the map does not name are dropped."""

    model_config = ConfigDict(defer_build=True, frozen=True)

    taxonomy: Taxonomy
    mapping: dict[str, str]

    @model_validator(mode="after")
    def _targets_in_taxonomy(self) -> ClassMap:
        unknown = sorted({t for t in self.mapping.values() if t not in self.taxonomy})
        if unknown:
            raise ValueError(f"class map targets not in the taxonomy: {unknown}")
        return self

    @classmethod
    def identity(cls, taxonomy: Taxonomy) -> ClassMap:
        """The map that keeps each taxonomy class under its own name and drops the rest."""
        return cls(taxonomy=taxonomy, mapping={n: n for n in taxonomy.names})

    def apply(self, detections: Detections) -> tuple[Detections, dict[str, int]]:
        """Rename detections into the taxonomy; return them and the count of dropped ones per class.

        The returned ``class_ids`` are taxonomy ids (positions), no longer the model's own ids.
        """
        import numpy as np  # here, not at import: handlers that only read profiles stay light

        from workflow.domain.detections import Detections

        targets = [self.mapping.get(name) for name in detections.class_names]
        keep = np.array([t is not None for t in targets], dtype=np.bool_)
        dropped = Counter(n for n, t in zip(detections.class_names, targets, strict=True) if t is None)
        kept = detections.select(keep)
        names = tuple(t for t in targets if t is not None)
        renamed = Detections(
            boxes=kept.boxes,
            scores=kept.scores,
            class_ids=np.array([self.taxonomy.index(n) for n in names], dtype=np.int64),
            class_names=names,
            image_width=kept.image_width,
            image_height=kept.image_height,
            provenance=kept.provenance,
            frame=kept.frame,
            masks=kept.masks,
        )
        return renamed, dict(dropped)


DEFAULT_ADAS_TAXONOMY = Taxonomy(
    classes=(
        TaxonomyClass(name="car", color="#2acf59"),
        TaxonomyClass(name="truck", color="#f2a31b"),
        TaxonomyClass(name="bus", color="#ffd500"),
        TaxonomyClass(name="train", color="#8c564b"),
        TaxonomyClass(name="pedestrian", color="#e6194b"),
        TaxonomyClass(name="rider", color="#f032e6"),
        TaxonomyClass(name="bicycle", color="#4363d8"),
        TaxonomyClass(name="motorcycle", color="#911eb4"),
        TaxonomyClass(name="traffic light", color="#42d4f4"),
        TaxonomyClass(name="traffic sign", color="#bfef45"),
    )
)
"""Road users and signals of a front camera, close to BDD100K's ten detection classes."""

COCO_TO_ADAS = ClassMap(
    taxonomy=DEFAULT_ADAS_TAXONOMY,
    mapping={
        "person": "pedestrian",
        "bicycle": "bicycle",
        "car": "car",
        "motorcycle": "motorcycle",
        "bus": "bus",
        "train": "train",
        "truck": "truck",
        "traffic light": "traffic light",
        "stop sign": "traffic sign",
    },
)
"""COCO-80 names (as the COCO detectors here report them) -> :data:`DEFAULT_ADAS_TAXONOMY`."""
