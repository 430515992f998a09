"""Shared array helpers for the augmentations: layout checks, the image-only transform wrapper,
filtering, 8-bit quantisation, uniform draws."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import overload

import jax
import jax.numpy as jnp


def check(image: jax.Array, masks: jax.Array, name: str) -> None:
    """Raise at trace time unless image is (H, W) or (H, W, C) float and masks (N, H, W)."""
    if image.ndim not in (2, 3):
        raise ValueError(f"{name}: image must be (H, W) or (H, W, C), got shape {image.shape}")
    if not jnp.issubdtype(image.dtype, jnp.floating):
        raise TypeError(f"{name}: image must be a float array, got dtype {image.dtype}")
    if masks.ndim != 3 or masks.shape[1:] != image.shape[:2]:
        raise ValueError(f"{name}: masks must be (N, H, W) with (H, W) = {image.shape[:2]}, got {masks.shape}")


ImageFn = Callable[..., jax.Array]
"""``fn(key, image, *, options) -> image``: what ``image_only`` turns into a transform."""
TransformFn = Callable[..., tuple[jax.Array, jax.Array]]
"""``(key, image, masks, *, options) -> (image, masks)``: a transform with its options unbound."""


@overload
def image_only(fn: ImageFn, *, hwc: bool = False) -> TransformFn: ...


@overload
def image_only(fn: None = None, *, hwc: bool = False) -> Callable[[ImageFn], TransformFn]: ...


def image_only(fn: ImageFn | None = None, *, hwc: bool = False) -> TransformFn | Callable[[ImageFn], TransformFn]:
    """Turn ``fn(key, image, *, options) -> image`` into a transform ``(key, image, masks, *,
    options) -> (image, masks)`` that checks the layout (:func:`check`, named after ``fn``) and
    returns ``masks`` unchanged. With ``hwc=True`` ``fn`` receives the image as (H, W, C) and its
    (H, W, C) result gets the input's rank and dtype back (:func:`like`). The wrapper's signature
    is ``fn``'s with ``masks`` after ``image``, so it reads like a hand-written transform."""
    if fn is None:
        return functools.partial(image_only, hwc=hwc)
    name = fn.__name__

    @functools.wraps(fn)
    def transform(key: jax.Array, image: jax.Array, masks: jax.Array, **options: object) -> tuple[jax.Array, jax.Array]:
        check(image, masks, name)
        if hwc:
            return like(fn(key, to_hwc(image), **options), image), masks
        return fn(key, image, **options), masks

    params = list(inspect.signature(fn).parameters.values())
    masks_param = inspect.Parameter("masks", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    # inspect.signature reads __signature__; mypy's function types do not declare it
    transform.__signature__ = inspect.Signature(params[:2] + [masks_param] + params[2:])  # type: ignore[attr-defined]
    return transform


def to_uint8_levels(image: jax.Array) -> jax.Array:
    """[0, 1] float -> integer levels 0..255 (int32) by rounding, as albumentations' FromFloat and
    its uint8 round trip for float input (``rint(x * 255)`` clipped)."""
    return jnp.clip(jnp.round(image * 255.0), 0, 255).astype(jnp.int32)


def to_hwc(image: jax.Array) -> jax.Array:
    """(H, W) -> (H, W, 1); (H, W, C) unchanged."""
    return image[..., None] if image.ndim == 2 else image


def like(out_hwc: jax.Array, image: jax.Array) -> jax.Array:
    """Give an (H, W, C) result the rank and dtype of ``image``."""
    out = out_hwc[..., 0] if image.ndim == 2 else out_hwc
    return out.astype(image.dtype)


def uniform(key: jax.Array, bounds: tuple[float, float], shape: tuple[int, ...] = ()) -> jax.Array:
    """Uniform float32 draw in [lo, hi)."""
    lo, hi = bounds
    return jax.random.uniform(key, shape, jnp.float32, lo, hi)


def integers(u: jax.Array, lo: int | jax.Array, hi: int | jax.Array) -> jax.Array:
    """Integers uniform in [lo, hi) (int32, broadcast) from uniform draws ``u`` in [0, 1): one
    ``jax.random.uniform`` for several integer draws compiles much faster than a
    ``jax.random.randint`` each."""
    lo = jnp.asarray(lo, jnp.int32)
    span = jnp.asarray(hi, jnp.int32) - lo
    return lo + jnp.minimum(jnp.floor(u * span).astype(jnp.int32), span - 1)


def pad_reflect(image_hwc: jax.Array, ry: int, rx: int) -> jax.Array:
    """Pad rows by ry and columns by rx, mirroring without repeating the edge
    (OpenCV's BORDER_REFLECT_101)."""
    return jnp.pad(image_hwc, ((ry, ry), (rx, rx), (0, 0)), mode="reflect")


def filter2d(image_hwc: jax.Array, kernel: jax.Array) -> jax.Array:
    """Correlate every channel of (H, W, C) with a (kh, kw) kernel (odd, static sizes; weights may
    be traced), same size out, reflect-101 borders. A sum of shifted copies: on a CPU, XLA runs
    this an order of magnitude faster than a grouped convolution."""
    kh, kw = kernel.shape
    h, w = image_hwc.shape[:2]
    x = pad_reflect(image_hwc, kh // 2, kw // 2)
    kernel = kernel.astype(x.dtype)
    start = jnp.zeros((h, w) + x.shape[2:], x.dtype)
    return sum((kernel[i, j] * x[i : i + h, j : j + w] for i in range(kh) for j in range(kw)), start)


def separable(image_hwc: jax.Array, k_rows: jax.Array, k_cols: jax.Array) -> jax.Array:
    """Correlate (H, W, C) with k_rows along rows (axis 0) then k_cols along columns."""
    return filter2d(filter2d(image_hwc, k_rows[:, None]), k_cols[None, :])


def gaussian_kernel1d(sigma: jax.Array, radius: int) -> jax.Array:
    """Normalised sampled Gaussian of std ``sigma`` (pixels, may be traced) on taps -r..r."""
    x = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    w = jnp.exp(-0.5 * (x / jnp.maximum(sigma, 1e-3)) ** 2)
    return w / jnp.sum(w)


def pixel_grid(h: int, w: int) -> tuple[jax.Array, jax.Array]:
    """Continuous coordinates of the pixel centres: rows (H, 1) = r + 0.5, cols (1, W) = c + 0.5."""
    rows = jnp.arange(h, dtype=jnp.float32)[:, None] + 0.5
    cols = jnp.arange(w, dtype=jnp.float32)[None, :] + 0.5
    return rows, cols


@jax.custom_jvp
def straight_through(exact: jax.Array, smooth: jax.Array) -> jax.Array:
    """``exact``'s value with ``smooth``'s derivative: the stand-in gradient of a step (8-bit
    rounding, an integer colour conversion) by the smooth map it approximates. Same shapes."""
    del smooth
    return exact


@straight_through.defjvp
def _straight_through_jvp(primals, tangents):
    return primals[0], tangents[1]
