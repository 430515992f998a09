"""Intensity augmentations: they change pixel values and leave masks untouched.

Every function is a transform ``(key, image, masks) -> (image, masks)`` with keyword-only
options; image (H, W) or (H, W, C) float32, masks (N, H, W) returned as given. After
:func:`negative_log` values are line-integral-like (unbounded); :func:`window` and
:func:`mixture_window` map them to [0, 1], and the other transforms here take [0, 1] images and
clip their output to [0, 1] (as the 8-bit pipelines they stand in for do). :func:`clahe` and
:func:`fog` work, as albumentations does for float input, on the image quantised to 8 bits
(``rint(255 v)``) and return levels / 255.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from fluorojax.augment import _color, _image

__all__ = [
    "negative_log",
    "invert",
    "window",
    "mixture_window",
    "clahe",
    "brightness_contrast",
    "gaussian_contrast",
    "fog",
    "gamma",
    "channel_shuffle",
]


@_image.image_only(hwc=True)
def negative_log(key, image, *, epsilon: float = 1e-3):
    """Raw detector intensity -> attenuation: ``-log(I + min(I) + epsilon)`` per channel.

    The shift by the channel minimum plus ``epsilon`` (dimensionless, same units as I) follows
    the FluoroSeg loader's first step (arcadelab/fluoroseg ``alb/neglog.py``), so that zeros in a
    raw image stay finite. Returns float32 of the input's shape.
    """
    del key
    return -jnp.log(image + jnp.min(image, axis=(0, 1), keepdims=True) + epsilon)


@_image.image_only
def invert(key, image):
    """``1 - image`` (albumentations' InvertImg for float images)."""
    del key
    return (1.0 - image).astype(image.dtype)


def _minmax(x: jax.Array) -> jax.Array:
    lo, hi = jnp.min(x), jnp.max(x)
    span = hi - lo
    return jnp.where(span > 0, (x - lo) / jnp.where(span > 0, span, 1.0), 0.0)


@_image.image_only
def window(key, image):
    """Map the image's [min, max] linearly onto [0, 1] (all channels together; a constant image
    becomes 0)."""
    del key
    return _minmax(image).astype(image.dtype)


def _two_means(samples: jax.Array, max_iter: int, tol: float) -> jax.Array:
    """1-D k-means with two clusters by Lloyd's algorithm, started at the quartiles; returns the
    sorted centres (2,).

    Stops as scikit-learn's ``KMeans`` does: when an iteration changes no assignment, or moves
    the centres by a summed squared shift of at most ``tol`` times the samples' variance, or
    after ``max_iter`` iterations; so both stop at the same fixed point of Lloyd's iteration
    (up to that tolerance) wherever they start in its basin.
    """
    tol_abs = tol * jnp.var(samples)

    def assign(c):
        return samples > 0.5 * (c[0] + c[1])

    def body(state):
        i, c, high, _ = state
        n_hi = jnp.sum(high)
        n_lo = samples.size - n_hi
        m_lo = jnp.sum(jnp.where(high, 0.0, samples)) / jnp.maximum(n_lo, 1)
        m_hi = jnp.sum(jnp.where(high, samples, 0.0)) / jnp.maximum(n_hi, 1)
        new = jnp.stack([jnp.where(n_lo > 0, m_lo, c[0]), jnp.where(n_hi > 0, m_hi, c[1])])
        new_high = assign(new)
        converged = jnp.all(new_high == high) | (jnp.sum((new - c) ** 2) <= tol_abs)
        return i + 1, new, new_high, converged

    def cond(state):
        i, _, _, converged = state
        return (i < max_iter) & ~converged

    init = jnp.quantile(samples, jnp.asarray([0.25, 0.75]))
    _, centres, _, _ = jax.lax.while_loop(cond, body, (0, init, assign(init), False))
    return centres


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


@_image.image_only
def mixture_window(key, image, *, n_points: int = 1000, max_iter: int = 100, tol: float = 1e-4):
    """Two-cluster (k-means) windowing into three channels, each in [0, 1].

    Channel 0 is the [min, max] window of the image; channels 1 and 2 window the darker and the
    brighter k-means cluster of the pixel values: the cluster's centre -/+ 3 standard deviations
    (clamped to the cluster's range) maps to [0.1, 0.9], the rest of the image range linearly to
    [0, 0.1] and [0.9, 1] (FluoroSeg's ``mixture_window(keep_original=True, model="kmeans")``).
    K-means runs on every ``H W // n_points``-th pixel (FluoroSeg's subsample) and every pixel
    goes to the nearer centre (its ``predict``). FluoroSeg fits scikit-learn's ``KMeans(2,
    max_iter=100)`` (k-means++ start); here Lloyd's iteration starts at the quartiles and stops by
    scikit-learn's rule (no assignment changes, or a squared centre shift at most ``tol`` times
    the variance, or ``max_iter`` iterations), so it reaches the same two-cluster optimum without
    a random start (``key`` unused). Uses channel 0 of an (H, W, C) input. Returns (H, W, 3)
    float32.
    """
    del key
    x = _image.to_hwc(image)[..., 0].astype(jnp.float32)
    flat = x.reshape(-1)
    stride = max(1, flat.size // n_points)
    centres = _two_means(flat[::stride], max_iter, tol)
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
    return out.astype(jnp.float32)


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


@_image.image_only(hwc=True)
def clahe(
    key,
    image,
    *,
    clip_limit: tuple[float, float] = (4.0, 6.0),
    grid: tuple[int, int] = (8, 8),
):
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
    """
    clip = _image.uniform(key, clip_limit)
    q = _image.to_uint8_levels(image)

    def equalise(channel):
        return _clahe_channel(channel, clip, tuple(grid)).astype(jnp.int32)

    if image.shape[-1] == 3:
        lab = _color.rgb_to_lab(q)
        out = _color.lab_to_rgb(lab.at[..., 0].set(equalise(lab[..., 0])))
    else:
        out = jax.vmap(equalise, in_axes=-1, out_axes=-1)(q)
    return out / 255.0


@_image.image_only
def brightness_contrast(
    key,
    image,
    *,
    brightness: tuple[float, float] = (-0.2, 0.2),
    contrast: tuple[float, float] = (-0.2, 0.2),
):
    """``clip((1 + c) * image + b, 0, 1)`` with c drawn from ``contrast`` and b from
    ``brightness`` (albumentations' RandomBrightnessContrast with brightness by max)."""
    k_b, k_c = jax.random.split(key)
    alpha = 1.0 + _image.uniform(k_c, contrast)
    beta = _image.uniform(k_b, brightness)
    return jnp.clip(alpha * image + beta, 0.0, 1.0).astype(image.dtype)


@_image.image_only(hwc=True)
def gaussian_contrast(
    key,
    image,
    *,
    alpha: tuple[float, float] = (0.6, 1.4),
    sigma: tuple[float, float] = (0.1, 0.5),
):
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
    k_t, k_x, k_y, k_r = jax.random.split(key, 4)
    t = _image.uniform(k_t, coefficient)
    n_max = _max_fog_particles(h, w, coefficient)
    ends = jnp.cumsum(_fog_counts(t, _fog_size(t, w), h, w))
    index = jnp.arange(n_max)
    region = jnp.minimum(jnp.searchsorted(ends, index, side="right"), _FOG_REGIONS - 1)
    widths, heights = (jnp.asarray(v)[region] for v in _fog_regions(h, w))
    cx, cy = int(w / 2 - 0.5), int(h / 2 - 0.5)
    cols = jax.random.randint(k_x, (n_max,), cx - widths // 2, cx + widths // 2 + 1)
    rows = jax.random.randint(k_y, (n_max,), cy - heights // 2, cy + heights // 2 + 1)
    r_top = jnp.maximum(2, jnp.floor(min(h, w) * 0.1 * t).astype(jnp.int32))
    radii = jax.random.randint(k_r, (n_max,), jnp.maximum(1, r_top // 2), r_top)
    return t, rows, cols, radii, index < ends[-1]


@_image.image_only(hwc=True)
def fog(key, image, *, coefficient: tuple[float, float] = (0.3, 1.0), alpha: float = 0.08):
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
    out = _image.to_uint8_levels(image) * (1.0 - a) + layer * a
    return jnp.floor(jnp.clip(out, 0.0, 255.0)) / 255.0


@_image.image_only
def gamma(key, image, *, gamma_range: tuple[float, float] = (0.7, 1.5)):
    """``clip(image, 0, 1) ** g`` with g drawn uniformly from ``gamma_range``."""
    g = _image.uniform(key, gamma_range)
    return (jnp.clip(image, 0.0, 1.0) ** g).astype(image.dtype)


@_image.image_only(hwc=True)
def channel_shuffle(key, image):
    """Permute the channels of an (H, W, C) image at random ((H, W) is returned unchanged)."""
    return image[..., jax.random.permutation(key, image.shape[-1])]
