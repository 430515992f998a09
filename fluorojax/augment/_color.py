"""OpenCV's 8-bit colour conversions (``cv2.cvtColor`` with ``COLOR_RGB2LAB``, ``COLOR_LAB2RGB``,
``COLOR_RGB2HSV``, ``COLOR_HSV2RGB`` on uint8), in JAX on int32 levels 0..255.

The albumentations steps of the FluoroSeg pipeline call these: CLAHE equalises the L channel of
LAB for a 3-channel image, drizzle darkens the V channel of HSV.

* RGB <-> HSV follow OpenCV's integer implementation: V = max, S and H from 12-bit fixed-point
  reciprocal tables (H in 0..179, two degrees a level); the way back is OpenCV's vectorised float32
  path (sector of H / 30, truncation to levels). Bit-exact against OpenCV's forward conversion; the
  inverse can differ by one level where OpenCV's build contracts ``1 - s h`` into a fused
  multiply-add.
* RGB -> LAB follows OpenCV's documented formulas (sRGB gamma, D65 white, the 0.008856
  threshold of the cube root, L scaled by 255 / 100, a and b offset by 128) in the fixed point
  of its 8-bit code (tables of the gamma and of the cube root, 12- and 15-bit shifts): L
  bit-exact, a and b one level off for a few colours in 10^4. LAB -> RGB evaluates the
  inverse formulas in float32 and rounds: within two levels of OpenCV's fixed-point inverse.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_HSV_SHIFT = 12
_LEVELS = np.arange(1, 256, dtype=np.float64)
# 2^12-scaled reciprocals: S = diff * 255 / V and H = h' * 180 / (6 diff), index 0 unused (0)
_S_DIV = np.concatenate([[0], np.round((255 << _HSV_SHIFT) / _LEVELS)]).astype(np.int32)
_H_DIV = np.concatenate([[0], np.round((180 << _HSV_SHIFT) / (6.0 * _LEVELS))]).astype(np.int32)
# (b, g, r) picks from (v, p, q, t) per 60-degree sector of the hue
_SECTOR_PICKS = np.array([[1, 3, 0], [1, 0, 2], [3, 0, 1], [0, 2, 1], [0, 1, 3], [2, 1, 0]])


def _descale(x: jax.Array) -> jax.Array:
    return jnp.right_shift(x + (1 << (_HSV_SHIFT - 1)), _HSV_SHIFT)


def rgb_to_hsv(rgb: jax.Array) -> jax.Array:
    """(..., 3) int32 RGB levels -> (..., 3) int32 (H 0..179, S 0..255, V 0..255)."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    v = jnp.maximum(jnp.maximum(r, g), b)
    diff = v - jnp.minimum(jnp.minimum(r, g), b)
    s = _descale(diff * jnp.asarray(_S_DIV)[v])
    h = jnp.where(v == r, g - b, jnp.where(v == g, b - r + 2 * diff, r - g + 4 * diff))
    h = _descale(h * jnp.asarray(_H_DIV)[diff])
    h = jnp.where(h < 0, h + 180, h)
    return jnp.stack([h, s, v], axis=-1)


def hsv_to_rgb(hsv: jax.Array) -> jax.Array:
    """(..., 3) int32 (H 0..179, S, V) -> (..., 3) int32 RGB levels."""
    f32 = jnp.float32
    h = hsv[..., 0].astype(f32) * f32(6.0 / 180.0)
    s = hsv[..., 1].astype(f32) * f32(1.0 / 255.0)
    v = hsv[..., 2].astype(f32) * f32(1.0 / 255.0)
    sector_f = jnp.trunc(h)
    frac = h - sector_f
    table = jnp.stack([v, v * (1 - s), v * (1 - s * frac), v * (1 - s * (1 - frac))], axis=-1)
    sector = sector_f - jnp.trunc(sector_f * f32(1.0 / 6.0)) * 6
    rgb = []
    for c in (2, 1, 0):  # OpenCV's table lists (b, g, r)
        pick = table[..., int(_SECTOR_PICKS[5, c])]
        for s_i in range(4, -1, -1):  # a chain of selects: a gather along the last axis is slow
            pick = jnp.where(sector == s_i, table[..., int(_SECTOR_PICKS[s_i, c])], pick)
        rgb.append(pick)
    return jnp.clip(jnp.trunc(jnp.stack(rgb, axis=-1) * f32(255.0)), 0, 255).astype(jnp.int32)


def _mat3(m: np.ndarray, x: jax.Array) -> jax.Array:
    """``x @ m.T`` for (..., 3) x as multiply-adds (XLA:CPU runs a dot over a trailing axis of 3
    an order of magnitude slower)."""
    return jnp.stack([sum(x[..., j] * m[i, j].item() for j in range(3)) for i in range(3)], axis=-1)


_RGB_TO_XYZ = np.array([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]])
_WHITE = np.array([0.950456, 1.0, 1.088754])
_CBRT_T = 0.008856  # below it the cube root is replaced by a line
_LINE_K = 7.787  # slope of that line
_L_K = 903.3  # L = 903.3 Y below the threshold


def _srgb_to_linear(x):
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(x):
    return jnp.where(x <= 0.0031308, 12.92 * x, 1.055 * jnp.maximum(x, 0.0031308) ** (1 / 2.4) - 0.055)


def _f(t):
    return np.where(t > _CBRT_T, np.cbrt(t), _LINE_K * t + 16.0 / 116.0)


# RGB -> LAB in OpenCV's 8-bit fixed point: sRGB-linearised levels times 8, the XYZ matrix over
# the white point times 2^12, the cube root (or its line) tabulated times 2^15 over levels / 2040
_GAMMA_SHIFT, _LAB_SHIFT, _LAB_SHIFT2 = 3, 12, 15
_GAMMA_TAB = np.round(255 * (1 << _GAMMA_SHIFT) * _srgb_to_linear(np.arange(256) / 255.0)).astype(np.int32)
_XYZ_FIXED = np.round((1 << _LAB_SHIFT) * _RGB_TO_XYZ / _WHITE[:, None]).astype(np.int32)
_CBRT_X = np.arange(3 * 256 // 2 * (1 << _GAMMA_SHIFT)) / (255.0 * (1 << _GAMMA_SHIFT))
_CBRT_TAB = np.round((1 << _LAB_SHIFT2) * _f(_CBRT_X)).astype(np.int32)


def _shift_round(x, n: int):
    return jnp.right_shift(x + (1 << (n - 1)), n)


def rgb_to_lab(rgb: jax.Array) -> jax.Array:
    """(..., 3) int32 RGB levels -> (..., 3) int32 LAB levels (L 255/100 per unit, a and b + 128),
    in OpenCV's fixed point (its tables rebuilt from the formulas)."""
    lin = jnp.asarray(_GAMMA_TAB)[rgb]
    xyz = _shift_round(_mat3(_XYZ_FIXED, lin), _LAB_SHIFT)
    fx, fy, fz = (jnp.asarray(_CBRT_TAB)[xyz[..., i]] for i in range(3))
    one = 1 << _LAB_SHIFT2
    lum = _shift_round((116 * 255 + 50) // 100 * fy - (16 * 255 * one + 50) // 100, _LAB_SHIFT2)
    a = _shift_round(500 * (fx - fy) + 128 * one, _LAB_SHIFT2)
    b = _shift_round(200 * (fy - fz) + 128 * one, _LAB_SHIFT2)
    return jnp.clip(jnp.stack([lum, a, b], axis=-1), 0, 255)


def rgb_to_lab_float(rgb: jax.Array) -> jax.Array:
    """(..., 3) float RGB levels -> (..., 3) float LAB levels by OpenCV's formulas without its
    fixed point or rounding: the differentiable stand-in for :func:`rgb_to_lab` (within about a
    level of it)."""
    x = jnp.clip(rgb / 255.0, 0.0, 1.0)
    lin = jnp.where(x <= 0.04045, x / 12.92, ((jnp.maximum(x, 0.04045) + 0.055) / 1.055) ** 2.4)
    xyz = _mat3((_RGB_TO_XYZ / _WHITE[:, None]).astype(np.float32), lin)
    f = jnp.where(xyz > _CBRT_T, jnp.cbrt(jnp.maximum(xyz, _CBRT_T)), _LINE_K * xyz + 16.0 / 116.0)
    lum = (116.0 * f[..., 1] - 16.0) * (255.0 / 100.0)
    a = 500.0 * (f[..., 0] - f[..., 1]) + 128.0
    b = 200.0 * (f[..., 1] - f[..., 2]) + 128.0
    return jnp.stack([lum, a, b], axis=-1)


def lab_to_rgb_float(lab: jax.Array) -> jax.Array:
    """(..., 3) LAB levels -> (..., 3) float RGB levels in [0, 255], not rounded (the inverse of
    :func:`rgb_to_lab`, differentiable)."""
    lab = lab.astype(jnp.float32)
    lum = lab[..., 0] * (100.0 / 255.0)
    a, b = lab[..., 1] - 128.0, lab[..., 2] - 128.0
    low = lum <= _L_K * _CBRT_T
    y = jnp.where(low, lum / _L_K, ((lum + 16.0) / 116.0) ** 3)
    fy = jnp.where(low, _LINE_K * y + 16.0 / 116.0, (lum + 16.0) / 116.0)
    f_xz = jnp.stack([fy + a / 500.0, fy - b / 200.0], axis=-1)
    xz = jnp.where(f_xz > _CBRT_T ** (1 / 3), f_xz**3, (f_xz - 16.0 / 116.0) / _LINE_K)
    xyz = jnp.stack([xz[..., 0], y, xz[..., 1]], axis=-1) * jnp.asarray(_WHITE, jnp.float32)
    lin = _mat3(np.linalg.inv(_RGB_TO_XYZ).astype(np.float32), xyz)
    return _linear_to_srgb(jnp.clip(lin, 0.0, 1.0)) * 255.0


def lab_to_rgb(lab: jax.Array) -> jax.Array:
    """(..., 3) int32 LAB levels -> (..., 3) int32 RGB levels (inverse of :func:`rgb_to_lab`)."""
    return jnp.clip(jnp.round(lab_to_rgb_float(lab)), 0, 255).astype(jnp.int32)
