"""Geometric augmentations: they move pixels, and the masks move with the image.

Transforms ``(key, image, masks) -> (image, masks)``; image (H, W) or (H, W, C) float32, masks
(N, H, W) float or bool. Coordinates follow fluorojax's convention: pixel (r, c) covers
[c, c+1) x [r, r+1) and its centre is the continuous point (x, y) = (c + 0.5, r + 0.5).
The image is resampled linearly; masks by nearest neighbour (``mask_interpolation="nearest"``,
default: labels stay crisp and bool stays bool) or linearly (``"linear"``: soft float masks;
bool masks are then thresholded at 0.5). Outside the input the image takes ``fill`` and masks 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.scipy.ndimage import map_coordinates

from fluorojax.augment import _image

__all__ = ["resize", "sample_affine", "warp_affine", "random_affine", "elastic"]

_MASK_ORDERS = {"nearest": 0, "linear": 1}


def _mask_order(mask_interpolation: str) -> int:
    if mask_interpolation not in _MASK_ORDERS:
        raise ValueError(f"mask_interpolation must be one of {sorted(_MASK_ORDERS)}, got {mask_interpolation!r}")
    return _MASK_ORDERS[mask_interpolation]


def _cast_mask(values: jax.Array, dtype) -> jax.Array:
    if dtype == jnp.bool_:
        return values >= 0.5
    return values.astype(dtype)


def resize(
    key: jax.Array, image: jax.Array, masks: jax.Array, *, shape: tuple[int, int]
) -> tuple[jax.Array, jax.Array]:
    """Resize to ``shape`` = (H', W') (static): image bilinear without antialiasing (OpenCV's
    INTER_LINEAR, half-pixel centres), masks nearest. The same shape returns the input."""
    del key
    _image.check(image, masks, "resize")
    h, w = int(shape[0]), int(shape[1])
    if h < 1 or w < 1:
        raise ValueError(f"resize: shape must be two positive ints, got {shape}")
    if (h, w) == image.shape[:2]:
        return image, masks
    out = jax.image.resize(image, (h, w) + image.shape[2:], "linear", antialias=False)
    m = jax.image.resize(masks.astype(jnp.float32), (masks.shape[0], h, w), "nearest")
    return out.astype(image.dtype), _cast_mask(m, masks.dtype)


def sample_affine(
    key: jax.Array,
    shape: tuple[int, int],
    *,
    rotation_deg: tuple[float, float] = (-15.0, 15.0),
    scale: tuple[float, float] = (0.9, 1.1),
    translate: tuple[float, float] = (-0.05, 0.05),
    shear_deg: tuple[float, float] = (-5.0, 5.0),
) -> jax.Array:
    """A random (3, 3) affine map of continuous pixel coordinates [x, y, 1] (x along columns,
    y along rows) for an image of ``shape`` = (H, W), about the image centre: scale (isotropic),
    then shear along x, then rotation (positive turns +x toward +y), then a translation of a
    fraction of (W, H). Each parameter is uniform in its range."""
    h, w = shape
    k_r, k_s, k_t, k_h = jax.random.split(key, 4)
    theta = jnp.deg2rad(_image.uniform(k_r, rotation_deg))
    s = _image.uniform(k_s, scale)
    t = _image.uniform(k_t, translate, (2,)) * jnp.asarray([w, h], jnp.float32)
    shear = jnp.tan(jnp.deg2rad(_image.uniform(k_h, shear_deg)))
    c, sn = jnp.cos(theta), jnp.sin(theta)
    rot = jnp.asarray([[c, -sn], [sn, c]])
    lin = rot @ jnp.asarray([[1.0, shear], [0.0, 1.0]]) @ (s * jnp.eye(2))
    centre = jnp.asarray([w / 2.0, h / 2.0], jnp.float32)
    offset = centre + t - lin @ centre
    top = jnp.concatenate([lin, offset[:, None]], axis=1)
    return jnp.concatenate([top, jnp.asarray([[0.0, 0.0, 1.0]])], axis=0).astype(jnp.float32)


def _remap(image, masks, src_y, src_x, mask_interpolation: str, fill: float):
    """Sample image and masks at continuous source points (H, W) each (pixel-centre convention)."""
    order = _mask_order(mask_interpolation)
    coords = [src_y - 0.5, src_x - 0.5]  # continuous -> array index

    def sample(plane, o, cval):
        return map_coordinates(plane, coords, order=o, mode="constant", cval=cval)

    x = _image.to_hwc(image).astype(jnp.float32)
    out = jax.vmap(lambda p: sample(p, 1, fill), in_axes=-1, out_axes=-1)(x)
    m = jax.vmap(lambda p: sample(p, order, 0.0))(masks.astype(jnp.float32))
    return _image.like(out, image), _cast_mask(m, masks.dtype)


def warp_affine(
    image: jax.Array, masks: jax.Array, matrix: jax.Array, *, mask_interpolation: str = "nearest", fill: float = 0.0
) -> tuple[jax.Array, jax.Array]:
    """Warp image (H, W[, C]) and masks (N, H, W) by ``matrix`` (3, 3): the content at input
    point p moves to ``matrix @ p`` (continuous pixel coordinates, see module docstring)."""
    _image.check(image, masks, "warp_affine")
    if matrix.shape != (3, 3):
        raise ValueError(f"warp_affine: matrix must be (3, 3), got {matrix.shape}")
    h, w = image.shape[:2]
    rows, cols = _image.pixel_grid(h, w)
    inv = jnp.linalg.inv(matrix.astype(jnp.float32))
    src_x = inv[0, 0] * cols + inv[0, 1] * rows + inv[0, 2]
    src_y = inv[1, 0] * cols + inv[1, 1] * rows + inv[1, 2]
    return _remap(image, masks, src_y, src_x, mask_interpolation, fill)


def random_affine(
    key: jax.Array,
    image: jax.Array,
    masks: jax.Array,
    *,
    rotation_deg: tuple[float, float] = (-15.0, 15.0),
    scale: tuple[float, float] = (0.9, 1.1),
    translate: tuple[float, float] = (-0.05, 0.05),
    shear_deg: tuple[float, float] = (-5.0, 5.0),
    mask_interpolation: str = "nearest",
    fill: float = 0.0,
) -> tuple[jax.Array, jax.Array]:
    """Warp by ``sample_affine(key, (H, W), ...)`` (same key, same matrix)."""
    _image.check(image, masks, "random_affine")
    matrix = sample_affine(
        key,
        (image.shape[0], image.shape[1]),
        rotation_deg=rotation_deg,
        scale=scale,
        translate=translate,
        shear_deg=shear_deg,
    )
    return warp_affine(image, masks, matrix, mask_interpolation=mask_interpolation, fill=fill)


def elastic(
    key: jax.Array,
    image: jax.Array,
    masks: jax.Array,
    *,
    alpha_px: tuple[float, float] = (0.0, 4.0),
    grid: tuple[int, int] = (4, 4),
    mask_interpolation: str = "nearest",
    fill: float = 0.0,
) -> tuple[jax.Array, jax.Array]:
    """Smooth random deformation: a displacement field of standard normal values on a ``grid``
    (static) lattice, upsampled cubically to (H, W) and scaled by a magnitude drawn from
    ``alpha_px`` (pixels); output pixel p samples the input at p + d(p)."""
    _image.check(image, masks, "elastic")
    h, w = image.shape[:2]
    k_a, k_d = jax.random.split(key)
    coarse = jax.random.normal(k_d, (2,) + tuple(grid), jnp.float32)
    d = jax.image.resize(coarse, (2, h, w), "cubic") * _image.uniform(k_a, alpha_px)
    rows, cols = _image.pixel_grid(h, w)
    return _remap(image, masks, rows + d[0], cols + d[1], mask_interpolation, fill)
