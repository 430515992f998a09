"""An approximate scatter model: a broad Gaussian kernel applied to the primary image.

``S = spr * G_sigma * P``: scattered radiation is a blurred, scaled copy of the primary
intensity P, with ``spr`` the mean scatter-to-primary ratio and sigma the kernel width in
pixels (tens of mm at the detector in practice). The kernel is normalised near the image border
(each output pixel averages over the part of the kernel inside the detector), so a flat primary
gets exactly ``spr`` times itself.

Limits: the ratio does not grow with patient thickness or field size, the kernel does not depend
on energy, position or object shape, and anti-scatter grids and air gaps enter only through the
choice of ``spr`` (about 0.1-0.5 with a grid, 1-5 without, for an abdomen). It adds the low-
frequency haze and contrast loss of scatter for realistic-looking training images; it is not a
quantitative (Monte Carlo) scatter estimate. Off unless called.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _gaussian_matrix(n, sigma_px):
    x = jnp.arange(n, dtype=jnp.float32)
    k = jnp.exp(-0.5 * ((x[:, None] - x[None, :]) / sigma_px) ** 2)
    return k / jnp.sum(k, axis=1, keepdims=True)


def gaussian_blur(image: jax.Array, sigma_px: float | jax.Array) -> jax.Array:
    """Separable Gaussian blur normalised at the borders. image: (..., H, W); sigma_px > 0 in pixels
    (may be traced); returns (..., H, W) float32."""
    if isinstance(sigma_px, (int, float)) and not sigma_px > 0:
        raise ValueError(f"sigma_px must be > 0 pixels, got {sigma_px}")
    image = jnp.asarray(image, jnp.float32)
    h, w = image.shape[-2:]
    return _gaussian_matrix(h, sigma_px) @ image @ _gaussian_matrix(w, sigma_px).T


def scatter(primary: jax.Array, spr: float | jax.Array, sigma_px: float | jax.Array) -> jax.Array:
    """Scatter estimate S = spr * blur(primary). primary: (..., H, W) intensity; spr >= 0 the mean
    scatter-to-primary ratio; sigma_px the kernel's standard deviation in pixels. Returns (..., H, W)."""
    if isinstance(spr, (int, float)) and spr < 0:
        raise ValueError(f"scatter-to-primary ratio must be >= 0, got {spr}")
    return spr * gaussian_blur(primary, sigma_px)


def add_scatter(primary: jax.Array, spr: float | jax.Array, sigma_px: float | jax.Array) -> jax.Array:
    """Primary plus scatter, ``primary + scatter(primary, spr, sigma_px)``; (..., H, W)."""
    return primary + scatter(primary, spr, sigma_px)
