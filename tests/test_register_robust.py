"""Tests for registration on realistic targets: field metrics, saturation masks, mismatched-physics
targets, the global search, linked views and the animation of a run."""

import os
import tempfile

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from test_register import CAMERA, POINTS, _offset, _phantom  # tests/ is on sys.path (pytest rootdir-relative imports)

from fluorojax import transforms
from fluorojax.camera import Camera, carm_pose
from fluorojax.raycast import render
from fluorojax.registration import animate, metrics, mismatch, optimize, preprocess
from fluorojax.volume import Volume


def _pose(rotvec, translation):
    return transforms.make_pose(transforms.so3_exp(jnp.asarray(rotvec, jnp.float32)), translation)


# ---------------------------------------------------------------------------------------------
# metrics the field reports


class FieldMetricsTest(chex.TestCase):
    def setUp(self):
        super().setUp()
        self.camera = Camera(64, 48, (0.5, 0.25), 1000.0)
        self.a = _pose([0.05, 0.0, 0.1], [5.0, -700.0, 3.0])
        depth = np.array([300.0, 450.0, 600.0])
        self.depth = depth
        self.points = np.asarray(transforms.apply_pose(self.a, np.stack([[10.0, -5.0, d] for d in depth])), np.float32)

    def test_mean_projection_error_closed_form(self):
        # moving the source by d along camera +x shifts a point at depth z by sdd d / z mm on the detector
        d = 2.0
        b = self.a @ transforms.make_pose(jnp.eye(3), [d, 0.0, 0.0])
        px, mm = jax.jit(metrics.mean_projection_error)(self.camera, self.a, b, self.points)
        want_mm = np.mean(1000.0 * d / self.depth)
        np.testing.assert_allclose(mm, want_mm, rtol=1e-4)
        np.testing.assert_allclose(px, want_mm / 0.5, rtol=1e-4)  # columns are 0.5 mm wide
        b = self.a @ transforms.make_pose(jnp.eye(3), [0.0, d, 0.0])  # rows are 0.25 mm high
        px, mm = metrics.mean_projection_error(self.camera, self.a, b, self.points)
        np.testing.assert_allclose(px, want_mm / 0.25, rtol=1e-4)

    def test_mean_reprojection_error_matches_numpy(self):
        rng = np.random.default_rng(0)
        b = self.a @ _pose([0.02, -0.03, 0.01], [3.0, -2.0, 15.0])
        points = np.asarray(
            transforms.apply_pose(self.a, rng.uniform([-40, -40, 350], [40, 40, 650], (6, 3))), np.float64
        )
        got = jax.jit(metrics.mean_reprojection_error)(self.camera, self.a, b, points.astype(np.float32))
        # float64 brute force: pixel of each point under a, the ray through it under b, distance
        k = np.asarray(self.camera.intrinsics, np.float64)
        a64, b64 = np.asarray(self.a, np.float64), np.asarray(b, np.float64)
        distances = []
        for p in points:
            cam = np.linalg.inv(a64) @ np.append(p, 1.0)
            uvw = k @ cam[:3]
            ray = b64[:3, :3] @ (np.linalg.inv(k) @ (uvw / uvw[2]))
            ray /= np.linalg.norm(ray)
            offset = p - b64[:3, 3]
            distances.append(np.linalg.norm(offset - (offset @ ray) * ray))
        np.testing.assert_allclose(got, np.mean(distances), rtol=1e-3, atol=1e-3)
        # a source moved along the principal ray keeps a point on that ray on its ray: 0
        on_axis = np.asarray(transforms.apply_pose(self.a, np.array([[0.0, 0.0, 500.0]])), np.float32)
        principal = Camera(64, 48, (0.5, 0.25), 1000.0)
        moved = self.a @ transforms.make_pose(jnp.eye(3), [0.0, 0.0, 30.0])
        np.testing.assert_allclose(metrics.mean_reprojection_error(principal, self.a, moved, on_axis), 0.0, atol=1e-3)

    def test_double_geodesic_closed_form(self):
        theta = 0.1
        b = self.a @ _pose([0.0, theta, 0.0], [0.0, 0.0, 0.0])  # rotation about the source
        angular, translational, both = metrics.double_geodesic(self.a, b, 1000.0)
        np.testing.assert_allclose(angular, theta * 500.0, rtol=1e-4)
        np.testing.assert_allclose(translational, 0.0, atol=1e-4)
        c = b @ transforms.make_pose(jnp.eye(3), [3.0, 0.0, 4.0])
        angular, translational, both = metrics.double_geodesic(self.a, c, 1000.0)
        np.testing.assert_allclose(translational, 5.0, rtol=1e-4)
        np.testing.assert_allclose(both, np.hypot(theta * 500.0, 5.0), rtol=1e-4)

    def test_summarize_percentiles(self):
        truths = jnp.stack([self.a] * 5)
        shifts = np.array([0.2, 0.5, 0.9, 1.5, 4.0])
        poses = jnp.stack([transforms.make_pose(jnp.eye(3), [s, 0.0, 0.0]) @ self.a for s in shifts])
        out = metrics.summarize(self.camera, truths, poses, self.points)
        # a camera moved by s moves every point by s in its frame: mTRE = s exactly
        np.testing.assert_allclose(out["success_rate"], 0.6)
        np.testing.assert_allclose(
            [out["mtre_p50"], out["mtre_p75"], out["mtre_p95"]], np.percentile(shifts, [50, 75, 95]), rtol=1e-3
        )
        np.testing.assert_allclose(out["double_geodesic_p50"], 0.9, rtol=1e-3)
        with pytest.raises(ValueError, match="N, 4, 4"):
            metrics.summarize(self.camera, truths, poses[:3], self.points)


# ---------------------------------------------------------------------------------------------
# preprocessing


class SaturationMaskTest(chex.TestCase):
    def test_clipped_region_and_margin(self):
        rng = np.random.default_rng(0)
        image = rng.uniform(0.2, 0.8, (32, 32)).astype(np.float32)
        image[:4, :] = 1.0  # a collimator shutter clipped at the window's top
        image[20, 20] = 0.0  # a single dark pixel: an extreme, but no saturated region
        got = np.asarray(preprocess.saturation_mask(image, margin=2))
        want = np.ones((32, 32), np.float32)
        want[: 4 + 2, :] = 0.0
        np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(preprocess.saturation_mask(rng.random((32, 32))), np.ones((32, 32)))
        with pytest.raises(ValueError, match="margin"):
            preprocess.saturation_mask(image, margin=-1)


# ---------------------------------------------------------------------------------------------
# mismatched-physics targets


def _hu_phantom():
    mu = _phantom(n=24, spacing=2.5)
    return Volume(np.asarray(mu.data) / 0.02 * 1000.0 - 1000.0 * (np.asarray(mu.data) == 0), mu.affine)


class MismatchTest(chex.TestCase):
    def test_seeded_radiograph_like_target(self):
        hu = _hu_phantom()
        camera = Camera(32, 32, 4.0, 1000.0)
        pose = carm_pose(0.0, 0.0, 600.0)
        settings = mismatch.MismatchSettings(collimation=(0.1, 0.1), tools=(1, 1), window_high=(0.99, 0.99))
        a, record = mismatch.mismatched_target(jax.random.PRNGKey(0), hu, camera, pose, settings)
        b, again = mismatch.mismatched_target(jax.random.PRNGKey(0), hu, camera, pose, settings)
        c, other = mismatch.mismatched_target(jax.random.PRNGKey(1), hu, camera, pose, settings)
        np.testing.assert_array_equal(a, b)
        self.assertEqual(record, again)
        self.assertGreater(float(np.abs(np.asarray(a) - np.asarray(c)).max()), 0.0)
        self.assertIn(record["kvp"], settings.kvps)
        self.assertTrue(1e3 <= record["photons"] <= 1e5)
        self.assertEqual(record["collimation_px"], [3, 3, 3, 3])
        a = np.asarray(a)
        self.assertTrue(np.all((a >= 0) & (a <= 1)))
        # the shutters (2 % transmission) lie above the window: saturated at 1 and masked out
        np.testing.assert_array_equal(a[:3], 1.0)
        self.assertTrue(np.all(np.asarray(preprocess.saturation_mask(a))[:3] == 0))


# ---------------------------------------------------------------------------------------------
# search, views, animation


class WideRegistrationTest(chex.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.volume = _phantom()
        cls.truth = carm_pose(20.0, 10.0, 600.0)

    def test_search_widens_the_capture_range(self):
        target = render(self.volume, CAMERA, self.truth, "siddon")
        init = _offset(self.truth, np.deg2rad(16.0) * np.array([0.6, -0.8, 0.0]), [24.0, -18.0, 4.0])
        self.assertGreater(float(metrics.mtre(self.truth, init, POINTS)), 25.0)
        options = dict(steps=(60, 60), scales=(2, 1), similarity=metrics.ncc, mask=np.ones(CAMERA.shape))
        found = optimize.register(self.volume, CAMERA, target, init, search=optimize.Search(keep=2), **options)
        self.assertLess(float(metrics.mtre(self.truth, found.pose, POINTS)), 1.0)
        plain = optimize.register(self.volume, CAMERA, target, init, **options)
        self.assertGreater(float(metrics.mtre(self.truth, plain.pose, POINTS)), 5.0)
        chex.assert_shape(found.start_losses, (2,))

    def test_linked_views_share_one_correction(self):
        truths = jnp.stack([self.truth, carm_pose(-70.0, 10.0, 600.0)])
        targets = [render(self.volume, CAMERA, t, "siddon") for t in truths]
        init0 = _offset(self.truth, [0.03, -0.02, 0.02], [2.0, -3.0, 12.0])  # mostly along view 0's depth
        inits = jnp.stack([init0, init0 @ transforms.invert_pose(self.truth) @ truths[1]])
        res = optimize.register_views(
            self.volume,
            (CAMERA, CAMERA),
            targets,
            inits,
            steps=(40, 40),
            scales=(2, 1),
            similarity=metrics.ncc,
            masks=(None, None),
        )
        self.assertLess(float(metrics.mtre(self.truth, res.pose, POINTS)), 0.5)
        self.assertLess(float(metrics.mtre(truths[1], res.view_poses[1], POINTS)), 0.5)
        # the relative pose of the views is kept exactly
        np.testing.assert_allclose(res.view_poses[1], res.pose @ transforms.invert_pose(inits[0]) @ inits[1], atol=1e-3)
        with pytest.raises(ValueError, match="target images"):
            optimize.register_views(self.volume, (CAMERA, CAMERA), targets[:1], inits)

    def test_animation_frames_show_the_drr_edges(self):
        target = render(self.volume, CAMERA, self.truth, "siddon")
        init = _offset(self.truth, [0.03, -0.02, 0.02], [2.0, -3.0, 4.0])
        res = optimize.register(self.volume, CAMERA, target, init, steps=(4, 4), scales=(2, 1))
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "run.gif")
            res.animate(path, self.volume, CAMERA, target, every=2)
            gif = Image.open(path)
            self.assertEqual(gif.n_frames, 8 // 2 + 1)
            gif.seek(gif.n_frames - 1)
            frame = np.asarray(gif.convert("RGB")).astype(int)
        green = (frame[..., 1] > 200) & (frame[..., 0] < 100)
        want = animate.edges(np.asarray(render(self.volume, CAMERA, res.pose, "siddon")))
        np.testing.assert_array_equal(green, want)
