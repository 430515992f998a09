"""Sampled ray marching through the trilinear interpolant of a volume.

The interpolant takes the voxel values at the voxel centres and is zero one voxel beyond the
grid, so its support is the grid box grown by half a voxel on every side. Each ray's part
inside that support, alpha in [alpha_in, alpha_out], is cut into ``n_samples`` equal pieces
and integrated with the midpoint rule; unlike Siddon the result is smooth in the ray end
points. Rays are given in grid coordinates (see ``_rays``).

The gradient (``integrate``'s custom VJP) is analytic and recomputes the samples instead of
storing them. Because the interpolant vanishes on the support's boundary, moving the limits
alpha_in / alpha_out changes the integral by nothing (Leibniz rule), so with respect to the
ray start s and end t it is ``sum_i w_i (1 - alpha_i, alpha_i) grad f(p_i)``; with respect to
the volume it scatters each sample's eight interpolation weights.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from fluorojax.raycast._rays import clip_to_box, merge, split

SAMPLES_PER_CHUNK = 1 << 16
"""Ray samples evaluated at once; rays per chunk = SAMPLES_PER_CHUNK // n_samples."""


def _padded(shape, values):
    """(N, C) values -> ((I+2)(J+2)(K+2), C) with a zero voxel on every side, and its shape."""
    channels = values.shape[1]
    padded = jnp.pad(values.reshape(tuple(shape) + (channels,)), ((1, 1), (1, 1), (1, 1), (0, 0)))
    return padded.reshape(-1, channels), tuple(n + 2 for n in shape)


def _samples(shape, s, t, n_samples):
    """Sample parameters (R, n), points (R, n, 3) and the midpoint weight (R,) of each ray."""
    lower = jnp.full(3, -0.5)
    upper = jnp.asarray(shape, jnp.float32) + 0.5
    alpha_in, alpha_out, _, _ = clip_to_box(s, t, lower, upper)
    span = jnp.maximum(alpha_out - alpha_in, 0.0)
    centres = (jnp.arange(n_samples, dtype=jnp.float32) + 0.5) / n_samples
    alpha = alpha_in[:, None] + centres * span[:, None]
    points = s[:, None, :] + alpha[..., None] * (t - s)[:, None, :]
    return alpha, points, span / n_samples


_CORNERS = jnp.asarray([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], jnp.int32)


def _corners(padded_shape, points):
    """Flat indices (..., 8) of the eight neighbours of each point and the fractions (..., 3)."""
    q = points + 0.5  # index coordinates in the padded grid
    base = jnp.floor(q)
    frac = q - base
    upper = jnp.asarray(padded_shape, jnp.int32) - 1
    corner = jnp.clip(base.astype(jnp.int32)[..., None, :] + _CORNERS, 0, upper)  # (..., 8, 3)
    strides = jnp.asarray([padded_shape[1] * padded_shape[2], padded_shape[2], 1], jnp.int32)
    return jnp.sum(corner * strides, axis=-1), frac


def _factors(frac):
    """Per-axis interpolation factors (..., 8, 3): frac for a corner's upper side, 1 - frac else."""
    return jnp.where(_CORNERS == 1, frac[..., None, :], 1.0 - frac[..., None, :])


def _forward_chunk(shape, n_samples, padded, padded_shape, s, t):
    _, points, step = _samples(shape, s, t, n_samples)
    index, frac = _corners(padded_shape, points)
    w = jnp.prod(_factors(frac), axis=-1)  # (R, n, 8)
    return jnp.sum(jnp.einsum("...k,...kc->...c", w, padded[index]), axis=1) * step[:, None]


def _backward_chunk(shape, n_samples, padded, padded_shape, s, t, g, d_padded):
    alpha, points, step = _samples(shape, s, t, n_samples)
    index, frac = _corners(padded_shape, points)
    f = _factors(frac)  # (R, n, 8, 3)
    w = jnp.prod(f, axis=-1)
    # d w / d frac_a: the other two factors times +1 (upper corner) or -1 (lower corner).
    others = jnp.stack([f[..., 1] * f[..., 2], f[..., 0] * f[..., 2], f[..., 0] * f[..., 1]], -1)
    dw = others * (2.0 * _CORNERS - 1.0)
    gv = jnp.einsum("rnkc,rc->rnk", padded[index], g)  # cotangent-weighted corner values
    grad_f = jnp.einsum("rnk,rnkd->rnd", gv, dw) * step[:, None, None]  # d(g . I)/dp_i
    d_s = jnp.sum(grad_f * (1.0 - alpha)[..., None], axis=1)
    d_t = jnp.sum(grad_f * alpha[..., None], axis=1)
    if d_padded is not None:
        contrib = (w * step[:, None, None])[..., None] * g[:, None, None, :]
        d_padded = d_padded.at[index].add(contrib)
    return d_padded, d_s, d_t


def _rays_per_chunk(n_samples):
    return max(1, SAMPLES_PER_CHUNK // n_samples)


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def integrate(shape, n_samples, values, s, t):
    """Integrals of the trilinear interpolant along rays, in alpha units.

    Args:
      shape: (I, J, K) grid shape (static).
      n_samples: midpoint-rule samples per ray (static).
      values: (I * J * K, C) voxel values, C-order flattened grid.
      s, t: (R, 3) ray start and end in grid coordinates.

    Returns:
      (R, C); multiply by the ray length in mm.
    """
    padded, padded_shape = _padded(shape, values)
    fn = functools.partial(_forward_chunk, shape, n_samples, padded, padded_shape)
    chunk = _rays_per_chunk(n_samples)
    out = jax.lax.map(lambda st: fn(*st), (split(s, chunk), split(t, chunk)))
    return merge(out, s.shape[0])


def _integrate_fwd(shape, n_samples, values, s, t):
    out = integrate(shape, n_samples, values.value, s.value, t.value)
    return out, (values.value, s.value, t.value, values.perturbed)


def _integrate_bwd(shape, n_samples, residuals, g):
    values, s, t, want_values = residuals
    if isinstance(g, jax.custom_derivatives.SymbolicZero):
        return jnp.zeros_like(values), jnp.zeros_like(s), jnp.zeros_like(t)
    padded, padded_shape = _padded(shape, values)
    chunk = _rays_per_chunk(n_samples)

    def body(d_padded, rays):
        d_padded, d_s, d_t = _backward_chunk(shape, n_samples, padded, padded_shape, *rays, d_padded)
        return d_padded, (d_s, d_t)

    d_padded = jnp.zeros_like(padded) if want_values else None
    g = jnp.asarray(g, values.dtype)
    d_padded, (d_s, d_t) = jax.lax.scan(body, d_padded, (split(s, chunk), split(t, chunk), split(g, chunk, fill=0.0)))
    if d_padded is None:
        d_values = jnp.zeros_like(values)
    else:
        inner = d_padded.reshape(padded_shape + (values.shape[1],))[1:-1, 1:-1, 1:-1]
        d_values = inner.reshape(values.shape)
    n = s.shape[0]
    return d_values, merge(d_s, n), merge(d_t, n)


integrate.defvjp(_integrate_fwd, _integrate_bwd, symbolic_zeros=True)
