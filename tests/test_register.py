"""Tests for fluorojax.registration: similarity metrics, pose errors and pose optimisation."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from _compiles import count_compilations
from absl.testing import parameterized

from fluorojax import transforms
from fluorojax.camera import Camera, carm_pose
from fluorojax.raycast import render
from fluorojax.registration import metrics, optimize
from fluorojax.volume import Volume

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
    vals = [
        _np_ncc(x[i * p : (i + 1) * p, j * p : (j + 1) * p], y[i * p : (i + 1) * p, j * p : (j + 1) * p])
        for i in range(h)
        for j in range(w)
    ]
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

# jitted: one compilation per function is much cheaper than eager per-primitive dispatch
SIMILARITIES = {
    "ncc": jax.jit(metrics.ncc),
    "patch_ncc": jax.jit(lambda x, y, m=None: metrics.patch_ncc(x, y, m, patch_size=6)),
    "multiscale_ncc": jax.jit(
        lambda x, y, m=None: metrics.multiscale_ncc(x, y, m, patch_sizes=(None, 6), weights=(0.5, 0.5))
    ),
    "gradient_ncc": jax.jit(metrics.gradient_ncc),
    "gradient_field_alignment": jax.jit(metrics.gradient_field_alignment),
    "mutual_information": jax.jit(lambda x, y, m=None: metrics.mutual_information(x, y, m, bins=16)),
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
        f = SIMILARITIES[name]
        if name not in ("mutual_information", "gradient_field_alignment"):
            np.testing.assert_allclose(f(x, x), 1.0, atol=1e-5)
        np.testing.assert_allclose(f(x, 2.5 * x + 4.0), f(x, x), atol=1e-4)
        np.testing.assert_allclose(f(2.5 * x + 4.0, 0.5 * y - 1.0), f(x, y), atol=1e-4)
        self.assertGreater(float(f(x, x)), float(f(x, y)))

    def test_patch_ncc_matches_numpy(self):
        x, y = _images(shape=(25, 19))  # remainders are cropped
        np.testing.assert_allclose(SIMILARITIES["patch_ncc"](x, y), _np_patch_ncc(x, y, 6), atol=1e-5)

    def test_multiscale_is_weighted_sum(self):
        x, y = _images(shape=(24, 24))
        want = 0.3 * _np_ncc(x, y) + 0.7 * _np_patch_ncc(x, y, 8)
        got = jax.jit(lambda a, b: metrics.multiscale_ncc(a, b, patch_sizes=(None, 8), weights=(0.3, 0.7)))(x, y)
        np.testing.assert_allclose(got, want, atol=1e-5)

    def test_gradient_ncc_matches_numpy_sobel(self):
        x, y = _images()
        (xc, xr), (yc, yr) = _np_sobel(x), _np_sobel(y)
        want = 0.5 * (_np_ncc(xc, yc) + _np_ncc(xr, yr))
        np.testing.assert_allclose(SIMILARITIES["gradient_ncc"](x, y), want, atol=1e-5)

    def test_gradient_field_alignment_matches_numpy(self):
        x, y = _images()
        (xc, xr), (yc, yr) = _np_sobel(x), _np_sobel(y)
        nx, ny = xc**2 + xr**2, yc**2 + yr**2
        ex, ey = (0.5 * np.mean(np.sqrt(nx))) ** 2, (0.5 * np.mean(np.sqrt(ny))) ** 2
        want = np.mean((xc * yc + xr * yr) ** 2 / ((nx + ex) * (ny + ey)))
        np.testing.assert_allclose(SIMILARITIES["gradient_field_alignment"](x, y), want, rtol=1e-4)
        # squared cosines: the sign of the contrast does not matter
        np.testing.assert_allclose(SIMILARITIES["gradient_field_alignment"](x, -y), want, rtol=1e-4)

    def test_gradient_ncc_ignores_intensity_ramps(self):
        x, _ = _images()
        r, c = np.mgrid[: x.shape[0], : x.shape[1]]
        # a linear ramp adds a constant to each Sobel derivative, which NCC removes
        np.testing.assert_allclose(SIMILARITIES["gradient_ncc"](x, x + 0.3 * r - 0.2 * c), 1.0, atol=1e-5)

    def test_mutual_information_matches_numpy(self):
        x, y = _images()
        np.testing.assert_allclose(
            jax.jit(lambda a, b: metrics.mutual_information(a, b, bins=16, sigma=0.05))(x, y),
            _np_mi(x, y, 16, 0.05),
            rtol=1e-4,
        )
        np.testing.assert_allclose(SIMILARITIES["mutual_information"](x, x), _np_mi(x, x, 16, 1.0 / 15.0), rtol=1e-4)

    def test_mutual_information_of_independent_images_is_small(self):
        x, _ = _images()
        noise = np.random.default_rng(5).random(x.shape).astype(np.float32)
        mi = SIMILARITIES["mutual_information"]
        self.assertLess(float(mi(x, noise)), 0.1 * float(mi(x, x)))

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
        g = jax.jit(jax.grad(f, argnums=(0, 1)))(x, y)
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
        val, grad = jax.jit(jax.value_and_grad(f))(const, x)
        np.testing.assert_allclose(val, 0.0, atol=1e-6)
        self.assertTrue(np.all(np.isfinite(grad)))

    def test_vmap_equals_loop(self):
        x, y = _images(shape=(24, 24))
        xs = np.stack([x, x + y, 2 * y])
        for name, f in SIMILARITIES.items():
            batched = jax.jit(jax.vmap(f, in_axes=(0, None)))(xs, y)
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
    @chex.variants(with_jit=True)
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

    @chex.variants(with_jit=True)
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
        errors = jax.jit(
            lambda a, b: (metrics.mtre(a, b, points), metrics.translation_error(a, b), metrics.rotation_error(a, b))
        )
        mtre, translation, rotation = errors(a, bs)
        np.testing.assert_allclose(mtre, [0.0, 1.0, 2.5], atol=1e-4)
        np.testing.assert_allclose(translation, [0.0, 1.0, 2.5], atol=1e-4)
        np.testing.assert_allclose(rotation, [0.0, 0.0, 0.0], atol=1e-3)

    def test_bad_points_raise(self):
        a = _pose([0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
        with self.assertRaisesRegex(ValueError, r"\(N, 3\)"):
            metrics.mtre(a, a, np.zeros((4, 2)))


# ---------------------------------------------------------------------------------------------
# pose optimisation


def _phantom(n=32, spacing=2.0):
    """A 64 mm cube of a few ellipsoids (mu in 1/mm), centred on the world origin."""
    i = (np.arange(n) - (n - 1) / 2) * spacing
    x, y, z = np.meshgrid(i, i, i, indexing="ij")
    data = np.zeros((n, n, n), np.float32)
    blobs = [
        ((0, 0, 0), (22, 16, 26), 0.02),
        ((8, -4, 6), (6, 8, 5), 0.05),
        ((-9, 5, -8), (5, 4, 9), 0.04),
        ((2, 8, -12), (4, 4, 4), 0.06),
    ]
    for c, r, v in blobs:
        data += v * ((((x - c[0]) / r[0]) ** 2 + ((y - c[1]) / r[1]) ** 2 + ((z - c[2]) / r[2]) ** 2) <= 1)
    affine = np.diag([spacing] * 3 + [1.0])
    affine[:3, 3] = -(n - 1) / 2 * spacing
    return Volume(data, affine)


CAMERA = Camera(32, 32, 4.0, 1000.0)
POINTS = np.random.default_rng(0).uniform(-20, 20, (8, 3)).astype(np.float32)


def _offset(pose, rotation, translation, parameterization="rotation_translation"):
    params = {"rotation": jnp.asarray(rotation, jnp.float32), "translation": jnp.asarray(translation, jnp.float32)}
    return optimize.correction_to_pose(params, pose, jnp.zeros(3), parameterization)


class ParameterizationTest(chex.TestCase):
    def setUp(self):
        super().setUp()
        self.init = transforms.make_pose(transforms.so3_exp(jnp.array([0.2, -0.1, 0.4])), [10.0, -600.0, 5.0])
        self.pivot = jnp.array([3.0, -4.0, 5.0])

    @parameterized.parameters("rotation_translation", "se3")
    def test_zero_is_identity(self, parameterization):
        zero = {"rotation": jnp.zeros(3), "translation": jnp.zeros(3)}
        pose = optimize.correction_to_pose(zero, self.init, self.pivot, parameterization)
        np.testing.assert_allclose(pose, self.init, atol=1e-5)

    @parameterized.parameters("rotation_translation", "se3")
    def test_pure_rotation_keeps_the_pivot(self, parameterization):
        params = {"rotation": jnp.array([0.1, -0.05, 0.08]), "translation": jnp.zeros(3)}
        pose = optimize.correction_to_pose(params, self.init, self.pivot, parameterization)
        before = transforms.apply_pose(transforms.invert_pose(self.init), self.pivot)
        after = transforms.apply_pose(transforms.invert_pose(pose), self.pivot)
        np.testing.assert_allclose(after, before, atol=1e-3)
        np.testing.assert_allclose(
            metrics.rotation_error(pose, self.init), np.linalg.norm([0.1, -0.05, 0.08]), atol=1e-5
        )

    def test_translation_moves_points_along_camera_axes(self):
        params = {"rotation": jnp.zeros(3), "translation": jnp.array([1.0, -2.0, 3.0])}
        pose = optimize.correction_to_pose(params, self.init, self.pivot)
        before = transforms.apply_pose(transforms.invert_pose(self.init), POINTS)
        after = transforms.apply_pose(transforms.invert_pose(pose), POINTS)
        np.testing.assert_allclose(after - before, np.broadcast_to([1.0, -2.0, 3.0], POINTS.shape), atol=1e-3)

    def test_pyramid_camera_covers_the_same_detector(self):
        cam = Camera(12, 8, (0.5, 0.7), 900.0, principal_point=(3.0, 5.5))
        small = optimize.pyramid_camera(cam, 4)
        self.assertEqual(small.shape, (3, 2))
        fine = np.asarray(cam.detector_points(), np.float64)
        block_means = fine.reshape(3, 4, 2, 4, 3).mean(axis=(1, 3))
        np.testing.assert_allclose(small.detector_points(), block_means, atol=1e-4)
        np.testing.assert_allclose(optimize.downsample(fine[..., 0], 4), block_means[..., 0], atol=1e-4)
        with self.assertRaisesRegex(ValueError, "divide"):
            optimize.pyramid_camera(cam, 5)

    def test_bad_input_raises(self):
        vol = _phantom(n=8)
        pose = carm_pose(0.0, 0.0, 600.0)
        image = np.zeros(CAMERA.shape, np.float32)
        with self.assertRaisesRegex(ValueError, "target_image"):
            optimize.register(vol, CAMERA, image[:-1], pose)
        with self.assertRaisesRegex(ValueError, "init_pose"):
            optimize.register(vol, CAMERA, image, pose[:3])
        with self.assertRaisesRegex(ValueError, "parameterization"):
            optimize.register(vol, CAMERA, image, pose, parameterization="quaternion")
        with self.assertRaisesRegex(ValueError, "divide"):
            optimize.register(vol, CAMERA, image, pose, scales=(3, 1))
        with self.assertRaisesRegex(ValueError, "mask"):
            optimize.register(vol, CAMERA, image, pose, mask=np.ones((4, 4)))
        with self.assertRaisesRegex(TypeError, "Camera"):
            optimize.register(vol, (32, 32), image, pose)


class RegisterTest(chex.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.volume = _phantom()
        cls.truth = carm_pose(20.0, 10.0, 600.0)

    def test_multistart_pyramid_recovers_pose_and_keeps_the_best_start(self):
        kwargs = {"n_samples": 32}
        target = render(self.volume, CAMERA, self.truth, "trilinear", **kwargs)
        starts = jnp.stack(
            [
                _offset(self.truth, [0.0, 0.0, 2.5], [30.0, -20.0, 0.0]),  # far: a wrong basin
                _offset(self.truth, [0.03, -0.02, 0.04], [3.0, -2.0, 5.0]),
                _offset(self.truth, [-0.05, 0.06, 0.02], [-4.0, 6.0, -12.0]),
            ]
        )
        ones = np.ones(CAMERA.shape, np.float32)
        res = optimize.register(
            self.volume,
            CAMERA,
            target,
            starts,
            method="trilinear",
            steps=(40, 60),
            scales=(2, 1),
            render_kwargs=kwargs,
            similarity=metrics.ncc,
            mask=ones,
        )
        # the starts compete at the coarsest level; the winner goes on alone
        self.assertEqual(int(res.start), int(np.argmin(res.start_losses)))
        self.assertNotEqual(int(res.start), 0)
        self.assertGreater(float(res.start_losses[0]), float(res.start_losses[res.start]) + 0.05)
        initial = metrics.mtre(self.truth, starts[res.start], POINTS)
        self.assertGreater(float(initial), 5.0)
        self.assertLess(float(metrics.mtre(self.truth, res.pose, POINTS)), 0.5)
        np.testing.assert_allclose(res.view_poses[0], res.pose)
        # history: the first step is the initial pose, levels in order, loss recorded per step
        chex.assert_shape(res.losses, (100,))
        chex.assert_shape(res.poses, (100, 4, 4))
        np.testing.assert_array_equal(res.level, [0] * 40 + [1] * 60)
        np.testing.assert_allclose(res.poses[0], starts[res.start], atol=1e-5)
        want0 = -metrics.ncc(
            render(self.volume, optimize.pyramid_camera(CAMERA, 2), starts[res.start], "trilinear", **kwargs),
            optimize.downsample(target, 2),
        )
        np.testing.assert_allclose(res.losses[0], want0, atol=1e-5)
        self.assertLess(float(res.losses[-1]), float(res.losses[40]))
        # the second level starts from the first level's best pose
        np.testing.assert_allclose(res.poses[40], res.start_poses[res.start], atol=1e-4)

    def test_siddon_se3_with_mask_recovers_pose_and_stops_early(self):
        target = np.array(render(self.volume, CAMERA, self.truth, "siddon"))
        mask = np.ones_like(target)
        target[:, :8] = 5.0  # a corrupted band (e.g. a collimator edge), masked out
        mask[:, :8] = 0.0
        init = _offset(self.truth, [0.04, 0.03, -0.03], [-3.0, 2.0, 8.0])
        options = dict(
            method="siddon",
            steps=80,
            scales=(1,),
            mask=mask,
            patience=10,
            lr_decay=0.05,
            parameterization="se3",
            similarity=metrics.ncc,
        )
        res = optimize.register(self.volume, CAMERA, target, init, **options)
        self.assertLess(float(metrics.mtre(self.truth, res.pose, POINTS)), 0.5)
        self.assertLess(float(metrics.rotation_error(self.truth, res.pose)), np.deg2rad(0.3))
        # started at the optimum nothing improves: it stops after `patience` steps
        # (the first evaluation sets the best loss, then 10 stale steps) and repeats the last value
        still = optimize.register(self.volume, CAMERA, target, self.truth, **options)
        np.testing.assert_array_equal(still.steps_taken, [11])
        np.testing.assert_allclose(still.losses[11:], still.losses[10])
        np.testing.assert_allclose(still.pose, self.truth, atol=1e-5)

    def test_optimiser_state_carries_across_levels(self):
        # A fresh Adam moves every parameter by exactly its learning rate on its first step; with
        # the state carried from the converged coarse level the first fine step is much smaller.
        target = render(self.volume, CAMERA, self.truth, "siddon")
        res = optimize.register(
            self.volume,
            CAMERA,
            target,
            self.truth,
            steps=(30, 5),
            scales=(2, 1),
            patience=100,
            lr_rotation=0.01,
            lr_translation=1.0,
            lr_decay=1.0,
            similarity=metrics.ncc,
        )
        first, second = res.poses[30], res.poses[31]
        self.assertLess(float(metrics.rotation_error(first, second)), 0.3 * 0.01)
        self.assertLess(float(metrics.mtre(first, second, POINTS)), 0.3 * 1.0)
        # a fresh optimiser (the first step of the run) does move by the full rate
        self.assertGreater(float(metrics.mtre(res.poses[0], res.poses[1], POINTS)), 0.9)

    def test_repeated_eager_calls_compile_once(self):
        target = render(self.volume, CAMERA, self.truth, "siddon")
        init = _offset(self.truth, [0.02, 0.0, 0.01], [1.0, -1.0, 2.0])
        options = dict(steps=3, scales=(2, 1))
        optimize.register(self.volume, CAMERA, target, init, **options)
        brighter = np.asarray(target) + 1.0
        with count_compilations() as again:
            optimize.register(self.volume, CAMERA, brighter, init, **options)
            optimize.register(self.volume, CAMERA, target, self.truth, lr_rotation=0.02, **options)
        self.assertEqual(again.value, 0)
