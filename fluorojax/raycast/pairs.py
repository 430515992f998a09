"""Which pixels may see which triangle, and the CPU's loop over those (triangle, pixel) pairs.

``pixel_boxes`` bounds each projected triangle by the pixel centres that may see it. On the CPU
a renderer tests only those pairs (a rasteriser's work): ``pair_loop`` numbers them by prefix
sums over the box areas and hands them out ``chunk`` at a time from a ``lax.while_loop``, so
memory is fixed, time grows with the summed box area, and no pair is ever dropped. The loop's
trip count depends on the data, which costs a host round trip per step on a GPU; there the
renderers use ``raycast.blocks`` instead, which tests the same pairs (the boxes mask them) with a
static number of steps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from fluorojax.camera import Camera, OrthographicCamera
from fluorojax.transforms import apply_pose, invert_pose

Boxes = tuple[jax.Array, jax.Array, jax.Array, jax.Array]
"""Per-triangle pixel boxes (col0, row0, ncols, nrows), each (F,) int32."""


def pixel_boxes(
    camera: Camera | OrthographicCamera, pose: jax.Array, tri: jax.Array, pad: float | jax.Array = 0.0
) -> Boxes:
    """Pixels whose centres may see each triangle: (col0, row0, ncols, nrows), each (F,) int32.

    A box holds every pixel centre within ``pad + margin`` px of the projected triangle's
    bounding box, ``margin`` bounding the float32 error of the projection with a wide safety
    factor. Any camera of ``fluorojax.camera`` works: the projection is its own
    ``projection_matrix`` in the camera frame, whose last row gives each corner's projective
    weight w (the depth z for a pinhole, 1 for a parallel beam). A triangle with a corner where
    w is at or near 0 (a pinhole's source plane) gets the whole image, one wholly behind the
    rays' start plane z = 0 an empty box. tri: (F, 3, 3) world mm; pad: px, may be traced.
    """
    cam = apply_pose(invert_pose(pose), tri)
    proj = camera.projection_matrix(jnp.eye(4, dtype=jnp.float32))  # camera frame -> homogeneous pixels
    homog = jnp.einsum("ij,...j->...i", proj[:, :3], cam) + proj[:, 3]
    w = homog[..., 2]
    near = jnp.any(w <= 1e-3, axis=-1)
    gone = jnp.all(cam[..., 2] < -1e-3, axis=-1)
    ws = jnp.where(near[:, None], 1.0, w)
    u = homog[..., 0] / ws
    v = homog[..., 1] / ws
    # a camera-frame error e moves (u, v) by (P_row - (u, v) P_w) . e / w: its L1 norm bounds the gain
    gain = (
        jnp.sum(jnp.abs(proj[0, :3] - u[..., None] * proj[2, :3]), axis=-1)
        + jnp.sum(jnp.abs(proj[1, :3] - v[..., None] * proj[2, :3]), axis=-1)
    ) / ws
    reach = jnp.max(jnp.abs(tri), axis=(1, 2)) + jnp.max(jnp.abs(pose[:3, 3]))
    margin = pad + 0.05 + 1e-5 * jnp.max(gain, axis=-1) * reach

    def span(p, n):
        first = jnp.ceil(jnp.clip(jnp.min(p, axis=-1) - 0.5 - margin, -1.0, n))
        last = jnp.floor(jnp.clip(jnp.max(p, axis=-1) - 0.5 + margin, -1.0, n))
        first = jnp.where(near, 0, jnp.maximum(first, 0)).astype(jnp.int32)
        last = jnp.where(near, n - 1, jnp.minimum(last, n - 1)).astype(jnp.int32)
        return first, jnp.where(gone, 0, jnp.maximum(last - first + 1, 0))

    col0, ncols = span(u, camera.width)
    row0, nrows = span(v, camera.height)
    return col0, row0, ncols, nrows


def pair_loop(boxes: Boxes, width: int, chunk: int, body: Callable[..., Any], carry: Any) -> Any:
    """Run ``body(carry, face, pixel, live)`` over every (triangle, pixel in its box) pair.

    Pairs are numbered triangle by triangle (prefix sums of the box areas) and handed out
    ``chunk`` at a time by a ``lax.while_loop``, so memory is fixed and no pair is dropped
    whatever the boxes. Offsets are computed over windows of triangles with areas clamped to
    ``chunk + 1`` (which keeps every offset up to ``chunk`` exact), so they fit int32 for any
    image. face, pixel: (chunk,) int32 (face index, flat pixel index ``row * width + col``);
    live: (chunk,) bool, False for the padding of the last chunk.
    """
    col0, row0, ncols, nrows = boxes
    n = col0.shape[0]
    window = max(1, min(n, (2**31 - 1) // (chunk + 1) - 1))
    area = jnp.concatenate([ncols * nrows, jnp.zeros((window,), jnp.int32)])
    p = jnp.arange(chunk, dtype=jnp.int32)

    def step(state):
        start, done, carry = state
        first = jnp.arange(window) == 0
        a = jnp.minimum(jax.lax.dynamic_slice(area, (start,), (window,)) - jnp.where(first, done, 0), chunk + 1)
        excl = jnp.cumsum(a) - a
        total = excl[-1] + a[-1]
        tri = jnp.cumsum(jnp.zeros((chunk,), jnp.int32).at[excl].add(1, mode="drop")) - 1
        face = jnp.minimum(start + tri, n - 1)
        local = p - excl[tri] + jnp.where(tri == 0, done, 0)
        nx = jnp.maximum(ncols[face], 1)
        pixel = (row0[face] + local // nx) * width + col0[face] + local % nx
        live = p < total
        carry = body(carry, face, jnp.where(live, pixel, 0), live)
        nxt = jnp.sum(excl <= chunk) - 1  # the window triangle holding pair ``chunk`` when total > chunk
        more = total > chunk
        start = jnp.where(more, start + nxt, start + window)
        done = jnp.where(more, chunk - excl[nxt] + jnp.where(nxt == 0, done, 0), 0)
        return start, done, carry

    _, _, carry = jax.lax.while_loop(lambda s: s[0] < n, step, (jnp.int32(0), jnp.int32(0), carry))
    return carry
