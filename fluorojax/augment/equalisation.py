"""Contrast-limited adaptive histogram equalisation (CLAHE), as OpenCV computes it on 8 bits.

A transform ``(key, image, masks) -> (image, masks)``; masks are returned untouched.

Gradient with respect to the image: the output is exact 8-bit levels (a step function of the
input), so its derivative is defined by a stand-in: the tile maps (each tile's clipped,
equalised histogram, computed from the quantised image) are held fixed and read between levels
by linear interpolation, and for RGB the colour conversions are OpenCV's formulas in floating
point. The derivative is then each pixel's local slope of the equalisation, which is what a
small change of the input does to the output on average.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from fluorojax.augment import _color, _image

__all__ = ["clahe"]


def _tile_maps(q: jax.Array, clip: jax.Array, grid: tuple[int, int]) -> jax.Array:
    """OpenCV's CLAHE maps (ty, tx, 256) float levels of one (H, W) int32 channel of levels:
    each tile's histogram clipped at ``clip`` times its mean bin count, the excess spread evenly,
    cumulated."""
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
    return lut.reshape(ty, tx, 256)


def _between_tiles(read, shape: tuple[int, ...], tiles: tuple[int, int], tile_px):
    """Bilinear blend of ``read(tile_rows, tile_cols)`` (H, W) over the four nearest tile
    centres, OpenCV's way (tile_px = (rows, columns) of a padded tile)."""

    def coords(n, size, count):
        f = jnp.arange(n, dtype=jnp.float32) / size - 0.5
        i1 = jnp.floor(f).astype(jnp.int32)
        return jnp.maximum(i1, 0), jnp.minimum(i1 + 1, count - 1), f - i1

    y1, y2, ya = (v[:, None] for v in coords(shape[0], tile_px[0], tiles[0]))
    x1, x2, xa = (v[None, :] for v in coords(shape[1], tile_px[1], tiles[1]))
    top = read(y1, x1) * (1 - xa) + read(y1, x2) * xa
    bottom = read(y2, x1) * (1 - xa) + read(y2, x2) * xa
    return top * (1 - ya) + bottom * ya


def _tile_px(shape, grid):
    return (shape[0] + -shape[0] % grid[0]) // grid[0], (shape[1] + -shape[1] % grid[1]) // grid[1]


def _equalise(q: jax.Array, lut: jax.Array, grid) -> jax.Array:
    """Exact output levels (H, W) int32 of levels q under the tile maps."""
    out = _between_tiles(lambda r, c: lut[r, c, q], q.shape, grid, _tile_px(q.shape, grid))
    return jnp.clip(jnp.round(out), 0, 255).astype(jnp.int32)


def _equalise_smooth(v: jax.Array, lut: jax.Array, grid) -> jax.Array:
    """The stand-in of :func:`_equalise` for continuous levels v (H, W): maps read linearly
    between levels, no rounding."""
    q0 = jnp.clip(jnp.floor(v), 0, 254).astype(jnp.int32)
    frac = v - q0

    def read(r, c):
        return lut[r, c, q0] + frac * (lut[r, c, q0 + 1] - lut[r, c, q0])

    return _between_tiles(read, v.shape, grid, _tile_px(v.shape, grid))


def _quantise(v: jax.Array) -> jax.Array:
    return jnp.clip(jnp.round(v), 0, 255).astype(jnp.int32)


@functools.partial(jax.custom_jvp, nondiff_argnums=(2,))
def _clahe_levels(v: jax.Array, clip: jax.Array, grid: tuple[int, int]) -> jax.Array:
    """CLAHE of continuous levels v (H, W, C), quantised first; exact float levels out.
    C = 3 is RGB equalised on LAB lightness, any other C channel by channel."""
    q = _quantise(v)
    if v.shape[-1] == 3:
        lab = _color.rgb_to_lab(q)
        lum = _equalise(lab[..., 0], _tile_maps(lab[..., 0], clip, grid), grid)
        return _color.lab_to_rgb(lab.at[..., 0].set(lum)).astype(jnp.float32)
    channels = [_equalise(q[..., i], _tile_maps(q[..., i], clip, grid), grid) for i in range(v.shape[-1])]
    return jnp.stack(channels, axis=-1).astype(jnp.float32)


@_clahe_levels.defjvp
def _clahe_levels_jvp(grid, primals, tangents):
    v, clip = primals
    dv, _ = tangents
    q = _quantise(v)
    if v.shape[-1] == 3:
        lut = jax.lax.stop_gradient(_tile_maps(_color.rgb_to_lab(q)[..., 0], clip, grid))

        def smooth(x):
            lab = _color.rgb_to_lab_float(x)
            return _color.lab_to_rgb_float(lab.at[..., 0].set(_equalise_smooth(lab[..., 0], lut, grid)))

    else:
        luts = [jax.lax.stop_gradient(_tile_maps(q[..., i], clip, grid)) for i in range(v.shape[-1])]

        def smooth(x):
            return jnp.stack([_equalise_smooth(x[..., i], luts[i], grid) for i in range(x.shape[-1])], -1)

    _, dout = jax.jvp(smooth, (v,), (dv,))
    return _clahe_levels(v, clip, grid), dout


@_image.image_only(hwc=True)
def clahe(
    key: jax.Array,
    image: jax.Array,
    *,
    clip_limit: tuple[float, float] = (4.0, 6.0),
    grid: tuple[int, int] = (8, 8),
) -> jax.Array:
    """Contrast-limited adaptive histogram equalisation (albumentations' CLAHE on the image as
    uint8).

    The [0, 1] image is quantised to 256 levels; ``grid`` = (tile rows, tile columns) (static;
    the image is mirror-padded to a multiple of it); each tile's histogram is clipped at
    ``clip_limit`` (drawn uniformly from the range) times its mean bin count, the excess spread
    evenly, and its cumulative sum is the tile's map; each pixel interpolates bilinearly between
    the maps of the four nearest tile centres. Matches OpenCV's ``createCLAHE`` on uint8 input
    (note ``tileGridSize`` is (columns, rows) there). A 3-channel image is taken as RGB and, as
    albumentations does, equalised on the L channel of OpenCV's 8-bit LAB and converted back;
    any other channel count is equalised channel by channel. Returns levels / 255.

    Gradient: the local slope of the equalisation with the tile maps held fixed (see the module
    docstring).
    """
    clip = _image.uniform(key, clip_limit)
    return _clahe_levels(image.astype(jnp.float32) * 255.0, clip, tuple(int(g) for g in grid)) / 255.0
