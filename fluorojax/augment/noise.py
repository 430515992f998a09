"""Detector noise: quantum (Poisson) and electronic (Gaussian) noise; masks untouched.

Transforms ``(key, image, masks) -> (image, masks)``; image (H, W) or (H, W, C) float32 in
[0, 1] (1 = the brightest detector level).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from fluorojax.augment import _image

__all__ = ["poisson_noise", "gaussian_noise"]


@_image.image_only
def poisson_noise(key, image, *, photons: tuple[float, float] = (100.0, 10000.0)):
    """Quantum noise: ``Poisson(n v) / n`` with n, the photon count at intensity 1, drawn
    log-uniformly from ``photons``; unbiased (the mean is kept), variance v / n."""
    k_n, k_p = jax.random.split(key)
    lo, hi = math.log(photons[0]), math.log(photons[1])
    n = jnp.exp(_image.uniform(k_n, (lo, hi)))
    counts = jax.random.poisson(k_p, jnp.clip(image, 0.0, None) * n, image.shape)
    return (counts.astype(jnp.float32) / n).astype(image.dtype)


@_image.image_only
def gaussian_noise(key, image, *, sigma: tuple[float, float] = (0.0, 0.03)):
    """Additive white Gaussian noise of std drawn from ``sigma`` (image units); not clipped."""
    k_s, k_n = jax.random.split(key)
    s = _image.uniform(k_s, sigma)
    noise = s * jax.random.normal(k_n, image.shape, jnp.float32)
    return (image + noise).astype(image.dtype)
