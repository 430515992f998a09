"""Orthographic (parallel-beam) camera: geometry against numpy float64, every renderer against the
closed form of a uniform box (thickness along the beam x value), and registration with parallel
rays. The pose gradient against central differences (tests/test_render.py) and the slab scene of
the batch renderer (tests/test_scene.py) run for both camera types where they are defined."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import trimesh

import fluorojax as fj
from fluorojax import physics
from fluorojax.raycast import drr
from fluorojax.transforms import make_pose

SPACING = np.array([2.0, 1.5, 2.5])
SHAPE = (6, 5, 4)
AFFINE = np.diag(np.append(SPACING, 1.0))
AFFINE[:3, 3] = (-7.0, -5.0, -6.0)
LOWER = AFFINE[:3, 3] - 0.5 * SPACING  # the grid box: voxel centres at AFFINE @ index
UPPER = AFFINE[:3, 3] + (np.array(SHAPE) - 0.5) * SPACING
CENTRE = 0.5 * (LOWER + UPPER)
VALUE = 0.7
DEPTH = 80.0
CAMERA = fj.OrthographicCamera(14, 18, 1.25, depth=DEPTH)  # 17.5 x 22.5 mm, more than the box's 17.3 mm diagonal

POSES = {  # the plane z = 0 of the camera 40 mm before the box centre: the box lies within [31, 49] mm
    "along x": fj.look_at(CENTRE - (40.0, 0.0, 0.0), CENTRE, (0.0, 0.0, 1.0)),
    "along y": fj.look_at(CENTRE - (0.0, 40.0, 0.0), CENTRE, (0.0, 0.0, 1.0)),
    "along z": fj.look_at(CENTRE - (0.0, 0.0, 40.0), CENTRE, (0.0, 1.0, 0.0)),
    "lao 30 cra 20": fj.carm_pose(30.0, 20.0, 40.0, CENTRE),
    "rao 55 cau 10": fj.carm_pose(-55.0, -10.0, 40.0, CENTRE),
}


def uniform_box():
    return fj.Volume(np.full(SHAPE, VALUE, np.float32), AFFINE)


def pixel_rays(camera, pose):
    """(start, end) (H, W, 3) float64 world mm of every pixel's ray, from the conventions alone:
    pixel (r, c) at camera-frame ((c + 0.5 - u0) px, (r + 0.5 - v0) py, z), z = 0 and depth."""
    pose = np.asarray(pose, np.float64)
    px, py = np.asarray(camera.pixel_size, np.float64)
    u0, v0 = np.asarray(camera.principal_point, np.float64)
    r, c = np.mgrid[: camera.height, : camera.width]
    x, y = (c + 0.5 - u0) * px, (r + 0.5 - v0) * py
    ends = []
    for z in (0.0, float(camera.depth)):
        local = np.stack([x, y, np.full(x.shape, z)], -1)
        ends.append(local @ pose[:3, :3].T + pose[:3, 3])
    return ends[0], ends[1]


def slab(start, end, lower, upper):
    """(alpha_in, alpha_out) (...,) float64 of the segments start -> end through the box
    [lower, upper] (alpha_out <= alpha_in where they miss)."""
    d = end - start
    with np.errstate(divide="ignore", invalid="ignore"):
        a = (lower - start) / d
        b = (upper - start) / d
    inside = (start >= lower) & (start <= upper)
    first = np.where(d != 0, np.minimum(a, b), np.where(inside, -np.inf, np.inf))
    last = np.where(d != 0, np.maximum(a, b), np.where(inside, np.inf, -np.inf))
    return np.clip(first.max(-1), 0.0, 1.0), np.clip(last.min(-1), 0.0, 1.0)


def thickness(camera, pose, lower=LOWER, upper=UPPER):
    """(H, W) float64 mm: the box's thickness along every pixel's ray (the closed form)."""
    start, end = pixel_rays(camera, pose)
    a, b = slab(start, end, lower, upper)
    return np.maximum(b - a, 0.0) * np.linalg.norm(end - start, axis=-1)


def box_mesh(lower=LOWER, upper=UPPER):
    tm = trimesh.creation.box(extents=np.asarray(upper) - np.asarray(lower))
    tm.apply_translation(0.5 * (np.asarray(lower) + np.asarray(upper)))
    return fj.Mesh.from_trimesh(tm)


def along_beam(pose, dz):
    """The pose moved dz mm along its own +z (the beam)."""
    return jnp.asarray(pose) @ make_pose(jnp.eye(3), jnp.array([0.0, 0.0, dz]))


# ------------------------------------------------------------------------------------------
# geometry


def test_rays_projection_and_intrinsics_against_float64():
    cam = fj.OrthographicCamera(5, 7, (0.5, 0.8), principal_point=(3.2, 1.9), depth=300.0)
    pose = np.asarray(fj.carm_pose(35.0, -15.0, 120.0, (10.0, -5.0, 3.0)), np.float64)
    start, end = pixel_rays(cam, pose)
    s, t = (np.asarray(x, np.float64) for x in cam.rays(pose))
    np.testing.assert_allclose(s, start, atol=1e-4)
    np.testing.assert_allclose(t, end, atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(t - s, axis=-1), 300.0, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(cam.ray_directions(pose)), np.broadcast_to(pose[:3, 2], (5, 7, 3)), atol=1e-6)
    np.testing.assert_allclose(np.asarray(cam.detector_points())[..., 2], 300.0)
    k = np.array([[2.0, 0.0, 3.2], [0.0, 1.25, 1.9], [0.0, 0.0, 1.0]])
    np.testing.assert_allclose(np.asarray(cam.intrinsics), k, rtol=1e-6)
    p = k @ np.array([[1.0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]]) @ np.linalg.inv(pose)
    np.testing.assert_allclose(np.asarray(cam.projection_matrix(pose)), p, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(cam.projection_matrix(pose))[2], [0.0, 0.0, 0.0, 1.0])  # affine
    assert cam.shape == (5, 7)
    np.testing.assert_allclose(float(fj.OrthographicCamera(4, 6, 1.0).principal_point[0]), 3.0)
    assert float(fj.OrthographicCamera(4, 6, 1.0).depth) == 2000.0


def test_a_point_on_a_pixel_ray_projects_to_the_pixel_centre():
    cam = fj.OrthographicCamera(6, 8, (0.7, 1.1), principal_point=(4.5, 2.0), depth=150.0)
    poses = jnp.stack(
        [fj.carm_pose(a, b, 90.0, (3.0, -2.0, 1.0)) for a, b in ((0.0, 0.0), (40.0, 25.0), (-70.0, -30.0))]
    )
    s, t = cam.rays(poses)  # (3, H, W, 3)
    lam = (
        np.random.default_rng(0).uniform(-0.5, 1.5, size=s.shape[:-1] + (1,)).astype(np.float32)
    )  # also beyond the segment
    uv = cam.project(poses[:, None, None], s + lam * (t - s))
    np.testing.assert_allclose(np.asarray(uv), np.broadcast_to(np.asarray(cam.pixel_centres()), uv.shape), atol=2e-4)


def test_binned_covers_the_same_detector():
    cam = fj.OrthographicCamera(12, 8, (0.5, 0.7), principal_point=(3.0, 5.5), depth=500.0)
    small = cam.binned(4)
    assert isinstance(small, fj.OrthographicCamera) and small.shape == (3, 2) and float(small.depth) == 500.0
    fine = np.asarray(cam.detector_points(), np.float64)
    np.testing.assert_allclose(
        np.asarray(small.detector_points()), fine.reshape(3, 4, 2, 4, 3).mean(axis=(1, 3)), atol=1e-5
    )
    with pytest.raises(ValueError, match="divide"):
        cam.binned(5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(pixel_size=0.0), "pixel_size"),
        (dict(pixel_size=(1.0, -1.0)), "pixel_size"),
        (dict(depth=0.0), "depth"),
        (dict(depth=np.inf), "depth"),
        (dict(principal_point=(1.0, np.nan)), "principal_point"),
        (dict(height=0), "height"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, match):
    args = dict(height=4, width=5, pixel_size=1.0) | kwargs
    with pytest.raises(ValueError, match=match):
        fj.OrthographicCamera(**args)


# ------------------------------------------------------------------------------------------
# volume renderers on the analytic box


@pytest.mark.parametrize("view", list(POSES))
def test_siddon_drr_of_a_uniform_box_is_its_thickness_times_its_value(view):
    truth = VALUE * thickness(CAMERA, POSES[view])
    assert np.count_nonzero(truth) > 40 and np.count_nonzero(truth == 0) > 20  # inside and outside the shadow
    np.testing.assert_allclose(np.asarray(fj.render(uniform_box(), CAMERA, POSES[view])), truth, atol=2e-4)
    slab_route = drr._render(uniform_box(), CAMERA, POSES[view], "siddon", 1, 64, "slab")  # the GPU's Siddon, forced
    np.testing.assert_allclose(np.asarray(slab_route), truth, atol=2e-4)


def edge_distance(camera, pose, lower=LOWER, upper=UPPER):
    """(H, W) mm from every pixel's ray (a line) to the nearest of the box's 12 edges (segments)."""
    start, end = pixel_rays(camera, pose)
    d = (end - start) / np.linalg.norm(end - start, axis=-1, keepdims=True)
    corners = np.array([[(lower, upper)[(i >> k) & 1][k] for k in range(3)] for i in range(8)])
    edges = [(i, i | (1 << k)) for i in range(8) for k in range(3) if not i & (1 << k)]
    t = np.linspace(0.0, 1.0, 201)[:, None]
    points = np.concatenate([corners[a] + t * (corners[b] - corners[a]) for a, b in edges])  # (12 * 201, 3)
    rel = points[None, None] - start[:, :, None]
    return np.linalg.norm(np.cross(rel, d[:, :, None]), axis=-1).min(-1)


@pytest.mark.parametrize("view", ["along y", "lao 30 cra 20", "rao 55 cau 10"])
def test_trilinear_drr_of_a_uniform_box_away_from_its_edges(view):
    """The trilinear interpolant ramps to 0 within half a voxel of each face (symmetrically, so
    a ray crossing one face's ramp integrates as if the face were sharp); away from the edges,
    where two ramps meet, the DRR is the thickness times the value up to the midpoint rule."""
    spacing = SPACING / 2  # the same box on a finer grid, seen with finer pixels: more rays clear of the edges
    affine = np.diag(np.append(spacing, 1.0))
    affine[:3, 3] = LOWER + 0.5 * spacing
    camera = fj.OrthographicCamera(28, 36, 0.625, depth=DEPTH)
    truth = VALUE * thickness(camera, POSES[view])
    image = np.asarray(
        fj.render(
            fj.Volume(np.full(tuple(2 * n for n in SHAPE), VALUE, np.float32), affine),
            camera,
            POSES[view],
            "trilinear",
            n_samples=400,
        )
    )
    clear = edge_distance(camera, POSES[view]) > 1.0  # > half a voxel diagonal (0.88 mm) from every edge
    assert np.count_nonzero(clear & (truth > 0)) > 100 and np.count_nonzero(clear & (truth == 0)) > 100
    np.testing.assert_allclose(image[clear], truth[clear], rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("method", ["siddon", "trilinear"])
def test_image_does_not_change_along_the_beam_unlike_the_pinhole(method):
    pose = POSES["lao 30 cra 20"]
    vol = uniform_box()
    ortho = [
        np.asarray(fj.render(vol, CAMERA, along_beam(pose, dz), method, n_samples=300)) for dz in (-20.0, 0.0, 25.0)
    ]
    np.testing.assert_allclose(ortho[0], ortho[1], atol=5e-4)
    np.testing.assert_allclose(ortho[2], ortho[1], atol=5e-4)
    pinhole = fj.Camera(CAMERA.height, CAMERA.width, 1.25, DEPTH)
    cone = [np.asarray(fj.render(vol, pinhole, along_beam(pose, dz), method, n_samples=300)) for dz in (0.0, 25.0)]
    assert np.abs(cone[1] - cone[0]).max() > 1.0  # magnification: the box's shadow grows


def test_labels_and_polychromatic_render_with_parallel_rays():
    pose = POSES["rao 55 cau 10"]
    labels = fj.Volume(np.full(SHAPE, VALUE, np.float32), AFFINE, np.ones(SHAPE, np.int32))
    trace = fj.render_with_labels(labels, CAMERA, pose, (1,))
    start, end = pixel_rays(CAMERA, pose)
    a, b = slab(start, end, LOWER, UPPER)
    hit = b > a
    np.testing.assert_allclose(np.asarray(trace.travel[0]), thickness(CAMERA, pose), atol=2e-4)
    np.testing.assert_allclose(
        np.asarray(trace.entry[0])[hit], a[hit] * DEPTH, atol=2e-4
    )  # depths from the plane z = 0
    np.testing.assert_allclose(np.asarray(trace.exit[0])[hit], b[hit] * DEPTH, atol=2e-4)
    np.testing.assert_allclose(
        np.asarray(fj.render_labels(labels, CAMERA, pose, (1,))[0]), thickness(CAMERA, pose), atol=2e-4
    )

    # 1 g/cm^3 of soft tissue in the box, 60 keV: Beer-Lambert over the thickness
    densities = fj.Volume(np.stack([np.zeros(SHAPE), np.ones(SHAPE), np.zeros(SHAPE)], -1).astype(np.float32), AFFINE)
    mono = (jnp.array([60.0]), jnp.array([1.0]))
    image = np.asarray(fj.render_polychromatic(densities, CAMERA, pose, mono))
    soft = float(physics.mass_attenuation("soft_tissue", 60.0))
    np.testing.assert_allclose(image, np.exp(-soft * thickness(CAMERA, pose) / 10.0), rtol=1e-5)


# ------------------------------------------------------------------------------------------
# meshes


@pytest.mark.parametrize("path", ["pairs", "blocks"])
@pytest.mark.parametrize("view", ["along z", "lao 30 cra 20"])
def test_mesh_travel_of_a_closed_box_is_its_thickness(view, path):
    pose = POSES[view]
    out = fj.render_mesh(box_mesh(), CAMERA, pose, max_hits=4, path=path)
    np.testing.assert_allclose(np.asarray(out.travel), thickness(CAMERA, pose), atol=5e-4)
    start, end = pixel_rays(CAMERA, pose)
    a, b = slab(start, end, LOWER, UPPER)
    hit = b > a
    np.testing.assert_array_equal(np.asarray(out.mask), hit)
    np.testing.assert_allclose(
        np.asarray(out.hits[..., 0])[hit], a[hit] * DEPTH, atol=5e-4
    )  # depths from the plane z = 0
    np.testing.assert_allclose(np.asarray(out.hits[..., 1])[hit], b[hit] * DEPTH, atol=5e-4)
    assert np.all(np.isinf(np.asarray(out.hits[..., 0])[~hit]))
    shifted = fj.render_mesh(box_mesh(), CAMERA, along_beam(pose, 15.0), max_hits=4, path=path)
    np.testing.assert_allclose(np.asarray(shifted.travel), np.asarray(out.travel), atol=5e-4)
    np.testing.assert_allclose(np.asarray(shifted.hits[..., 0])[hit], a[hit] * DEPTH - 15.0, atol=5e-4)


def test_soft_mask_tends_to_the_hard_mask_and_has_pose_gradients():
    pose = POSES["rao 55 cau 10"]
    mesh = box_mesh()
    soft = np.asarray(fj.render_mesh_soft(mesh, CAMERA, pose, edge_width=1e-3))
    np.testing.assert_array_equal(soft, thickness(CAMERA, pose) > 0)

    # a sideways shift of the camera by 0.3 px moves the outline: d(sum of the mask)/d(shift)
    def area(dx):
        return jnp.sum(
            fj.render_mesh_soft(
                mesh, CAMERA, jnp.asarray(pose) @ make_pose(jnp.eye(3), jnp.stack([dx, 0.0, 0.0])), edge_width=2.0
            )
        )

    g = float(jax.grad(area)(jnp.float32(0.0)))
    eps = 0.05
    fd = (float(area(jnp.float32(eps))) - float(area(jnp.float32(-eps)))) / (2 * eps)
    assert g == pytest.approx(fd, rel=0.05, abs=1e-3)


# ------------------------------------------------------------------------------------------
# registration


def smooth_phantom(shape=(14, 12, 10)):
    """Two Gaussian blobs on an anisotropic grid centred on the origin, mu-like values."""
    affine = np.diag([2.0, 1.5, 2.5, 1.0])
    affine[:3, 3] = -0.5 * (np.array(shape) - 1) * affine.diagonal()[:3]
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).astype(np.float64)
    world = grid @ affine[:3, :3].T + affine[:3, 3]
    blob = lambda c, w: np.exp(-np.sum((world - c) ** 2, -1) / (2 * w**2))  # noqa: E731
    data = 0.02 * blob(np.array([-4.0, -3.0, -4.0]), 5.0) + 0.01 * blob(np.array([3.0, 1.0, 2.0]), 3.0)
    return fj.Volume(data.astype(np.float32), affine)


def test_register_recovers_a_shift_with_parallel_rays():
    vol = smooth_phantom()
    cam = fj.OrthographicCamera(12, 12, 2.5, depth=200.0)
    truth = fj.carm_pose(20.0, 10.0, 100.0, vol.center)
    target = fj.render(vol, cam, truth, "trilinear", n_samples=100)
    start = truth @ make_pose(jnp.eye(3), jnp.array([2.0, -1.5, 0.0]))
    # NCC on the smooth phantom, no mask, rotations (nearly) frozen: the in-plane shift alone
    res = fj.register(
        vol,
        cam,
        target,
        start,
        mask=jnp.ones_like(target),
        similarity=fj.registration.ncc,
        method="trilinear",
        steps=40,
        scales=(1,),
        lr_rotation=1e-6,
        lr_translation=0.2,
        render_kwargs={"n_samples": 100},
    )
    error = np.asarray(fj.transforms.invert_pose(truth) @ res.pose)[:2, 3]  # in the image plane, camera frame
    assert np.abs(error).max() < 0.3
