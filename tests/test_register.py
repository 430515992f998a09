"""Tests for fluorojax.register: similarity metrics, pose errors and pose optimisation."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import parameterized

from fluorojax import transforms
from fluorojax.camera import Camera
from fluorojax.register import metrics

# ---------------------------------------------------------------------------------------------
# numpy float64 references


def _np_ncc(x, y, w=None):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    w = np.ones_like(x) if w is None else np.asarray(w, np.float64)
    mx, my = np.sum(w * x) / np.sum(w), np.sum(w * y) / np.sum(w)
    cov = np.sum(w * (x - mx) * (y - my))
    return cov / np.sqrt(np.sum(w * (x - mx) ** 2) * np.sum(w * (y - my) ** 2))


def _np_patch_ncc(x, y, p):
    h, w = x.shape[0] // p, x.shape[1] // p
    vals = [_np_ncc(x[i * p : (i + 1) * p, j * p : (j + 1) * p], y[i * p : (i + 1) * p, j * p : (j + 1) * p]) for i in range(h) for j in range(w)]
    return np.mean(vals)


def _np_sobel(a):
    a = np.asarray(a, np.float64)
    kc = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float64)
    kr = kc.T
    h, w = a.shape
    dc = np.zeros((h - 2, w - 2))
    dr = np.zeros((h - 2, w - 2))
    for i in range(h - 2):
        for j in range(w - 2):
            dc[i, j] = np.sum(kc * a[i : i + 3, j : j + 3])
            dr[i, j] = np.sum(kr * a[i : i + 3, j : j + 3])
    return dc, dr


def _np_mi(x, y, bins, sigma):
    def memberships(a):
        a = np.asarray(a, np.float64).ravel()
        a = (a - a.min()) / (a.max() - a.min())
        centres = np.linspace(0, 1, bins)
        k = np.exp(-0.5 * ((a[:, None] - centres[None]) / sigma) ** 2)
        return k / k.sum(1, keepdims=True)

    joint = memberships(x).T @ memberships(y)
    joint /= joint.sum()
    px, py = joint.sum(1), joint.sum(0)
    nz = joint > 0
    return np.sum(joint[nz] * np.log(joint[nz] / np.outer(px, py)[nz]))


def _images(seed=0, shape=(24, 20)):
    rng = np.random.default_rng(seed)
    r, c = np.mgrid[: shape[0], : shape[1]]
    base = np.exp(-((r - 10.0) ** 2 + (c - 8.0) ** 2) / 30.0) + 0.5 * np.sin(c / 3.0)
    x = base + 0.05 * rng.standard_normal(shape)
    y = 0.7 * base + 0.2 * np.cos(r / 4.0) + 0.05 * rng.standard_normal(shape)
    return x.astype(np.float32), y.astype(np.float32)


# ---------------------------------------------------------------------------------------------
# image similarities

SIMILARITIES = {
    "ncc": metrics.ncc,
    "patch_ncc": lambda x, y, m=None: metrics.patch_ncc(x, y, m, patch_size=6),
    "multiscale_ncc": lambda x, y, m=None: metrics.multiscale_ncc(x, y, m, patch_sizes=(None, 6), weights=(0.5, 0.5)),
    "gradient_ncc": metrics.gradient_ncc,
    "mutual_information": lambda x, y, m=None: metrics.mutual_information(x, y, m, bins=16),
}


class SimilarityTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_ncc_matches_numpy(self):
        x, y = _images()
        w = (np.random.default_rng(1).random(x.shape) > 0.3).astype(np.float32)
        got = self.variant(metrics.ncc)(x, y)
        got_masked = self.variant(metrics.ncc)(x, y, w)
        np.testing.assert_allclose(got, _np_ncc(x, y), atol=1e-5)
        np.testing.assert_allclose(got_masked, _np_ncc(x, y, w), atol=1e-5)

    @chex.variants(with_jit=True, without_jit=True)
    def test_ncc_self_is_one_and_affine_invariant(self):
        x, y = _images()
        f = self.variant(metrics.ncc)
        np.testing.assert_allclose(f(x, x), 1.0, atol=1e-5)
        np.testing.assert_allclose(f(x, 3.5 * x - 20.0), 1.0, atol=1e-5)
        np.testing.assert_allclose(f(x, -2.0 * x + 1.0), -1.0, atol=1e-5)
        np.testing.assert_allclose(f(4.0 * x + 7.0, 0.01 * y - 3.0), f(x, y), atol=1e-5)

    @parameterized.parameters(*SIMILARITIES)
    def test_self_similarity_and_affine_invariance(self, name):
        x, y = _images(shape=(24, 24))
        f = jax.jit(SIMILARITIES[name])
        if name != "mutual_information":
            np.testing.assert_allclose(f(x, x), 1.0, atol=1e-5)
        np.testing.assert_allclose(f(x, 2.5 * x + 4.0), f(x, x), atol=1e-4)
        np.testing.assert_allclose(f(2.5 * x + 4.0, 0.5 * y - 1.0), f(x, y), atol=1e-4)
        self.assertGreater(float(f(x, x)), float(f(x, y)))

    def test_patch_ncc_matches_numpy(self):
        x, y = _images(shape=(25, 19))  # remainders are cropped
        np.testing.assert_allclose(metrics.patch_ncc(x, y, patch_size=6), _np_patch_ncc(x, y, 6), atol=1e-5)

    def test_multiscale_is_weighted_sum(self):
        x, y = _images(shape=(24, 24))
        want = 0.3 * _np_ncc(x, y) + 0.7 * _np_patch_ncc(x, y, 8)
        got = metrics.multiscale_ncc(x, y, patch_sizes=(None, 8), weights=(0.3, 0.7))
        np.testing.assert_allclose(got, want, atol=1e-5)

    def test_gradient_ncc_matches_numpy_sobel(self):
        x, y = _images()
        (xc, xr), (yc, yr) = _np_sobel(x), _np_sobel(y)
        want = 0.5 * (_np_ncc(xc, yc) + _np_ncc(xr, yr))
        np.testing.assert_allclose(metrics.gradient_ncc(x, y), want, atol=1e-5)

    def test_gradient_ncc_ignores_intensity_ramps(self):
        x, _ = _images()
        r, c = np.mgrid[: x.shape[0], : x.shape[1]]
        # a linear ramp adds a constant to each Sobel derivative, which NCC removes
        np.testing.assert_allclose(metrics.gradient_ncc(x, x + 0.3 * r - 0.2 * c), 1.0, atol=1e-5)

    def test_mutual_information_matches_numpy(self):
        x, y = _images()
        np.testing.assert_allclose(metrics.mutual_information(x, y, bins=16, sigma=0.05), _np_mi(x, y, 16, 0.05), rtol=1e-4)
        np.testing.assert_allclose(metrics.mutual_information(x, x, bins=8), _np_mi(x, x, 8, 1.0 / 7.0), rtol=1e-4)

    def test_mutual_information_of_independent_images_is_small(self):
        x, _ = _images()
        noise = np.random.default_rng(5).random(x.shape).astype(np.float32)
        self.assertLess(float(metrics.mutual_information(x, noise, bins=8)), 0.1 * float(metrics.mutual_information(x, x, bins=8)))

    def test_mask_zero_region_is_ignored(self):
        x, y = _images(shape=(24, 24))
        mask = np.ones_like(x)
        mask[:, 12:] = 0
        y2 = y.copy()
        y2[:, 13:] = 100.0 * np.random.default_rng(3).random((24, 11))  # beyond the (cropped) masked area
        for name, f in SIMILARITIES.items():
            np.testing.assert_allclose(f(x, y2, mask), f(x, y, mask), atol=1e-5, err_msg=name)

    @parameterized.parameters(*SIMILARITIES)
    def test_gradient_matches_central_differences(self, name):
        x, y = _images(seed=2, shape=(24, 24))
        # isolated extremes, so that the min/max rescaling of MI is smooth over the FD step
        x[0, 0], x[-1, -1], y[0, -1], y[-1, 0] = -2.0, 3.0, -2.0, 3.0
        f = SIMILARITIES[name]
        g = jax.grad(f, argnums=(0, 1))(x, y)
        rng = np.random.default_rng(4)
        vx = rng.standard_normal(x.shape).astype(np.float32)
        vy = rng.standard_normal(y.shape).astype(np.float32)
        h = 3e-3
        fd = (f(x + h * vx, y + h * vy) - f(x - h * vx, y - h * vy)) / (2 * h)
        ad = np.sum(g[0] * vx) + np.sum(g[1] * vy)
        np.testing.assert_allclose(ad, fd, rtol=2e-2, atol=1e-4)
        self.assertTrue(np.all(np.isfinite(g[0])) and np.all(np.isfinite(g[1])))

    @parameterized.parameters(*SIMILARITIES)
    def test_constant_image_gives_finite_values_and_gradients(self, name):
        x, _ = _images(shape=(24, 24))
        const = np.full_like(x, 2.0)
        f = SIMILARITIES[name]
        val, grad = jax.value_and_grad(f)(const, x)
        np.testing.assert_allclose(val, 0.0, atol=1e-6)
        self.assertTrue(np.all(np.isfinite(grad)))

    def test_vmap_equals_loop(self):
        x, y = _images(shape=(24, 24))
        xs = np.stack([x, x + y, 2 * y])
        for name, f in SIMILARITIES.items():
            batched = jax.vmap(f, in_axes=(0, None))(xs, y)
            np.testing.assert_allclose(batched, [f(a, y) for a in xs], atol=1e-5, err_msg=name)

    def test_bad_input_raises(self):
        x, y = _images()
        with self.assertRaisesRegex(ValueError, "equal shape"):
            metrics.ncc(x, y[:-1])
        with self.assertRaisesRegex(ValueError, "mask"):
            metrics.ncc(x, y, np.ones((3, 3)))
        with self.assertRaisesRegex(ValueError, "patch_size"):
            metrics.patch_ncc(x, y, patch_size=1)
        with self.assertRaisesRegex(ValueError, "bins"):
            metrics.mutual_information(x, y, bins=1)
        with self.assertRaisesRegex(ValueError, "equal length"):
            metrics.multiscale_ncc(x, y, patch_sizes=(None, 4), weights=(1.0,))


# ---------------------------------------------------------------------------------------------
# pose errors


def _pose(rotvec, translation):
    return transforms.make_pose(transforms.so3_exp(jnp.asarray(rotvec, jnp.float32)), translation)


class PoseErrorTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_rotation_and_translation_errors(self):
        a = _pose([0.1, -0.2, 0.3], [10.0, 20.0, -5.0])
        axis = np.array([1.0, 2.0, -2.0]) / 3.0
        b = a @ _pose(0.25 * axis, [3.0, 0.0, 4.0])
        np.testing.assert_allclose(self.variant(metrics.rotation_error)(a, b), 0.25, atol=1e-5)
        # b's translation = a's + R_a (3, 0, 4): distance 5 mm
        np.testing.assert_allclose(self.variant(metrics.translation_error)(a, b), 5.0, atol=1e-4)

    @chex.variants(with_jit=True, without_jit=True)
    def test_mtre_closed_forms(self):
        rng = np.random.default_rng(0)
        points = rng.uniform(-50, 50, (8, 3)).astype(np.float32)
        a = _pose([0.3, 0.1, -0.2], [0.0, -800.0, 0.0])
        # moving the camera by d (world) moves every point by |d| in the camera frame
        shift = transforms.make_pose(jnp.eye(3), [1.0, -2.0, 2.0])
        np.testing.assert_allclose(self.variant(metrics.mtre)(a, shift @ a, points), 3.0, atol=1e-3)
        # rotating the camera by theta about n through the source: |(R - I) v| = 2 sin(theta/2) |v_perp|
        theta, n = 0.2, np.array([0.0, 0.6, 0.8])
        b = a @ _pose(theta * n, [0.0, 0.0, 0.0])
        v = np.asarray(transforms.apply_pose(transforms.invert_pose(a), points), np.float64)
        v_perp = v - (v @ n)[:, None] * n
        want = np.mean(2 * np.sin(theta / 2) * np.linalg.norm(v_perp, axis=1))
        np.testing.assert_allclose(self.variant(metrics.mtre)(a, b, points), want, rtol=1e-4)

    @chex.variants(with_jit=True, without_jit=True)
    def test_reprojection_error_closed_form(self):
        cam = Camera(64, 48, 0.5, 1000.0)
        a = _pose([0.05, 0.0, 0.1], [5.0, -700.0, 3.0])
        depth = np.array([300.0, 450.0, 600.0])
        cam_points = np.stack([np.array([10.0, -5.0, 0.0]) + np.array([0, 0, 1.0]) * d for d in depth])
        points = np.asarray(transforms.apply_pose(a, cam_points), np.float32)
        # moving the source by d along camera +x shifts a point at depth z by -sdd d / (z px) columns
        d = 2.0
        b = a @ transforms.make_pose(jnp.eye(3), [d, 0.0, 0.0])
        want = np.mean(1000.0 * d / (depth * 0.5))
        np.testing.assert_allclose(self.variant(metrics.reprojection_error)(cam, a, b, points), want, rtol=1e-4)

    def test_batched_poses(self):
        points = np.zeros((4, 3), np.float32) + [0.0, 10.0, 0.0]
        a = _pose([0.0, 0.0, 0.0], [0.0, -500.0, 0.0])
        bs = jnp.stack([transforms.make_pose(jnp.eye(3), [t, 0.0, 0.0]) @ a for t in (0.0, 1.0, 2.5)])
        np.testing.assert_allclose(metrics.mtre(a, bs, points), [0.0, 1.0, 2.5], atol=1e-4)
        np.testing.assert_allclose(metrics.translation_error(a, bs), [0.0, 1.0, 2.5], atol=1e-4)
        np.testing.assert_allclose(metrics.rotation_error(a, bs), [0.0, 0.0, 0.0], atol=1e-3)

    def test_bad_points_raise(self):
        a = _pose([0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
        with self.assertRaisesRegex(ValueError, r"\(N, 3\)"):
            metrics.mtre(a, a, np.zeros((4, 2)))
