"""Digitally reconstructed radiographs: line integrals of a volume along rays or camera pixels."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from fluorojax._pytree import is_concrete
from fluorojax.camera import Camera
from fluorojax.raycast import siddon, trilinear
from fluorojax.raycast._rays import grid_coordinates
from fluorojax.volume import Volume

METHODS = ("siddon", "trilinear")


def _check_rays(sources, targets):
    if sources.shape[-1:] != (3,) or targets.shape[-1:] != (3,):
        raise ValueError(f"sources and targets must be (..., 3) world mm, got shapes {sources.shape} and {targets.shape}")
    try:
        batch = jnp.broadcast_shapes(sources.shape, targets.shape)
    except ValueError:
        raise ValueError(f"sources {sources.shape} and targets {targets.shape} do not broadcast") from None
    if is_concrete(sources, targets):
        s, t = np.asarray(sources), np.asarray(targets)
        for name, x in (("sources", s), ("targets", t)):
            if not np.all(np.isfinite(x)):
                raise ValueError(f"{name} must be finite world mm, got {int((~np.isfinite(x)).sum())} NaN/inf values")
        length = np.linalg.norm(np.broadcast_to(t, batch) - np.broadcast_to(s, batch), axis=-1)
        if np.any(length == 0):
            first = np.argwhere(length == 0)[0].tolist()
            raise ValueError(f"zero-length ray (source == target) at index {first}: every ray needs distinct end points")
    return batch


def line_integrals(volume: Volume, sources, targets, method: str = "siddon", *, n_samples: int = 500, chunk_size: int | None = None):
    """Integrals of ``volume.data`` along the segments from ``sources`` to ``targets``.

    Args:
      volume: the volume; data (I, J, K) or (I, J, K, C), or a segmented volume
        (``materials`` set), which renders like its ``dense()`` form.
      sources, targets: (..., 3) world mm, broadcast against each other; numpy or JAX.
      method: ``"siddon"``, the exact integral of the piecewise-constant volume (each voxel
        a box of constant value), or ``"trilinear"``, the midpoint-rule integral of the
        trilinear interpolant with ``n_samples`` samples over the part of each ray inside the
        volume.
      n_samples: samples per ray for ``"trilinear"`` (static).
      chunk_size: rays per chunk for ``"siddon"`` (static, default 8192); smaller chunks use
        less memory and step closer to each ray's own voxel count.

    Returns:
      (...,) for scalar data, (..., C) for channel data (C = n_materials when segmented):
      (data units) x mm; with data in 1/mm the result is dimensionless (the log attenuation).
      Segments outside the volume add 0.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    if chunk_size is not None and (not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    batch, s, t, length = grid_rays(volume, sources, targets)
    if method == "siddon":
        chunk = int(chunk_size or siddon.DEFAULT_CHUNK)
        out = siddon.integrate(volume.shape, chunk, 0, volume.n_materials or 0, *flat_values(volume), None, s, t)
    else:  # trilinear interpolation mixes neighbouring classes: it reads every channel
        out = trilinear.integrate(volume.shape, int(n_samples), flat_values(volume.dense())[0], s, t)
    return unflatten_values(volume, out * length[:, None], batch)


def check_pose(pose):
    """A (4, 4) or (B, 4, 4) world_from_camera pose as float32, or ValueError for another shape
    or (when concrete) NaN / inf entries."""
    pose = jnp.asarray(pose, jnp.float32)
    if pose.shape[-2:] != (4, 4) or pose.ndim not in (2, 3):
        raise ValueError(f"pose must be (4, 4) or (B, 4, 4) world_from_camera, got shape {pose.shape}")
    if is_concrete(pose) and not np.all(np.isfinite(np.asarray(pose))):
        raise ValueError(f"pose must be a finite world_from_camera matrix, got {int((~np.isfinite(np.asarray(pose))).sum())} NaN/inf entries")
    return pose


def grid_rays(volume: Volume, sources, targets):
    """Validate rays (..., 3) world mm and flatten them into grid coordinates.

    Returns (batch shape without the 3, s (R, 3), t (R, 3), ray length (R,) mm).
    """
    sources = jnp.asarray(sources, jnp.float32)
    targets = jnp.asarray(targets, jnp.float32)
    batch = _check_rays(sources, targets)
    sources = jnp.broadcast_to(sources, batch).reshape(-1, 3)
    targets = jnp.broadcast_to(targets, batch).reshape(-1, 3)
    s = grid_coordinates(volume.affine, sources)
    t = grid_coordinates(volume.affine, targets)
    return batch[:-1], s, t, jnp.linalg.norm(targets - sources, axis=-1)


def flat_values(volume: Volume):
    """(I * J * K, C) voxel values (C = 1 for scalar and segmented data) and, for a segmented
    volume, the (I * J * K,) material class of each voxel (else None)."""
    values = volume.data.reshape(int(np.prod(volume.shape)), -1)
    return values, None if volume.materials is None else volume.materials.reshape(-1)


def unflatten_values(volume: Volume, out, batch):
    """(R, C) per-ray results -> batch + (C,), or batch for scalar data."""
    out = out.reshape(tuple(batch) + (out.shape[-1],))
    return out if volume.channels is not None else out[..., 0]


def render(volume: Volume, camera: Camera, pose, method: str = "siddon", **kwargs):
    """The DRR of ``volume`` seen by ``camera`` from ``pose``.

    Args:
      volume: data (I, J, K) or (I, J, K, C), e.g. mu in 1/mm (see ``hu_to_mu``).
      camera: the imager's intrinsics.
      pose: (4, 4) or (B, 4, 4) world_from_camera.
      method, **kwargs: as in ``line_integrals``.

    Returns:
      (H, W) line integrals, (B, H, W) for a batch of poses, with a trailing C for channel data.
    """
    sources, targets = camera.rays(check_pose(pose))
    return line_integrals(volume, sources, targets, method, **kwargs)
