"""CT volumes from DICOM series, NRRD and MetaImage against a NIfTI original (world position of every voxel)."""

import os
import random

import nibabel as nib
import numpy as np
import pytest

import fluorojax as fj
from fluorojax.io import list_series, read_image, read_metaimage

pydicom = pytest.importorskip("pydicom")

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _rotation(angles):
    a, b, c = angles
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ ry @ rx


def _original(shape=(6, 5, 4), angles=(0.2, -0.15, 0.3), spacing=(0.8, 0.7, 2.5), flip_k=False):
    """(HU data int-valued float, oblique RAS affine)."""
    rng = np.random.default_rng(0)
    data = 2.0 * rng.integers(-512, 1000, size=shape).astype(np.float32)  # even: exact with slope 2
    affine = np.eye(4)
    affine[:3, :3] = _rotation(angles) * np.asarray(spacing)
    if flip_k:
        affine[:3, 2] *= -1
    affine[:3, 3] = (-40.0, 12.5, 100.0)
    return data, affine


def _write_series(folder, data, affine, uid=None, number=1, slope=1.0, intercept=-1024.0, tilt_mm=0.0, shuffle=True):
    """One DICOM file per k slice of ``data`` (I, J, K), geometry from the RAS ``affine``."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    os.makedirs(folder, exist_ok=True)
    lps = LPS @ affine
    col_step, row_step = lps[:3, 0], lps[:3, 1]
    x, y = col_step / np.linalg.norm(col_step), row_step / np.linalg.norm(row_step)
    uid = uid or generate_uid()
    names = [f"{i:03d}.dcm" for i in range(data.shape[2])]
    if shuffle:
        random.Random(1).shuffle(names)
    for k in range(data.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "CT", uid, number
        ds.SeriesDescription = f"series {number}"
        ds.InstanceNumber = data.shape[2] - k  # deliberately not the spatial order
        position = lps[:3, 3] + k * lps[:3, 2] + k * tilt_mm * y
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in np.concatenate([x, y])]
        ds.PixelSpacing = [f"{np.linalg.norm(row_step):.8f}", f"{np.linalg.norm(col_step):.8f}"]
        ds.Rows, ds.Columns = data.shape[1], data.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = f"{slope:g}", f"{intercept:g}"
        stored = np.round((data[:, :, k].T - intercept) / slope).astype(np.int16)
        ds.PixelData = stored.tobytes()
        ds.save_as(os.path.join(folder, names[k]), enforce_file_format=True)
    return uid


def _assert_same_voxels(volume, data, affine):
    """Every voxel of ``volume`` has the value of the original voxel at the same world position."""
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in volume.shape], indexing="ij"), -1).reshape(-1, 3)
    world = ijk @ np.asarray(volume.affine, np.float64)[:3, :3].T + np.asarray(volume.affine, np.float64)[:3, 3]
    original = np.linalg.solve(affine[:3, :3], (world - affine[:3, 3]).T).T
    np.testing.assert_allclose(original, np.round(original), atol=2e-3)
    index = tuple(np.round(original).astype(int).T)
    np.testing.assert_array_equal(np.asarray(volume.data).reshape(-1), data[index])


@pytest.mark.parametrize("flip_k", [False, True])
def test_dicom_series_matches_nifti_world_positions(tmp_path, flip_k):
    data, affine = _original(flip_k=flip_k)
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "ct.nii.gz")
    _write_series(tmp_path / "dcm", data, affine, slope=2.0, intercept=-1024.0)
    nifti = fj.load_volume(tmp_path / "ct.nii.gz")
    dicom = fj.load_volume(tmp_path / "dcm")
    assert dicom.shape == nifti.shape
    assert np.asarray(dicom.data).min() < -500  # signed stored pixels with an intercept
    _assert_same_voxels(dicom, data, affine)
    if not flip_k:  # the slice normal follows k: the same grid, voxel for voxel
        np.testing.assert_allclose(np.asarray(dicom.affine), affine, atol=1e-4)


def test_dicom_single_file_path_reads_its_series(tmp_path):
    data, affine = _original()
    _write_series(tmp_path, data, affine)
    volume = fj.load_volume(tmp_path / "000.dcm")
    _assert_same_voxels(volume, data, affine)


def test_gantry_tilt_refused(tmp_path):
    data, affine = _original(angles=(0.0, 0.0, 0.0))
    _write_series(tmp_path, data, affine, tilt_mm=0.6)
    with pytest.raises(ValueError, match="gantry-tilted"):
        fj.load_volume(tmp_path)


def test_missing_slice_refused(tmp_path):
    data, affine = _original()
    _write_series(tmp_path, data, affine, shuffle=False)
    os.remove(tmp_path / "001.dcm")
    with pytest.raises(ValueError, match="spacing varies"):
        fj.load_volume(tmp_path)


def test_enhanced_multiframe_refused(tmp_path):
    data, affine = _original()
    _write_series(tmp_path, data[:, :, :1], affine)
    path = next(tmp_path.iterdir())
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 2
    del ds.ImagePositionPatient  # enhanced CT keeps positions in per-frame groups
    ds.save_as(path)
    with pytest.raises(ValueError, match="multi-frame"):
        fj.load_volume(tmp_path)


def test_two_series_listed_and_chosen(tmp_path):
    data, affine = _original()
    uid_a = _write_series(tmp_path / "a", data, affine, number=3)
    uid_b = _write_series(tmp_path / "b", data[::-1].copy(), affine, number=7)
    rows = list_series(tmp_path)
    assert [(r["uid"], r["number"], r["files"]) for r in rows] == [(uid_a, 3, 4), (uid_b, 7, 4)]
    with pytest.raises(ValueError, match="2 DICOM series") as err:
        fj.load_volume(tmp_path)
    assert uid_a in str(err.value) and uid_b in str(err.value)
    _assert_same_voxels(fj.load_volume(tmp_path, series=7), data[::-1], affine)
    _assert_same_voxels(fj.load_volume(tmp_path, series=uid_a), data, affine)


def test_nrrd_lps_oblique_matches_nifti(tmp_path):
    nrrd = pytest.importorskip("nrrd")
    data, affine = _original()
    lps = LPS @ affine
    header = {"space": "left-posterior-superior", "space directions": lps[:3, :3].T, "space origin": lps[:3, 3]}
    nrrd.write(str(tmp_path / "ct.nrrd"), data.astype(np.int16), header)
    volume = fj.load_volume(tmp_path / "ct.nrrd")
    np.testing.assert_allclose(np.asarray(volume.affine), affine, atol=1e-5)
    _assert_same_voxels(volume, data, affine)


def test_metaimage_written_by_hand_matches_nifti(tmp_path):
    data, affine = _original()
    lps = LPS @ affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    directions = (lps[:3, :3] / spacing).T.ravel()  # one axis' direction cosines after another
    header = (
        f"ObjectType = Image\nNDims = 3\nBinaryData = True\nBinaryDataByteOrderMSB = False\n"
        f"TransformMatrix = {' '.join(f'{v:.10f}' for v in directions)}\n"
        f"Offset = {' '.join(f'{v:.10f}' for v in lps[:3, 3])}\n"
        f"ElementSpacing = {' '.join(f'{v:.10f}' for v in spacing)}\n"
        f"DimSize = {' '.join(str(n) for n in data.shape)}\nElementType = MET_SHORT\nElementDataFile = LOCAL\n"
    )
    (tmp_path / "ct.mha").write_bytes(header.encode() + data.astype("<i2").transpose(2, 1, 0).tobytes())
    volume = fj.load_volume(tmp_path / "ct.mha")
    np.testing.assert_allclose(np.asarray(volume.affine), affine, atol=1e-5)
    _assert_same_voxels(volume, data, affine)


@pytest.mark.slow  # importing itk takes ~30 s
def test_metaimage_matches_itk(tmp_path):
    itk = pytest.importorskip("itk")
    data, affine = _original()
    lps = LPS @ affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    image = itk.image_from_array(np.ascontiguousarray(data.astype(np.int16).transpose(2, 1, 0)))
    image.SetSpacing(spacing.tolist())
    image.SetOrigin(lps[:3, 3].tolist())
    image.SetDirection(itk.matrix_from_array(np.ascontiguousarray(lps[:3, :3] / spacing)))
    itk.imwrite(image, str(tmp_path / "ct.mha"), compression=True)
    read, ras = read_metaimage(tmp_path / "ct.mha")
    for index in [(0, 0, 0), (5, 0, 0), (2, 3, 1), (5, 4, 3)]:
        itk_lps = np.asarray(image.TransformIndexToPhysicalPoint(index))
        np.testing.assert_allclose((LPS @ ras @ np.r_[index, 1.0])[:3], itk_lps, atol=1e-4)
        assert read[index] == data[index]


def test_save_dicom_series_round_trip(tmp_path):
    from fluorojax.io import save_dicom_series

    data, affine = _original(flip_k=True)
    paths = save_dicom_series(tmp_path, data, affine)
    assert len(paths) == data.shape[2]
    assert pydicom.dcmread(paths[0]).RescaleIntercept == -1024
    _assert_same_voxels(fj.load_volume(tmp_path), data, affine)


def test_unknown_format_and_missing_path(tmp_path):
    (tmp_path / "ct.xyz").write_text("x")
    with pytest.raises(ValueError, match="cannot tell the format"):
        read_image(tmp_path / "ct.xyz")
    with pytest.raises(FileNotFoundError):
        fj.load_volume(tmp_path / "nothing.nrrd")


def test_missing_optional_package_names_the_extra(monkeypatch, tmp_path):
    import builtins

    real_import = builtins.__import__

    def no_pydicom(name, *args, **kwargs):
        if name.split(".")[0] == "pydicom":
            raise ImportError("No module named 'pydicom'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pydicom)
    monkeypatch.delitem(__import__("sys").modules, "pydicom", raising=False)
    with pytest.raises(ImportError, match=r"fluorojax\[dicom\]"):
        fj.load_volume(tmp_path)
