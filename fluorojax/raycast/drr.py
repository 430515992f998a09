"""Digitally reconstructed radiographs: line integrals of a volume along rays or camera pixels.

On the CPU the Siddon renderers use one core per JAX CPU device: JAX makes one unless
``jax.config.update("jax_num_cpu_devices", os.cpu_count())`` (or ``JAX_NUM_CPU_DEVICES``) comes
before its first computation; the ``fluorojax`` command does it itself (``cpu_devices`` says how
the rays are split, and why the volume is best placed on every device once).
"""

from __future__ import annotations

import functools
from typing import cast

import jax
import jax.numpy as jnp
import numpy as np

from fluorojax._pytree import is_concrete
from fluorojax.camera import Camera
from fluorojax.raycast import cpu_devices, siddon, siddon_slab, trilinear
from fluorojax.raycast._rays import grid_coordinates
from fluorojax.raycast.siddon import Integrals, SiddonSettings
from fluorojax.volume import Volume

METHODS = ("siddon", "trilinear")


def check_rays(sources: jax.Array, targets: jax.Array) -> None:
    """Validate rays (..., 3) world mm (shapes; finite, non-zero length when concrete)."""
    if sources.shape[-1:] != (3,) or targets.shape[-1:] != (3,):
        raise ValueError(
            f"sources and targets must be (..., 3) world mm, got shapes {sources.shape} and {targets.shape}"
        )
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
            raise ValueError(
                f"zero-length ray (source == target) at index {first}: every ray needs distinct end points"
            )


def line_integrals(
    volume: Volume,
    sources: jax.Array,
    targets: jax.Array,
    method: str = "siddon",
    *,
    n_samples: int = 500,
    chunk_size: int | None = None,
) -> jax.Array:
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
      chunk_size: at most this many rays per chunk for ``"siddon"`` on the CPU (static, default
        ``siddon.DEFAULT_CHUNK`` = 2^18, the fastest there); smaller chunks use less memory and
        step closer to each ray's own voxel count.

    Returns:
      (...,) for scalar data, (..., C) for channel data (C = n_materials when segmented):
      (data units) x mm; with data in 1/mm the result is dimensionless (the log attenuation).
      Segments outside the volume add 0.
    """
    chunk = check_options(method, n_samples, chunk_size)
    sources, targets = jnp.asarray(sources, jnp.float32), jnp.asarray(targets, jnp.float32)
    check_rays(sources, targets)
    return _line_integrals(volume, sources, targets, method, int(n_samples), chunk, "auto")


@functools.partial(jax.jit, static_argnames=("method", "n_samples", "chunk", "impl"))
def _line_integrals(volume: Volume, sources, targets, method, n_samples, chunk, impl):
    batch, s, t, length = grid_rays(volume, sources, targets)
    if method == "siddon":
        settings = SiddonSettings(volume.shape, chunk, 0, volume.n_materials or 0)
        # without labels (n_labels = 0) a traversal returns the integrals alone
        out = cast(jax.Array, exact_integrals(settings, *flat_values(volume), None, s, t, impl=impl))
    else:  # trilinear interpolation mixes neighbouring classes: it reads every channel
        out = trilinear.integrate(volume.shape, n_samples, flat_values(volume.dense())[0], s, t)
    return unflatten_values(volume, out * length[:, None], batch)


def check_options(method: str, n_samples: int, chunk_size: int | None) -> int:
    """Validate the renderer options; returns the Siddon chunk size (static)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    return check_chunk(chunk_size)


def check_chunk(chunk_size: int | None) -> int:
    """The Siddon chunk size (default ``siddon.DEFAULT_CHUNK``), or ValueError."""
    if chunk_size is not None and (
        isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1
    ):
        raise ValueError(f"chunk_size must be a positive integer, got {chunk_size!r}")
    return int(chunk_size or siddon.DEFAULT_CHUNK)


def exact_integrals(
    settings: SiddonSettings,
    values: jax.Array,
    materials: jax.Array | None,
    channels: jax.Array | None,
    s: jax.Array,
    t: jax.Array,
    impl: str = "auto",
) -> Integrals:
    """Siddon integrals (and label travel) of a grid along rays in grid coordinates, by the
    implementation that is fastest where the program runs.

    Arguments and results as ``siddon.integrate``. ``impl`` (static): ``"auto"`` picks at
    lowering time, through ``jax.lax.platform_dependent``, the voxel traversal on the CPU
    (``siddon``: a data-dependent loop, cheap there) and the loop-free slab form everywhere
    else (``siddon_slab``: fixed-shape array work, what a GPU needs); ``"traversal"`` or
    ``"slab"`` force one on one device (tests compare them on the CPU). With ``"auto"``, when
    the CPU is the default backend and JAX has several CPU devices, the CPU branch splits the
    rays over them, one traversal per device (``cpu_devices``, which says how to turn it on).
    """
    traversal = functools.partial(siddon.integrate, settings)
    slab = functools.partial(siddon_slab.integrate, settings)
    if impl == "traversal":
        return traversal(values, materials, channels, s, t)
    if impl == "slab":
        return slab(values, materials, channels, s, t)
    if impl != "auto":
        raise ValueError(f"impl must be 'auto', 'traversal' or 'slab', got {impl!r}")
    mesh = cpu_devices.ray_mesh()
    if mesh is not None:
        traversal = functools.partial(cpu_devices.split_rays, functools.partial(siddon.integrate, settings), mesh)
    return jax.lax.platform_dependent(values, materials, channels, s, t, cpu=traversal, default=slab)


def check_pose(pose: jax.Array) -> jax.Array:
    """A (4, 4) or (B, 4, 4) world_from_camera pose as float32, or ValueError for another shape
    or (when concrete) NaN / inf entries."""
    pose = jnp.asarray(pose, jnp.float32)
    if pose.shape[-2:] != (4, 4) or pose.ndim not in (2, 3):
        raise ValueError(f"pose must be (4, 4) or (B, 4, 4) world_from_camera, got shape {pose.shape}")
    if is_concrete(pose) and not np.all(np.isfinite(np.asarray(pose))):
        raise ValueError(
            f"pose must be a finite world_from_camera matrix, got {int((~np.isfinite(np.asarray(pose))).sum())} NaN/inf entries"
        )
    return pose


def grid_rays(
    volume: Volume, sources: jax.Array, targets: jax.Array
) -> tuple[tuple[int, ...], jax.Array, jax.Array, jax.Array]:
    """Rays (..., 3) world mm (validated by ``check_rays``), flattened into grid coordinates.

    Returns (batch shape without the 3, s (R, 3), t (R, 3), ray length (R,) mm).
    """
    sources = jnp.asarray(sources, jnp.float32)
    targets = jnp.asarray(targets, jnp.float32)
    batch = jnp.broadcast_shapes(sources.shape, targets.shape)
    sources = jnp.broadcast_to(sources, batch).reshape(-1, 3)
    targets = jnp.broadcast_to(targets, batch).reshape(-1, 3)
    s = grid_coordinates(volume.affine, sources)
    t = grid_coordinates(volume.affine, targets)
    return batch[:-1], s, t, jnp.linalg.norm(targets - sources, axis=-1)


def flat_values(volume: Volume) -> tuple[jax.Array, jax.Array | None]:
    """(I * J * K, C) voxel values (C = 1 for scalar and segmented data) and, for a segmented
    volume, the (I * J * K,) material class of each voxel (else None)."""
    values = volume.data.reshape(int(np.prod(volume.shape)), -1)
    return values, None if volume.materials is None else volume.materials.reshape(-1)


def unflatten_values(volume: Volume, out: jax.Array, batch: tuple[int, ...]) -> jax.Array:
    """(R, C) per-ray results -> batch + (C,), or batch for scalar data."""
    out = out.reshape(tuple(batch) + (out.shape[-1],))
    return out if volume.channels is not None else out[..., 0]


def render(
    volume: Volume,
    camera: Camera,
    pose: jax.Array,
    method: str = "siddon",
    *,
    n_samples: int = 500,
    chunk_size: int | None = None,
) -> jax.Array:
    """The DRR of ``volume`` seen by ``camera`` from ``pose``.

    Args:
      volume: data (I, J, K) or (I, J, K, C), e.g. mu in 1/mm (see ``hu_to_mu``).
      camera: the imager's intrinsics.
      pose: (4, 4) or (B, 4, 4) world_from_camera.
      method, n_samples, chunk_size: as in ``line_integrals``.

    Returns:
      (H, W) line integrals, (B, H, W) for a batch of poses, with a trailing C for channel data.
    """
    chunk = check_options(method, n_samples, chunk_size)
    pose = check_pose(pose)
    return _render(volume, camera, pose, method, int(n_samples), chunk, "auto")


@functools.partial(jax.jit, static_argnames=("method", "n_samples", "chunk", "impl"))
def _render(volume: Volume, camera: Camera, pose, method, n_samples, chunk, impl):
    sources, targets = camera.rays(pose)
    return _line_integrals(volume, sources, targets, method, n_samples, chunk, impl)
