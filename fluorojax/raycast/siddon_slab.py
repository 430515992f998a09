"""Exact Siddon integrals as fixed-shape array work: the GPU implementation.

Why not the traversal of ``siddon``: its loop runs as many steps as the longest ray of a chunk
needs, a number known only from the data. On a GPU every iteration of such an XLA ``while`` is
a host round trip plus kernel launches (about 8 us or more each), and a 200 x 200 DRR of a
512 x 512 x 133 CT needs thousands of them. Two loop-free routes were weighed: a Pallas kernel
lowered through Triton (the traversal loop inside the kernel), and this one. This one was
chosen because it is plain XLA: it lowers for every backend, runs and is tested on the CPU as
it is (no interpret mode, whose atomic adds lose repeated updates), its gradients come from
plain autodiff (no hand-written kernel for the pose and volume cotangents), and it will
survive the deprecation of Pallas's Triton lowering in jax 0.11. Its cost is arithmetic on
every slab of the grid's longest side even where a ray is short, and three segment slots per
slab where most hold one, which a GPU absorbs; on the CPU the traversal stays faster (about 7x
at 200 x 200 through the 512 x 512 x 133 chest CT, benchmarks/results/render-siddon-cpu.md) and
``drr.exact_integrals`` keeps it there.

The method: take, for each ray, its dominant axis m, the one along which it advances most in
voxel units. Between two consecutive planes of m (a *slab*), the ray advances at most one voxel
along each other axis, so it crosses at most one plane of each: every slab holds at most three
segments. A ray therefore reads at most ``3 * max(shape)`` voxels, each with a length fixed by
the face parameters, and the integral is a gather-and-sum over (rays, slabs, 3) that XLA fuses.
Segment k of slab j runs over ``[a_k, a_{k+1}]`` with a_0, a_3 the slab's planes and a_1, a_2
the sorted crossings of the other axes, all clipped to the ray's part inside the grid; its voxel
is slab j along m and the floor of the segment's midpoint along the others, so rounding can only
mislabel segments a few ulps long. Face parameters come from integer plane positions, never
from accumulated increments (float32 stays exact to about 1e-6 of the ray length).

Gradients are autodiff of that sum: the voxel indices are piecewise constant and the
parameters are smooth in the ray end points, so the pose gradient is the face-term sum of the
traversal's custom VJP, and the volume gradient is a scatter of the segment lengths. Rays run
in chunks of a static element budget (``ELEMENTS_PER_CHUNK`` segments), each chunk
rematerialised in the backward pass, so memory is bounded and the number of XLA loop
iterations is ``ceil(rays * 3 * max(shape) / ELEMENTS_PER_CHUNK)``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from fluorojax.raycast._rays import clip_to_box, merge, split
from fluorojax.raycast.siddon import Integrals, SiddonSettings

ELEMENTS_PER_CHUNK = 1 << 26
"""Segments (rays x 3 x slabs) evaluated at once: about 3 GB of temporaries with the gradient."""

MIN_DEPTH_PIECE = 1e-6
"""As ``siddon._MIN_DEPTH_PIECE``: shorter segments count toward travel but not depths."""


def _strides(shape):
    return jnp.asarray((shape[1] * shape[2], shape[2], 1), jnp.int32)


def _segments(shape, s, t):
    """Voxel indices, start parameters and lengths (R, S, 3) of every segment of rays (R, 3)
    in grid coordinates, S = max(shape); lengths in alpha units, 0 past a ray's exit."""
    n = jnp.asarray(shape, jnp.float32)
    d = t - s
    alpha_in, alpha_out, _, _ = clip_to_box(s, t, jnp.zeros(3), n)
    axis = jnp.argmax(jnp.abs(d), axis=-1)  # (R,) dominant axis, d != 0 along it
    pick = lambda x: jnp.take_along_axis(x, axis[:, None], axis=-1)[:, 0]  # noqa: E731
    s_m, d_m, n_m = pick(s), pick(d), pick(jnp.broadcast_to(n, s.shape))
    step = jnp.sign(d_m)
    p_in = s_m + alpha_in * d_m
    first = jnp.clip(jnp.where(step > 0, jnp.floor(p_in), jnp.ceil(p_in) - 1.0), 0.0, n_m - 1.0)
    slab = first[:, None] + step[:, None] * jnp.arange(max(shape), dtype=jnp.float32)  # (R, S) index along m
    entry_plane = slab + (step[:, None] < 0)
    inv_m = 1.0 / d_m[:, None]
    lo, hi = alpha_in[:, None], alpha_out[:, None]
    a0 = jnp.clip((entry_plane - s_m[:, None]) * inv_m, lo, hi)
    a3 = jnp.clip((entry_plane + step[:, None] - s_m[:, None]) * inv_m, lo, hi)
    # The next plane of every other axis after the slab's start, as a parameter (inf: none).
    moving = (d != 0) & (axis[:, None] != jnp.arange(3))  # (R, 3): axes whose planes the slabs may cross
    inv_d = jnp.where(moving, 1.0 / jnp.where(moving, d, 1.0), 0.0)
    crossings = []
    for a in range(3):
        q = s[:, a, None] + a0 * d[:, a, None]
        plane = jnp.where(d[:, a, None] > 0, jnp.floor(q) + 1.0, jnp.ceil(q) - 1.0)
        crossings.append(jnp.where(moving[:, a, None], (plane - s[:, a, None]) * inv_d[:, a, None], jnp.inf))
    c_min = jnp.minimum(jnp.minimum(crossings[0], crossings[1]), crossings[2])
    c_mid = jnp.maximum(
        jnp.minimum(crossings[0], crossings[1]), jnp.minimum(jnp.maximum(crossings[0], crossings[1]), crossings[2])
    )
    a1 = jnp.clip(c_min, a0, a3)
    a2 = jnp.clip(c_mid, a1, a3)
    starts = jnp.stack([a0, a1, a2], axis=-1)  # (R, S, 3)
    lengths = jnp.stack([a1, a2, a3], axis=-1) - starts
    mid = jax.lax.stop_gradient(starts + 0.5 * lengths)
    strides = _strides(shape)
    index = jnp.zeros(mid.shape, jnp.int32)
    for a in range(3):
        along = jnp.clip(jnp.floor(s[:, a, None, None] + mid * d[:, a, None, None]), 0.0, n[a] - 1.0)
        along = jnp.where(axis[:, None, None] == a, jax.lax.stop_gradient(slab)[..., None], along)
        index = index + along.astype(jnp.int32) * strides[a]
    return index, starts, lengths


def _chunk(shape, n_labels, n_materials, values, materials, channels, s, t):
    """Integrals (R, C) of one chunk, with per-label travel, first entry and last exit
    (R, n_labels) each when ``n_labels`` > 0 (alpha units; inf / -inf where missed)."""
    index, starts, lengths = _segments(shape, s, t)
    r = s.shape[0]
    v = values.at[index].get(mode="promise_in_bounds")  # (R, S, 3, C)
    if n_materials:
        material = materials.at[index].get(mode="promise_in_bounds")
        v = jnp.where(material[..., None] == jnp.arange(n_materials), v, 0.0)
    out = jnp.sum(lengths[..., None] * v, axis=(1, 2))  # a reduction XLA fuses with the gather
    if not n_labels:
        return out
    slots = n_labels + 1  # slot 0 collects voxels of no requested label
    slot = (
        jnp.arange(r, dtype=jnp.int32)[:, None, None] * slots + channels.at[index].get(mode="promise_in_bounds")
    ).reshape(-1)
    lengths = jax.lax.stop_gradient(lengths).reshape(-1)
    starts = jax.lax.stop_gradient(starts).reshape(-1)
    live = lengths > MIN_DEPTH_PIECE
    flat = lambda fill: jnp.full((r * slots,), fill, jnp.float32)  # noqa: E731
    travel = flat(0.0).at[slot].add(lengths, mode="promise_in_bounds")
    entry = flat(jnp.inf).at[slot].min(jnp.where(live, starts, jnp.inf), mode="promise_in_bounds")
    exit_ = flat(-jnp.inf).at[slot].max(jnp.where(live, starts + lengths, -jnp.inf), mode="promise_in_bounds")
    per_label = lambda x: x.reshape(r, slots)[:, 1:]  # noqa: E731
    return out, per_label(travel), per_label(entry), per_label(exit_)


def integrate(
    settings: SiddonSettings,
    values: jax.Array,
    materials: jax.Array | None,
    channels: jax.Array | None,
    s: jax.Array,
    t: jax.Array,
    elements_per_chunk: int = ELEMENTS_PER_CHUNK,
) -> Integrals:
    """Exact integrals of a piecewise-constant grid along rays, in alpha units.

    Arguments and results as ``siddon.integrate`` (same values to float32 rounding):
    ``settings`` a ``SiddonSettings`` (static; its ``chunk`` is the traversal's, unused here)
    and ``elements_per_chunk`` static; values (I * J * K, C); materials and channels
    (I * J * K,) int32 or None; s, t (R, 3) grid coordinates. Returns (R, C), or with labels
    the tuple of that and (R, n_labels) travel, entry and exit. Differentiable by autodiff with
    respect to ``values``, ``s`` and ``t``.
    """
    shape, n_labels, n_materials = settings.shape, settings.n_labels, settings.n_materials
    n = s.shape[0]
    chunk = max(1, min(n, elements_per_chunk // (3 * max(shape))))
    fn = jax.checkpoint(functools.partial(_chunk, shape, n_labels, n_materials, values, materials, channels))
    if chunk >= n:
        return fn(s, t)
    out = jax.lax.map(functools.partial(_apply, fn), (split(s, chunk), split(t, chunk)))
    return jax.tree_util.tree_map(functools.partial(merge, n=n), out)


def _apply(fn, args):
    return fn(*args)
