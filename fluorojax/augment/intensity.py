"""Tone changes: pointwise intensity maps and channel shuffles; masks are left untouched.

Every function is a transform ``(key, image, masks) -> (image, masks)`` with keyword-only
options; image (H, W) or (H, W, C) float32, masks (N, H, W) returned as given. After
:func:`negative_log` values are line-integral-like (unbounded) until a window
(:mod:`fluorojax.augment.windowing`) maps them to [0, 1]; the other transforms here take
[0, 1] images and clip their output to [0, 1] (as the 8-bit pipelines they stand in for do).

Gradients with respect to the image: every map here is differentiable almost everywhere (zero
where a clip saturates); the random draws (contrast, gamma, the Gaussian's centre and width,
the channel permutation) depend only on the key.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fluorojax.augment import _image

__all__ = [
    "negative_log",
    "invert",
    "brightness_contrast",
    "gaussian_contrast",
    "gamma",
    "channel_shuffle",
]


@_image.image_only(hwc=True)
def negative_log(key: jax.Array, image: jax.Array, *, epsilon: float = 1e-3) -> jax.Array:
    """Raw detector intensity -> attenuation: ``-log(I + min(I) + epsilon)`` per channel.

    The shift by the channel minimum plus ``epsilon`` (dimensionless, same units as I) follows
    the FluoroSeg loader's first step (arcadelab/fluoroseg ``alb/neglog.py``), so that zeros in a
    raw image stay finite. Returns float32 of the input's shape.
    """
    del key
    return -jnp.log(image + jnp.min(image, axis=(0, 1), keepdims=True) + epsilon)


@_image.image_only
def invert(key: jax.Array, image: jax.Array) -> jax.Array:
    """``1 - image`` (albumentations' InvertImg for float images)."""
    del key
    return (1.0 - image).astype(image.dtype)


@_image.image_only
def brightness_contrast(
    key: jax.Array,
    image: jax.Array,
    *,
    brightness: tuple[float, float] = (-0.2, 0.2),
    contrast: tuple[float, float] = (-0.2, 0.2),
) -> jax.Array:
    """``clip((1 + c) * image + b, 0, 1)`` with c drawn from ``contrast`` and b from
    ``brightness`` (albumentations' RandomBrightnessContrast with brightness by max)."""
    k_b, k_c = jax.random.split(key)
    alpha = 1.0 + _image.uniform(k_c, contrast)
    beta = _image.uniform(k_b, brightness)
    return jnp.clip(alpha * image + beta, 0.0, 1.0).astype(image.dtype)


@_image.image_only(hwc=True)
def gaussian_contrast(
    key: jax.Array,
    image: jax.Array,
    *,
    alpha: tuple[float, float] = (0.6, 1.4),
    sigma: tuple[float, float] = (0.1, 0.5),
) -> jax.Array:
    """Spatially varying contrast about 0.5: ``0.5 + (v - 0.5) * (1 + (a - 1) g(x))`` with g a
    unit-peak Gaussian of std ``s * min(H, W)`` centred uniformly in the image, a drawn from
    ``alpha`` and s from ``sigma``; clipped to [0, 1] (FluoroSeg's gaussian_contrast)."""
    h, w = image.shape[:2]
    k_a, k_s, k_r, k_c = jax.random.split(key, 4)
    a = _image.uniform(k_a, alpha)
    s = _image.uniform(k_s, sigma) * min(h, w)
    rows, cols = _image.pixel_grid(h, w)
    r0 = _image.uniform(k_r, (0.0, float(h)))
    c0 = _image.uniform(k_c, (0.0, float(w)))
    g = jnp.exp(-((rows - r0) ** 2 + (cols - c0) ** 2) / (2.0 * s * s))
    gain = 1.0 + (a - 1.0) * g / jnp.max(g)
    return jnp.clip(0.5 + (image - 0.5) * gain[..., None], 0.0, 1.0)


@_image.image_only
def gamma(key: jax.Array, image: jax.Array, *, gamma_range: tuple[float, float] = (0.7, 1.5)) -> jax.Array:
    """``clip(image, 0, 1) ** g`` with g drawn uniformly from ``gamma_range``."""
    g = _image.uniform(key, gamma_range)
    return (jnp.clip(image, 0.0, 1.0) ** g).astype(image.dtype)


@_image.image_only(hwc=True)
def channel_shuffle(key: jax.Array, image: jax.Array) -> jax.Array:
    """Permute the channels of an (H, W, C) image at random ((H, W) is returned unchanged)."""
    return image[..., jax.random.permutation(key, image.shape[-1])]
