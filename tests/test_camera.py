"""Camera geometry against numpy float64: intrinsics, rays, projection, look_at and C-arm poses."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from fluorojax.camera import Camera, carm_pose, look_at

H, W = 6, 8


def random_poses(seed, n):
    """(n, 4, 4) float64 world_from_camera: uniform rotations, translations ~ 300 mm."""
    pose = np.tile(np.eye(4), (n, 1, 1))
    pose[:, :3, :3] = Rotation.random(n, random_state=seed).as_matrix()
    pose[:, :3, 3] = np.random.default_rng(seed).normal(scale=300.0, size=(n, 3))
    return pose


def to_camera(pose, points):
    """World points (..., 3) -> camera frame, float64."""
    inv = np.linalg.inv(np.asarray(pose, np.float64))
    return np.einsum("ij,...j->...i", inv[:3, :3], points) + inv[:3, 3]


def test_intrinsics_and_default_principal_point():
    cam = Camera(H, W, pixel_size=(0.5, 0.25), sdd=1000.0)
    np.testing.assert_allclose(np.asarray(cam.intrinsics), [[2000.0, 0, 4.0], [0, 4000.0, 3.0], [0, 0, 1]], rtol=1e-7)
    assert cam.shape == (H, W)
    np.testing.assert_array_equal(np.asarray(cam.pixel_size), [0.5, 0.25])
    cam = Camera(5, 7, pixel_size=0.8, sdd=1020.0, principal_point=(2.0, 1.5))
    np.testing.assert_allclose(np.asarray(cam.intrinsics), [[1275.0, 0, 2.0], [0, 1275.0, 1.5], [0, 0, 1]], rtol=1e-7)
    np.testing.assert_allclose(np.asarray(cam.pixel_size), [0.8, 0.8], rtol=1e-7)


def test_rays_in_the_camera_frame():
    cam = Camera(H, W, pixel_size=(0.5, 0.75), sdd=900.0, principal_point=(3.2, 2.9))
    sources, targets = cam.rays(np.eye(4))
    assert sources.shape == targets.shape == (H, W, 3)
    np.testing.assert_array_equal(np.asarray(sources), 0.0)
    rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    want = np.stack([(cols + 0.5 - 3.2) * 0.5, (rows + 0.5 - 2.9) * 0.75, np.full((H, W), 900.0)], -1)
    np.testing.assert_allclose(np.asarray(targets), want, atol=1e-5)


def test_principal_point_pixel_ray_goes_along_camera_z():
    pose = random_poses(0, 1)[0]
    r0, c0 = 2, 5
    cam = Camera(H, W, pixel_size=0.6, sdd=1000.0, principal_point=(c0 + 0.5, r0 + 0.5))
    sources, targets = cam.rays(pose.astype(np.float32))
    d = np.asarray(targets[r0, c0], np.float64) - np.asarray(sources[r0, c0], np.float64)
    np.testing.assert_allclose(d / np.linalg.norm(d), pose[:3, 2], atol=1e-5)
    assert np.linalg.norm(d) == pytest.approx(1000.0, rel=1e-5)


def test_targets_on_detector_plane_and_sources_at_pose_origin():
    cam = Camera(H, W, pixel_size=(0.7, 0.4), sdd=1100.0)
    for pose in random_poses(1, 4):
        sources, targets = cam.rays(pose.astype(np.float32))
        np.testing.assert_allclose(np.asarray(sources), np.broadcast_to(pose[:3, 3], (H, W, 3)), atol=1e-4)
        local = to_camera(pose, np.asarray(targets, np.float64))
        np.testing.assert_allclose(local[..., 2], 1100.0, atol=2e-3)
        rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
        np.testing.assert_allclose(local[..., 0], (cols + 0.5 - W / 2) * 0.7, atol=2e-3)
        np.testing.assert_allclose(local[..., 1], (rows + 0.5 - H / 2) * 0.4, atol=2e-3)


def test_projection_matrix_matches_numpy_float64():
    cam = Camera(H, W, pixel_size=(0.5, 0.6), sdd=1000.0, principal_point=(3.7, 2.2))
    poses = random_poses(2, 5)
    k = np.array([[2000.0, 0, 3.7], [0, 1000.0 / 0.6, 2.2], [0, 0, 1]])
    want = k @ np.linalg.inv(poses)[:, :3]
    got = np.asarray(cam.projection_matrix(poses.astype(np.float32)), np.float64)
    assert got.shape == (5, 3, 4)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


def test_project_maps_each_pixel_target_to_its_centre():
    cam = Camera(H, W, pixel_size=(0.5, 0.6), sdd=1000.0, principal_point=(3.7, 2.2))
    rows, cols = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    centres = np.stack([cols + 0.5, rows + 0.5], -1)
    project = jax.jit(cam.project)
    for pose in random_poses(3, 6).astype(np.float32):
        _, targets = cam.rays(pose)
        np.testing.assert_allclose(np.asarray(project(pose, targets)), centres, atol=1e-3)
        # any point on a pixel's ray projects to the same pixel
        sources, _ = cam.rays(pose)
        mid = sources + 0.37 * (targets - sources)
        np.testing.assert_allclose(np.asarray(project(pose, mid)), centres, atol=1e-3)


def test_batched_rays_and_projection():
    cam = Camera(H, W, pixel_size=0.5, sdd=1000.0)
    poses = random_poses(4, 6).reshape(2, 3, 4, 4).astype(np.float32)
    sources, targets = cam.rays(poses)
    assert sources.shape == targets.shape == (2, 3, H, W, 3)
    for i in range(2):
        for j in range(3):
            s, t = cam.rays(poses[i, j])
            np.testing.assert_allclose(np.asarray(targets[i, j]), np.asarray(t), atol=1e-4)
            np.testing.assert_allclose(np.asarray(sources[i, j]), np.asarray(s), atol=1e-4)
    assert cam.projection_matrix(poses).shape == (2, 3, 3, 4)
    assert cam.project(poses, np.zeros((2, 3, 3), np.float32)).shape == (2, 3, 2)


def test_ray_directions_are_unit_source_to_pixel_directions():
    cam = Camera(H, W, pixel_size=(0.5, 0.7), sdd=900.0, principal_point=(3.2, 2.5))
    poses = random_poses(5, 6).reshape(2, 3, 4, 4)
    # float64 truth: camera-frame pixel centres (col + 0.5 - cx) * px, (row + 0.5 - cy) * py, sdd, rotated
    cols, rows = np.meshgrid((np.arange(W) + 0.5 - 3.2) * 0.5, (np.arange(H) + 0.5 - 2.5) * 0.7)
    local = np.stack([cols, rows, np.full_like(cols, 900.0)], -1)
    expected = np.einsum("...ij,hwj->...hwi", poses[..., :3, :3], local)
    expected /= np.linalg.norm(expected, axis=-1, keepdims=True)
    got = cam.ray_directions(poses.astype(np.float32))
    assert got.shape == (2, 3, H, W, 3)
    np.testing.assert_allclose(np.asarray(got), expected, atol=2e-7)


class CameraJitTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_rays_and_project_jit_parity(self):
        cam = Camera(H, W, pixel_size=(0.5, 0.6), sdd=1000.0)
        pose = random_poses(5, 1)[0].astype(np.float32)
        sources, targets = self.variant(lambda c, p: c.rays(p))(cam, pose)
        local = to_camera(pose, np.asarray(targets, np.float64))
        np.testing.assert_allclose(local[..., 2], 1000.0, atol=2e-3)
        np.testing.assert_allclose(np.asarray(sources[0, 0]), pose[:3, 3], atol=1e-4)
        uv = self.variant(lambda c, p, x: c.project(p, x))(cam, pose, targets)
        np.testing.assert_allclose(np.asarray(uv[2, 3]), [3.5, 2.5], atol=1e-3)

    @chex.variants(with_jit=True, without_jit=True)
    def test_camera_built_from_traced_values(self):
        def intrinsics(pixel_size, sdd):
            return Camera(H, W, pixel_size=pixel_size, sdd=sdd).intrinsics

        k = self.variant(intrinsics)(jnp.float32(0.5), jnp.float32(800.0))
        np.testing.assert_allclose(np.asarray(k), [[1600.0, 0, 4.0], [0, 1600.0, 3.0], [0, 0, 1]], rtol=1e-7)


# ---------------------------------------------------------------- look_at


@pytest.mark.parametrize(
    "source, target, up",
    [
        ((0.0, 800.0, 0.0), (0.0, 0.0, 0.0), (0.0, 0.0, 1.0)),
        ((300.0, -400.0, 120.0), (10.0, 20.0, -30.0), (0.0, 0.0, 1.0)),
        ((50.0, 60.0, 900.0), (0.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
        ((-700.0, 0.0, 0.0), (0.0, 0.0, 0.0), (0.3, 0.2, 1.0)),
    ],
)
def test_look_at(source, target, up):
    pose = np.asarray(look_at(source, target, up), np.float64)
    r = pose[:3, :3]
    np.testing.assert_allclose(r.T @ r, np.eye(3), atol=1e-6)
    assert np.linalg.det(r) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(pose[3], [0, 0, 0, 1])
    np.testing.assert_allclose(pose[:3, 3], source, atol=1e-4)
    view = np.subtract(target, source)
    np.testing.assert_allclose(r[:, 2], view / np.linalg.norm(view), atol=1e-6)
    # up lies in the camera y-z plane: the camera x axis is perpendicular to it
    assert abs(r[:, 0] @ np.asarray(up)) < 1e-5 * np.linalg.norm(up)
    cam = Camera(64, 64, pixel_size=1.0, sdd=1000.0)
    uv_target = np.asarray(cam.project(pose.astype(np.float32), np.asarray(target, np.float32)))
    np.testing.assert_allclose(uv_target, [32.0, 32.0], atol=1e-3)  # principal ray hits the target
    above = np.asarray(target) + 20.0 * np.asarray(up) / np.linalg.norm(up)
    uv_up = np.asarray(cam.project(pose.astype(np.float32), above.astype(np.float32)))
    assert uv_up[1] < uv_target[1] - 1.0  # up is toward the top of the image (smaller row)
    assert uv_up[0] == pytest.approx(uv_target[0], abs=1e-3)  # and straight up


def test_look_at_errors():
    with pytest.raises(ValueError, match="coincide"):
        look_at((1.0, 2.0, 3.0), (1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="parallel"):
        look_at((0.0, 0.0, 500.0), (0.0, 0.0, 0.0), up=(0.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="parallel"):
        look_at((0.0, 0.0, 0.0), (0.0, 300.0, 0.0), up=(0.0, -2.0, 0.0))


# ---------------------------------------------------------------- C-arm


def test_carm_ap_view():
    iso = np.array([10.0, -20.0, 30.0])
    pose = np.asarray(carm_pose(0.0, 0.0, 750.0, iso), np.float64)
    np.testing.assert_allclose(pose[:3, 3], iso + [0.0, 750.0, 0.0], atol=1e-4)  # source anterior (+y)
    np.testing.assert_allclose(pose[:3, 2], [0.0, -1.0, 0.0], atol=1e-7)  # beam anterior -> posterior
    cam = Camera(64, 64, pixel_size=1.0, sdd=1000.0)
    project = lambda x: np.asarray(cam.project(pose.astype(np.float32), np.asarray(x, np.float32)))  # noqa: E731
    centre = project(iso)
    np.testing.assert_allclose(centre, [32.0, 32.0], atol=1e-3)  # the principal ray hits the isocentre
    superior = project(iso + [0.0, 0.0, 50.0])
    assert superior[1] < centre[1] - 1 and superior[0] == pytest.approx(centre[0], abs=1e-3)  # head up
    right = project(iso + [50.0, 0.0, 0.0])
    assert right[0] < centre[0] - 1 and right[1] == pytest.approx(centre[1], abs=1e-3)  # patient's right on the left


def test_carm_lao_rao_and_cranial_caudal():
    iso = np.array([5.0, 6.0, -7.0])
    sid = 600.0
    source = lambda lao, cra: np.asarray(carm_pose(lao, cra, sid, iso), np.float64)[:3, 3] - iso  # noqa: E731
    np.testing.assert_allclose(source(90.0, 0.0), [-sid, 0.0, 0.0], atol=1e-3)  # LAO 90: patient's left (-x RAS)
    np.testing.assert_allclose(source(-90.0, 0.0), [sid, 0.0, 0.0], atol=1e-3)  # RAO 90: patient's right
    np.testing.assert_allclose(source(0.0, 90.0), [0.0, 0.0, sid], atol=1e-3)  # CRA 90: superior
    np.testing.assert_allclose(source(0.0, -30.0), sid * np.array([0.0, np.cos(np.pi / 6), -0.5]), atol=1e-3)
    # documented formula: iso + sid * Rz(lao) Rx(cra) (0, 1, 0), CRA applied before LAO
    lao, cra = np.deg2rad(35.0), np.deg2rad(20.0)
    want = (
        Rotation.from_rotvec([0, 0, lao]).as_matrix() @ Rotation.from_rotvec([cra, 0, 0]).as_matrix() @ [0.0, 1.0, 0.0]
    )
    np.testing.assert_allclose(source(35.0, 20.0), sid * want, atol=1e-3)
    # LAO 90 is a left lateral: beam left -> right (+x), head still up
    pose = np.asarray(carm_pose(90.0, 0.0, sid, iso), np.float64)
    np.testing.assert_allclose(pose[:3, 2], [1.0, 0.0, 0.0], atol=1e-6)
    cam = Camera(64, 64, pixel_size=1.0, sdd=1000.0)
    superior = np.asarray(cam.project(pose.astype(np.float32), (iso + [0.0, 0.0, 40.0]).astype(np.float32)))
    assert superior[1] < 32.0 - 1


def test_carm_geometry_properties_for_many_angles():
    rng = np.random.default_rng(6)
    lao = rng.uniform(-120.0, 120.0, 20).astype(np.float32)
    cra = rng.uniform(-45.0, 45.0, 20).astype(np.float32)
    iso = np.array([12.0, -3.0, 40.0])
    poses = np.asarray(carm_pose(lao, cra, 700.0, iso), np.float64)
    assert poses.shape == (20, 4, 4)
    r = poses[:, :3, :3]
    np.testing.assert_allclose(np.swapaxes(r, 1, 2) @ r, np.broadcast_to(np.eye(3), (20, 3, 3)), atol=1e-6)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-6)
    offset = poses[:, :3, 3] - iso
    np.testing.assert_allclose(np.linalg.norm(offset, axis=1), 700.0, rtol=1e-6)  # distance = argument
    np.testing.assert_allclose(r[:, :, 2], -offset / 700.0, atol=1e-5)  # principal ray through the isocentre
    for n in range(0, 20, 7):  # batched equals one at a time
        np.testing.assert_allclose(poses[n], np.asarray(carm_pose(lao[n], cra[n], 700.0, iso)), atol=1e-4)


@pytest.mark.parametrize("sid", [0.0, -100.0])
def test_carm_rejects_non_positive_distance(sid):
    with pytest.raises(ValueError, match="source_to_isocenter"):
        carm_pose(10.0, 0.0, sid)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("name", ["height", "width"])
@pytest.mark.parametrize("value", [0, -3, True, 4.0, "8", None])
def test_camera_rejects_bad_size(name, value):
    kwargs = dict(height=H, width=W, pixel_size=0.5, sdd=1000.0)
    kwargs[name] = value
    with pytest.raises(ValueError, match=name):
        Camera(**kwargs)


def test_camera_accepts_numpy_integer_sizes():
    cam = Camera(np.int64(4), np.int32(5), pixel_size=0.5, sdd=1000.0)
    assert cam.shape == (4, 5) and isinstance(cam.height, int)


@pytest.mark.parametrize(
    "pixel_size",
    [
        0.0,
        -0.5,
        (0.5, 0.0),
        (0.5, -1.0),
        np.nan,
        np.inf,
        (0.5, 0.5, 0.5),
        np.ones((2, 2)),
    ],
)
def test_camera_rejects_bad_pixel_size(pixel_size):
    with pytest.raises(ValueError, match="pixel_size"):
        Camera(H, W, pixel_size=pixel_size, sdd=1000.0)


@pytest.mark.parametrize("sdd", [0.0, -1000.0, np.nan, np.inf, (1000.0, 1000.0)])
def test_camera_rejects_bad_sdd(sdd):
    with pytest.raises(ValueError, match="sdd"):
        Camera(H, W, pixel_size=0.5, sdd=sdd)


@pytest.mark.parametrize("pp", [(1.0,), (1.0, 2.0, 3.0), (np.nan, 2.0), (1.0, np.inf), 3.0])
def test_camera_rejects_bad_principal_point(pp):
    with pytest.raises(ValueError, match="principal_point"):
        Camera(H, W, pixel_size=0.5, sdd=1000.0, principal_point=pp)
