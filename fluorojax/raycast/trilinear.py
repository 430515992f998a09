"""Sampled ray marching through the trilinear interpolant of a volume.

The interpolant takes the voxel values at the voxel centres and is zero one voxel beyond the
grid, so its support is the grid box grown by half a voxel on every side. Each ray's part
inside that support, alpha in [alpha_in, alpha_in + span], is cut into ``n_samples`` equal
pieces and integrated with the midpoint rule: ``step * sum_i f(p_i)`` with ``step = span / n``,
``alpha_i = alpha_in + c_i span``, ``c_i = (i + 1/2) / n`` and ``p_i = s + alpha_i (t - s)``.
Unlike Siddon the result is smooth in the ray end points. Rays are given in grid coordinates
(see ``_rays``).

Gradient (``integrate``'s custom VJP). It is the exact derivative of that sum, not of the
exact integral: the samples ride on the clipped entry point alpha_in and the step on the
clipped span, so both move with the end points. With ``G = sum_i grad f(p_i)``,
``M = sum_i c_i grad f(p_i)`` and ``S = sum_i f(p_i)`` (per ray and channel)::

    d(step S) = step (G . ds + (alpha_in G + span M) . (dt - ds)
                      + (G . d) d alpha_in + (M . d) d span) + S d span / n

with ``d = t - s``. The Leibniz rule alone (``step G``-terms only) is the derivative of the
exact integral; applied to the sum it returns, for a ray moved along itself (which leaves
every sample where it was), the midpoint-rule error of the integral of f' instead of zero,
and that error swamps the small magnification signal of a camera moved along its axis.
S, G and M come out of the same pass as the forward (one gather of the eight neighbours of
each sample serves the value and its gradient), so when the rays need a gradient the
backward is per-ray arithmetic on those sums; the volume gradient, when wanted, is one
scatter pass of each sample's eight interpolation weights.

Platforms. The work is a fixed-shape gather-and-sum over (rays, samples), cut into chunks of
rays by a static sample budget and run one chunk after another (``lax.map``/``lax.scan``);
no loop depends on data. On the CPU small chunks (2^16 samples) keep each chunk's gathered
neighbours in cache (306 chunks at 200 x 200 x 500 samples). On a GPU chunks of 2^24 samples
(about 1.5 GB of indices, neighbours and fractions) keep the XLA-level loop to a few
iterations (2 at 200 x 200 x 500 samples, 8 at 512 x 512, forward and pose gradient alike;
the volume gradient adds as many scatter steps), each one fused gather-reduce over millions
of samples. This route (loop-free XLA) was chosen over a Pallas kernel because sampled
marching has no data-dependent trip count to hide inside a kernel: fixed-shape XLA already
makes one pass over the samples, and needs no Triton lowering (deprecated from jax 0.11).
Not yet measured on a GPU. ``jax.lax.platform_dependent`` picks the budget at lowering time;
``integrate(..., _path="gpu")`` forces the GPU one anywhere (tests compare the two on the CPU).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from fluorojax.raycast._rays import clip_to_box, merge, split

CPU_SAMPLES_PER_CHUNK = 1 << 16
"""Ray samples evaluated at once on the CPU (sized for its caches)."""
GPU_SAMPLES_PER_CHUNK = 1 << 24
"""Ray samples evaluated at once on a GPU (sized for its memory: 32 bytes of neighbours each)."""

_CORNERS = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], np.int32)
"""Offsets (8, 3) of a sample's eight neighbours, C order: corner (a, b, c) at 4a + 2b + c."""


def _padded(shape, values):
    """(N, C) values -> ((I + 2)(J + 2)(K + 2), C): the grid with a zero voxel on every side."""
    grid = jnp.pad(values.reshape(tuple(shape) + (values.shape[1],)), ((1, 1), (1, 1), (1, 1), (0, 0)))
    return grid.reshape(-1, values.shape[1])


def _interval(shape, s, t):
    """alpha_in (R,) and span (R,) of each ray's part inside the interpolant's support."""
    lower = jnp.full(3, -0.5, jnp.float32)
    upper = jnp.asarray(shape, jnp.float32) + 0.5
    alpha_in, alpha_out, _, _ = clip_to_box(s, t, lower, upper)
    return alpha_in, jnp.maximum(alpha_out - alpha_in, 0.0)


def _centres(n_samples):
    """c_i = (i + 1/2) / n, (n,)."""
    return (jnp.arange(n_samples, dtype=jnp.float32) + 0.5) / n_samples


def _corners(shape, n_samples, s, t):
    """Flat indices (R, n, 8) into the padded grid of each sample's eight neighbours and the
    sample's fractions (R, n, 3) between them."""
    alpha_in, span = _interval(shape, s, t)
    alpha = alpha_in[:, None] + _centres(n_samples) * span[:, None]
    q = s[:, None, :] + alpha[..., None] * (t - s)[:, None, :] + 0.5  # padded index coordinates
    base = jnp.floor(q)
    padded_shape = tuple(n + 2 for n in shape)
    corner = jnp.clip(base.astype(jnp.int32)[..., None, :] + _CORNERS, 0, jnp.asarray(padded_shape, jnp.int32) - 1)
    strides = jnp.asarray([padded_shape[1] * padded_shape[2], padded_shape[2], 1], jnp.int32)
    return jnp.sum(corner * strides, axis=-1), q - base


def _weights(frac):
    """Trilinear weights (R, n, 8) of the eight neighbours."""
    factors = jnp.where(_CORNERS == 1, frac[..., None, :], 1.0 - frac[..., None, :])  # (R, n, 8, 3)
    return jnp.prod(factors, axis=-1)


def _sums_chunk(shape, n_samples, with_gradient, padded, rays):
    """Per-ray sums over the samples of rays = (s, t) (R, 3) each: S (R, C), and with
    ``with_gradient`` also G and M (R, C, 3).

    The two branches write the same interpolation two ways, each the faster on XLA:CPU for
    its job (measured on the full CT, 200 x 200 x 500 samples): the value alone as one
    contraction of weights with values over (samples, corners); value and gradient as
    lerps along x, then y, then z, whose differences are the gradient's components.
    """
    s, t = rays
    index, frac = _corners(shape, n_samples, s, t)
    win = padded[index]  # (R, n, 8, C)
    if not with_gradient:
        return jnp.einsum("rnk,rnkc->rc", _weights(frac), win)
    win = win.reshape(index.shape[:2] + (2, 2, 2, padded.shape[1]))
    fx, fy, fz = (frac[..., a, None] for a in range(3))  # (R, n, 1)
    dx = win[:, :, 1] - win[:, :, 0]  # (R, n, 2, 2, C): along x at each (y, z) corner pair
    by_x = win[:, :, 0] + fx[..., None, None, :] * dx
    dy = by_x[:, :, 1] - by_x[:, :, 0]  # (R, n, 2, C)
    by_y = by_x[:, :, 0] + fy[..., None, :] * dy
    dz = by_y[:, :, 1] - by_y[:, :, 0]  # (R, n, C)
    value = by_y[:, :, 0] + fz * dz
    dx_y = dx[:, :, 0] + fy[..., None, :] * (dx[:, :, 1] - dx[:, :, 0])  # (R, n, 2, C)
    grad = jnp.stack(
        [dx_y[:, :, 0] + fz * (dx_y[:, :, 1] - dx_y[:, :, 0]), dy[:, :, 0] + fz * (dy[:, :, 1] - dy[:, :, 0]), dz], -1
    )
    return jnp.sum(value, axis=1), jnp.sum(grad, axis=1), jnp.einsum("n,rncd->rcd", _centres(n_samples), grad)


def _scatter_chunk(shape, n_samples, d_padded, rays):
    """Add each sample's interpolation weights times ``g * step`` into d_padded, for
    rays = (s, t, g): (R, 3), (R, 3), (R, C). Returns (d_padded, None) (a scan body)."""
    s, t, g = rays
    index, frac = _corners(shape, n_samples, s, t)
    _, span = _interval(shape, s, t)
    update = _weights(frac)[..., None] * (g * (span / n_samples)[:, None])[:, None, None, :]
    return d_padded.at[index].add(update), None


def _rays_per_chunk(n_rays, n_samples, budget):
    """Rays per chunk: the fewest chunks within ``budget`` samples, balanced."""
    n_chunks = max(1, -(-n_rays * n_samples // budget))
    return max(1, -(-n_rays // n_chunks))


def _sums(shape, n_samples, with_gradient, budget, padded, s, t):
    """``_sums_chunk`` over all rays, one chunk of ``budget`` samples after another.
    Returns S (R, C) (and G, M (R, C, 3))."""
    chunk = _rays_per_chunk(s.shape[0], n_samples, budget)
    body = functools.partial(_sums_chunk, shape, n_samples, with_gradient, padded)
    out = jax.lax.map(body, (split(s, chunk), split(t, chunk)))
    return jax.tree.map(functools.partial(merge, n=s.shape[0]), out)


def _scatter(shape, n_samples, budget, padded, s, t, g):
    """d(sum_r g_r . integral_r)/d padded ((I + 2)(J + 2)(K + 2), C), one scan over chunks of
    ``budget`` samples."""
    chunk = _rays_per_chunk(s.shape[0], n_samples, budget)
    body = functools.partial(_scatter_chunk, shape, n_samples)
    rays = (split(s, chunk), split(t, chunk), split(g, chunk, fill=0.0))
    return jax.lax.scan(body, jnp.zeros_like(padded), rays)[0]


_BUDGETS = {"cpu": CPU_SAMPLES_PER_CHUNK, "gpu": GPU_SAMPLES_PER_CHUNK}


def _per_platform(path, fn, *args):
    """``fn(budget, *args)`` with the sample budget of ``path`` ("gpu" or "cpu"), or of the
    platform being lowered for (``path=None``)."""
    if path is not None:
        return fn(_BUDGETS[path], *args)
    cpu = functools.partial(fn, _BUDGETS["cpu"])
    gpu = functools.partial(fn, _BUDGETS["gpu"])
    return jax.lax.platform_dependent(*args, cpu=cpu, cuda=gpu, rocm=gpu, default=cpu)


def _forward(shape, n_samples, with_gradient, path, values, s, t):
    sums = _per_platform(path, functools.partial(_sums, shape, n_samples, with_gradient), _padded(shape, values), s, t)
    _, span = _interval(shape, s, t)
    total = sums[0] if with_gradient else sums
    return total * (span / n_samples)[:, None], sums


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _integrate(shape, n_samples, path, values, s, t):
    return _forward(shape, n_samples, False, path, values, s, t)[0]


def _integrate_fwd(shape, n_samples, path, values, s, t):
    with_gradient = s.perturbed or t.perturbed
    out, sums = _forward(shape, n_samples, with_gradient, path, values.value, s.value, t.value)
    kept_values = values.value if values.perturbed else None
    return out, (kept_values, s.value, t.value, sums if with_gradient else None)


def _surrogate(shape, n_samples, step, s_sum, g_sum, m_sum, s, t):
    """A function of the end points whose gradient at (s, t) is that of sum_r g_r . integral_r,
    given the per-ray sums contracted with g (S (R,), G and M (R, 3)) and step (R,) there."""
    alpha_in, span = _interval(shape, s, t)
    d = t - s
    linear = jnp.sum(g_sum * s, -1) + alpha_in * jnp.sum(g_sum * d, -1) + span * jnp.sum(m_sum * d, -1)
    return jnp.sum(span / n_samples * s_sum + step * linear)


def _integrate_bwd(shape, n_samples, path, residuals, g):
    values, s, t, sums = residuals
    if isinstance(g, jax.custom_derivatives.SymbolicZero):
        d_values = None if values is None else jnp.zeros_like(values)
        return d_values, jnp.zeros_like(s), jnp.zeros_like(t)
    g = jnp.asarray(g, jnp.float32)
    if sums is None:
        d_s, d_t = jnp.zeros_like(s), jnp.zeros_like(t)
    else:
        s_sum, g_sum, m_sum = sums
        _, span = _interval(shape, s, t)
        d_s, d_t = jax.grad(_surrogate, argnums=(6, 7))(
            shape,
            n_samples,
            span / n_samples,
            jnp.sum(s_sum * g, 1),
            jnp.einsum("rcd,rc->rd", g_sum, g),
            jnp.einsum("rcd,rc->rd", m_sum, g),
            s,
            t,
        )
    if values is None:
        return None, d_s, d_t
    padded = _padded(shape, values)
    d_padded = _per_platform(path, functools.partial(_scatter, shape, n_samples), padded, s, t, g)
    grid = d_padded.reshape(tuple(n + 2 for n in shape) + (values.shape[1],))
    d_values = grid[1:-1, 1:-1, 1:-1].reshape(values.shape)
    return d_values, d_s, d_t


_integrate.defvjp(_integrate_fwd, _integrate_bwd, symbolic_zeros=True)


@functools.partial(jax.jit, static_argnums=(0, 1), static_argnames=("_path",))
def integrate(
    shape: tuple[int, int, int],
    n_samples: int,
    values: jax.Array,
    s: jax.Array,
    t: jax.Array,
    *,
    _path: str | None = None,
) -> jax.Array:
    """Midpoint-rule integrals of the trilinear interpolant along rays, in alpha units.

    Args:
      shape: (I, J, K) grid shape (static).
      n_samples: midpoint-rule samples per ray (static).
      values: (I * J * K, C) voxel values, C-order flattened grid.
      s, t: (R, 3) ray start and end in grid coordinates.
      _path: private; ``"gpu"`` or ``"cpu"`` forces that platform's configuration (tests),
        None picks it by the platform being lowered for.

    Returns:
      (R, C); multiply by the ray length in mm.
    """
    return _integrate(tuple(int(n) for n in shape), int(n_samples), _path, jnp.asarray(values, jnp.float32), s, t)
