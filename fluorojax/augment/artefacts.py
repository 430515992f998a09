"""Image artefacts: dropout, collimator shutters, burnt-in text and side markers.

Transforms ``(key, image, masks) -> (image, masks)``; image (H, W) or (H, W, C) float32 in
[0, 1]. All of them change only the image: masks keep describing the anatomy and tools, which
are still there behind a dropped pixel, a shutter or a burnt-in marker.

Gradients with respect to the image: exact; zero on dropped, blocked or inked pixels, whose
places (like the shutters' and the text's) depend only on the key.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from fluorojax.augment import _image

__all__ = ["FONT", "pixel_dropout", "coarse_dropout", "collimator", "burnt_in_text"]


@_image.image_only(hwc=True)
def pixel_dropout(key: jax.Array, image: jax.Array, *, probability: float = 0.05, value: float = 0.0) -> jax.Array:
    """Set each pixel (all channels together) to ``value`` with probability ``probability``."""
    drop = jax.random.bernoulli(key, probability, image.shape[:2])
    return jnp.where(drop[..., None], jnp.asarray(value, image.dtype), image)


@_image.image_only(hwc=True)
def coarse_dropout(
    key: jax.Array,
    image: jax.Array,
    *,
    holes: tuple[int, int] = (8, 20),
    height: tuple[int, int] = (8, 64),
    width: tuple[int, int] = (8, 64),
    value: float = 0.0,
) -> jax.Array:
    """Fill a number of rectangles (count uniform in ``holes``, inclusive) of ``height`` x
    ``width`` pixels (each uniform, inclusive), placed uniformly inside the image, with
    ``value``."""
    h, w = image.shape[:2]
    n_max = int(holes[1])
    u = jax.random.uniform(key, (5, n_max))
    count = _image.integers(u[0, 0], int(holes[0]), n_max + 1)
    hh = jnp.minimum(_image.integers(u[1], int(height[0]), int(height[1]) + 1), h)
    ww = jnp.minimum(_image.integers(u[2], int(width[0]), int(width[1]) + 1), w)
    r0 = jnp.floor(u[3] * (h - hh + 1)).astype(jnp.int32)
    c0 = jnp.floor(u[4] * (w - ww + 1)).astype(jnp.int32)
    rows = jnp.arange(h)[None, :]
    cols = jnp.arange(w)[None, :]
    in_r = (rows >= r0[:, None]) & (rows < (r0 + hh)[:, None])  # (n, H)
    in_c = (cols >= c0[:, None]) & (cols < (c0 + ww)[:, None])  # (n, W)
    active = (jnp.arange(n_max) < count).astype(jnp.float32)[:, None]
    covered = jnp.einsum("nh,nw->hw", in_r * active, in_c.astype(jnp.float32)) > 0
    return jnp.where(covered[..., None], jnp.asarray(value, image.dtype), image)


@_image.image_only(hwc=True)
def collimator(
    key: jax.Array,
    image: jax.Array,
    *,
    margin: tuple[float, float] = (0.0, 0.2),
    angle_deg: tuple[float, float] = (-10.0, 10.0),
    iris: tuple[float, float] = (0.8, 1.5),
    level: tuple[float, float] = (0.0, 0.1),
    edge_px: float = 1.5,
) -> jax.Array:
    """Collimator shutters and iris: outside the open field the image becomes ``level``.

    Four straight shutters, each set in from its image edge by a fraction of the image size
    drawn from ``margin``, all turned by an angle from ``angle_deg`` about the image centre;
    a circular iris of radius drawn from ``iris`` in units of half the image diagonal (above 1
    it does not cut); edges are soft over about ``edge_px`` pixels (logistic). The blocked
    region's value is drawn from ``level``.
    """
    h, w = image.shape[:2]
    k_m, k_a, k_i, k_l = jax.random.split(key, 4)
    m = _image.uniform(k_m, margin, (4,))
    theta = jnp.deg2rad(_image.uniform(k_a, angle_deg))
    rows, cols = _image.pixel_grid(h, w)
    y, x = rows - h / 2.0, cols - w / 2.0
    u = jnp.cos(theta) * x + jnp.sin(theta) * y  # shutter frame, pixels from the centre
    v = -jnp.sin(theta) * x + jnp.cos(theta) * y
    inside = [
        u + w / 2.0 - m[0] * w,  # left shutter
        w / 2.0 - m[1] * w - u,  # right
        v + h / 2.0 - m[2] * h,  # top
        h / 2.0 - m[3] * h - v,  # bottom
        _image.uniform(k_i, iris) * 0.5 * math.hypot(h, w) - jnp.hypot(x, y),  # iris
    ]
    open_field = jnp.prod(jnp.stack([jax.nn.sigmoid(d / edge_px) for d in inside]), axis=0)[..., None]
    lvl = _image.uniform(k_l, level)
    return image * open_field + lvl * (1.0 - open_field)


_GLYPHS = {
    " ": [".....", ".....", ".....", ".....", ".....", ".....", "....."],
    "L": ["#....", "#....", "#....", "#....", "#....", "#....", "#####"],
    "R": ["####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"],
    "A": [".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"],
    "P": ["####.", "#...#", "#...#", "####.", "#....", "#....", "#...."],
    "H": ["#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"],
    "F": ["#####", "#....", "#....", "####.", "#....", "#....", "#...."],
    "S": [".####", "#....", "#....", ".###.", "....#", "....#", "####."],
    "I": ["#####", "..#..", "..#..", "..#..", "..#..", "..#..", "#####"],
    "T": ["#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."],
    "M": ["#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"],
    "C": [".####", "#....", "#....", "#....", "#....", "#....", ".####"],
    "0": [".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."],
    "1": ["..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."],
    "2": [".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"],
    "3": ["####.", "....#", "....#", ".###.", "....#", "....#", "####."],
    "4": ["...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."],
    "5": ["#####", "#....", "####.", "....#", "....#", "#...#", ".###."],
    "6": [".###.", "#....", "#....", "####.", "#...#", "#...#", ".###."],
    "7": ["#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."],
    "8": [".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."],
    "9": [".###.", "#...#", "#...#", ".####", "....#", "....#", ".###."],
    ":": [".....", "..#..", ".....", ".....", ".....", "..#..", "....."],
    "-": [".....", ".....", ".....", ".###.", ".....", ".....", "....."],
    ".": [".....", ".....", ".....", ".....", ".....", ".....", "..#.."],
}
FONT: dict[str, np.ndarray] = {
    ch: np.array([[c == "#" for c in row] for row in rows], bool) for ch, rows in _GLYPHS.items()
}
"""5 x 7 bitmap font (True = ink) for side markers and simple annotations: the characters
``" LRAPHFSITMC0123456789:-."``."""


def _render_text(text: str) -> np.ndarray:
    """(7, 6 len - 1) bool bitmap of ``text``, one blank column between glyphs."""
    unknown = sorted(set(text) - set(FONT))
    if not text or unknown:
        raise ValueError(
            f"burnt_in_text: text {text!r} must be non-empty and use only {''.join(FONT)!r}; unknown {unknown}"
        )
    gap = np.zeros((7, 1), bool)
    parts = []
    for ch in text:
        parts += [FONT[ch], gap]
    return np.concatenate(parts[:-1], axis=1)


@_image.image_only(hwc=True)
def burnt_in_text(
    key: jax.Array,
    image: jax.Array,
    *,
    texts: tuple[str, ...] = ("L", "R"),
    height_px: tuple[float, float] = (8.0, 24.0),
    value: tuple[float, float] = (0.9, 1.0),
) -> jax.Array:
    """Burn one of ``texts`` (drawn uniformly) into the image with the 5 x 7 :data:`FONT`.

    The glyph cell is scaled so the text is a height drawn from ``height_px`` pixels tall
    (nearest-neighbour), placed uniformly where it fits, and its ink pixels are set to a value
    drawn from ``value`` in every channel.
    """
    h, w = image.shape[:2]
    bitmaps = [_render_text(t) for t in texts]
    widest = max(b.shape[1] for b in bitmaps)
    stack = jnp.asarray(np.stack([np.pad(b, ((0, 0), (0, widest - b.shape[1]))) for b in bitmaps]))
    widths = jnp.asarray([b.shape[1] for b in bitmaps], jnp.float32)
    k_t, k_s, k_r, k_c, k_v = jax.random.split(key, 5)
    index = jax.random.randint(k_t, (), 0, len(texts))
    scale = _image.uniform(k_s, height_px) / 7.0
    box_w = widths[index] * scale
    r0 = jax.random.uniform(k_r) * jnp.maximum(h - 7.0 * scale, 0.0)
    c0 = jax.random.uniform(k_c) * jnp.maximum(w - box_w, 0.0)
    rows, cols = _image.pixel_grid(h, w)
    gi = jnp.floor((rows - r0) / scale).astype(jnp.int32)
    gj = jnp.floor((cols - c0) / scale).astype(jnp.int32)
    inside = (gi >= 0) & (gi < 7) & (gj >= 0) & (gj < widths[index])
    ink = inside & stack[index, jnp.clip(gi, 0, 6), jnp.clip(gj, 0, widest - 1)]
    return jnp.where(ink[..., None], _image.uniform(k_v, value), image)
