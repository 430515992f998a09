"""Detector noise: quantum (Poisson) and electronic (Gaussian) noise; masks untouched.

Transforms ``(key, image, masks) -> (image, masks)``; image (H, W) or (H, W, C) float32 in
[0, 1] (1 = the brightest detector level). Named apart from :mod:`fluorojax.physics`'
``poisson_noise`` / ``gaussian_noise``, which add the noise of a given photon count to a
rendered transmission; these draw the noise level at random for augmentation.

Gradients with respect to the image: the electronic noise is additive (gradient 1); the quantum
noise passes the gradient through unchanged (straight-through: the draw is held fixed; a
Poisson count has no derivative in its rate, and its mean moves one for one with it).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from fluorojax.augment import _image

__all__ = ["quantum_noise", "electronic_noise"]


@_image.image_only
def quantum_noise(key: jax.Array, image: jax.Array, *, photons: tuple[float, float] = (100.0, 10000.0)) -> jax.Array:
    """Quantum noise: ``Poisson(n v) / n`` with n, the photon count at intensity 1, drawn
    log-uniformly from ``photons``; unbiased (the mean is kept), variance v / n."""
    k_n, k_p = jax.random.split(key)
    lo, hi = math.log(photons[0]), math.log(photons[1])
    n = jnp.exp(_image.uniform(k_n, (lo, hi)))
    counts = jax.random.poisson(k_p, jnp.clip(image, 0.0, None) * n, image.shape)
    noisy = (counts.astype(jnp.float32) / n).astype(image.dtype)
    return _image.straight_through(noisy, image)


@_image.image_only
def electronic_noise(key: jax.Array, image: jax.Array, *, sigma: tuple[float, float] = (0.0, 0.03)) -> jax.Array:
    """Additive white Gaussian noise of std drawn from ``sigma`` (image units); not clipped."""
    k_s, k_n = jax.random.split(key)
    s = _image.uniform(k_s, sigma)
    noise = s * jax.random.normal(k_n, image.shape, jnp.float32)
    return (image + noise).astype(image.dtype)
