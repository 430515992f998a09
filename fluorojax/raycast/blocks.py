"""The GPU's loop over (triangle, pixel) pairs: a static number of blocks of triangles, each
tested against every pixel of the image.

A renderer's pair test broadcasts a (P, 1) column of pixel rays against a (1, B) row of
triangles, so one step is one fused, fixed-shape array computation over P x B pairs; the pairs
outside a triangle's pixel box (``pairs.pixel_boxes``) are masked out, so the pairs that count
are exactly those the CPU's ``pair_loop`` visits and the results agree. The step count,
``ceil(F / B)``, is static (a ``lax.scan``): on a GPU no step waits for the host to read a loop
condition. B is chosen so that a step holds about ``pairs_per_step`` pairs: with the default
(2^28, a few GB of fused temporaries on a GPU), a 512 x 512 image takes blocks of 1,024
triangles, 21 steps for the 20,880-triangle screw of ``benchmarks/bench_mesh.py``, a 200 x 200
image blocks of 6,710 (4 steps); a gradient reruns them once. The price is work:
every pixel meets every triangle (P x F pair tests, 5.5e9 for that screw at 512 x 512, against
about 1e5 inside the boxes), which a GPU's arithmetic absorbs and a CPU's does not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

PAIRS_PER_STEP = 1 << 28


def block_size(n_faces: int, n_pixels: int, pairs_per_step: int = PAIRS_PER_STEP) -> int:
    """Triangles per step (static): about ``pairs_per_step / n_pixels``, at least 1, at most F."""
    return max(1, min(n_faces, pairs_per_step // n_pixels))


def block_scan(
    body: Callable[..., tuple[Any, Any]],
    carry: Any,
    faces_data: tuple[jax.Array, ...],
    boxes: tuple[jax.Array, jax.Array, jax.Array, jax.Array],
    width: int,
    n_pixels: int,
    pairs_per_step: int = PAIRS_PER_STEP,
) -> tuple[Any, Any]:
    """Run ``body(carry, block, face, live, in_box)`` over blocks of triangles, in face order.

    faces_data: a tuple of (F, ...) arrays, handed to ``body`` as (B, ...) blocks; boxes: the
    (col0, row0, ncols, nrows) of ``pairs.pixel_boxes``; face: (B,) int32 face index; live:
    (B,) bool, False for the padding of the last block; in_box: (P, B) bool, pixel p lies in
    face b's box (and the face is live). ``body`` returns (carry, y); returns (carry, ys) with
    ys stacked over the blocks and trimmed to (F, ...).
    """
    n = boxes[0].shape[0]
    block = block_size(n, n_pixels, pairs_per_step)
    steps = -(-n // block)
    face = jnp.arange(steps * block, dtype=jnp.int32)
    live = face < n
    face = jnp.minimum(face, n - 1)
    split = lambda x: x.reshape((steps, block) + x.shape[1:])  # noqa: E731
    xs = tuple(split(x[face]) for x in faces_data), tuple(split(b[face]) for b in boxes), split(face), split(live)
    pixel = jnp.arange(n_pixels, dtype=jnp.int32)[:, None]
    row, col = pixel // width, pixel % width

    def step(carry, x):
        data, (col0, row0, ncols, nrows), f, alive = x
        in_box = alive & (col >= col0) & (col < col0 + ncols) & (row >= row0) & (row < row0 + nrows)
        return body(carry, data, f, alive, in_box)

    carry, ys = jax.lax.scan(step, carry, xs)
    ys = jax.tree_util.tree_map(lambda y: y.reshape((steps * block,) + y.shape[2:])[:n], ys)
    return carry, ys
