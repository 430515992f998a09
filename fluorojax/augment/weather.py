"""Weather layers drawn as OpenCV draws them: fog (blurred discs) and drizzle (short slanted
lines), albumentations' RandomFog and RandomRain on the image as 8-bit levels.

Transforms ``(key, image, masks) -> (image, masks)``; image (H, W) or (H, W, C) float32 in
[0, 1]; masks are returned untouched (the anatomy is still behind the weather).

Gradients with respect to the image: the outputs are 8-bit levels (a step function of the
input), so the derivative is that of the same blend without the quantisation (straight-through
rounding): fog passes ``1 - a`` of a change (a the pixel's fog opacity), drizzle passes
``brightness`` times the box-blurred change and nothing under a drop. The particles, drops and
their layers depend only on the key.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fluorojax.augment import _color, _image

__all__ = ["fog", "drizzle"]


_FOG_SHRINK = 0.1  # each fog region is this much smaller than the last, per side
_FOG_REGIONS = 10  # at most this many nested regions
_FOG_BLUR = 25  # size of the Gaussian kernel that blurs the fog layer


def _fog_regions(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Widths and heights (static, pixels) of the nested fog regions about the image centre."""
    widths, heights = [w], [h]
    for _ in range(_FOG_REGIONS - 1):
        widths.append(int(widths[-1] * (1 - _FOG_SHRINK)))
        heights.append(int(heights[-1] * (1 - _FOG_SHRINK)))
    return np.asarray(widths), np.asarray(heights)


def _fog_size(t, w: int, xp=jnp):
    """The fog size ``max(1, int(W // 3 * t))`` (pixels) for fog coefficient ``t``."""
    return xp.maximum(1, xp.floor((w // 3) * t))


def _fog_counts(t, size, h: int, w: int, xp=jnp):
    """Particles per region (10,) for fog coefficient ``t`` and fog size ``size``: the regions
    wider and taller than the size get ``int(area / size^2 * t * 10)`` each, the others none."""
    widths, heights = _fog_regions(h, w)
    active = (widths > size) & (heights > size)
    return xp.where(active, xp.floor(widths * heights / (size * size) * t * 10), 0).astype(int)


def _max_fog_particles(h: int, w: int, coef: tuple[float, float]) -> int:
    """A static upper bound of the particle count over the coefficient range: at a fixed fog
    size the count grows with t, so evaluate each size at the top of its t interval."""
    lo, hi = float(coef[0]), float(coef[1])
    third = max(w // 3, 1)
    sizes = range(int(_fog_size(lo, w, np)), int(_fog_size(hi, w, np)) + 1)
    return max(1, max(int(np.sum(_fog_counts(min(hi, (s + 1) / third), s, h, w, np))) for s in sizes))


def _disc_half_widths(radius_max: int) -> np.ndarray:
    """(R + 1, R + 1) half-widths of OpenCV's filled circles (``cv2.circle``, thickness -1, 8-
    connected): entry [r, dy] is the largest dx with (dy, dx) inside the disc of radius r, -1 where
    row dy is outside it. The midpoint circle algorithm OpenCV rasterises with."""
    table = np.full((radius_max + 1, radius_max + 1), -1, np.int32)
    for r in range(radius_max + 1):
        err, dx, dy, plus, minus = 0, r, 0, 1, 2 * r - 1
        while dx >= dy:
            table[r, dy] = max(table[r, dy], dx)
            table[r, dx] = max(table[r, dx], dy)
            dy, err, plus = dy + 1, err + plus, plus + 2
            if err > 0:
                err, dx, minus = err - minus, dx - 1, minus - 2
    return table


def _discs(rows, cols, radii, active, shape: tuple[int, int], radius_max: int) -> jax.Array:
    """(H, W) bool union of filled discs at integer centres (rows, cols) (N,) with radii (N,)
    <= radius_max (static); inactive ones are skipped. Each disc row is a span of columns, added
    as +1 / -1 at its ends and summed along the row."""
    h, w = shape
    half = jnp.asarray(_disc_half_widths(radius_max))
    dy = jnp.arange(-radius_max, radius_max + 1)
    span = half[jnp.clip(radii, 0, radius_max)][:, jnp.abs(dy)]
    r = rows[:, None] + dy[None, :]
    valid = active[:, None] & (span >= 0) & (r >= 0) & (r < h)
    r = jnp.where(valid, r, 0)
    start = jnp.clip(cols[:, None] - span, 0, w)
    stop = jnp.clip(cols[:, None] + span + 1, 0, w)
    weight = valid.astype(jnp.int32)
    edges = jnp.zeros((h, w + 1), jnp.int32).at[r, start].add(weight).at[r, stop].add(-weight)
    return jnp.cumsum(edges, axis=1)[:, :w] > 0


def _fog_particles(key, shape: tuple[int, int], coefficient: tuple[float, float]):
    """Draw the fog coefficient t () and the particles of :func:`fog` for an image of ``shape``:
    rows, columns, radii and which are used, (P,) each, P the static maximum count."""
    h, w = shape
    n_max = _max_fog_particles(h, w, coefficient)
    k_t, k_u = jax.random.split(key)
    t = _image.uniform(k_t, coefficient)
    u = jax.random.uniform(k_u, (3, n_max))
    ends = jnp.cumsum(_fog_counts(t, _fog_size(t, w), h, w))
    index = jnp.arange(n_max)
    region = jnp.minimum(jnp.sum(index[:, None] >= ends[None, :], axis=1), _FOG_REGIONS - 1)
    widths, heights = (jnp.asarray(v)[region] for v in _fog_regions(h, w))
    cx, cy = int(w / 2 - 0.5), int(h / 2 - 0.5)
    cols = _image.integers(u[0], cx - widths // 2, cx + widths // 2 + 1)
    rows = _image.integers(u[1], cy - heights // 2, cy + heights // 2 + 1)
    r_top = jnp.maximum(2, jnp.floor(min(h, w) * 0.1 * t).astype(jnp.int32))
    radii = _image.integers(u[2], jnp.maximum(1, r_top // 2), r_top)
    return t, rows, cols, radii, index < ends[-1]


@_image.image_only(hwc=True)
def fog(
    key: jax.Array, image: jax.Array, *, coefficient: tuple[float, float] = (0.3, 1.0), alpha: float = 0.08
) -> jax.Array:
    """Fog: white discs, blurred, blended in (albumentations 1.4's RandomFog, on the image as
    uint8).

    The fog coefficient t is drawn uniformly from ``coefficient``. Particles fill up to ten
    nested regions about the image centre, each 10 % smaller per side than the last, while they
    are larger than the fog size ``s = max(1, int(W // 3 * t))``: ``int(area / s^2 * t * 10)``
    particles each, at integer positions uniform in the region (inclusive bounds). Each is a
    filled disc (OpenCV's rasterisation) of integer radius uniform in [max(1, r_max // 2),
    r_max), r_max = ``max(2, int(min(H, W) * 0.1 * t))``. The disc layer (255 inside) is blurred
    by OpenCV's 25 x 25 Gaussian (sigma 4.1, mirrored borders) and rounded to levels F; each
    pixel becomes ``v (1 - a) + F a`` with a = F / 255 * ``alpha`` * t, truncated to a level.
    Shapes stay static: the largest particle count of the range is drawn and the unused ones are
    masked. Returns levels / 255.
    """
    h, w = image.shape[:2]
    t, rows, cols, radii, active = _fog_particles(key, (h, w), coefficient)
    radius_max = max(2, int(min(h, w) * 0.1 * float(coefficient[1]))) - 1
    layer = 255.0 * _discs(rows, cols, radii, active, (h, w), radius_max).astype(jnp.float32)
    sigma = 0.3 * ((_FOG_BLUR - 1) / 2 - 1) + 0.8  # OpenCV's sigma for a kernel size, sigma 0
    k = _image.gaussian_kernel1d(jnp.float32(sigma), _FOG_BLUR // 2)
    layer = jnp.round(_image.separable(layer[..., None], k, k))
    a = layer / 255.0 * alpha * t
    blend = image * (1.0 - a) + layer * (a / 255.0)
    out = _image.to_uint8_levels(image) * (1.0 - a) + layer * a
    return _image.straight_through(jnp.floor(jnp.clip(out, 0.0, 255.0)) / 255.0, blend)


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


def _box_mean(x: jax.Array, k: int) -> jax.Array:
    """Mean over the k x k window of (H, W, C) with the anchor at k // 2, mirrored borders
    (OpenCV's ``cv2.blur``)."""
    lo, hi = k // 2, k - 1 - k // 2
    h, w = x.shape[:2]
    p = jnp.pad(x.astype(jnp.float32), ((lo, hi), (lo, hi), (0, 0)), mode="reflect")
    start = jnp.zeros((h, w) + p.shape[2:], p.dtype)
    return sum((p[i : i + h, j : j + w] for i in range(k) for j in range(k)), start) / (k * k)


def _box_blur_levels(q: jax.Array, k: int) -> jax.Array:
    """:func:`_box_mean` of (H, W, C) levels, rounded half to even (OpenCV's 8-bit result)."""
    return jnp.round(_box_mean(q, k)).astype(jnp.int32)


def _drizzle_drops(key, shape: tuple[int, int], slant: tuple[float, float]):
    """Draw the slant () and the top ends x, y (N,) of :func:`drizzle`'s N = H W // 770 drops."""
    h, w = shape
    n = max(h * w // _DRIZZLE_AREA, 1)
    k_s, k_u = jax.random.split(key)
    u = jax.random.uniform(k_u, (2, n))
    s = jnp.trunc(_image.uniform(k_s, slant)).astype(jnp.int32)
    x_lo = jnp.where(s < 0, s, 0)
    x_hi = jnp.where(s < 0, w, jnp.maximum(w - s, 0))
    x0 = _image.integers(u[0], x_lo, x_hi + 1)
    y0 = _image.integers(u[1], 0, max(h - _DRIZZLE_LENGTH, 0) + 1)
    return s, x0, y0


@_image.image_only(hwc=True)
def drizzle(
    key: jax.Array,
    image: jax.Array,
    *,
    slant: tuple[float, float] = (-10.0, 10.0),
    drop_value: float = 200.0 / 255.0,
    blur: int = 7,
    brightness: float = 0.7,
) -> jax.Array:
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
    smooth = image.at[rows, cols].set(level / 255.0, mode="drop")
    if blur > 1:
        q = _box_blur_levels(q, blur)
        smooth = _box_mean(smooth, blur)
    scale = jnp.float32(brightness)
    if c == 1:
        exact = jnp.trunc(q.astype(jnp.float32) * scale) / 255.0
    else:
        hsv = _color.rgb_to_hsv(q)
        v = jnp.trunc(hsv[..., 2].astype(jnp.float32) * scale).astype(jnp.int32)
        exact = _color.hsv_to_rgb(hsv.at[..., 2].set(v)) / 255.0
    return _image.straight_through(exact, smooth * scale)
