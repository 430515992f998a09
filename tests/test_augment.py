"""Tests for fluorojax.augment: each transform's defining property against an independent truth
(numpy float64, OpenCV, scipy.ndimage, closed forms), masks handling, determinism by key, and
jit / vmap parity."""

import functools
import inspect
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage as ndi
from _compiles import count_compilations
from absl.testing import parameterized

import fluorojax.augment as A

H = W = 64
P = functools.partial


def _image(seed=0, c=None):
    rng = np.random.default_rng(seed)
    shape = (H, W) if c is None else (H, W, c)
    return jnp.asarray(rng.uniform(0.05, 0.95, shape).astype(np.float32))


def _masks(seed=1, n=3):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.random((n, H, W)) > 0.5)


def _bordered(seed=2, band=4):
    """Random image whose outer band of width ``band`` is 0 (blurs must keep its sum)."""
    x = np.zeros((H, W, 2), np.float32)
    x[band:-band, band:-band] = np.random.default_rng(seed).uniform(0, 1, (H - 2 * band, W - 2 * band, 2))
    return jnp.asarray(x)


KEY = jax.random.key(0)

# Every transform with arguments that make it valid on a [0, 1] (H, W) image.
TRANSFORMS = {
    "negative_log": A.negative_log,
    "invert": A.invert,
    "window": A.window,
    "mixture_window": A.mixture_window,
    "clahe": A.clahe,
    "brightness_contrast": A.brightness_contrast,
    "gaussian_contrast": A.gaussian_contrast,
    "fog": A.fog,
    "drizzle": A.drizzle,
    "gamma": A.gamma,
    "channel_shuffle": A.channel_shuffle,
    "binomial_blur": A.binomial_blur,
    "motion_blur": A.motion_blur,
    "median_blur": A.median_blur,
    "detector_blur": A.detector_blur,
    "sharpen": A.sharpen,
    "emboss": A.emboss,
    "quantum_noise": A.quantum_noise,
    "electronic_noise": A.electronic_noise,
    "pixel_dropout": A.pixel_dropout,
    "coarse_dropout": A.coarse_dropout,
    "collimator": A.collimator,
    "burnt_in_text": A.burnt_in_text,
    "random_affine": A.random_affine,
    "elastic": A.elastic,
    "resize": P(A.resize, shape=(32, 48)),
}
GEOMETRIC = {"random_affine", "elastic", "resize"}


# --------------------------------------------------------------------------- conventions


def test_public_transforms_take_key_image_masks_then_keyword_only_options():
    for name, f in TRANSFORMS.items():
        f = f.func if isinstance(f, functools.partial) else f
        params = list(inspect.signature(f).parameters.values())
        assert [p.name for p in params[:3]] == ["key", "image", "masks"], name
        assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params[3:]), name


@pytest.mark.parametrize("name", sorted(set(TRANSFORMS) - GEOMETRIC))
def test_non_geometric_transforms_leave_masks_untouched(name):
    image = jnp.stack([_image(0), _image(1), _image(2)], axis=-1)
    masks = _masks()
    out, m = jax.jit(TRANSFORMS[name])(KEY, image, masks)
    assert out.shape[:2] == (H, W) and out.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(m), np.asarray(masks))


def test_bad_input_raises():
    with pytest.raises(ValueError, match="image must be"):
        A.invert(KEY, jnp.zeros((2, 3, 4, 5)), jnp.zeros((1, 3, 4)))
    with pytest.raises(ValueError, match="masks must be"):
        A.invert(KEY, jnp.zeros((8, 8)), jnp.zeros((1, 8, 9)))
    with pytest.raises(TypeError, match="float"):
        A.invert(KEY, jnp.zeros((8, 8), jnp.int32), jnp.zeros((1, 8, 8)))
    with pytest.raises(ValueError, match="unknown"):
        A.burnt_in_text(KEY, jnp.zeros((8, 8)), jnp.zeros((1, 8, 8)), texts=("L?",))
    with pytest.raises(ValueError, match="mask_interpolation"):
        A.random_affine(KEY, jnp.zeros((8, 8)), jnp.zeros((1, 8, 8)), mask_interpolation="cubic")
    with pytest.raises(ValueError, match="some_of"):
        A.some_of([A.invert], n=(1, 2))
    with pytest.raises(ValueError, match="weights"):
        A.one_of([A.invert, A.window], weights=(1.0,))


# --------------------------------------------------------------------------- intensity


def test_invert_twice_is_identity():
    x = _image()
    y, _ = A.invert(KEY, *A.invert(KEY, x, _masks()))
    np.testing.assert_allclose(np.asarray(y), np.asarray(x), atol=1e-7)


def test_negative_log_matches_numpy():
    raw = np.random.default_rng(3).uniform(0.0, 2.0, (H, W, 2)).astype(np.float32)
    want = -np.log(raw.astype(np.float64) + raw.min(axis=(0, 1), keepdims=True) + 1e-3)
    got, _ = A.negative_log(KEY, jnp.asarray(raw), _masks())
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)


def test_window_maps_min_max_to_unit_range():
    x = 3.0 * _image() - 1.0
    y, _ = A.window(KEY, x, _masks())
    xn = np.asarray(x, np.float64)
    np.testing.assert_allclose(np.asarray(y), (xn - xn.min()) / (xn.max() - xn.min()), atol=1e-6)


def _optimal_two_means(v):
    """Global optimum of 1-D two-means in float64 by brute force: the best split of the sorted
    values (two clusters of 1-D points are always separated by a threshold)."""
    v = np.sort(np.asarray(v, np.float64))
    n = v.size
    c1, c2 = np.cumsum(v), np.cumsum(v**2)
    k = np.arange(1, n)  # the first k values form the low cluster
    sse_lo = c2[k - 1] - c1[k - 1] ** 2 / k
    sse_hi = (c2[-1] - c2[k - 1]) - (c1[-1] - c1[k - 1]) ** 2 / (n - k)
    best = k[np.argmin(sse_lo + sse_hi)]
    return np.array([v[:best].mean(), v[best:].mean()])


def _kmeans_images():
    rng = np.random.default_rng(4)
    low = rng.random((H, W)) < 0.6
    bimodal = np.where(low, rng.normal(0.2, 0.02, (H, W)), rng.normal(0.7, 0.03, (H, W)))
    skewed = rng.lognormal(0.0, 0.8, (H, W))  # one long-tailed mode
    unequal = np.where(rng.random((H, W)) < 0.9, rng.normal(1.0, 0.3, (H, W)), rng.normal(3.0, 0.5, (H, W)))
    return {"bimodal": bimodal, "skewed": skewed, "unequal": unequal}


@pytest.mark.parametrize("name", ["bimodal", "skewed", "unequal"])
def test_mixture_window_kmeans_reaches_a_lloyd_optimum_like_sklearn(name):
    from fluorojax.augment.windowing import _two_means

    x = _kmeans_images()[name].astype(np.float32)
    samples = x.reshape(-1)[:: x.size // 1000].astype(np.float64)
    got = np.asarray(jax.jit(_two_means, static_argnums=(1, 2))(jnp.asarray(samples, jnp.float32), 100, 1e-4))
    tol = 0.02 * samples.std()
    # a fixed point of Lloyd's iteration: each centre is the mean of the values nearer to it
    high = samples > got.mean()
    np.testing.assert_allclose(got, [samples[~high].mean(), samples[high].mean()], atol=tol)
    if name != "skewed":  # two clear modes: the fixed point is the global optimum
        np.testing.assert_allclose(got, _optimal_two_means(samples), atol=tol)
    # what FluoroSeg runs: KMeans(2, max_iter=100), k-means++ start, the same stopping rule
    cluster = pytest.importorskip("sklearn.cluster")
    for seed in range(3):
        km = cluster.KMeans(n_clusters=2, max_iter=100, random_state=seed).fit(samples[:, None])
        np.testing.assert_allclose(got, np.sort(km.cluster_centers_.ravel()), atol=tol)


def test_mixture_window_range_and_cluster_separation():
    rng = np.random.default_rng(4)
    low = rng.random((H, W)) < 0.6
    x = np.where(low, rng.normal(0.2, 0.02, (H, W)), rng.normal(0.7, 0.03, (H, W))).astype(np.float32)
    out, _ = jax.jit(A.mixture_window)(KEY, jnp.asarray(x), _masks())
    out = np.asarray(out)
    assert out.shape == (H, W, 3) and out.min() >= 0.0 and out.max() <= 1.0
    np.testing.assert_allclose(out[..., 0], (x - x.min()) / (x.max() - x.min()), atol=1e-6)
    # channel 1 windows the dark cluster: within 3 std of its centre it stays below 0.9 and
    # spreads out; the bright cluster is above 0.9
    assert np.mean(out[low, 1] <= 0.9 + 1e-6) > 0.99 and out[low, 1].std() > 0.1
    assert out[~low, 1].min() >= 0.9 - 1e-6
    # channel 2 windows the bright cluster; the dark one is pushed below 0.1
    assert np.mean(out[~low, 2] >= 0.1 - 1e-6) > 0.99 and out[~low, 2].std() > 0.1
    assert out[low, 2].max() <= 0.1 + 1e-6
    # the window centres are the optimal two-means centres of the subsampled pixels
    centres = _optimal_two_means(x.reshape(-1)[:: x.size // 1000])
    for ch, members, c in ((1, low, centres[0]), (2, ~low, centres[1])):
        lo, hi = x[members].min(), x[members].max()
        # the centre maps to 0.5 in its own window when it sits mid-way between the knots
        s = x[members].std()
        x_lo, x_hi = max(c - 3 * s, lo), min(c + 3 * s, hi)
        mid = 0.1 + 0.8 * (c - x_lo) / (x_hi - x_lo)
        pix = np.abs(x - c) < 2e-3
        np.testing.assert_allclose(out[pix, ch], mid, atol=0.05)


@pytest.mark.parametrize("shape,grid,clip", [((64, 64), (8, 8), 4.0), ((67, 53), (12, 8), 5.0)])
def test_clahe_matches_opencv(shape, grid, clip):
    cv2 = pytest.importorskip("cv2")
    h, w = shape
    rng = np.random.default_rng(5)
    x = np.clip(rng.normal(0.4, 0.15, shape) + np.linspace(0, 0.4, w)[None], 0, 1).astype(np.float32)
    q = np.clip(np.round(x * 255), 0, 255).astype(np.uint8)
    want = cv2.createCLAHE(clipLimit=clip, tileGridSize=(grid[1], grid[0])).apply(q)
    f = jax.jit(P(A.clahe, clip_limit=(clip, clip), grid=grid))
    got, _ = f(KEY, jnp.asarray(x), jnp.zeros((1, h, w)))
    diff = np.abs(np.round(np.asarray(got) * 255).astype(int) - want.astype(int))
    # exact on whole tiles; with padded tiles float32 rounding of the bilinear blend may differ
    assert diff.max() <= (0 if h % grid[0] == 0 and w % grid[1] == 0 else 1)
    assert np.mean(diff > 0) < 0.01


def test_brightness_contrast_gamma_gaussian_contrast_closed_forms():
    x = _image()
    m = _masks()
    y, _ = A.brightness_contrast(KEY, x, m, brightness=(0.1, 0.1), contrast=(0.5, 0.5))
    np.testing.assert_allclose(np.asarray(y), np.clip(1.5 * np.asarray(x) + 0.1, 0, 1), atol=1e-6)
    y, _ = A.gamma(KEY, x, m, gamma_range=(2.0, 2.0))
    np.testing.assert_allclose(np.asarray(y), np.asarray(x) ** 2, rtol=1e-5)
    y, _ = A.gaussian_contrast(KEY, x, m, alpha=(1.0, 1.0))
    np.testing.assert_allclose(np.asarray(y), np.asarray(x), atol=1e-6)
    # at alpha = 0 the peak pixel goes to 0.5, and nothing moves away from 0.5
    y, _ = A.gaussian_contrast(KEY, x, m, alpha=(0.0, 0.0), sigma=(0.3, 0.3))
    d_in, d_out = np.abs(np.asarray(x) - 0.5), np.abs(np.asarray(y) - 0.5)
    assert np.all(d_out <= d_in + 1e-6) and d_out.min() < 0.02


def test_channel_shuffle_permutes():
    x = _image(c=3)
    y, _ = A.channel_shuffle(jax.random.key(3), x, _masks())
    xs = [np.asarray(x[..., i]) for i in range(3)]
    perm = [next(j for j in range(3) if np.array_equal(np.asarray(y[..., i]), xs[j])) for i in range(3)]
    assert sorted(perm) == [0, 1, 2]


# --------------------------------------------------------------------------- OpenCV 8-bit colour


def _random_rgb(shape=(96, 448), seed=20):
    """uint8 RGB with every grey level and random colours (448 columns: a whole number of
    OpenCV's SIMD blocks, whose HSV -> RGB path truncates where its scalar tail rounds)."""
    rgb = np.random.default_rng(seed).integers(0, 256, shape + (3,)).astype(np.uint8)
    rgb[0, :256] = np.arange(256)[:, None]
    return rgb


def test_rgb_hsv_match_opencv():
    cv2 = pytest.importorskip("cv2")
    from fluorojax.augment import _color

    rgb = _random_rgb()
    hsv = np.array(jax.jit(_color.rgb_to_hsv)(jnp.asarray(rgb, jnp.int32)))
    np.testing.assert_array_equal(hsv, cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV))
    hsv[..., 2] = hsv[..., 2] * 7 // 10  # the drizzle's darkening
    back = np.asarray(jax.jit(_color.hsv_to_rgb)(jnp.asarray(hsv, jnp.int32)))
    diff = np.abs(back - cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(int))
    # OpenCV's build may fuse 1 - s h into one rounding: one level, rarely
    assert diff.max() <= 1 and np.mean(diff > 0) < 0.005


def test_rgb_lab_match_opencv_and_round_trip():
    cv2 = pytest.importorskip("cv2")
    from fluorojax.augment import _color

    rgb = _random_rgb()
    lab = np.array(jax.jit(_color.rgb_to_lab)(jnp.asarray(rgb, jnp.int32)))
    want = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(int)
    # OpenCV's fixed point: L exact, a and b a level off for a few colours
    np.testing.assert_array_equal(lab[..., 0], want[..., 0])
    assert np.abs(lab - want).max() <= 1 and np.mean(lab != want) < 1e-3
    back = np.asarray(jax.jit(_color.lab_to_rgb)(jnp.asarray(want, jnp.int32)))
    assert np.abs(back - cv2.cvtColor(want.astype(np.uint8), cv2.COLOR_LAB2RGB).astype(int)).max() <= 2
    # round trip: LAB levels lose little of 8-bit RGB (greys come back within one level)
    trip = np.asarray(_color.lab_to_rgb(_color.rgb_to_lab(jnp.asarray(rgb, jnp.int32))))
    assert np.abs(trip[0, :256] - rgb[0, :256]).max() <= 1
    assert np.mean(np.abs(trip.astype(int) - rgb)) < 1.0


def test_clahe_on_rgb_equalises_lab_lightness_like_opencv():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(21)
    h, w = 96, 128
    ramp = np.linspace(0, 0.5, w)[None, :, None]
    x = np.clip(rng.normal(0.35, 0.1, (h, w, 3)) + ramp * np.array([1.0, 0.6, 0.2]), 0, 1).astype(np.float32)
    q = np.clip(np.round(x * 255), 0, 255).astype(np.uint8)
    lab = cv2.cvtColor(q, cv2.COLOR_RGB2LAB)
    lab[..., 0] = cv2.createCLAHE(clipLimit=5.0, tileGridSize=(8, 12)).apply(lab[..., 0])
    want = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB).astype(int)
    got, _ = jax.jit(P(A.clahe, clip_limit=(5.0, 5.0), grid=(12, 8)))(KEY, jnp.asarray(x), jnp.zeros((1, h, w)))
    diff = np.abs(np.round(np.asarray(got) * 255).astype(int) - want)
    # L and its CLAHE are exact; the float LAB -> RGB is within a level or two of OpenCV's
    assert diff.max() <= 2 and np.mean(diff) < 0.2
    # and it is not per-channel CLAHE: the hue of the ramp survives
    per_channel = np.stack([cv2.createCLAHE(5.0, (8, 12)).apply(q[..., i]) for i in range(3)], -1).astype(int)
    assert np.mean(np.abs(per_channel - want)) > 5 * np.mean(diff)


# --------------------------------------------------------------------------- fog and drizzle


def _albumentations_fog_counts(t, h, w):
    """Particle count of albumentations 1.4's RandomFog (its loop, restated in plain Python)."""
    size = max(1, int(w // 3 * t))
    cw, ch, total = w, h, 0
    for _ in range(10):
        if not (cw > size and ch > size):
            break
        total += int(cw * ch / (size * size) * t * 10)
        cw, ch = int(cw * 0.9), int(ch * 0.9)
    return total


@pytest.mark.parametrize("shape", [(64, 64), (96, 160)])
def test_fog_particles_follow_albumentations(shape):
    from fluorojax.augment.weather import _fog_particles

    h, w = shape
    draw = jax.jit(lambda k: _fog_particles(k, shape, (0.1, 0.3)))
    cx, cy = int(w / 2 - 0.5), int(h / 2 - 0.5)
    for k in jax.random.split(KEY, 6):
        t, rows, cols, radii, active = (np.asarray(v) for v in draw(k))
        assert 0.1 <= t < 0.3
        assert active.sum() == _albumentations_fog_counts(float(t), h, w)
        assert np.all(np.abs(cols[active] - cx) <= w // 2) and np.all(np.abs(rows[active] - cy) <= h // 2)
        r_top = max(2, int(min(h, w) * 0.1 * float(t)))
        assert np.all((radii[active] >= max(1, r_top // 2)) & (radii[active] < r_top))
    # the first region is the whole image: the drawn columns span it
    assert cols[active].min() <= cx - w // 2 + 2 and cols[active].max() >= cx + w // 2 - 2


def test_fog_matches_opencv_on_the_same_particles():
    cv2 = pytest.importorskip("cv2")
    from fluorojax.augment.weather import _fog_particles

    x = _image(22, c=3)
    q = np.clip(np.round(np.asarray(x) * 255), 0, 255).astype(np.uint8)
    particles = jax.jit(lambda k: _fog_particles(k, (H, W), (0.1, 0.3)))
    fog = jax.jit(P(A.fog, coefficient=(0.1, 0.3)))
    for k in jax.random.split(KEY, 2):
        t, rows, cols, radii, active = (np.asarray(v) for v in particles(k))
        layer = np.zeros((H, W, 3), np.uint8)
        for r, c, rad in zip(rows[active], cols[active], radii[active]):
            cv2.circle(layer, (int(c), int(r)), int(rad), (255, 255, 255), -1)
        layer = cv2.GaussianBlur(layer, (25, 25), 0).astype(np.float64)
        a = layer.mean(axis=2, keepdims=True) / 255 * 0.08 * float(t)
        want = np.clip(q * (1 - a) + layer * a, 0, 255).astype(np.uint8)
        got, m = fog(k, x, _masks())
        diff = np.abs(np.round(np.asarray(got) * 255).astype(int) - want.astype(int))
        assert diff.max() <= 1 and np.mean(diff > 0) < 0.01  # OpenCV blurs uint8 in fixed point
        np.testing.assert_array_equal(np.asarray(m), np.asarray(_masks()))


def test_fog_blends_toward_the_fog_layer_by_at_most_alpha_t():
    fog = jax.jit(P(A.fog, coefficient=(0.3, 0.3), alpha=0.08))
    dark = jnp.zeros((H, W), jnp.float32)
    y, _ = fog(KEY, dark, _masks())
    y = np.asarray(y)
    # on black, out = F a = F^2 / 255 * alpha t <= 255 alpha t levels, and the fog is there
    assert y.max() <= 0.08 * 0.3 + 1e-6 and y.mean() > 0
    x = _image(23)
    y, _ = fog(KEY, x, _masks())
    q = np.round(np.asarray(x) * 255) / 255
    assert np.abs(np.asarray(y) - q).max() <= 0.08 * 0.3 + 1 / 255
    assert np.mean(np.asarray(y) > q) > 0.3  # white fog over mid greys mostly brightens


def test_drizzle_matches_opencv_on_the_same_drops():
    cv2 = pytest.importorskip("cv2")
    from fluorojax.augment.weather import _drizzle_drops

    h, w = 40, 448  # 448 columns: whole SIMD blocks for OpenCV's HSV -> RGB
    x = jnp.asarray(np.random.default_rng(24).uniform(0.05, 0.95, (h, w, 3)).astype(np.float32))
    q = np.clip(np.round(np.asarray(x) * 255), 0, 255).astype(np.uint8)
    masks = jnp.zeros((1, h, w))
    drops = jax.jit(lambda k: _drizzle_drops(k, (h, w), (-10.0, 10.0)))
    for k, blur in zip(jax.random.split(KEY, 2), (1, 3)):
        s, x0, y0 = (np.asarray(v) for v in drops(k))
        assert x0.shape == (h * w // 770,) and -10 <= s <= 9
        img = q.copy()
        for a, b in zip(x0, y0):
            cv2.line(img, (int(a), int(b)), (int(a + s), int(b + 10)), (200, 200, 200), 1)
        img = cv2.blur(img, (blur, blur))
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 2] *= 0.7
        want = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(int)
        got, m = jax.jit(P(A.drizzle, blur=blur))(k, x, masks)
        diff = np.abs(np.round(np.asarray(got) * 255).astype(int) - want)
        assert diff.max() <= 1 and np.mean(diff > 0) < 0.005
        np.testing.assert_array_equal(np.asarray(m), np.asarray(masks))


def test_drizzle_draws_slanted_drops_of_the_drizzle_length_and_darkens():
    from fluorojax.augment.weather import _drizzle_drops

    grey = jnp.full((H, W), 100 / 255, jnp.float32)
    bright = jax.jit(P(A.drizzle, blur=1, brightness=1.0))
    darken = jax.jit(P(A.drizzle, blur=1))
    for k in jax.random.split(KEY, 2):
        y, _ = bright(k, grey, _masks())
        levels = np.round(np.asarray(y) * 255).astype(int)
        assert set(np.unique(levels)) == {100, 200}  # the drop level, nothing blurred
        s, x0, y0 = (np.asarray(v) for v in _drizzle_drops(k, (H, W), (-10.0, 10.0)))
        drawn = np.zeros((H, W), bool)
        for a, b in zip(x0, y0):
            if 0 <= min(a, a + s) and max(a, a + s) < W and b + 10 < H:
                # both ends, and one pixel in every row between, within the slanted span
                assert levels[b, a] == 200 and levels[b + 10, a + s] == 200
                for i in range(11):
                    row = levels[b + i, min(a, a + s) : max(a, a + s) + 1]
                    assert (row == 200).any()
            cols = np.clip(np.round(a + s * np.arange(11) / 10).astype(int), 0, W - 1)
            rows = np.clip(b + np.arange(11), 0, H - 1)
            drawn[rows, cols] = True
        # nothing is drawn away from the drops (Bresenham stays within half a pixel)
        near = ndi.binary_dilation(drawn, np.ones((1, 3), bool))
        assert not np.any((levels == 200) & ~near)
        # the darkening: V * 0.7 truncated (grey: V is the level)
        y, _ = darken(k, grey, _masks())
        assert set(np.unique(np.round(np.asarray(y) * 255).astype(int))) == {70, 140}


# --------------------------------------------------------------------------- blur


@pytest.mark.parametrize(
    "f",
    [
        P(A.binomial_blur, kernel_size=(3, 5)),
        P(A.motion_blur, kernel_size=(3, 5)),
        P(A.detector_blur, sigma=(0.5, 1.0), glare=(0.1, 0.1), glare_sigma=1.0),
    ],
    ids=["gaussian", "motion", "detector"],
)
def test_blur_keeps_the_mean(f):
    x = _bordered()
    for k in jax.random.split(KEY, 3):
        y, _ = f(k, x, _masks())
        np.testing.assert_allclose(np.asarray(y).sum(axis=(0, 1)), np.asarray(x).sum(axis=(0, 1)), rtol=1e-5)
        assert np.asarray(y).std() < np.asarray(x).std()


def test_gaussian_and_median_blur_match_scipy():
    x = _image(7)
    y, _ = A.binomial_blur(KEY, x, _masks(), kernel_size=(5, 5))
    k1 = np.array([1, 4, 6, 4, 1], np.float64) / 16
    want = ndi.correlate(np.asarray(x, np.float64), np.outer(k1, k1), mode="mirror")
    np.testing.assert_allclose(np.asarray(y), want, atol=1e-6)
    for k in (3, 5):
        y, _ = A.median_blur(KEY, x, _masks(), kernel_size=(k, k))
        np.testing.assert_array_equal(np.asarray(y), ndi.median_filter(np.asarray(x), size=k, mode="nearest"))


def test_sharpen_and_emboss_keep_a_constant_image():
    x = jnp.full((H, W), 0.4, jnp.float32)
    y, _ = A.sharpen(KEY, x, _masks(), lightness=(1.0, 1.0))
    np.testing.assert_allclose(np.asarray(y), 0.4, atol=1e-6)
    y, _ = A.emboss(KEY, x, _masks())
    np.testing.assert_allclose(np.asarray(y), 0.4, atol=1e-6)
    # on a step edge, sharpening overshoots on both sides
    step = jnp.asarray(np.where(np.arange(W)[None, :] < W // 2, 0.3, 0.6) * np.ones((H, 1)), jnp.float32)
    y, _ = A.sharpen(KEY, step, _masks(), alpha=(0.5, 0.5), lightness=(1.0, 1.0))
    row = np.asarray(y)[H // 2]
    assert row[W // 2 - 1] < 0.3 - 0.1 and row[W // 2] > 0.6 + 0.1


# --------------------------------------------------------------------------- noise and artefacts


def test_noise_statistics():
    x = jnp.full((128, 128), 0.5, jnp.float32)
    m = jnp.zeros((1, 128, 128))
    y, _ = A.quantum_noise(KEY, x, m, photons=(200.0, 200.0))
    y = np.asarray(y)
    assert abs(y.mean() - 0.5) < 4 * math.sqrt(0.5 / 200 / y.size)
    np.testing.assert_allclose(y.var(), 0.5 / 200, rtol=0.1)
    np.testing.assert_allclose(np.round(y * 200), y * 200, atol=1e-3)  # integer counts
    y, _ = A.electronic_noise(KEY, x, m, sigma=(0.1, 0.1))
    np.testing.assert_allclose(np.asarray(y).std(), 0.1, rtol=0.05)


def test_dropouts_fill_pixels_and_leave_masks():
    x = _image(c=2)
    m = _masks()
    y, my = A.pixel_dropout(KEY, x, m, probability=0.2)
    dropped = np.all(np.asarray(y) == 0.0, axis=-1)
    assert abs(dropped.mean() - 0.2) < 0.03
    np.testing.assert_array_equal(np.asarray(y)[~dropped], np.asarray(x)[~dropped])
    np.testing.assert_array_equal(np.asarray(my), np.asarray(m))
    y, my = A.coarse_dropout(KEY, x, m, holes=(2, 2), height=(10, 10), width=(7, 7), value=-1.0)
    hit = np.asarray(y)[..., 0] == -1.0
    assert 70 <= hit.sum() <= 140  # two 10 x 7 holes, possibly overlapping
    rows, cols = np.nonzero(hit)
    assert rows.max() - rows.min() + 1 >= 10 and cols.max() - cols.min() + 1 >= 7
    np.testing.assert_array_equal(np.asarray(my), np.asarray(m))


def test_collimator_blocks_margins_and_keeps_centre():
    x = jnp.ones((H, W), jnp.float32)
    y, _ = A.collimator(
        KEY, x, _masks(), margin=(0.25, 0.25), angle_deg=(0.0, 0.0), iris=(2.0, 2.0), level=(0.0, 0.0), edge_px=0.2
    )
    y = np.asarray(y)
    assert np.all(y[:15] < 1e-3) and np.all(y[-15:] < 1e-3) and np.all(y[:, :15] < 1e-3)
    assert np.all(y[20:-20, 20:-20] > 1 - 1e-3)


def test_burnt_in_marker_draws_the_glyph():
    x = jnp.zeros((H, W), jnp.float32)
    for k in jax.random.split(KEY, 3):
        y, m = A.burnt_in_text(k, x, _masks(), texts=("L",), height_px=(14.0, 14.0), value=(1.0, 1.0))
        y = np.asarray(y)
        assert y.sum() == 4 * A.FONT["L"].sum()  # each font pixel becomes 2 x 2 pixels
        rows, cols = np.nonzero(y)
        box = y[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
        np.testing.assert_array_equal(box[::2, ::2] > 0, A.FONT["L"])
        np.testing.assert_array_equal(np.asarray(m), np.asarray(_masks()))


# --------------------------------------------------------------------------- geometric


def test_affine_moves_a_marked_pixel_to_the_predicted_place():
    r, c = 10, 20
    x = jnp.zeros((H, W), jnp.float32).at[r, c].set(1.0)
    m = jnp.zeros((2, H, W), bool).at[1, r, c].set(True)
    # 90 degrees, scale 1 and a whole-pixel shift: an exact pixel permutation
    matrix = A.sample_affine(
        KEY, (H, W), rotation_deg=(90.0, 90.0), scale=(1.0, 1.0), translate=(0.125, 0.125), shear_deg=(0.0, 0.0)
    )
    p = np.asarray(matrix) @ np.array([c + 0.5, r + 0.5, 1.0])
    c2, r2 = int(np.floor(p[0])), int(np.floor(p[1]))
    y, my = A.warp_affine(x, m, matrix)
    assert np.asarray(y)[r2, c2] == pytest.approx(1.0, abs=1e-5) and np.asarray(y).sum() == pytest.approx(1.0, abs=1e-5)
    assert np.asarray(my)[1, r2, c2] and np.asarray(my).sum() == 1
    # expected place from the closed form: (x, y) -> centre + R (p - centre) + t
    xc, yc = W / 2, H / 2
    want = (xc - (r + 0.5 - yc) + 0.125 * W, yc + (c + 0.5 - xc) + 0.125 * H)
    np.testing.assert_allclose(p[:2], want, atol=1e-4)


def test_random_affine_moves_image_and_masks_together():
    blob = np.zeros((H, W), np.float32)
    blob[20:23, 30:33] = 1.0
    x = jnp.asarray(blob)
    m = jnp.asarray(blob[None] > 0)
    for k in jax.random.split(KEY, 4):
        y, my = A.random_affine(k, x, m, rotation_deg=(-30, 30), scale=(0.8, 1.2))
        matrix = np.asarray(A.sample_affine(k, (H, W), rotation_deg=(-30, 30), scale=(0.8, 1.2)))
        p = matrix @ np.array([31.5, 21.5, 1.0])  # the blob's centre
        y = np.asarray(y)
        rows, cols = np.mgrid[0:H, 0:W] + 0.5
        centroid = np.array([(y * cols).sum(), (y * rows).sum()]) / y.sum()
        np.testing.assert_allclose(centroid, p[:2], atol=0.15)
        assert np.asarray(my)[0, int(p[1]), int(p[0])]


def test_elastic_moves_masks_exactly_like_the_image():
    mask = np.asarray(_bordered(9)[..., 0] > 0.5, np.float32)
    x = jnp.asarray(mask)
    m = jnp.asarray(mask[None])
    y, my = A.elastic(KEY, x, m, alpha_px=(3.0, 3.0), mask_interpolation="linear")
    np.testing.assert_allclose(np.asarray(my)[0], np.asarray(y), atol=1e-6)
    assert np.abs(np.asarray(y) - mask).max() > 0.5  # it did move
    y0, m0 = A.elastic(KEY, x, m, alpha_px=(0.0, 0.0))
    np.testing.assert_allclose(np.asarray(y0), mask, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(m0), np.asarray(m))


def test_resize_keeps_constants_and_mask_labels():
    x = jnp.full((H, W, 2), 0.3, jnp.float32)
    m = jnp.zeros((1, H, W), bool).at[0, :, : W // 2].set(True)
    y, my = A.resize(KEY, x, m, shape=(32, 48))
    np.testing.assert_allclose(np.asarray(y), 0.3, atol=1e-6)
    assert my.dtype == jnp.bool_ and my.shape == (1, 32, 48)
    np.testing.assert_array_equal(np.asarray(my)[0], np.arange(48)[None, :].repeat(32, 0) < 24)


# --------------------------------------------------------------------------- composition


def _add(v):
    def f(key, image, masks):
        return image + v, masks

    return f


def test_composition_semantics():
    x = jnp.zeros((4, 4), jnp.float32)
    m = jnp.zeros((1, 4, 4))
    assert float(A.with_probability(0.0, _add(1.0))(KEY, x, m)[0][0, 0]) == 0.0
    assert float(A.with_probability(1.0, _add(1.0))(KEY, x, m)[0][0, 0]) == 1.0
    assert float(A.one_of([_add(1.0), _add(2.0)], weights=(0.0, 1.0))(KEY, x, m)[0][0, 0]) == 2.0
    assert float(A.sequence(_add(1.0), _add(2.0))(KEY, x, m)[0][0, 0]) == 3.0
    some = A.some_of([_add(1.0), _add(2.0), _add(4.0), _add(8.0)], n=(1, 3), weights=(1, 1, 0, 1))
    counts = set()
    bits_all = jax.jit(jax.vmap(lambda k: some(k, x, m)[0][0, 0]))(jax.random.split(KEY, 20))
    for bits in np.asarray(bits_all).astype(int):
        assert not bits & 4  # zero weight is never drawn
        counts.add(bin(bits).count("1"))
    assert counts == {1, 2, 3}


# --------------------------------------------------------------------------- determinism, jit, vmap


class ParityTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    @parameterized.named_parameters(
        *[
            (n, n)
            for n in (
                "motion_blur",
                "coarse_dropout",
                "elastic",
                "burnt_in_text",
                "brightness_contrast",
                "fog",
                "drizzle",
            )
        ]
    )
    def test_jit_matches_eager_and_key_determines_output(self, name):
        f = TRANSFORMS[name]
        x, m = _image(), _masks()
        y1, m1 = self.variant(f)(KEY, x, m)
        y2, m2 = f(KEY, x, m)
        # fog truncates a blend to 8-bit levels: XLA may fuse the blend's multiply-add under jit,
        # which can move a value sitting on a level boundary by one level
        atol = 1.0 / 255.0 + 1e-6 if name == "fog" else 1e-5
        np.testing.assert_allclose(np.asarray(y1), np.asarray(y2), atol=atol)
        np.testing.assert_array_equal(np.asarray(m1), np.asarray(m2))
        y3, _ = self.variant(f)(KEY, x, m)
        np.testing.assert_array_equal(np.asarray(y1), np.asarray(y3))

    @parameterized.named_parameters(
        *[(n, n) for n in ("binomial_blur", "random_affine", "clahe", "mixture_window", "fog", "drizzle")]
    )
    def test_vmap_equals_loop(self, name):
        f = jax.jit(TRANSFORMS[name])
        keys = jax.random.split(KEY, 3)
        xs = jnp.stack([_image(i) for i in range(3)])
        ms = jnp.stack([_masks(i) for i in range(3)])
        yb, mb = jax.jit(jax.vmap(TRANSFORMS[name]))(keys, xs, ms)
        for i in range(3):
            y, mi = f(keys[i], xs[i], ms[i])
            np.testing.assert_allclose(np.asarray(yb[i]), np.asarray(y), atol=1e-5)
            np.testing.assert_array_equal(np.asarray(mb[i]), np.asarray(mi))


@pytest.mark.slow
def test_default_pipeline_shapes_range_and_determinism():
    raw = jnp.exp(-3.0 * _bordered(11)[..., 0]) + 0.01
    m = _masks()
    train = A.default_pipeline((32, 48))
    keys = jax.random.split(jax.random.key(7), 2)
    y, my = train(keys[0], raw, m)
    assert y.shape == (32, 48, 3) and my.shape == (3, 32, 48) and my.dtype == jnp.bool_
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    np.testing.assert_array_equal(np.asarray(train(keys[0], raw, m)[0]), np.asarray(y))
    outs = [np.asarray(train(k, raw, m)[0]) for k in jax.random.split(keys[1], 4)]
    assert not all(np.array_equal(o, y) for o in outs)
    batch = (keys, jnp.stack([raw, raw]), jnp.stack([m, m]))
    _count_compiles(
        {
            "default_pipeline": lambda: A.default_pipeline((32, 48))(keys[0], raw, m),
            "apply_batch": lambda: A.apply_batch(A.default_pipeline((32, 48)), *batch),
        }
    )


def test_validation_pipeline_and_batch_modes():
    raw = jnp.exp(-3.0 * _bordered(11)[..., 0]) + 0.01
    m = _masks()
    keys = jax.random.split(jax.random.key(7), 2)
    val = A.validation_pipeline((H, W))
    v, mv = jax.jit(val)(keys[0], raw, m)
    want, _ = A.mixture_window(KEY, A.invert(KEY, A.negative_log(KEY, raw, m)[0], m)[0], m)
    np.testing.assert_allclose(np.asarray(v), 1.0 - np.asarray(want), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(mv), np.asarray(m))
    batch = jnp.stack([raw, raw])
    mb = jnp.stack([m, m])
    a = jax.jit(lambda k, i, mm: A.apply_batch(val, k, i, mm))(keys, batch, mb)
    b = jax.jit(lambda k, i, mm: A.apply_batch(val, k, i, mm, vectorize=False))(keys, batch, mb)
    np.testing.assert_allclose(np.asarray(a[0]), np.asarray(b[0]), atol=1e-6)
    np.testing.assert_allclose(np.asarray(a[0][0]), np.asarray(v), atol=1e-6)


@pytest.mark.slow
def test_render_augmented_fuses_render_masks_and_augment():
    import fluorojax as fj

    data = np.zeros((16, 16, 16), np.float32)
    labels = np.zeros((16, 16, 16), np.int32)
    data[4:12, 4:12, 4:12] = 0.02
    labels[6:10, 6:10, 6:10] = 7
    affine = np.diag([2.0, 2.0, 2.0, 1.0]).astype(np.float32)
    affine[:3, 3] = -15.0
    volume = fj.Volume(data, affine, labels)
    camera = fj.Camera(16, 16, 2.0, 1000.0)
    poses = fj.carm_pose(jnp.asarray([0.0, 90.0]), jnp.asarray([0.0, 0.0]), 600.0)
    fused = jax.jit(fj.render_augmented, static_argnames=("transform", "label_ids", "method", "vectorize"))
    images, masks = fused(KEY, volume, camera, poses, A.identity, label_ids=(7, 3))
    want = np.exp(-np.asarray(fj.render(volume, camera, poses)))
    np.testing.assert_allclose(np.asarray(images), want, rtol=1e-5)
    cube = volume.replace(data=jnp.asarray((labels == 7).astype(np.float32)))
    np.testing.assert_array_equal(np.asarray(masks[:, 0]), np.asarray(fj.render(cube, camera, poses)) > 0)
    assert masks.shape == (2, 2, 16, 16) and masks[:, 0].any() and not masks[:, 1].any()


# --------------------------------------------------------------------------- gradients


def _smooth_raw(h=24, w=32):
    """A raw intensity image of two tissue classes with smooth variation inside each: k-means
    finds two clusters far apart, so a small change moves no pixel across their boundary (where
    the window statistics jump); each class has a lone darkest and brightest pixel, so a small
    change does not swap which pixel is a class's extreme (a kink of the window knots)."""
    rows, cols = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    tissue = cols > 0.5
    li = 0.5 + 1.5 * tissue + 0.2 * np.sin(5.0 * rows + 3.0 * cols) + 0.1 * rows * cols
    for r, c, side in ((1, 1, -1), (2, 3, 1), (1, w - 2, -1), (2, w - 4, 1)):
        same = li[tissue == tissue[r, c]]
        li[r, c] = (same.min() - 0.04) if side < 0 else (same.max() + 0.04)
    return jnp.asarray(np.exp(-li).astype(np.float32))


def _directional_check(f, x, *, eps, rtol, seed=0):
    """d/dt loss(f(x + t d)) at 0 by jax.grad against central differences, for a random
    direction d and a random linear loss of f's output."""
    rng = np.random.default_rng(seed)
    d = jnp.asarray(rng.normal(size=x.shape).astype(np.float32))
    w = jnp.asarray(rng.normal(size=jax.eval_shape(f, x).shape).astype(np.float32))

    def loss(v):
        return jnp.sum(w * f(v))

    analytic = float(jnp.vdot(jax.grad(loss)(x), d))
    fd = (float(loss(x + eps * d)) - float(loss(x - eps * d))) / (2.0 * eps)
    assert abs(fd) > 1e-3, fd
    np.testing.assert_allclose(analytic, fd, rtol=rtol)


def test_validation_pipeline_gradient_matches_finite_differences():
    raw = _smooth_raw()
    m = jnp.zeros((1,) + raw.shape, bool)
    val = A.validation_pipeline((16, 24))
    _directional_check(lambda x: val(KEY, x, m)[0], raw, eps=3e-4, rtol=1e-2)


def test_mixture_window_reverse_mode_works():  # k-means' while_loop stays off the gradient path
    raw = _smooth_raw()
    m = jnp.zeros((1,) + raw.shape, bool)
    g = jax.grad(lambda x: jnp.sum(A.mixture_window(KEY, x, m)[0][..., 1]))(raw)
    assert np.isfinite(np.asarray(g)).all() and float(jnp.abs(g).sum()) > 0


# A key whose draws in the training pipeline (intensity_count=3) invert, then apply the
# intensity branch with sharpen-or-emboss, Gaussian contrast and a dropout: no 8-bit step
# (found by replaying the pipeline's key splits and draws).
SMOOTH_TRAIN_KEY = 18


@pytest.mark.slow
def test_default_pipeline_gradient_matches_finite_differences():
    raw = _smooth_raw()
    m = jnp.zeros((1,) + raw.shape, bool)
    train = A.default_pipeline((16, 24), intensity_count=3)
    key = jax.random.key(SMOOTH_TRAIN_KEY)
    val = A.validation_pipeline((16, 24))
    assert not np.allclose(np.asarray(train(key, raw, m)[0]), np.asarray(val(key, raw, m)[0]))
    _directional_check(lambda x: train(key, x, m)[0], raw, eps=3e-4, rtol=1e-2)


@pytest.mark.parametrize("name", ["clahe", "fog", "drizzle", "quantum_noise"])
def test_eight_bit_steps_have_their_documented_stand_in_gradient(name):
    x = _image(3, c=3)[:32, :32]
    m = _masks()[:, :32, :32]
    f = P(A.drizzle, blur=1) if name == "drizzle" else TRANSFORMS[name]
    g = np.asarray(jax.grad(lambda v: jnp.sum(f(KEY, v, m)[0]))(x))
    assert np.isfinite(g).all()
    if name == "clahe":  # on one channel the tile maps are monotone: slopes >= 0, not all 0
        gray = np.asarray(jax.grad(lambda v: jnp.sum(f(KEY, v, m)[0]))(x[..., 0]))
        assert gray.min() >= 0.0 and gray.mean() > 0.1
    elif name == "fog":  # 1 - a, a in [0, alpha t] with t <= 1 (the default range)
        assert g.max() <= 1.0 + 1e-6 and g.min() >= 1.0 - 0.08 - 1e-6 and g.min() < 1.0
    elif name == "drizzle":  # brightness, except 0 under a drop
        assert (np.isclose(g, 0.0) | np.isclose(g, 0.7)).all() and (g == 0).any()
    else:
        np.testing.assert_array_equal(g, 1.0)


def test_render_augmented_gradient_wrt_pose():
    """The DRR's gradient against central differences (identity augmentation), and through the
    validation pipeline the chain rule of that gradient and the pipeline's image gradient
    (checked against differences above): the pipeline's k-means assignment makes the augmented
    DRR jump where a pixel changes cluster, so differences of the whole are not a truth."""
    import fluorojax as fj

    i, j, k = np.mgrid[0:16, 0:16, 0:16]
    r2 = (i - 7.5) ** 2 + (j - 7.5) ** 2 + ((k - 7.5) * 1.3) ** 2
    data = (0.03 / (1.0 + np.exp((np.sqrt(r2) - 5.5) * 1.5))).astype(np.float32)
    labels = (r2 < 16).astype(np.int32) * 7
    affine = np.diag([2.0, 2.0, 2.0, 1.0]).astype(np.float32)
    affine[:3, 3] = -15.0
    volume = fj.Volume(data, affine, labels)
    camera = fj.Camera(16, 16, 2.0, 1000.0)
    pose = fj.carm_pose(jnp.asarray([20.0]), jnp.asarray([5.0]), 600.0)
    val = A.validation_pipeline((16, 16))

    def images(t, transform):
        moved = pose.at[:, :3, 3].add(t[0] * jnp.asarray([1.0, -0.5, 0.3]))
        return fj.render_augmented(KEY, volume, camera, moved, transform, label_ids=(7,))[0]

    t0 = jnp.zeros((1,))
    _directional_check(lambda t: images(t, A.identity), t0, eps=0.05, rtol=3e-2)
    w = jnp.asarray(np.random.default_rng(1).normal(size=(1, 16, 16, 3)).astype(np.float32))
    m = jnp.zeros((1, 16, 16), bool)
    drr, pullback = jax.vjp(lambda t: images(t, A.identity), t0)
    g_image = jax.grad(lambda x: jnp.sum(w[0] * val(KEY, x, m)[0]))(drr[0])
    g_pose = jax.grad(lambda t: jnp.sum(w * images(t, val)))(t0)
    assert float(jnp.abs(g_pose).sum()) > 0
    np.testing.assert_allclose(np.asarray(g_pose), np.asarray(pullback(g_image[None])[0]), rtol=1e-4)


def _count_compiles(calls):
    """Call each of ``calls`` (name -> thunk) three times; assert the 2nd and 3rd compile
    nothing (JAX's backend-compile events)."""
    for name, call in calls.items():
        jax.block_until_ready(call())
        with count_compilations() as again:
            jax.block_until_ready(call())
            jax.block_until_ready(call())
        assert again.value == 0, f"{name} compiled {again.value} more times"


def test_eager_pipelines_compile_once():
    import fluorojax as fj

    raw = _smooth_raw(16, 16)
    m = jnp.zeros((2, 16, 16), bool)
    keys = jax.random.split(KEY, 2)
    volume = fj.Volume(
        np.full((8, 8, 8), 0.02, np.float32), np.diag([2.0, 2.0, 2.0, 1.0]), np.ones((8, 8, 8), np.int32)
    )
    camera = fj.Camera(16, 16, 2.0, 1000.0)
    poses = fj.carm_pose(jnp.asarray([0.0, 30.0]), jnp.asarray([0.0, 0.0]), 600.0)
    calls = {
        "validation_pipeline": lambda: A.validation_pipeline((16, 16))(KEY, raw, m),
        "apply_batch": lambda: A.apply_batch(
            A.validation_pipeline((16, 16)), keys, jnp.stack([raw, raw]), jnp.stack([m, m])
        ),
        "render_augmented": lambda: fj.render_augmented(
            KEY, volume, camera, poses, A.validation_pipeline((16, 16)), label_ids=[1]
        ),
    }
    _count_compiles(calls)
