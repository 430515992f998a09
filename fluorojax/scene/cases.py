"""Cases: where a case's CT, label map and structure table live, and a case prepared to render.

CT folders (``find_cases``): one sub-folder per case, named after the case, holding
``ct.nii.gz`` (Hounsfield units), ``labels.nii.gz`` (integer label map on the CT's grid) and
``structures.csv`` (``id,structure``: the TotalSegmentator name of each label id, as in
``fluorojax/data/example_structures.csv``); ``.nii`` works as well as ``.nii.gz``. A folder in
one of TotalSegmentator's layouts (``ct.nii.gz`` or a DICOM ``ct/`` with
``segmentations/<structure>.nii.gz`` masks, or with its multi-label ``segmentations.nii.gz``) is
read by ``fluorojax.io.totalsegmentator``.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import warnings
from pathlib import Path

import numpy as np

from fluorojax._files import StrPath
from fluorojax.fluoroseg import cutoff_category_id, get_category
from fluorojax.io import totalsegmentator
from fluorojax.physics import material_volume
from fluorojax.scene.spec import SceneSpec
from fluorojax.scene.views import Anatomy, anatomy_from_labels
from fluorojax.volume import Volume, example_paths, load_volume

TOTALSEGMENTATOR = "totalsegmentator"
"""``CaseSource.structures`` of a TotalSegmentator case folder (``fluorojax.io.totalsegmentator``:
its dataset layout or multi-label output; ``ct`` and ``labels`` are then the folder)."""


@dataclasses.dataclass(frozen=True)
class CaseSource:
    """Where a case's data lives: its name, CT, label map and structure table (paths); all
    three None means the bundled example chest CT."""

    name: str
    ct: str | None = None
    labels: str | None = None
    structures: str | None = None

    def __post_init__(self) -> None:
        given = [p is not None for p in (self.ct, self.labels, self.structures)]
        if any(given) and not all(given):
            raise ValueError(
                f"case {self.name!r} needs ct, labels and structures together (or none for the example), got {self}"
            )

    def load(self) -> tuple[Volume, dict[int, str]]:
        """The CT ``Volume`` (HU, with labels) and {label id: structure name}."""
        if self.ct is None or self.structures is None:  # then all three are None (__post_init__)
            ct, labels = example_paths()
            return load_volume(ct, labels=labels), read_structures(Path(ct).with_name("example_structures.csv"))
        if self.structures == TOTALSEGMENTATOR:
            return totalsegmentator.load_case(self.ct)
        return load_volume(self.ct, labels=self.labels), read_structures(self.structures)

    def volume_entry(self) -> dict:
        """The case file's ``volumes`` entry (file names only, so datasets do not depend on paths)."""
        ct = self.ct if self.ct is not None else example_paths()[0]
        labels = self.labels if self.labels is not None else example_paths()[1]
        return {"id": 0, "case": self.name, "file_name": os.path.basename(ct), "labels": os.path.basename(labels)}


def example_case(name: str = "example") -> CaseSource:
    """The bundled example chest CT as a case."""
    return CaseSource(name)


def read_structures(path: StrPath) -> dict[int, str]:
    """{label id: structure name} from a CSV with columns ``id`` and ``structure``."""
    path = Path(os.fspath(path))
    if not path.is_file():
        raise FileNotFoundError(f"no structure table at {str(path)!r} (a CSV with columns id,structure)")
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"id", "structure"} <= set(rows[0]):
        raise ValueError(
            f"{path}: expected a CSV with columns id,structure, got {list(rows[0]) if rows else 'no rows'}"
        )
    try:
        return {int(r["id"]): r["structure"].strip() for r in rows}
    except ValueError as err:
        raise ValueError(f"{path}: label ids must be integers ({err})") from None


def find_cases(directory: StrPath) -> list[CaseSource]:
    """Every case folder under ``directory`` (see the module docstring), sorted by name."""
    directory = Path(os.fspath(directory))
    if not directory.is_dir():
        raise FileNotFoundError(f"CT directory {str(directory)!r} does not exist")
    cases = []
    for folder in sorted(p for p in directory.iterdir() if p.is_dir()):
        if totalsegmentator.is_case(folder):
            cases.append(CaseSource(folder.name, str(folder), str(folder), TOTALSEGMENTATOR))
            continue
        found = {}
        for stem in ("ct", "labels"):
            hits = [folder / f"{stem}{ext}" for ext in (".nii.gz", ".nii") if (folder / f"{stem}{ext}").is_file()]
            found[stem] = str(hits[0]) if hits else None
        structures = folder / "structures.csv"
        if found["ct"] is None and found["labels"] is None:
            continue
        if found["ct"] is None or found["labels"] is None or not structures.is_file():
            raise FileNotFoundError(f"case folder {folder} needs ct.nii.gz, labels.nii.gz and structures.csv")
        cases.append(CaseSource(folder.name, found["ct"], found["labels"], str(structures)))
    if not cases:
        raise FileNotFoundError(f"no case folders (with ct.nii.gz, labels.nii.gz, structures.csv) under {directory}")
    return cases


@dataclasses.dataclass(frozen=True)
class PreparedCase:
    """A case ready to render: the density volume, anatomy and label -> category mapping."""

    source: CaseSource
    densities: Volume
    anatomy: Anatomy
    label_ids: tuple
    category_ids: tuple


def prepare_case(source: CaseSource, spec: SceneSpec) -> PreparedCase:
    """Load a case and derive its material densities, anatomy and FluoroSeg category ids
    (cut-off categories for structures touching the CT's inferior / superior end)."""
    volume, names = source.load()
    anatomy = anatomy_from_labels(np.asarray(volume.labels), np.asarray(volume.affine), names)
    wanted = set(anatomy.structures) if spec.render.structures is None else set(spec.render.structures)
    label_ids, category_ids, unknown = [], [], []
    for name, structure in sorted(anatomy.structures.items(), key=lambda kv: kv[1].id):
        if name not in wanted:
            continue
        try:
            category = get_category(name)
        except ValueError:
            unknown.append(name)
            continue
        label_ids.append(structure.id)
        category_ids.append(category.id if structure.cutoff is None else cutoff_category_id(name, structure.cutoff))
    if unknown:
        warnings.warn(
            f"case {source.name!r}: structures {unknown} have no FluoroSeg category and are not annotated",
            RuntimeWarning,
            stacklevel=2,
        )
    if not label_ids:
        raise ValueError(f"case {source.name!r}: no structure to annotate among {sorted(wanted)}")
    return PreparedCase(source, material_volume(volume), anatomy, tuple(label_ids), tuple(category_ids))
