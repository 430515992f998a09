"""Per-label travel, masks and depths from a label map, in the same traversal as the DRR.

For every ray and every requested label id, the exact length of the ray inside the voxels of
that label (travel, mm), and the distances from the source where the ray first enters and last
leaves them (mm; inf where the ray misses the label). Binary masks are ``travel > 0``. This is
Siddon's traversal with the segment lengths scattered by label instead of weighted by value,
so all labels cost one pass, and the DRR can come from that same pass.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fluorojax._pytree import is_concrete
from fluorojax.camera import Camera
from fluorojax.raycast.drr import (
    check_chunk,
    check_pose,
    check_rays,
    exact_integrals,
    flat_values,
    grid_rays,
    unflatten_values,
)
from fluorojax.raycast.siddon import SiddonSettings
from fluorojax.volume import Volume

MAX_LABEL_ID = (1 << 20) - 1
"""Largest label id a trace can report (ids index a lookup table of this many entries)."""


class LabelTrace(NamedTuple):
    """What rays see of a labelled volume; L is the number of label ids.

    Attributes:
      image: (...,) or (..., C) line integrals of the volume data (as ``line_integrals``).
      travel: (..., L) mm of each ray inside each label.
      entry: (..., L) mm from the source to the first voxel of each label (inf: missed).
      exit: (..., L) mm from the source to the end of the last voxel of each label (inf: missed).
      label_ids: (L,) the ids, in channel order.
    """

    image: jax.Array
    travel: jax.Array
    entry: jax.Array
    exit: jax.Array
    label_ids: jax.Array


def _label_map(volume: Volume):
    return volume.labels if volume.labels is not None else volume.data


def resolve_label_ids(volume: Volume, label_ids: Sequence[int] | None = None) -> tuple[int, ...]:
    """The requested ids as a tuple, in the given order; by default every non-zero id present,
    ascending."""
    if label_ids is None:
        labels = _label_map(volume)
        if not is_concrete(labels):
            raise ValueError("label_ids must be given explicitly when the label map is traced (inside jit/vmap)")
        ids = np.unique(np.asarray(labels)).astype(np.int64)
        ids = ids[ids != 0]
        if ids.size == 0:
            raise ValueError("the label map holds no non-zero ids to trace")
    else:
        ids = np.asarray(label_ids)
    if ids.ndim != 1 or ids.size == 0 or not np.issubdtype(ids.dtype, np.integer) or np.any(ids <= 0):
        raise ValueError(f"label_ids must be a non-empty 1-D sequence of positive integer ids, got {label_ids!r}")
    if ids.max() > MAX_LABEL_ID:
        raise ValueError(f"label ids must be at most {MAX_LABEL_ID} (a lookup table maps them), got {int(ids.max())}")
    if len(set(ids.tolist())) != ids.size:
        raise ValueError(f"label_ids must not repeat ids, got {ids.tolist()}")
    return tuple(int(i) for i in ids)


def trace_labels(
    volume: Volume,
    sources: jax.Array,
    targets: jax.Array,
    label_ids: Sequence[int] | None = None,
    *,
    chunk_size: int | None = None,
) -> LabelTrace:
    """Line integrals and per-label travel and depths along rays, in one traversal.

    Args:
      volume: data (I, J, K) or (I, J, K, C) and the label map in ``volume.labels`` (or, when
        that is None, integer ids in ``volume.data``).
      sources, targets: (..., 3) world mm.
      label_ids: ids to report, in this order (static); default every non-zero id present.
      chunk_size: rays per chunk on the CPU (static).

    Returns:
      ``LabelTrace``; only ``image`` is differentiable (with respect to the rays and data).
    """
    ids = resolve_label_ids(volume, label_ids)
    chunk = check_chunk(chunk_size)
    sources, targets = jnp.asarray(sources, jnp.float32), jnp.asarray(targets, jnp.float32)
    check_rays(sources, targets)
    return _trace(volume, sources, targets, ids, chunk, "auto")


@functools.partial(jax.jit, static_argnames=("ids", "chunk", "impl"))
def _trace(volume: Volume, sources, targets, ids, chunk, impl) -> LabelTrace:
    batch, s, t, length = grid_rays(volume, sources, targets)
    # channel of every voxel through a table indexed by id (ids past the largest requested -> 0)
    table = np.zeros(max(ids) + 2, np.int32)
    table[list(ids)] = np.arange(1, len(ids) + 1)
    labels = jnp.asarray(_label_map(volume)).reshape(-1).astype(jnp.int32)
    channels = jnp.asarray(table)[jnp.clip(labels, 0, max(ids) + 1)]
    settings = SiddonSettings(volume.shape, chunk, len(ids), volume.n_materials or 0)
    image, travel, entry, exit_ = exact_integrals(settings, *flat_values(volume), channels, s, t, impl=impl)
    length = length[:, None]
    travel = jax.lax.stop_gradient(travel * length)
    missed = travel <= 0
    to_mm = lambda a: jnp.where(missed, jnp.inf, jax.lax.stop_gradient(a * length))  # noqa: E731
    shape = tuple(batch) + (len(ids),)
    return LabelTrace(
        image=unflatten_values(volume, image * length, batch),
        travel=travel.reshape(shape),
        entry=to_mm(entry).reshape(shape),
        exit=to_mm(exit_).reshape(shape),
        label_ids=jnp.asarray(ids, jnp.int32),
    )


def render_with_labels(
    volume: Volume,
    camera: Camera,
    pose: jax.Array,
    label_ids: Sequence[int] | None = None,
    *,
    chunk_size: int | None = None,
) -> LabelTrace:
    """The DRR and every label's travel and depths for ``pose`` (4, 4) or (B, 4, 4), one pass.

    Per-label arrays are channel-first: travel, entry and exit (L, H, W), or (B, L, H, W).
    """
    ids = resolve_label_ids(volume, label_ids)
    return _render_with_labels(volume, camera, check_pose(pose), ids, check_chunk(chunk_size), "auto")


@functools.partial(jax.jit, static_argnames=("ids", "chunk", "impl"))
def _render_with_labels(volume: Volume, camera: Camera, pose, ids, chunk, impl) -> LabelTrace:
    trace = _trace(volume, *camera.rays(pose), ids, chunk, impl)
    first = functools.partial(jnp.moveaxis, source=-1, destination=-3)
    return trace._replace(travel=first(trace.travel), entry=first(trace.entry), exit=first(trace.exit))


def render_labels(
    labels: Volume,
    camera: Camera,
    pose: jax.Array,
    label_ids: Sequence[int] | None = None,
    *,
    chunk_size: int | None = None,
) -> jax.Array:
    """(L, H, W) travel in mm through each label id, (B, L, H, W) for a batch of poses.

    ``labels`` is a ``Volume`` whose ``labels`` (or, when None, whose data) hold integer ids;
    ``label_ids`` defaults to every non-zero id present, ascending. Masks are ``travel > 0``.
    """
    ids = resolve_label_ids(labels, label_ids)
    return _render_labels(labels, camera, check_pose(pose), ids, check_chunk(chunk_size), "auto")


@functools.partial(jax.jit, static_argnames=("ids", "chunk", "impl"))
def _render_labels(labels: Volume, camera: Camera, pose, ids, chunk, impl):
    # Only travel leaves the program, so XLA drops the DRR and the depths.
    return _render_with_labels(labels, camera, pose, ids, chunk, impl).travel
