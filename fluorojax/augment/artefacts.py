"""Image artefacts: dropout, drizzle, collimator shutters, burnt-in text and side markers.

Transforms ``(key, image, masks) -> (image, masks)``; image (H, W) or (H, W, C) float32 in
[0, 1]. All of them change only the image: masks keep describing the anatomy and tools, which
are still there behind a dropped pixel, a shutter or a burnt-in marker.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from fluorojax.augment import _color, _image

__all__ = ["FONT", "pixel_dropout", "coarse_dropout", "drizzle", "collimator", "burnt_in_text"]


@_image.image_only(hwc=True)
def pixel_dropout(key, image, *, probability: float = 0.05, value: float = 0.0):
    """Set each pixel (all channels together) to ``value`` with probability ``probability``."""
    drop = jax.random.bernoulli(key, probability, image.shape[:2])
    return jnp.where(drop[..., None], jnp.asarray(value, image.dtype), image)


@_image.image_only(hwc=True)
def coarse_dropout(
    key,
    image,
    *,
    holes: tuple[int, int] = (8, 20),
    height: tuple[int, int] = (8, 64),
    width: tuple[int, int] = (8, 64),
    value: float = 0.0,
):
    """Fill a number of rectangles (count uniform in ``holes``, inclusive) of ``height`` x
    ``width`` pixels (each uniform, inclusive), placed uniformly inside the image, with
    ``value``."""
    h, w = image.shape[:2]
    n_max = int(holes[1])
    k_n, k_h, k_w, k_r, k_c = jax.random.split(key, 5)
    count = jax.random.randint(k_n, (), int(holes[0]), n_max + 1)
    hh = jnp.minimum(jax.random.randint(k_h, (n_max,), int(height[0]), int(height[1]) + 1), h)
    ww = jnp.minimum(jax.random.randint(k_w, (n_max,), int(width[0]), int(width[1]) + 1), w)
    r0 = jnp.floor(jax.random.uniform(k_r, (n_max,)) * (h - hh + 1)).astype(jnp.int32)
    c0 = jnp.floor(jax.random.uniform(k_c, (n_max,)) * (w - ww + 1)).astype(jnp.int32)
    rows = jnp.arange(h)[None, :]
    cols = jnp.arange(w)[None, :]
    in_r = (rows >= r0[:, None]) & (rows < (r0 + hh)[:, None])  # (n, H)
    in_c = (cols >= c0[:, None]) & (cols < (c0 + ww)[:, None])  # (n, W)
    active = (jnp.arange(n_max) < count).astype(jnp.float32)[:, None]
    covered = jnp.einsum("nh,nw->hw", in_r * active, in_c.astype(jnp.float32)) > 0
    return jnp.where(covered[..., None], jnp.asarray(value, image.dtype), image)


_DRIZZLE_AREA = 770  # one drop per this many pixels
_DRIZZLE_LENGTH = 10  # rows from a drop's top to its bottom end


def _trunc_div(n: jax.Array, d: jax.Array) -> jax.Array:
    """Integer division rounding toward zero (C's), for d != 0."""
    q = jnp.abs(n) // jnp.abs(d)
    return jnp.where((n < 0) != (d < 0), -q, q)


def _clip_segment(x1, y1, x2, y2, w: int, h: int):
    """OpenCV's ``clipLine`` to the (w, h) image on integer endpoints (N,) each: ends outside
    move to the crossing of the top or bottom edge, then of the left or right edge (the offset
    along the other axis rounded toward zero). Returns the new ends and whether any part is
    inside."""
    right, bottom = w - 1, h - 1

    def code(x, y):
        return (x < 0) * 1 + (x > right) * 2 + (y < 0) * 4 + (y > bottom) * 8

    def nonzero(d):
        return jnp.where(d == 0, 1, d)

    c1, c2 = code(x1, y1), code(x2, y2)
    go = ((c1 & c2) == 0) & ((c1 | c2) != 0)
    m = go & ((c1 & 12) != 0)
    a = jnp.where(c1 < 8, 0, bottom)
    x1 = jnp.where(m, x1 + _trunc_div((a - y1) * (x2 - x1), nonzero(y2 - y1)), x1)
    y1 = jnp.where(m, a, y1)
    c1 = jnp.where(m, (x1 < 0) * 1 + (x1 > right) * 2, c1)
    m = go & ((c2 & 12) != 0)
    a = jnp.where(c2 < 8, 0, bottom)
    x2 = jnp.where(m, x2 + _trunc_div((a - y2) * (x2 - x1), nonzero(y2 - y1)), x2)
    y2 = jnp.where(m, a, y2)
    c2 = jnp.where(m, (x2 < 0) * 1 + (x2 > right) * 2, c2)
    go = go & ((c1 & c2) == 0) & ((c1 | c2) != 0)
    m = go & (c1 != 0)
    a = jnp.where(c1 == 1, 0, right)
    y1 = jnp.where(m, y1 + _trunc_div((a - x1) * (y2 - y1), nonzero(x2 - x1)), y1)
    x1 = jnp.where(m, a, x1)
    c1 = jnp.where(m, 0, c1)
    m = go & (c2 != 0)
    a = jnp.where(c2 == 1, 0, right)
    y2 = jnp.where(m, y2 + _trunc_div((a - x2) * (y2 - y1), nonzero(x2 - x1)), y2)
    x2 = jnp.where(m, a, x2)
    c2 = jnp.where(m, 0, c2)
    return x1, y1, x2, y2, (c1 | c2) == 0


def _line_pixels(x1, y1, x2, y2, steps: int):
    """Pixels of OpenCV's 8-connected one-pixel line (``cv2.line``, thickness 1) from integer
    ends (N,) each, walked from the left end (Bresenham). Returns columns, rows (N, steps) and
    which of the ``steps`` (static) positions are on the line."""
    swap = x2 < x1
    x1, y1, x2, y2 = (jnp.where(swap, b, a) for a, b in ((x1, x2), (y1, y2), (x2, x1), (y2, y1)))
    dx, dy = x2 - x1, y2 - y1
    sy = jnp.where(dy < 0, -1, 1)
    along_y = jnp.abs(dy) > dx
    major = jnp.maximum(dx, jnp.abs(dy))
    minor = jnp.minimum(dx, jnp.abs(dy))
    err = major - 2 * minor
    x, y = x1, y1
    cols, rows = [], []
    for _ in range(steps):
        cols.append(x)
        rows.append(y)
        diagonal = err < 0
        err = err - 2 * minor + jnp.where(diagonal, 2 * major, 0)
        x = x + jnp.where(along_y, diagonal, 1)
        y = y + sy * jnp.where(along_y, 1, diagonal)
    on = jnp.arange(steps)[None, :] <= major[:, None]
    return jnp.stack(cols, axis=1), jnp.stack(rows, axis=1), on


def _box_blur_levels(q: jax.Array, k: int) -> jax.Array:
    """OpenCV's ``cv2.blur(img, (k, k))`` on (H, W, C) levels: mean over the k x k window with the
    anchor at k // 2, mirrored borders, rounded half to even."""
    lo, hi = k // 2, k - 1 - k // 2
    h, w = q.shape[:2]
    p = jnp.pad(q.astype(jnp.float32), ((lo, hi), (lo, hi), (0, 0)), mode="reflect")
    total = sum(p[i : i + h, j : j + w] for i in range(k) for j in range(k))
    return jnp.round(total / (k * k)).astype(jnp.int32)


def _drizzle_drops(key, shape: tuple[int, int], slant: tuple[float, float]):
    """Draw the slant () and the top ends x, y (N,) of :func:`drizzle`'s N = H W // 770 drops."""
    h, w = shape
    n = max(h * w // _DRIZZLE_AREA, 1)
    k_s, k_x, k_y = jax.random.split(key, 3)
    s = jnp.trunc(_image.uniform(k_s, slant)).astype(jnp.int32)
    x_lo = jnp.where(s < 0, s, 0)
    x_hi = jnp.where(s < 0, w, jnp.maximum(w - s, 0))
    x0 = jax.random.randint(k_x, (n,), x_lo, x_hi + 1)
    y0 = jax.random.randint(k_y, (n,), 0, max(h - _DRIZZLE_LENGTH, 0) + 1)
    return s, x0, y0


@_image.image_only(hwc=True)
def drizzle(
    key,
    image,
    *,
    slant: tuple[float, float] = (-10.0, 10.0),
    drop_value: float = 200.0 / 255.0,
    blur: int = 7,
    brightness: float = 0.7,
):
    """Drizzle: short slanted drops drawn in, a box blur, darkening (albumentations 1.4's
    ``RandomRain(rain_type="drizzle")``, on the image as uint8).

    The slant is ``int(u)``, u uniform in ``slant`` (pixels of horizontal travel per drop,
    rounded toward zero). ``H W // 770`` drops (static), each a one-pixel 8-connected line
    (OpenCV's rasterisation and clipping) from (x, y) to (x + slant, y + 10), with x uniform in
    [slant, W] for a negative slant, else in [0, W - slant], and y in [0, H - 10] (integers,
    inclusive), set to the level of ``drop_value`` in every channel. Then a ``blur`` x ``blur``
    box blur (OpenCV's ``blur``; 1 skips it), and V of OpenCV's 8-bit HSV is scaled by
    ``brightness`` and truncated (a 3-channel image is taken as RGB; a 1-channel one is its own
    V). Returns levels / 255.
    """
    h, w, c = image.shape
    if c not in (1, 3):
        raise ValueError(f"drizzle: image must have 1 or 3 channels, got shape {image.shape}")
    blur = int(blur)
    if blur < 1:
        raise ValueError(f"drizzle: blur must be a positive int, got {blur}")
    s, x0, y0 = _drizzle_drops(key, (h, w), slant)
    x1, y1, x2, y2, seen = _clip_segment(x0, y0, x0 + s, y0 + _DRIZZLE_LENGTH, w, h)
    steps = max(_DRIZZLE_LENGTH, int(np.ceil(max(abs(slant[0]), abs(slant[1]))))) + 1
    cols, rows, on = _line_pixels(x1, y1, x2, y2, steps)
    rows = jnp.where(on & seen[:, None], rows, h)  # row h is out of range: dropped
    level = int(np.clip(np.round(drop_value * 255.0), 0, 255))
    q = _image.to_uint8_levels(image).at[rows, cols].set(level, mode="drop")
    if blur > 1:
        q = _box_blur_levels(q, blur)
    scale = jnp.float32(brightness)
    if c == 1:
        return jnp.trunc(q.astype(jnp.float32) * scale) / 255.0
    hsv = _color.rgb_to_hsv(q)
    v = jnp.trunc(hsv[..., 2].astype(jnp.float32) * scale).astype(jnp.int32)
    return _color.hsv_to_rgb(hsv.at[..., 2].set(v)) / 255.0


@_image.image_only(hwc=True)
def collimator(
    key,
    image,
    *,
    margin: tuple[float, float] = (0.0, 0.2),
    angle_deg: tuple[float, float] = (-10.0, 10.0),
    iris: tuple[float, float] = (0.8, 1.5),
    level: tuple[float, float] = (0.0, 0.1),
    edge_px: float = 1.5,
):
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
            f"burnt_in_text: text {text!r} must be non-empty and use only {''.join(FONT)!r}; "
            f"unknown {unknown}"
        )
    gap = np.zeros((7, 1), bool)
    parts = []
    for ch in text:
        parts += [FONT[ch], gap]
    return np.concatenate(parts[:-1], axis=1)


@_image.image_only(hwc=True)
def burnt_in_text(
    key,
    image,
    *,
    texts: tuple[str, ...] = ("L", "R"),
    height_px: tuple[float, float] = (8.0, 24.0),
    value: tuple[float, float] = (0.9, 1.0),
):
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
