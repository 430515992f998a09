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
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _check_photons(photons):
    if isinstance(photons, (int, float)) and not photons > 0:
        raise ValueError(f"photons (mean open-beam count per pixel) must be > 0, got {photons}")


def poisson_noise(key, transmission, photons):
    """Quantum noise: counts ~ Poisson(photons * transmission), returned as counts / photons.

    Args:
      key: jax.random key.
      transmission: (...) float transmitted fraction p >= 0.
      photons: N0 photons per pixel of the open beam (scalar or broadcastable).
    Returns (...) float32 noisy transmission, mean p and variance p / N0. Not differentiable in p.
    """
    _check_photons(photons)
    lam = jnp.maximum(jnp.asarray(transmission, jnp.float32), 0.0) * photons
    counts = jax.random.poisson(key, lam, lam.shape)
    return counts.astype(jnp.float32) / photons


def gaussian_noise(key, transmission, photons):
    """Reparameterised Gaussian approximation of quantum noise: p + sqrt(p / N0) z, z ~ N(0, 1).

    Same mean and variance as ``poisson_noise``; differentiable with respect to ``transmission``
    (the square root is evaluated at max(p, 1e-12), so p = 0 has a finite gradient).
    Returns (...) float32.
    """
    _check_photons(photons)
    p = jnp.asarray(transmission, jnp.float32)
    z = jax.random.normal(key, p.shape, jnp.float32)
    return p + jnp.sqrt(jnp.maximum(p, 1e-12) / photons) * z


def crosstalk(image, fraction):
    """Detector cross-talk: each pixel leaks ``fraction`` of its signal to each of its 4 neighbours.

    The kernel is [[0, f, 0], [f, 1 - 4f, f], [0, f, 0]] with edge pixels replicated, so a flat
    image is unchanged. image: (..., H, W); fraction in [0, 0.25]. Returns (..., H, W) float32.
    """
    if isinstance(fraction, (int, float)) and not 0.0 <= fraction <= 0.25:
        raise ValueError(f"cross-talk fraction must lie in [0, 0.25], got {fraction}")
    image = jnp.asarray(image, jnp.float32)
    pad = [(0, 0)] * (image.ndim - 2) + [(1, 1), (1, 1)]
    x = jnp.pad(image, pad, mode="edge")
    neighbours = x[..., :-2, 1:-1] + x[..., 2:, 1:-1] + x[..., 1:-1, :-2] + x[..., 1:-1, 2:]
    return (1.0 - 4.0 * fraction) * image + fraction * neighbours


def electronic_noise(key, image, std):
    """Additive Gaussian electronic noise of standard deviation ``std`` (units of ``image``).
    image: (...); returns (...) float32."""
    image = jnp.asarray(image, jnp.float32)
    return image + std * jax.random.normal(key, image.shape, jnp.float32)


def detector_noise(key, transmission, photons, *, crosstalk_fraction=0.0, electronic_std=0.0):
    """The full detector chain: Poisson quantum noise, cross-talk blur of the noise, electronic noise.

    Args:
      key: jax.random key (split internally into quantum and electronic parts).
      transmission: (..., H, W) noise-free transmitted fraction.
      photons: N0, open-beam photons per pixel.
      crosstalk_fraction: leak to each 4-neighbour, applied to the quantum noise only (the mean
        image keeps its sharpness, as the source's blur is modelled by the renderer).
      electronic_std: standard deviation of the electronic noise in photon counts.
    Returns (..., H, W) float32 noisy transmission.
    """
    k_quantum, k_electronic = jax.random.split(key)
    p = jnp.asarray(transmission, jnp.float32)
    quantum = poisson_noise(k_quantum, p, photons) - p
    noisy = p + crosstalk(quantum, crosstalk_fraction)
    return electronic_noise(k_electronic, noisy, jnp.asarray(electronic_std, jnp.float32) / photons)
