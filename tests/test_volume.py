"""Volume validation, geometry, NIfTI loading (nibabel round trips), HU -> mu and the bundled example."""

import csv
import gzip
from importlib import resources

import jax
import jax.numpy as jnp
import nibabel as nib
import numpy as np
import pytest

from fluorojax.volume import MU_WATER_PER_MM, Volume, example_paths, hu_to_mu, load_example, load_volume

AFFINE = np.array([[0.0, -1.5, 0.0, 30.0], [2.0, 0.0, 0.0, -40.0], [0.0, 0.3, 2.5, 10.0], [0, 0, 0, 1]])


def write_nifti(path, data, affine):
    nib.save(nib.Nifti1Image(data, affine), str(path))
    return str(path)


def write_scaled_nifti(path, raw, affine, slope, inter):
    """Write int16 voxels with the given scl_slope/scl_inter byte for byte (nibabel's save
    would pick its own scaling), gzip-compressed."""
    header = nib.Nifti1Header()
    header.set_data_shape(raw.shape)
    header.set_data_dtype(np.int16)
    header.set_sform(affine, code=1)
    header.set_qform(affine, code=1)
    header["scl_slope"], header["scl_inter"] = slope, inter
    header["vox_offset"] = 352
    blob = header.binaryblock + b"\x00" * 4 + raw.astype("<i2").tobytes(order="F")
    with gzip.open(path, "wb") as f:
        f.write(blob)
    return str(path)


# ---------------------------------------------------------------- geometry


def test_spacing_and_center_against_numpy():
    vol = Volume(np.zeros((4, 6, 5), np.float32), AFFINE)
    np.testing.assert_allclose(np.asarray(vol.spacing), np.linalg.norm(AFFINE[:3, :3], axis=0), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(vol.spacing), [2.0, np.hypot(1.5, 0.3), 2.5], rtol=1e-6)
    # centre of the grid: the world position of the middle index ((I-1)/2, (J-1)/2, (K-1)/2)
    want = AFFINE @ np.array([1.5, 2.5, 2.0, 1.0])
    np.testing.assert_allclose(np.asarray(vol.center), want[:3], atol=1e-5)
    assert vol.shape == (4, 6, 5) and vol.channels is None
    assert vol.data.dtype == np.float32 and vol.affine.dtype == np.float32


def test_channel_volume_shape_channels_center():
    data = np.random.default_rng(0).uniform(size=(4, 6, 5, 3)).astype(np.float32)
    vol = Volume(data, AFFINE, labels=np.ones((4, 6, 5), np.int64))
    assert vol.shape == (4, 6, 5)
    assert vol.channels == 3
    np.testing.assert_allclose(np.asarray(vol.center), (AFFINE @ [1.5, 2.5, 2.0, 1.0])[:3], atol=1e-5)
    np.testing.assert_array_equal(np.asarray(vol.data), data)
    assert vol.labels.dtype == np.int32


def test_segmented_volume_channels_and_dense_form():
    rng = np.random.default_rng(1)
    data = rng.uniform(0.5, 2.0, size=(4, 6, 5)).astype(np.float32)
    classes = rng.integers(0, 3, size=(4, 6, 5))
    vol = Volume(data, AFFINE, materials=classes, n_materials=3)
    assert vol.shape == (4, 6, 5) and vol.channels == 3 and vol.materials.dtype == np.int32
    dense = vol.dense()
    assert dense.channels == 3 and dense.materials is None
    expected = np.zeros((4, 6, 5, 3), np.float32)
    np.put_along_axis(expected, classes[..., None], data[..., None], axis=-1)  # value in its class's channel
    np.testing.assert_array_equal(np.asarray(dense.data), expected)
    assert vol.replace(data=2 * data).n_materials == 3  # replace keeps the segmentation
    # a pytree whose class count is static: it crosses jit and the count stays a Python int
    assert jax.jit(lambda v: v.dense().data.sum())(vol) == pytest.approx(data.sum(), rel=1e-6)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(materials=np.zeros((4, 6, 5), int)), ValueError, "go together"),
        (dict(n_materials=3), ValueError, "go together"),
        (dict(materials=np.zeros((4, 6, 4), int), n_materials=3), ValueError, "materials shape"),
        (dict(materials=np.full((4, 6, 5), 3), n_materials=3), ValueError, r"\[0, 3\)"),
        (dict(materials=np.full((4, 6, 5), -1), n_materials=3), ValueError, r"\[0, 3\)"),
        (dict(materials=np.zeros((4, 6, 5), np.float32), n_materials=3), TypeError, "integer class"),
        (dict(materials=np.zeros((4, 6, 5), int), n_materials=17), ValueError, "n_materials"),
        (dict(materials=np.zeros((4, 6, 5), int), n_materials=0), ValueError, "n_materials"),
    ],
)
def test_bad_segmentations(kwargs, error, match):
    with pytest.raises(error, match=match):
        Volume(np.ones((4, 6, 5), np.float32), AFFINE, **kwargs)
    with pytest.raises(ValueError, match="needs \\(I, J, K\\) data"):
        Volume(np.ones((4, 6, 5, 2), np.float32), AFFINE, materials=np.zeros((4, 6, 5), int), n_materials=2)


def test_volume_is_a_pytree_usable_under_jit():
    vol = Volume(
        np.arange(24, dtype=np.float32).reshape(2, 3, 4), np.diag([1.0, 2.0, 3.0, 1.0]), np.zeros((2, 3, 4), int)
    )
    leaves = jax.tree_util.tree_leaves(vol)
    assert len(leaves) == 3
    total = jax.jit(lambda v: v.data.sum() * v.spacing[1])(vol)
    assert float(total) == pytest.approx(276.0 * 2.0)
    center = jax.jit(lambda v: v.center)(vol)
    np.testing.assert_allclose(np.asarray(center), [0.5, 2.0, 4.5], atol=1e-6)


def test_replace_validates_and_keeps_the_rest():
    vol = Volume(np.zeros((2, 3, 4), np.float32), AFFINE, np.zeros((2, 3, 4), np.int32))
    new = vol.replace(data=np.ones((2, 3, 4), np.float32))
    np.testing.assert_array_equal(np.asarray(new.data), 1.0)
    np.testing.assert_array_equal(np.asarray(new.affine), AFFINE.astype(np.float32))
    assert new.labels is not None
    with pytest.raises(ValueError, match="label map shape"):
        vol.replace(data=np.ones((3, 3, 4), np.float32))


def test_derived_volumes_read_no_values(monkeypatch):
    """hu_to_mu, replace and dense derive a volume without a value scan (``__check_values__`` would
    fail here, and a NaN passes replace) and without a device-to-host copy (the guard bites on an
    accelerator); the constructor still scans concrete values, and shapes are checked always."""
    rng = np.random.default_rng(3)
    hu = rng.uniform(-1200.0, 1500.0, size=(3, 4, 5)).astype(np.float32)
    classes = rng.integers(0, 3, size=(3, 4, 5))
    vol = Volume(jax.device_put(hu), AFFINE, labels=jax.device_put(classes.astype(np.int32)))
    seg = Volume(jax.device_put(hu), AFFINE, materials=jax.device_put(classes.astype(np.int32)), n_materials=3)

    def refuse(self):
        raise AssertionError("Volume.__check_values__ ran on a derived volume")

    monkeypatch.setattr(Volume, "__check_values__", refuse)
    with jax.transfer_guard_device_to_host("disallow"):
        mu = hu_to_mu(vol)
        doubled = vol.replace(data=vol.data * 2.0)
        unscanned = vol.replace(data=jnp.full(vol.shape, jnp.nan))
        dense = seg.dense()
    monkeypatch.undo()
    want = np.maximum(MU_WATER_PER_MM + hu.astype(np.float64) / 1000.0 * MU_WATER_PER_MM, 0.0)
    np.testing.assert_allclose(np.asarray(mu.data), want, rtol=1e-6, atol=1e-8)  # float32 near 0
    np.testing.assert_array_equal(np.asarray(mu.labels), classes)
    np.testing.assert_array_equal(np.asarray(doubled.data), 2.0 * hu)
    assert np.isnan(np.asarray(unscanned.data)).all()
    expected = np.zeros((3, 4, 5, 3), np.float32)
    np.put_along_axis(expected, classes[..., None], hu[..., None], axis=-1)
    np.testing.assert_array_equal(np.asarray(dense.data), expected)
    assert dense.materials is None and dense.n_materials is None and dense.channels == 3
    # the constructor scans what a user hands it, device arrays included
    with pytest.raises(ValueError, match=r"non-finite.*\(0, 0, 0\)"):
        Volume(unscanned.data, AFFINE)
    with pytest.raises(ValueError, match="label ids must be >= 0"):
        Volume(hu, AFFINE, labels=-jnp.ones((3, 4, 5), jnp.int32))
    # shapes and kinds: always, in replace and under jit too
    with pytest.raises(ValueError, match="Volume data must be 3-D"):
        Volume(jnp.zeros((3, 4)), AFFINE)
    with pytest.raises(ValueError, match="label map shape"):
        vol.replace(data=jnp.zeros((3, 4, 6)))
    with pytest.raises(TypeError, match="real numbers"):
        vol.replace(data=jnp.zeros((3, 4, 5), jnp.complex64))
    with pytest.raises(ValueError, match="label map shape"):
        jax.jit(lambda d: Volume(d, AFFINE, labels=classes).data)(jnp.zeros((3, 4, 6)))


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("shape", [(4, 5), (2, 2, 2, 2, 2), (0, 3, 3), (4,)])
def test_bad_data_shape(shape):
    with pytest.raises(ValueError, match="Volume data"):
        Volume(np.zeros(shape, np.float32), np.eye(4))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_voxels(bad):
    data = np.zeros((3, 4, 5), np.float32)
    data[1, 2, 3] = bad
    with pytest.raises(ValueError, match=r"non-finite.*\(1, 2, 3\)"):
        Volume(data, np.eye(4))


def test_non_numeric_or_complex_data():
    with pytest.raises(TypeError, match="real numbers"):
        Volume(np.zeros((2, 2, 2), np.complex64), np.eye(4))
    with pytest.raises(TypeError, match="real numbers"):
        Volume(np.full((2, 2, 2), "a"), np.eye(4))


def test_bad_affines():
    data = np.zeros((2, 3, 4), np.float32)
    nan_affine = np.eye(4)
    nan_affine[0, 3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        Volume(data, nan_affine)
    with pytest.raises(ValueError, match="singular"):
        Volume(data, np.diag([1.0, 0.0, 1.0, 1.0]))
    sheared_flat = np.eye(4)
    sheared_flat[:3, 2] = [1.0, 1.0, 0.0]
    sheared_flat[:3, 1] = [0.0, 1.0, 0.0]
    sheared_flat[:3, 0] = [1.0, 0.0, 0.0]  # third column = first + second
    with pytest.raises(ValueError, match="singular"):
        Volume(data, sheared_flat)
    last_row = np.eye(4)
    last_row[3] = [0.0, 0.0, 0.1, 1.0]
    with pytest.raises(ValueError, match="last row"):
        Volume(data, last_row)
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        Volume(data, np.eye(3))


def test_bad_labels():
    data = np.zeros((2, 3, 4), np.float32)
    with pytest.raises(ValueError, match="label map shape"):
        Volume(data, np.eye(4), labels=np.zeros((2, 3, 5), np.int32))
    with pytest.raises(ValueError, match="integer"):
        Volume(data, np.eye(4), labels=np.full((2, 3, 4), 1.5))
    with pytest.raises(ValueError, match="integer"):
        Volume(data, np.eye(4), labels=np.full((2, 3, 4), np.nan))
    negative = np.zeros((2, 3, 4), np.int32)
    negative[1, 1, 1] = -2
    with pytest.raises(ValueError, match="-2"):
        Volume(data, np.eye(4), labels=negative)
    with pytest.raises(TypeError, match="integer"):
        Volume(data, np.eye(4), labels=np.full((2, 3, 4), "x"))
    # integer-valued floats are accepted and stored as int32
    vol = Volume(data, np.eye(4), labels=np.full((2, 3, 4), 7.0))
    assert vol.labels.dtype == np.int32 and int(vol.labels[1, 2, 3]) == 7


def test_labels_on_channel_volume_use_the_grid_shape():
    data = np.zeros((2, 3, 4, 2), np.float32)
    with pytest.raises(ValueError, match="label map shape"):
        Volume(data, np.eye(4), labels=np.zeros((2, 3, 4, 2), np.int32))


# ---------------------------------------------------------------- NIfTI


def test_load_volume_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    data = rng.normal(scale=300.0, size=(5, 6, 7)).astype(np.float32)
    labels = rng.integers(0, 4, size=(5, 6, 7)).astype(np.uint8)
    ct = write_nifti(tmp_path / "ct.nii.gz", data, AFFINE)
    lab = write_nifti(tmp_path / "labels.nii", labels, AFFINE)
    vol = load_volume(ct, labels=lab)
    np.testing.assert_array_equal(np.asarray(vol.data), data)
    np.testing.assert_allclose(np.asarray(vol.affine), AFFINE, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(vol.labels), labels)
    assert vol.labels.dtype == np.int32
    assert load_volume(tmp_path / "ct.nii.gz").labels is None  # os.PathLike works too


def test_load_volume_applies_scl_slope_and_inter(tmp_path):
    raw = np.arange(-10, 50, dtype=np.int16).reshape(3, 4, 5)
    path = write_scaled_nifti(tmp_path / "scaled.nii.gz", raw, AFFINE, slope=2.0, inter=-1024.0)
    assert (nib.load(path).dataobj.slope, nib.load(path).dataobj.inter) == (2.0, -1024.0)
    np.testing.assert_array_equal(np.asarray(nib.load(path).dataobj.get_unscaled()), raw)
    vol = load_volume(path)
    np.testing.assert_allclose(np.asarray(vol.data), raw.astype(np.float64) * 2.0 - 1024.0)
    np.testing.assert_allclose(np.asarray(vol.affine), AFFINE, atol=1e-5)


def test_load_volume_squeezes_a_trailing_singleton_axis(tmp_path):
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4, 1)
    vol = load_volume(write_nifti(tmp_path / "v.nii", data, np.eye(4)))
    assert vol.shape == (2, 3, 4) and vol.channels is None
    np.testing.assert_array_equal(np.asarray(vol.data), data[..., 0])


def test_load_volume_rejects_labels_on_another_grid(tmp_path):
    data = np.zeros((4, 5, 6), np.float32)
    ct = write_nifti(tmp_path / "ct.nii.gz", data, AFFINE)
    other_shape = write_nifti(tmp_path / "a.nii.gz", np.zeros((4, 5, 7), np.uint8), AFFINE)
    shifted = AFFINE.copy()
    shifted[0, 3] += 1.0
    other_affine = write_nifti(tmp_path / "b.nii.gz", np.zeros((4, 5, 6), np.uint8), shifted)
    for labels in (other_shape, other_affine):
        with pytest.raises(ValueError, match="another grid"):
            load_volume(ct, labels=labels)


def test_load_volume_missing_and_unreadable_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.nii.gz"):
        load_volume(tmp_path / "nope.nii.gz")
    ct = write_nifti(tmp_path / "ct.nii.gz", np.zeros((2, 2, 2), np.float32), np.eye(4))
    with pytest.raises(FileNotFoundError, match="missing_labels"):
        load_volume(ct, labels=tmp_path / "missing_labels.nii.gz")
    garbage = tmp_path / "garbage.nii.gz"
    garbage.write_bytes(b"this is not a NIfTI file\x00\x01\x02" * 10)
    with pytest.raises(ValueError, match="cannot read"):
        load_volume(garbage)
    gz_garbage = tmp_path / "gz_garbage.nii.gz"
    gz_garbage.write_bytes(gzip.compress(b"\x00" * 100))  # valid gzip, truncated header
    with pytest.raises(ValueError, match="cannot read"):
        load_volume(gz_garbage)


def test_load_volume_rejects_non_finite_voxels_from_file(tmp_path):
    data = np.zeros((2, 3, 4), np.float32)
    data[0, 1, 2] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        load_volume(write_nifti(tmp_path / "nan.nii.gz", data, np.eye(4)))


# ---------------------------------------------------------------- HU -> mu


def test_hu_to_mu_formula():
    hu = np.array([-2000.0, -1000.0, -500.0, 0.0, 1000.0, 3071.0], np.float32).reshape(1, 2, 3)
    labels = np.arange(6).reshape(1, 2, 3)
    vol = Volume(hu, np.eye(4), labels)
    mu = np.asarray(hu_to_mu(vol).data, np.float64)
    want = np.maximum(MU_WATER_PER_MM * (1.0 + hu.astype(np.float64) / 1000.0), 0.0)
    np.testing.assert_allclose(mu, want, rtol=1e-6, atol=1e-9)
    flat = mu.ravel()
    assert flat[0] == 0.0  # clipped below air
    assert flat[1] == pytest.approx(0.0, abs=1e-9)  # air
    assert flat[3] == pytest.approx(MU_WATER_PER_MM, rel=1e-6)  # water
    assert flat[4] == pytest.approx(2 * MU_WATER_PER_MM, rel=1e-6)
    np.testing.assert_array_equal(np.asarray(hu_to_mu(vol).labels), labels)
    # custom water and air values: air maps to mu_air, water to mu_water
    mu = np.asarray(hu_to_mu(vol, mu_water=0.03, mu_air=0.001).data, np.float64).ravel()
    np.testing.assert_allclose(mu[1:5], [0.001, 0.0155, 0.03, 0.059], rtol=1e-5)
    assert mu[0] == 0.0  # -2000 HU: 0.03 - 2 * 0.029 < 0, clipped
    assert MU_WATER_PER_MM == pytest.approx(0.2059 / 10.0, rel=1e-3)  # NIST XCOM water, 60 keV


def test_hu_to_mu_under_jit_and_grad():
    vol = Volume(np.array([[[-1200.0, 0.0, 500.0]]], np.float32), np.eye(4))
    grad = jax.grad(lambda v: hu_to_mu(v).data.sum())(vol)
    np.testing.assert_allclose(
        np.asarray(grad.data), [[[0.0, MU_WATER_PER_MM / 1000.0, MU_WATER_PER_MM / 1000.0]]], rtol=1e-6
    )


# ---------------------------------------------------------------- bundled example


def test_load_example():
    vol = load_example()
    assert vol.shape == (170, 170, 133)
    assert vol.channels is None
    np.testing.assert_allclose(np.asarray(vol.spacing), [2.109375, 2.109375, 2.5], atol=1e-4)
    # RAS+: an axial CT stored with the first axis running right -> left
    np.testing.assert_allclose(np.abs(np.asarray(vol.affine)[:3, :3]), np.diag([2.109375, 2.109375, 2.5]), atol=1e-4)
    data = np.asarray(vol.data)
    assert np.isfinite(data).all() and data.min() >= -2048 and data.max() <= 4095
    assert np.median(data) < -500  # mostly air around the chest, in HU
    assert vol.labels is not None and vol.labels.shape == vol.shape
    ids = np.unique(np.asarray(vol.labels))
    with (resources.files("fluorojax") / "data" / "example_structures.csv").open() as f:
        rows = list(csv.DictReader(f))
    listed = {int(r["id"]) for r in rows}
    assert set(ids.tolist()) - {0} == listed
    assert all(r["structure"] and r["group"] for r in rows)
    ct, labels = example_paths()
    assert ct.endswith("example_ct.nii.gz") and labels.endswith("example_labels.nii.gz")
