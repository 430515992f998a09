"""Intensity windows: the [min, max] window and FluoroSeg's two-cluster (k-means) window.

Transforms ``(key, image, masks) -> (image, masks)``; masks are returned untouched. They take
unbounded, line-integral-like values (after :func:`~fluorojax.augment.negative_log`) and map
them to [0, 1].

Gradients with respect to the image: both windows are piecewise linear in the pixel values and
in their knots, and the knots (image minimum and maximum, cluster means, deviations and ranges)
are themselves differentiable almost everywhere, so the gradient is exact wherever no pixel
sits on a knot. The k-means clusters are found by Lloyd's iteration on a stopped gradient; the
centres are then the means of the clusters found (one more Lloyd step: the same centres where
the iteration has converged, within scikit-learn's tolerance where it stopped by it), which
makes them continuous in the image while no pixel changes cluster. Which cluster a pixel
belongs to is held fixed: it changes only where the image changes the clustering, where no
gradient exists.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fluorojax.augment import _image

__all__ = ["window", "mixture_window"]


def _minmax(x: jax.Array) -> jax.Array:
    lo, hi = jnp.min(x), jnp.max(x)
    span = hi - lo
    return jnp.where(span > 0, (x - lo) / jnp.where(span > 0, span, 1.0), 0.0)


@_image.image_only
def window(key: jax.Array, image: jax.Array) -> jax.Array:
    """Map the image's [min, max] linearly onto [0, 1] (all channels together; a constant image
    becomes 0)."""
    del key
    return _minmax(image).astype(image.dtype)


def _cluster_means(samples: jax.Array, high: jax.Array, fallback: jax.Array) -> jax.Array:
    """Means (2,) of the samples outside and inside ``high``; an empty cluster keeps its
    ``fallback`` centre."""
    n_hi = jnp.sum(high)
    n_lo = samples.size - n_hi
    m_lo = jnp.sum(jnp.where(high, 0.0, samples)) / jnp.maximum(n_lo, 1)
    m_hi = jnp.sum(jnp.where(high, samples, 0.0)) / jnp.maximum(n_hi, 1)
    return jnp.stack([jnp.where(n_lo > 0, m_lo, fallback[0]), jnp.where(n_hi > 0, m_hi, fallback[1])])


def _two_means(samples: jax.Array, max_iter: int, tol: float) -> jax.Array:
    """1-D k-means with two clusters by Lloyd's algorithm, started at the quartiles; returns the
    sorted centres (2,). Not differentiable (a ``while_loop``): call it on stopped values.

    Stops as scikit-learn's ``KMeans`` does: when an iteration changes no assignment, or moves
    the centres by a summed squared shift of at most ``tol`` times the samples' variance, or
    after ``max_iter`` iterations; so both stop at the same fixed point of Lloyd's iteration
    (up to that tolerance) wherever they start in its basin.
    """
    tol_abs = tol * jnp.var(samples)

    def assign(c):
        return samples > 0.5 * (c[0] + c[1])

    def body(state):
        i, c, high, _ = state
        new = _cluster_means(samples, high, c)
        new_high = assign(new)
        converged = jnp.all(new_high == high) | (jnp.sum((new - c) ** 2) <= tol_abs)
        return i + 1, new, new_high, converged

    def cond(state):
        i, _, _, converged = state
        return (i < max_iter) & ~converged

    init = jnp.quantile(samples, jnp.asarray([0.25, 0.75]))
    _, centres, _, _ = jax.lax.while_loop(cond, body, (0, init, assign(init), False))
    return centres


def _ramp(x: jax.Array, start: jax.Array, stop: jax.Array) -> jax.Array:
    """0 below ``start``, 1 above ``stop``, linear between (start < stop)."""
    return jnp.clip((x - start) * (1.0 / (stop - start)), 0.0, 1.0)


def _cluster_window(x, member, centre, lo, hi):
    """Piecewise-linear window: [lo, x_lo] -> [0, .1], [x_lo, x_hi] -> [.1, .9], [x_hi, hi] ->
    [.9, 1], with x_lo/x_hi the cluster's mean -/+ 3 std clamped to the cluster's range (a sum
    of three ramps: ``jnp.interp``'s search is ~10x slower on a CPU)."""
    count = jnp.maximum(jnp.sum(member), 1)
    mean = jnp.sum(jnp.where(member, x, 0.0)) / count
    std = jnp.sqrt(jnp.sum(jnp.where(member, (x - mean) ** 2, 0.0)) / count)
    c_min = jnp.min(jnp.where(member, x, jnp.inf))
    c_max = jnp.max(jnp.where(member, x, -jnp.inf))
    x_lo = jnp.clip(jnp.maximum(centre - 3.0 * std, c_min), lo, hi)
    x_hi = jnp.clip(jnp.minimum(centre + 3.0 * std, c_max), lo, hi)
    eps = 1e-6 * (hi - lo) + 1e-12  # keep the knots strictly increasing
    x_lo = jnp.maximum(x_lo, lo + eps)
    x_hi = jnp.maximum(x_hi, x_lo + eps)
    top = jnp.maximum(hi, x_hi + eps)
    return 0.1 * _ramp(x, lo, x_lo) + 0.8 * _ramp(x, x_lo, x_hi) + 0.1 * _ramp(x, x_hi, top)


@_image.image_only
def mixture_window(
    key: jax.Array, image: jax.Array, *, n_points: int = 1000, max_iter: int = 100, tol: float = 1e-4
) -> jax.Array:
    """Two-cluster (k-means) windowing into three channels, each in [0, 1].

    Channel 0 is the [min, max] window of the image; channels 1 and 2 window the darker and the
    brighter k-means cluster of the pixel values: the cluster's centre -/+ 3 standard deviations
    (clamped to the cluster's range) maps to [0.1, 0.9], the rest of the image range linearly to
    [0, 0.1] and [0.9, 1] (FluoroSeg's ``mixture_window(keep_original=True, model="kmeans")``).
    K-means runs on every ``H W // n_points``-th pixel (FluoroSeg's subsample) and every pixel
    goes to the nearer centre (its ``predict``). FluoroSeg fits scikit-learn's ``KMeans(2,
    max_iter=100)`` (k-means++ start); here Lloyd's iteration starts at the quartiles and stops by
    scikit-learn's rule (no assignment changes, or a squared centre shift at most ``tol`` times
    the variance, or ``max_iter`` iterations), so it reaches the same two-cluster optimum without
    a random start (``key`` unused). Uses channel 0 of an (H, W, C) input. Returns (H, W, 3)
    float32.

    Gradient: exact almost everywhere (see the module docstring); the centres are the means of
    the clusters found, each pixel's cluster is held fixed.
    """
    del key
    x = _image.to_hwc(image)[..., 0].astype(jnp.float32)
    flat = x.reshape(-1)
    samples = flat[:: max(1, flat.size // n_points)]
    found = _two_means(jax.lax.stop_gradient(samples), max_iter, tol)
    threshold = 0.5 * (found[0] + found[1])
    centres = _cluster_means(samples, samples > threshold, found)  # one more Lloyd step
    high = x > threshold
    lo, hi = jnp.min(x), jnp.max(x)
    out = jnp.stack(
        [
            _minmax(x),
            _cluster_window(x, ~high, centres[0], lo, hi),
            _cluster_window(x, high, centres[1], lo, hi),
        ],
        axis=-1,
    )
    out = jnp.where(hi > lo, out, 0.0)
    return out.astype(jnp.float32)
