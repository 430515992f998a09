"""Rays in grid coordinates, ray-box clipping and ray chunking, shared by the renderers.

Renderers work in *grid coordinates* ``u = voxel_index + 0.5``: voxel (i, j, k) is the unit
cube [i, i + 1] x [j, j + 1] x [k, k + 1] and a grid of shape (I, J, K) is the box
[0, I] x [0, J] x [0, K]. A ray is ``s + alpha * (t - s)`` with alpha in [0, 1] from the
source s to the detector pixel t.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fluorojax.transforms import apply_pose


def grid_coordinates(affine: jax.Array, points: jax.Array) -> jax.Array:
    """World points (..., 3) mm -> grid coordinates (..., 3) (voxel index + 0.5)."""
    grid_from_world = jnp.linalg.inv(affine)
    return apply_pose(grid_from_world, points) + 0.5


def clip_to_box(
    s: jax.Array, t: jax.Array, lower: jax.Array, upper: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Parameters where rays enter and leave an axis-aligned box.

    Args:
      s, t: (R, 3) ray start and end points.
      lower, upper: (3,) box corners.

    Returns:
      (alpha_in, alpha_out, entry_axis, exit_axis): (R,) each; alpha clipped to [0, 1], the
      ray misses the box (within its segment) where ``alpha_out <= alpha_in``. The axes say
      which pair of faces the ray enters and leaves through (meaningful only where the
      unclipped alpha lies strictly inside (0, 1)).
    """
    d = t - s
    moving = d != 0
    safe_d = jnp.where(moving, d, 1.0)
    a_lower = (lower - s) / safe_d
    a_upper = (upper - s) / safe_d
    inside = (s >= lower) & (s < upper)
    a_first = jnp.where(moving, jnp.minimum(a_lower, a_upper), jnp.where(inside, -jnp.inf, jnp.inf))
    a_last = jnp.where(moving, jnp.maximum(a_lower, a_upper), jnp.where(inside, jnp.inf, -jnp.inf))
    entry_axis = jnp.argmax(a_first, axis=-1)
    exit_axis = jnp.argmin(a_last, axis=-1)
    alpha_in = jnp.clip(jnp.max(a_first, axis=-1), 0.0, 1.0)
    alpha_out = jnp.clip(jnp.min(a_last, axis=-1), 0.0, 1.0)
    return alpha_in, alpha_out, entry_axis, exit_axis


def even_chunk(n: int, chunk: int) -> int:
    """The size of the fewest equal chunks of at most ``chunk`` rays that hold ``n`` rays, so that
    padding (``split``) adds fewer rays than there are chunks."""
    n_chunks = -(-n // chunk)
    return -(-n // n_chunks)


def split(x: jax.Array, chunk: int, fill: float | None = None) -> jax.Array:
    """(R, ...) -> (R // chunk rounded up, chunk, ...), padding with ``fill`` (default: copies
    of the first row, so padded rays are valid rays whose results are dropped)."""
    n = x.shape[0]
    n_chunks = -(-n // chunk)
    pad = n_chunks * chunk - n
    if pad:
        padding = x[:1] if fill is None else jnp.full((1,) + x.shape[1:], fill, x.dtype)
        x = jnp.concatenate([x, jnp.broadcast_to(padding, (pad,) + x.shape[1:])])
    return x.reshape((n_chunks, chunk) + x.shape[1:])


def merge(x: jax.Array, n: int) -> jax.Array:
    """Inverse of ``split``: (chunks, chunk, ...) -> (n, ...)."""
    return x.reshape((-1,) + x.shape[2:])[:n]
