"""CTs as users have them from TotalSegmentator -> the (ct, labels, structures) the generator takes.

Two layouts are recognised:

* TotalSegmentator's public dataset: one folder per case holding the CT (``ct.nii.gz``) and
  ``segmentations/<structure>.nii.gz`` binary masks, plus ``meta.csv`` (``;``-separated,
  ``image_id`` first) beside the case folders. The masks are merged into one label map whose
  ids follow TotalSegmentator's class map (``TOTAL_V2_CLASSES``, so the same structure has the
  same id in both layouts); structures outside it get ids from 1001 up, in name order. Where
  masks overlap, the structure with the lower id keeps the voxel.
* TotalSegmentator's multi-label output (``--ml``): one label map whose ids follow the class
  map of the ``total`` task (v2); in a case folder, ``segmentations.nii.gz`` beside the CT.

The CT may also be a DICOM series folder (``ct/``), NRRD or MetaImage (``fluorojax.io.read_image``).
Structure names are TotalSegmentator's, which are FluoroSeg's category names
(``fluoroseg_category_ids``); ``write_generator_case`` writes a case in the layout of
``fluorojax.scene.generate.find_cases`` (``ct.nii.gz``, ``labels.nii.gz``, ``structures.csv``).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import cast

import numpy as np

from fluorojax._files import StrPath
from fluorojax.volume import Volume, load_volume

_VERTEBRAE = (
    ["S1"]
    + [f"L{i}" for i in range(5, 0, -1)]
    + [f"T{i}" for i in range(12, 0, -1)]
    + [f"C{i}" for i in range(7, 0, -1)]
)
_NAMES = (
    [
        "spleen",
        "kidney_right",
        "kidney_left",
        "gallbladder",
        "liver",
        "stomach",
        "pancreas",
        "adrenal_gland_right",
        "adrenal_gland_left",
        "lung_upper_lobe_left",
        "lung_lower_lobe_left",
        "lung_upper_lobe_right",
        "lung_middle_lobe_right",
        "lung_lower_lobe_right",
        "esophagus",
        "trachea",
        "thyroid_gland",
        "small_bowel",
        "duodenum",
        "colon",
        "urinary_bladder",
        "prostate",
        "kidney_cyst_left",
        "kidney_cyst_right",
        "sacrum",
    ]
    + [f"vertebrae_{v}" for v in _VERTEBRAE]
    + [
        "heart",
        "aorta",
        "pulmonary_vein",
        "brachiocephalic_trunk",
        "subclavian_artery_right",
        "subclavian_artery_left",
        "common_carotid_artery_right",
        "common_carotid_artery_left",
        "brachiocephalic_vein_left",
        "brachiocephalic_vein_right",
        "atrial_appendage_left",
        "superior_vena_cava",
        "inferior_vena_cava",
        "portal_vein_and_splenic_vein",
        "iliac_artery_left",
        "iliac_artery_right",
        "iliac_vena_left",
        "iliac_vena_right",
        "humerus_left",
        "humerus_right",
        "scapula_left",
        "scapula_right",
        "clavicula_left",
        "clavicula_right",
        "femur_left",
        "femur_right",
        "hip_left",
        "hip_right",
        "spinal_cord",
        "gluteus_maximus_left",
        "gluteus_maximus_right",
        "gluteus_medius_left",
        "gluteus_medius_right",
        "gluteus_minimus_left",
        "gluteus_minimus_right",
        "autochthon_left",
        "autochthon_right",
        "iliopsoas_left",
        "iliopsoas_right",
        "brain",
        "skull",
    ]
    + [f"rib_left_{i}" for i in range(1, 13)]
    + [f"rib_right_{i}" for i in range(1, 13)]
    + ["sternum", "costal_cartilages"]
)
TOTAL_V2_CLASSES: dict[int, str] = dict(enumerate(_NAMES, start=1))
"""TotalSegmentator v2's class map of the ``total`` task: {label id: structure name}, ids 1-117."""
_IDS = {name: i for i, name in TOTAL_V2_CLASSES.items()}
FIRST_EXTRA_ID = 1001
_CT_NAMES = ("ct.nii.gz", "ct.nii", "ct.nrrd", "ct.mha", "ct.mhd", "ct")


def _mask_name(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _read_mask(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(boolean (I, J, K) mask, affine): NIfTI read as stored (no float copy of a whole CT grid)."""
    if path.name.endswith((".nii", ".nii.gz")):
        import nibabel as nib

        image = cast(nib.Nifti1Image, nib.load(path))  # a .nii / .nii.gz loads as NIfTI-1 or NIfTI-2 (its subclass)
        return np.asarray(image.dataobj) > 0.5, np.asarray(image.affine, np.float64)
    from fluorojax.io.images import read_image

    data, affine = read_image(path)
    return data > 0.5, affine


def find_ct(folder: StrPath) -> Path | None:
    """The case's CT: ``ct.nii.gz``, ``ct.nii``, ``ct.nrrd``, ``ct.mha``, ``ct.mhd`` or a DICOM folder ``ct/``; None if absent."""
    folder = Path(os.fspath(folder))
    return next((folder / n for n in _CT_NAMES if (folder / n).exists()), None)


MULTILABEL_NAME = "segmentations.nii.gz"
"""File name under which a case folder holds TotalSegmentator's multi-label output (``--ml``)."""


def is_case(folder: StrPath) -> bool:
    """Whether ``folder`` holds a TotalSegmentator case: a CT with ``segmentations/`` (dataset
    layout) or with ``segmentations.nii.gz`` (multi-label output)."""
    folder = Path(os.fspath(folder))
    return find_ct(folder) is not None and ((folder / "segmentations").is_dir() or (folder / MULTILABEL_NAME).is_file())


def load_case(folder: StrPath) -> tuple[Volume, dict[int, str]]:
    """A TotalSegmentator case folder (either layout, see ``is_case``): (CT ``Volume`` with its
    label map, {label id: structure name})."""
    folder = Path(os.fspath(folder))
    if (folder / "segmentations").is_dir():
        return load_dataset_case(folder)
    ct = find_ct(folder)
    if ct is None or not (folder / MULTILABEL_NAME).is_file():
        raise FileNotFoundError(
            f"{folder} is not a TotalSegmentator case: expected a CT (ct.nii.gz or ct/) with segmentations/ "
            f"or {MULTILABEL_NAME}"
        )
    return load_multilabel(ct, folder / MULTILABEL_NAME)


def is_dataset_case(folder: StrPath) -> bool:
    """Whether ``folder`` holds a case of TotalSegmentator's dataset layout (a CT and ``segmentations/``)."""
    folder = Path(os.fspath(folder))
    return find_ct(folder) is not None and (folder / "segmentations").is_dir()


def read_meta(directory: StrPath) -> dict[str, dict]:
    """{image_id: row} from the dataset's ``meta.csv`` (``;``- or ``,``-separated), {} if absent."""
    path = Path(os.fspath(directory)) / "meta.csv"
    if not path.is_file():
        return {}
    text = path.read_text(encoding="utf-8")
    delimiter = ";" if text.split("\n", 1)[0].count(";") > text.split("\n", 1)[0].count(",") else ","
    rows = list(csv.DictReader(text.splitlines(), delimiter=delimiter))
    if rows and "image_id" not in rows[0]:
        raise ValueError(f"{path}: expected an image_id column, got {list(rows[0])}")
    return {row["image_id"]: row for row in rows}


def find_dataset_cases(directory: StrPath) -> list[Path]:
    """The case folders of a TotalSegmentator dataset under ``directory``, sorted by name; those
    listed in ``meta.csv`` (when present) must exist."""
    directory = Path(os.fspath(directory))
    if not directory.is_dir():
        raise FileNotFoundError(f"no such directory: {directory}")
    cases = sorted(p for p in directory.iterdir() if p.is_dir() and is_dataset_case(p))
    missing = sorted(set(read_meta(directory)) - {p.name for p in cases})
    if missing:
        raise FileNotFoundError(
            f"{directory}/meta.csv lists cases without a CT and segmentations/ folder: {missing[:10]}"
        )
    if not cases:
        raise FileNotFoundError(f"no TotalSegmentator case folders (ct.nii.gz with segmentations/) under {directory}")
    return cases


def load_dataset_case(folder: StrPath) -> tuple[Volume, dict[int, str]]:
    """A case of TotalSegmentator's dataset layout: (CT ``Volume`` in HU with the merged label map,
    {label id: structure name} of the structures present)."""
    folder = Path(os.fspath(folder))
    ct = find_ct(folder)
    if ct is None or not (folder / "segmentations").is_dir():
        raise FileNotFoundError(f"{folder} is not a TotalSegmentator case: expected ct.nii.gz and segmentations/")
    volume = load_volume(ct)
    masks = sorted((folder / "segmentations").iterdir())
    names = sorted({_mask_name(p) for p in masks if p.is_file()}, key=lambda n: (n not in _IDS, _IDS.get(n, 0), n))
    extra = iter(range(FIRST_EXTRA_ID, FIRST_EXTRA_ID + len(names)))
    ids = {name: _IDS[name] if name in _IDS else next(extra) for name in names}
    labels = np.zeros(volume.shape, np.int32)
    affine = np.asarray(volume.affine, np.float64)
    present = {}
    for name in reversed(names):  # lower ids written last: they keep overlapping voxels
        path = next(p for p in masks if _mask_name(p) == name)
        inside, mask_affine = _read_mask(path)
        if inside.shape != volume.shape or not np.allclose(mask_affine, affine, atol=1e-3):
            raise ValueError(f"mask {path} is on another grid than the CT {ct}: shape {inside.shape} vs {volume.shape}")
        if inside.any():
            labels[inside] = ids[name]
            present[ids[name]] = name
    return volume.replace(labels=labels), dict(sorted(present.items()))


def load_multilabel(
    ct: StrPath, label_map: StrPath, class_map: dict[int, str] | None = None
) -> tuple[Volume, dict[int, str]]:
    """TotalSegmentator's multi-label output: (CT ``Volume`` with the label map, {label id:
    structure name} of the ids present), names from ``class_map`` (default ``TOTAL_V2_CLASSES``).
    Ids outside the class map raise ValueError."""
    class_map = TOTAL_V2_CLASSES if class_map is None else class_map
    volume = load_volume(ct, labels=label_map)
    ids = np.unique(np.asarray(volume.labels))
    unknown = [int(i) for i in ids if i != 0 and int(i) not in class_map]
    if unknown:
        raise ValueError(
            f"label map {label_map} has ids {unknown[:10]} outside the class map (ids {min(class_map)}-{max(class_map)}); "
            "pass class_map= for other TotalSegmentator tasks"
        )
    return volume, {int(i): class_map[int(i)] for i in ids if i != 0}


def fluoroseg_category_ids(structures: dict[int, str]) -> dict[int, int | None]:
    """{label id: FluoroSeg category id, or None for a structure without a category}."""
    from fluorojax.fluoroseg.categories import get_category

    out: dict[int, int | None] = {}
    for label, name in structures.items():
        try:
            out[label] = get_category(name).id
        except ValueError:
            out[label] = None
    return out


def write_generator_case(volume: Volume, structures: dict[int, str], folder: StrPath) -> Path:
    """Write a case as ``fluorojax generate --cts`` reads it: ``folder/ct.nii.gz`` (HU, float32),
    ``labels.nii.gz`` (int16 or int32) and ``structures.csv`` (``id,structure``). Returns the folder."""
    import nibabel as nib

    if volume.labels is None:
        raise ValueError("the volume has no label map to write")
    folder = Path(os.fspath(folder))
    folder.mkdir(parents=True, exist_ok=True)
    affine = np.asarray(volume.affine, np.float64)
    labels = np.asarray(volume.labels)
    nib.save(nib.Nifti1Image(np.asarray(volume.data, np.float32), affine), folder / "ct.nii.gz")
    nib.save(
        nib.Nifti1Image(labels.astype(np.int16 if labels.max() < 2**15 else np.int32), affine), folder / "labels.nii.gz"
    )
    with open(folder / "structures.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["id", "structure"])
        writer.writerows(sorted(structures.items()))
    return folder
