"""Intensity augmentations: they change pixel values and leave masks untouched.

Every function is a transform ``(key, image, masks) -> (image, masks)`` with keyword-only
options; image (H, W) or (H, W, C) float32, masks (N, H, W) returned as given. After
:func:`negative_log` values are line-integral-like (unbounded); :func:`window` and
:func:`mixture_window` map them to [0, 1], and the other transforms here take [0, 1] images and
clip their output to [0, 1] (as the 8-bit pipelines they stand in for do).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from fluorojax.augment import _image

__all__ = [
    "negative_log",
    "invert",
    "window",
    "mixture_window",
    "clahe",
    "brightness_contrast",
    "gaussian_contrast",
    "haze",
    "gamma",
    "channel_shuffle",
]


def negative_log(key, image, masks, *, epsilon: float = 1e-3):
    """Raw detector intensity -> attenuation: ``-log(I + min(I) + epsilon)`` per channel.

    The shift by the channel minimum plus ``epsilon`` (dimensionless, same units as I) follows
    the FluoroSeg loader's first step (arcadelab/fluoroseg ``alb/neglog.py``), so that zeros in a
    raw image stay finite. Returns float32 of the input's shape.
    """
    del key
    _image.check(image, masks, "negative_log")
    x = _image.to_hwc(image)
    shifted = x + jnp.min(x, axis=(0, 1), keepdims=True) + epsilon
    return _image.like(-jnp.log(shifted), image), masks


def invert(key, image, masks):
    """``1 - image`` (albumentations' InvertImg for float images)."""
    del key
    _image.check(image, masks, "invert")
    return (1.0 - image).astype(image.dtype), masks


def _minmax(x: jax.Array) -> jax.Array:
    lo, hi = jnp.min(x), jnp.max(x)
    span = hi - lo
    return jnp.where(span > 0, (x - lo) / jnp.where(span > 0, span, 1.0), 0.0)


def window(key, image, masks):
    """Map the image's [min, max] linearly onto [0, 1] (all channels together; a constant image
    becomes 0)."""
    del key
    _image.check(image, masks, "window")
    return _minmax(image).astype(image.dtype), masks


def _two_means(samples: jax.Array, iterations: int) -> jax.Array:
    """1-D k-means with two clusters started at the quartiles; returns sorted centres (2,)."""
    init = jnp.quantile(samples, jnp.asarray([0.25, 0.75]))

    def step(_, c):
        high = samples > 0.5 * (c[0] + c[1])
        n_hi = jnp.sum(high)
        n_lo = samples.size - n_hi
        m_lo = jnp.sum(jnp.where(high, 0.0, samples)) / jnp.maximum(n_lo, 1)
        m_hi = jnp.sum(jnp.where(high, samples, 0.0)) / jnp.maximum(n_hi, 1)
        return jnp.stack([jnp.where(n_lo > 0, m_lo, c[0]), jnp.where(n_hi > 0, m_hi, c[1])])

    return jax.lax.fori_loop(0, iterations, step, init)


def _cluster_window(x, member, centre, lo, hi):
    """Piecewise-linear window: [lo, x_lo] -> [0, .1], [x_lo, x_hi] -> [.1, .9], [x_hi, hi] ->
    [.9, 1], with x_lo/x_hi the cluster's mean -/+ 3 std clamped to the cluster's range."""
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
    knots = jnp.stack([lo, x_lo, x_hi, top])
    return jnp.interp(x, knots, jnp.asarray([0.0, 0.1, 0.9, 1.0]))


def mixture_window(key, image, masks, *, n_points: int = 1000, iterations: int = 20):
    """Two-cluster (k-means) windowing into three channels, each in [0, 1].

    Channel 0 is the [min, max] window of the image; channels 1 and 2 window the darker and the
    brighter k-means cluster of the pixel values: the cluster's centre -/+ 3 standard deviations
    (clamped to the cluster's range) maps to [0.1, 0.9], the rest of the image range linearly to
    [0, 0.1] and [0.9, 1] (FluoroSeg's ``mixture_window(keep_original=True, model="kmeans")``).
    K-means runs on about ``n_points`` pixels (a regular stride, static) for ``iterations``
    steps from the quartiles, so it is deterministic (``key`` unused). Uses channel 0 of an
    (H, W, C) input. Returns (H, W, 3) float32.
    """
    del key
    _image.check(image, masks, "mixture_window")
    x = _image.to_hwc(image)[..., 0].astype(jnp.float32)
    flat = x.reshape(-1)
    stride = max(1, flat.size // n_points)
    centres = _two_means(flat[::stride], iterations)
    high = x > 0.5 * (centres[0] + centres[1])
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
    return out.astype(jnp.float32), masks


def _clahe_channel(q: jax.Array, clip: jax.Array, grid: tuple[int, int]) -> jax.Array:
    """OpenCV-style CLAHE of one uint8-valued (H, W) int32 channel; returns float levels."""
    h, w = q.shape
    ty, tx = grid
    ph, pw = -h % ty, -w % tx
    padded = jnp.pad(q, ((0, ph), (0, pw)), mode="reflect") if (ph or pw) else q
    th, tw = (h + ph) // ty, (w + pw) // tx
    area = th * tw
    tile = (jnp.arange(h + ph)[:, None] // th) * tx + (jnp.arange(w + pw)[None, :] // tw)
    hist = jnp.zeros((ty * tx * 256,), jnp.int32).at[(tile * 256 + padded).reshape(-1)].add(1)
    hist = hist.reshape(ty * tx, 256)
    limit = jnp.maximum(jnp.floor(clip * area / 256.0).astype(jnp.int32), 1)
    excess = jnp.sum(jnp.maximum(hist - limit, 0), axis=1, keepdims=True)
    hist = jnp.minimum(hist, limit) + excess // 256
    residual = excess % 256
    step = jnp.maximum(256 // jnp.maximum(residual, 1), 1)
    levels = jnp.arange(256)[None, :]
    hist = hist + ((levels % step == 0) & (levels // step < residual)).astype(jnp.int32)
    lut = jnp.clip(jnp.round(jnp.cumsum(hist, axis=1) * (255.0 / area)), 0, 255)
    lut = lut.reshape(ty, tx, 256)

    def coords(n, size, tiles):
        f = jnp.arange(n, dtype=jnp.float32) / size - 0.5
        i1 = jnp.floor(f).astype(jnp.int32)
        a = f - i1
        return jnp.maximum(i1, 0), jnp.minimum(i1 + 1, tiles - 1), a

    y1, y2, ya = coords(h, th, ty)
    x1, x2, xa = coords(w, tw, tx)
    y1, y2, ya = y1[:, None], y2[:, None], ya[:, None]
    x1, x2, xa = x1[None, :], x2[None, :], xa[None, :]
    top = lut[y1, x1, q] * (1 - xa) + lut[y1, x2, q] * xa
    bottom = lut[y2, x1, q] * (1 - xa) + lut[y2, x2, q] * xa
    return jnp.clip(jnp.round(top * (1 - ya) + bottom * ya), 0, 255)


def clahe(
    key,
    image,
    masks,
    *,
    clip_limit: tuple[float, float] = (4.0, 6.0),
    grid: tuple[int, int] = (8, 8),
):
    """Contrast-limited adaptive histogram equalisation, each channel separately.

    The [0, 1] image is quantised to 256 levels; ``grid`` = (tile rows, tile columns) (static;
    the image is mirror-padded to a multiple of it); each tile's histogram is clipped at
    ``clip_limit`` (drawn uniformly from the range) times its mean bin count, the excess spread
    evenly, and its cumulative sum is the tile's map; each pixel interpolates bilinearly between
    the maps of the four nearest tile centres. Matches OpenCV's ``createCLAHE`` on uint8 input
    (note ``tileGridSize`` is (columns, rows) there). Returns levels / 255.
    """
    _image.check(image, masks, "clahe")
    clip = _image.uniform(key, clip_limit)
    x = _image.to_hwc(image)
    q = jnp.clip(jnp.round(x * 255.0), 0, 255).astype(jnp.int32)
    out = jax.vmap(lambda c: _clahe_channel(c, clip, tuple(grid)), in_axes=-1, out_axes=-1)(q)
    return _image.like(out / 255.0, image), masks


def brightness_contrast(
    key,
    image,
    masks,
    *,
    brightness: tuple[float, float] = (-0.2, 0.2),
    contrast: tuple[float, float] = (-0.2, 0.2),
):
    """``clip((1 + c) * image + b, 0, 1)`` with c drawn from ``contrast`` and b from
    ``brightness`` (albumentations' RandomBrightnessContrast with brightness by max)."""
    _image.check(image, masks, "brightness_contrast")
    k_b, k_c = jax.random.split(key)
    alpha = 1.0 + _image.uniform(k_c, contrast)
    beta = _image.uniform(k_b, brightness)
    return jnp.clip(alpha * image + beta, 0.0, 1.0).astype(image.dtype), masks


def gaussian_contrast(
    key,
    image,
    masks,
    *,
    alpha: tuple[float, float] = (0.6, 1.4),
    sigma: tuple[float, float] = (0.1, 0.5),
):
    """Spatially varying contrast about 0.5: ``0.5 + (v - 0.5) * (1 + (a - 1) g(x))`` with g a
    unit-peak Gaussian of std ``s * min(H, W)`` centred uniformly in the image, a drawn from
    ``alpha`` and s from ``sigma``; clipped to [0, 1] (FluoroSeg's gaussian_contrast)."""
    _image.check(image, masks, "gaussian_contrast")
    h, w = image.shape[:2]
    k_a, k_s, k_r, k_c = jax.random.split(key, 4)
    a = _image.uniform(k_a, alpha)
    s = _image.uniform(k_s, sigma) * min(h, w)
    rows, cols = _image.pixel_grid(h, w)
    r0 = _image.uniform(k_r, (0.0, float(h)))
    c0 = _image.uniform(k_c, (0.0, float(w)))
    g = jnp.exp(-((rows - r0) ** 2 + (cols - c0) ** 2) / (2.0 * s * s))
    gain = 1.0 + (a - 1.0) * g / jnp.max(g)
    if image.ndim == 3:
        gain = gain[..., None]
    return jnp.clip(0.5 + (image - 0.5) * gain, 0.0, 1.0).astype(image.dtype), masks


def haze(key, image, masks, *, strength: tuple[float, float] = (0.1, 0.3), grid: int = 4):
    """Blend toward white by a smooth random veil: ``v (1 - t) + t`` with t = strength * f, f a
    smooth field in [0, 1] (uniform noise on a ``grid`` x ``grid`` lattice, cubic upsampling);
    a stand-in for fog or scatter haze."""
    _image.check(image, masks, "haze")
    h, w = image.shape[:2]
    k_s, k_f = jax.random.split(key)
    coarse = jax.random.uniform(k_f, (grid, grid), jnp.float32)
    field = jnp.clip(jax.image.resize(coarse, (h, w), "cubic"), 0.0, 1.0)
    t = _image.uniform(k_s, strength) * field
    if image.ndim == 3:
        t = t[..., None]
    return jnp.clip(image * (1.0 - t) + t, 0.0, 1.0).astype(image.dtype), masks


def gamma(key, image, masks, *, gamma_range: tuple[float, float] = (0.7, 1.5)):
    """``clip(image, 0, 1) ** g`` with g drawn uniformly from ``gamma_range``."""
    _image.check(image, masks, "gamma")
    g = _image.uniform(key, gamma_range)
    return (jnp.clip(image, 0.0, 1.0) ** g).astype(image.dtype), masks


def channel_shuffle(key, image, masks):
    """Permute the channels of an (H, W, C) image at random ((H, W) is returned unchanged)."""
    _image.check(image, masks, "channel_shuffle")
    if image.ndim == 2:
        return image, masks
    perm = jax.random.permutation(key, image.shape[-1])
    return image[..., perm], masks
