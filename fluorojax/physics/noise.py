"""Detector noise: Poisson quantum noise, detector cross-talk, electronic noise.

Images are transmitted fractions ``p`` (intensity normalised by the flat field, 1 = open beam);
``photons`` is N0, the mean photon count per pixel of the open beam (1e3-1e5 in fluoroscopy).
The photon count of a pixel is modelled as Poisson(N0 p): the energy-integrating detector's
compound-Poisson statistics are approximated by counting statistics. Noise is off unless one
of these functions is called; every function takes its ``jax.random`` key first, and the same
key gives the same noise bit for bit.

Differentiable path: ``poisson_noise`` samples are not differentiable in ``p``; use
``gaussian_noise``, the reparameterised approximation ``p + sqrt(p / N0) z`` with z ~ N(0, 1)
(good for N0 p >~ 20), when gradients must flow through a noisy image, or render without noise.

Invalid values: ``photons`` (scalar or array, any type) must be finite and > 0, and is checked
whenever it is concrete (ValueError naming it). Under ``jax.jit`` a traced ``photons`` is not
checked: a non-positive or NaN value gives NaN or inf pixels. A NaN transmission pixel stays
NaN in the output and never reaches its neighbours (its noise is set to 0 before the
cross-talk blur).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fluorojax import _validate

POISSON_LIMIT = 1e7
"""Mean counts above which ``poisson_noise`` draws from the normal approximation N(lam, lam)
instead of Poisson(lam): the int32 counts of ``jax.random.poisson`` overflow past about 2e9,
and float32 cannot hold counts above 2**24 exactly anyway (the skewness there is 3e-4)."""


def _check_photons(photons):
    if _validate.is_concrete(photons):
        _validate.positive_array("photons (mean open-beam count per pixel)", photons)


def poisson_noise(key: jax.Array, transmission: jax.Array, photons: float | jax.Array) -> jax.Array:
    """Quantum noise: counts ~ Poisson(photons * transmission), returned as counts / photons.

    Args:
      key: jax.random key.
      transmission: (...) float transmitted fraction p >= 0 (negative values count as 0).
      photons: N0 photons per pixel of the open beam (scalar or broadcastable), finite and > 0.
    Returns (...) float32 noisy transmission, mean p and variance p / N0. Not differentiable in p.
    Pixels with more than ``POISSON_LIMIT`` mean counts use the normal approximation (drawn
    with ``fold_in(key, 1)``), so any photon count, up to float32's range, keeps the mean p.
    """
    _check_photons(photons)
    lam = jnp.maximum(jnp.asarray(transmission, jnp.float32), 0.0) * photons
    counts = jax.random.poisson(key, jnp.minimum(lam, POISSON_LIMIT), lam.shape).astype(jnp.float32)
    normal = lam + jnp.sqrt(lam) * jax.random.normal(jax.random.fold_in(key, 1), lam.shape, jnp.float32)
    return jnp.where(lam > POISSON_LIMIT, normal, counts) / photons


def gaussian_noise(key: jax.Array, transmission: jax.Array, photons: float | jax.Array) -> jax.Array:
    """Reparameterised Gaussian approximation of quantum noise: p + sqrt(p / N0) z, z ~ N(0, 1).

    Same mean and variance as ``poisson_noise``; differentiable with respect to ``transmission``
    (the square root is evaluated at max(p, 1e-12), so p = 0 has a finite gradient).
    Returns (...) float32.
    """
    _check_photons(photons)
    p = jnp.asarray(transmission, jnp.float32)
    z = jax.random.normal(key, p.shape, jnp.float32)
    return p + jnp.sqrt(jnp.maximum(p, 1e-12) / photons) * z


def crosstalk(image: jax.Array, fraction: float | jax.Array) -> jax.Array:
    """Detector cross-talk: each pixel leaks ``fraction`` of its signal to each of its 4 neighbours.

    The kernel is [[0, f, 0], [f, 1 - 4f, f], [0, f, 0]] with edge pixels replicated, so a flat
    image is unchanged. image: (..., H, W); fraction in [0, 0.25]. Returns (..., H, W) float32.
    """
    if _validate.is_concrete(fraction):
        _validate.number("cross-talk fraction", fraction, low=0.0, high=0.25)
    image = jnp.asarray(image, jnp.float32)
    pad = [(0, 0)] * (image.ndim - 2) + [(1, 1), (1, 1)]
    x = jnp.pad(image, pad, mode="edge")
    neighbours = x[..., :-2, 1:-1] + x[..., 2:, 1:-1] + x[..., 1:-1, :-2] + x[..., 1:-1, 2:]
    return (1.0 - 4.0 * fraction) * image + fraction * neighbours


def electronic_noise(key: jax.Array, image: jax.Array, std: float | jax.Array) -> jax.Array:
    """Additive Gaussian electronic noise of standard deviation ``std`` (units of ``image``).
    image: (...); std >= 0 (scalar or broadcastable); returns (...) float32."""
    if _validate.is_concrete(std):
        _check_std(std)
    image = jnp.asarray(image, jnp.float32)
    return image + std * jax.random.normal(key, image.shape, jnp.float32)


def detector_noise(
    key: jax.Array,
    transmission: jax.Array,
    photons: float | jax.Array,
    *,
    crosstalk_fraction: float | jax.Array = 0.0,
    electronic_std: float | jax.Array = 0.0,
) -> jax.Array:
    """The full detector chain: Poisson quantum noise, cross-talk blur of the noise, electronic noise.

    Args:
      key: jax.random key (split internally into quantum and electronic parts).
      transmission: (..., H, W) noise-free transmitted fraction.
      photons: N0, open-beam photons per pixel.
      crosstalk_fraction: leak to each 4-neighbour, applied to the quantum noise only (the mean
        image keeps its sharpness, as the source's blur is modelled by the renderer).
      electronic_std: standard deviation of the electronic noise in photon counts.
    Returns (..., H, W) float32 noisy transmission; a NaN pixel of ``transmission`` is NaN there
    and nowhere else.
    """
    _check_photons(photons)
    if _validate.is_concrete(crosstalk_fraction):
        _validate.number("cross-talk fraction", crosstalk_fraction, low=0.0, high=0.25)
    if _validate.is_concrete(electronic_std):
        _check_std(electronic_std)
    k_quantum, k_electronic = jax.random.split(key)
    p = jnp.asarray(transmission, jnp.float32)
    quantum = poisson_noise(k_quantum, p, photons) - p
    noisy = p + crosstalk(jnp.where(jnp.isnan(quantum), 0.0, quantum), crosstalk_fraction)
    return electronic_noise(k_electronic, noisy, jnp.asarray(electronic_std, jnp.float32) / photons)


def _check_std(std):
    array = _validate.real_array("electronic noise std", std)
    if not np.all(np.isfinite(array) & (array >= 0)):
        raise ValueError(f"electronic noise std must be finite and >= 0, got {array.tolist()}")
