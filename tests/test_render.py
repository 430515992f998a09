"""Renderer tests: closed forms, a brute-force reference, jit/vmap parity, gradients, projection."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _compiles import count_compilations
from reference import box_chord, ellipsoid_chord, siddon_reference

import fluorojax as fj
from fluorojax.transforms import se3_exp

AFFINE = np.array([[2.0, 0, 0, -30.0], [0, 1.5, 0, -20.0], [0, 0, 2.5, -25.0], [0, 0, 0, 1]])


def random_rays(rng, n, centre, radius):
    """Segments between two random points on a sphere around ``centre`` (through the volume)."""
    a = rng.normal(size=(n, 3))
    b = rng.normal(size=(n, 3)) * 0.3 - a
    a = centre + radius * a / np.linalg.norm(a, axis=1, keepdims=True)
    b = centre + radius * b / np.linalg.norm(b, axis=1, keepdims=True)
    return a.astype(np.float32), b.astype(np.float32)


def smooth_phantom(shape=(24, 20, 16)):
    """Sum of two Gaussian blobs on an anisotropic grid, mu-like values."""
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).astype(np.float64)
    world = grid @ AFFINE[:3, :3].T + AFFINE[:3, 3]
    blob = lambda c, w: np.exp(-np.sum((world - c) ** 2, -1) / (2 * w**2))  # noqa: E731
    data = 0.02 * blob(np.array([-8.0, -6.0, -8.0]), 8.0) + 0.01 * blob(np.array([5.0, 2.0, 2.0]), 5.0)
    return fj.Volume(data.astype(np.float32), AFFINE)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.7, 1.3, 2.5)])
@pytest.mark.parametrize("method", ["siddon", "trilinear"])
def test_unit_voxel_integrates_to_its_edge(spacing, method):
    # Siddon: a crossing along axis a lasts exactly one edge. Trilinear: the tent of one voxel
    # integrates to one edge too (triangle of base two edges and height one).
    vol = fj.Volume(np.ones((1, 1, 1), np.float32), np.diag(spacing + (1.0,)))
    for axis in range(3):
        direction = np.eye(3)[axis] * 10.0
        got = fj.line_integrals(vol, -direction, direction, method, n_samples=64)
        assert got == pytest.approx(spacing[axis], rel=1e-6)


def test_siddon_box_matches_analytic_chords():
    rng = np.random.default_rng(0)
    data = np.zeros((30, 40, 20), np.float32)
    data[5:21, 10:31, 4:15] = 0.5
    vol = fj.Volume(data, AFFINE)
    lower = AFFINE[:3, :3] @ np.array([5, 10, 4]) + AFFINE[:3, 3] - np.diag(AFFINE)[:3] / 2
    upper = AFFINE[:3, :3] @ np.array([20, 30, 14]) + AFFINE[:3, 3] + np.diag(AFFINE)[:3] / 2
    sources, targets = random_rays(rng, 400, (lower + upper) / 2, 80.0)
    got = np.asarray(fj.line_integrals(vol, sources, targets))
    want = 0.5 * np.array([box_chord(s, t, lower, upper) for s, t in zip(sources, targets)])
    assert (want > 0).mean() > 0.5
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("method", ["siddon", "trilinear"])
def test_voxelised_ellipsoid_approximates_analytic_chords(method):
    # A 0.25 mm voxelisation of an ellipsoid: chords agree within about a voxel.
    spacing = 0.25
    centre, semi = np.array([0.0, 0.0, 0.0]), np.array([6.0, 4.0, 3.0])
    shape = tuple(int(2 * a / spacing) + 4 for a in semi)
    affine = np.diag([spacing] * 3 + [1.0])
    affine[:3, 3] = centre - spacing * (np.array(shape) - 1) / 2
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1) * spacing + affine[:3, 3]
    inside = np.sum(((grid - centre) / semi) ** 2, -1) <= 1
    vol = fj.Volume(inside.astype(np.float32), affine)
    rng = np.random.default_rng(1)
    sources, targets = random_rays(rng, 200, centre, 20.0)
    targets = sources + 2 * (centre + rng.normal(size=(200, 3)) * 0.8 - sources)
    got = np.asarray(fj.line_integrals(vol, sources, targets, method, n_samples=800))
    want = np.array([ellipsoid_chord(s, t, centre, semi) for s, t in zip(sources, targets)])
    assert want.min() > 2.0
    np.testing.assert_allclose(got, want, atol=2.5 * spacing)


def test_trilinear_is_exact_for_linear_fields_inside_the_grid():
    # Trilinear interpolation reproduces a linear field between voxel centres, and the midpoint
    # rule integrates it exactly: the integral is length x value at the midpoint.
    shape = (12, 10, 8)
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).astype(np.float64)
    world = idx @ AFFINE[:3, :3].T + AFFINE[:3, 3]
    coef = np.array([0.01, -0.02, 0.03])
    vol = fj.Volume((world @ coef + 1.0).astype(np.float32), AFFINE)
    rng = np.random.default_rng(2)
    lo, hi = AFFINE[:3, 3], AFFINE[:3, :3] @ (np.array(shape) - 1) + AFFINE[:3, 3]
    sources = rng.uniform(lo, hi, size=(50, 3)).astype(np.float32)
    targets = rng.uniform(lo, hi, size=(50, 3)).astype(np.float32)
    got = np.asarray(fj.line_integrals(vol, sources, targets, "trilinear", n_samples=7))
    mid = (sources.astype(np.float64) + targets) / 2
    want = np.linalg.norm(targets.astype(np.float64) - sources, axis=1) * (mid @ coef + 1.0)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_siddon_matches_float64_brute_force_on_the_real_ct(shared_ct):
    vol = fj.hu_to_mu(shared_ct)
    rng = np.random.default_rng(3)
    sources, targets = random_rays(rng, 150, np.asarray(vol.center), 600.0)
    got = np.asarray(fj.line_integrals(vol, sources, targets))
    data = np.asarray(vol.data)
    want = np.array([siddon_reference(data, vol.affine, s, t) for s, t in zip(sources, targets)])
    hits = want > 0.5
    assert hits.mean() > 0.8
    rel = np.abs(got[hits] - want[hits]) / want[hits]
    assert rel.max() < 1e-4, rel.max()
    np.testing.assert_allclose(got[~hits], want[~hits], atol=1e-4)


def test_siddon_matches_brute_force_with_channels_and_sources_inside():
    rng = np.random.default_rng(4)
    data = rng.uniform(0, 1, size=(9, 11, 7, 2)).astype(np.float32)
    vol = fj.Volume(data, AFFINE)
    centre = np.asarray(vol.center)
    sources = (centre + rng.normal(size=(60, 3)) * 5).astype(np.float32)  # inside the volume
    targets = (centre + rng.normal(size=(60, 3)) * 30).astype(np.float32)
    got = np.asarray(fj.line_integrals(vol, sources, targets))
    want = np.stack([siddon_reference(data, AFFINE, s, t) for s, t in zip(sources, targets)])
    assert got.shape == (60, 2)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def _segmented_phantom():
    """A smooth positive phantom split into 3 material classes, and its dense form."""
    vol = smooth_phantom()
    classes = np.asarray(np.digitize(np.asarray(vol.data), np.quantile(np.asarray(vol.data), [0.3, 0.7])))
    seg = fj.Volume(vol.data + 0.5, AFFINE, materials=classes, n_materials=3)
    return seg, seg.dense()


@pytest.mark.parametrize("method", ["siddon", "trilinear"])
def test_segmented_volume_renders_and_differentiates_like_its_dense_form(method):
    seg, dense = _segmented_phantom()
    cam = fj.Camera(12, 10, 3.0, 200.0)
    pose = fj.carm_pose(25.0, -10.0, 100.0, seg.center)
    render = lambda v, p: fj.render(v, cam, p, method, n_samples=60)  # noqa: E731
    got, want = np.asarray(render(seg, pose)), np.asarray(render(dense, pose))
    assert got.shape == (12, 10, 3) and np.all(want.max(axis=(0, 1)) > 1.0)  # every class seen
    # Siddon reads values whose last 2 mantissa bits carry the class: 1e-6 relative at most
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6 * want.max())
    w = jnp.asarray(np.random.default_rng(8).normal(size=(12, 10, 3)), jnp.float32)
    loss = lambda v, p: jnp.sum(w * render(v, p))  # noqa: E731
    np.testing.assert_allclose(
        jax.grad(loss, argnums=1)(seg, pose), jax.grad(loss, argnums=1)(dense, pose), rtol=1e-4, atol=1e-4
    )
    # d/d(value) of a segmented voxel is the dense gradient in its class's channel
    g_seg = jax.grad(lambda d: loss(seg.replace(data=d), pose))(seg.data)
    g_dense = jax.grad(lambda d: loss(dense.replace(data=d), pose))(dense.data)
    np.testing.assert_allclose(
        g_seg,
        np.take_along_axis(np.asarray(g_dense), np.asarray(seg.materials)[..., None], -1)[..., 0],
        rtol=1e-5,
        atol=1e-6,
    )


def test_segmented_volume_with_labels_in_one_traversal():
    seg, dense = _segmented_phantom()
    labels = np.asarray(seg.materials) + 1  # reuse the classes as a label map
    cam = fj.Camera(9, 9, 3.0, 200.0)
    pose = fj.carm_pose(-30.0, 5.0, 100.0, seg.center)
    a = fj.render_with_labels(seg.replace(labels=labels), cam, pose)
    b = fj.render_with_labels(dense.replace(labels=labels), cam, pose)
    np.testing.assert_allclose(a.image, b.image, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(a.travel, b.travel)


def test_rays_that_miss_add_nothing():
    vol = smooth_phantom()
    far = np.array([[500.0, 500.0, 500.0], [-500.0, 0.0, 0.0]], np.float32)
    got = fj.line_integrals(vol, far, far + np.array([0.0, 10.0, 0.0], np.float32))
    np.testing.assert_array_equal(np.asarray(got), 0.0)


class TestJit(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_jit_equals_no_jit(self):
        vol = smooth_phantom()
        cam = fj.Camera(12, 10, 3.0, 200.0)
        pose = fj.carm_pose(20.0, -10.0, 100.0, vol.center)
        for method in ("siddon", "trilinear"):
            fn = self.variant(lambda v, p, m=method: fj.render(v, cam, p, m, n_samples=50))
            want = np.asarray(fj.render(vol, cam, pose, method, n_samples=50))
            np.testing.assert_allclose(np.asarray(fn(vol, pose)), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("method", ["siddon", "trilinear"])
def test_vmap_and_pose_batches_equal_a_loop(method):
    vol = smooth_phantom()
    cam = fj.Camera(8, 9, 3.0, 200.0)
    poses = fj.carm_pose(jnp.array([0.0, 30.0, -45.0]), jnp.array([0.0, 10.0, 5.0]), 100.0, vol.center)
    one = jax.jit(lambda p: fj.render(vol, cam, p, method, n_samples=50))
    loop = np.stack([np.asarray(one(p)) for p in poses])
    vmapped = jax.vmap(lambda p: fj.render(vol, cam, p, method, n_samples=50))(poses)
    np.testing.assert_allclose(np.asarray(vmapped), loop, rtol=1e-5, atol=1e-6)
    batched = fj.render(vol, cam, poses, method, n_samples=50)
    np.testing.assert_allclose(np.asarray(batched), loop, rtol=1e-5, atol=1e-6)


def test_batched_poses_and_chunking_do_not_change_the_image():
    vol = smooth_phantom()
    cam = fj.Camera(16, 16, 3.0, 200.0)
    pose = fj.carm_pose(10.0, 5.0, 100.0, vol.center)
    whole = np.asarray(fj.render(vol, cam, pose))
    chunked = np.asarray(fj.render(vol, cam, pose, chunk_size=37))
    np.testing.assert_allclose(chunked, whole, rtol=1e-6, atol=1e-7)
    assert fj.render(vol, cam, pose[None]).shape == (1, 16, 16)


def _pose_fd(loss, eps):
    """Central differences of loss(twist) at 0 along each of the 6 twist axes."""
    return np.array([(loss(eps * e) - loss(-eps * e)) / (2 * eps) for e in np.eye(6, dtype=np.float32)])


# the two imagers, and their central-difference steps per method: an orthographic camera's
# rotations turn about its plane z = 0, 100 mm from the volume, so its Siddon steps are smaller
GRADIENT_CAMERAS = {
    "pinhole": (fj.Camera(24, 24, 2.0, 200.0), {"trilinear": 1e-2, "siddon": 3e-2}),
    "orthographic": (fj.OrthographicCamera(12, 12, 2.5, depth=200.0), {"trilinear": 1e-2, "siddon": 3e-3}),
}


@pytest.mark.parametrize("camera", list(GRADIENT_CAMERAS))
@pytest.mark.parametrize("method", ["trilinear", "siddon"])
def test_pose_gradient_matches_finite_differences(method, camera):
    vol = smooth_phantom()
    cam, eps = GRADIENT_CAMERAS[camera]
    pose = fj.carm_pose(25.0, 10.0, 100.0, vol.center)
    target = np.asarray(fj.render(vol, cam, pose @ se3_exp(jnp.array([1.0, -1.0, 0.5, 0.02, -0.01, 0.01])), method))

    @jax.jit
    def loss(twist):
        img = fj.render(vol, cam, pose @ se3_exp(twist), method, n_samples=200)
        return jnp.sum((img - target) ** 2)

    grad = np.asarray(jax.grad(loss)(jnp.zeros(6)))
    fd = _pose_fd(lambda w: float(loss(jnp.asarray(w))), np.float32(eps[method]))
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, fd, rtol=0.05, atol=0.03 * np.abs(fd).max())
    if camera == "orthographic":  # parallel rays: moving along the beam changes nothing
        assert abs(grad[2]) < 1e-3 * np.abs(grad).max()


@pytest.mark.parametrize("method", ["siddon", "trilinear"])
def test_volume_gradient_is_the_exact_linear_map(method):
    # The DRR is linear in the volume, so <grad, dv> must equal f(v + dv) - f(v).
    vol = smooth_phantom()
    cam = fj.Camera(10, 10, 3.0, 200.0)
    pose = fj.carm_pose(-15.0, 20.0, 100.0, vol.center)
    weights = jnp.asarray(np.random.default_rng(5).uniform(size=(10, 10)), jnp.float32)
    f = lambda data: jnp.sum(weights * fj.render(fj.Volume(data, AFFINE), cam, pose, method, n_samples=60))  # noqa: E731
    dv = jnp.asarray(np.random.default_rng(6).normal(size=vol.data.shape), jnp.float32)
    grad = jax.grad(f)(vol.data)
    np.testing.assert_allclose(float(jnp.vdot(grad, dv)), float(f(vol.data + dv) - f(vol.data)), rtol=1e-4)


def test_siddon_gradients_are_finite_on_degenerate_rays():
    data = np.random.default_rng(7).uniform(size=(6, 6, 6)).astype(np.float32)
    vol = fj.Volume(data, np.eye(4))
    sources = np.array(
        [
            [-5.0, 2.0, 3.0],  # axis-aligned, through voxel interiors
            [-5.0, 2.5, 2.5],  # axis-aligned along a voxel edge (faces of four voxels)
            [-5.0, -5.0, -5.0],  # the main diagonal: through voxel corners
            [-5.0, 50.0, 3.0],  # misses the volume
            [2.0, 2.0, 2.0],  # starts inside
        ],
        np.float32,
    )
    targets = sources * np.array([-1.0, 1.0, 1.0], np.float32)
    targets[2] = [10.0, 10.0, 10.0]
    targets[4] = [2.0, 9.0, 2.0]

    def total(s, t, v):
        return jnp.sum(fj.line_integrals(fj.Volume(v, np.eye(4)), s, t))

    gs, gt, gv = jax.grad(total, argnums=(0, 1, 2))(jnp.asarray(sources), jnp.asarray(targets), vol.data)
    for g in (gs, gt, gv):
        assert np.all(np.isfinite(np.asarray(g)))
    np.testing.assert_array_equal(np.asarray(gs)[3], 0.0)
    # Along the main diagonal the ray covers sqrt(3) mm in each of the 6 diagonal voxels.
    gv = jax.grad(total, argnums=2)(jnp.asarray(sources[2:3]), jnp.asarray(targets[2:3]), vol.data)
    diag = np.asarray(gv)[np.arange(6), np.arange(6), np.arange(6)]
    np.testing.assert_allclose(np.asarray(gv).sum(), 6 * np.sqrt(3.0), rtol=1e-5)
    np.testing.assert_allclose(diag, np.sqrt(3.0), rtol=1e-4)


def test_single_bright_voxel_projects_where_p_predicts():
    data = np.zeros((21, 21, 21), np.float32)
    voxel = (13, 7, 10)
    data[voxel] = 1.0
    vol = fj.Volume(data, np.diag([0.5, 0.5, 0.5, 1.0]))
    cam = fj.Camera(160, 160, 0.1, 400.0)
    for lao, cra in ((0.0, 0.0), (35.0, 20.0), (-70.0, -15.0)):
        pose = fj.carm_pose(lao, cra, 200.0, vol.center)
        img = np.asarray(fj.render(vol, cam, pose), np.float64)
        rows, cols = np.indices(img.shape)
        centroid = np.array([(img * (cols + 0.5)).sum(), (img * (rows + 0.5)).sum()]) / img.sum()
        predicted = np.asarray(cam.project(pose, jnp.asarray(np.array(voxel) * 0.5, jnp.float32)))
        assert np.linalg.norm(centroid - predicted) < 0.5, (lao, cra, centroid, predicted)


@pytest.mark.parametrize(
    "sources, targets, match",
    [
        ([0.0, 0.0, 0.0], [0.0, 0.0, 0.0], "zero-length ray"),
        ([np.nan, 0.0, 0.0], [1.0, 0.0, 0.0], "finite"),
        ([0.0, 0.0], [1.0, 0.0], r"\(\.\.\., 3\)"),
    ],
)
def test_bad_rays_are_rejected(sources, targets, match):
    with pytest.raises(ValueError, match=match):
        fj.line_integrals(smooth_phantom(), np.array(sources, np.float32), np.array(targets, np.float32))


def test_bad_render_arguments_are_rejected():
    vol = smooth_phantom()
    cam = fj.Camera(4, 4, 1.0, 100.0)
    with pytest.raises(ValueError, match="method"):
        fj.render(vol, cam, np.eye(4), method="joseph")
    with pytest.raises(ValueError, match="pose"):
        fj.render(vol, cam, np.eye(3))
    with pytest.raises(ValueError, match="n_samples"):
        fj.render(vol, cam, np.eye(4), method="trilinear", n_samples=0)


@pytest.mark.parametrize("parameterization", ["axis_angle", "quaternion", "euler", "6d"])
def test_pose_gradient_in_every_rotation_parameterization(parameterization):
    from fluorojax import transforms as T

    vol = smooth_phantom()
    cam = fj.Camera(12, 12, 3.0, 200.0)
    base = fj.carm_pose(15.0, 5.0, 100.0, vol.center)
    to_matrix = {
        "axis_angle": T.so3_exp,
        "quaternion": T.quaternion_to_matrix,
        "euler": lambda a: T.euler_to_matrix(a, "ZYX"),
        "6d": T.rotation_6d_to_matrix,
    }[parameterization]
    start = {
        "axis_angle": T.so3_log(base[:3, :3]),
        "quaternion": T.matrix_to_quaternion(base[:3, :3]),
        "euler": T.matrix_to_euler(base[:3, :3], "ZYX"),
        "6d": T.matrix_to_rotation_6d(base[:3, :3]),
    }[parameterization]
    weights = jnp.asarray(np.random.default_rng(8).uniform(size=(12, 12)), jnp.float32)

    @jax.jit
    def loss(params):
        pose = T.make_pose(to_matrix(params), base[:3, 3])
        return jnp.sum(weights * fj.render(vol, cam, pose, "trilinear", n_samples=100))

    grad = np.asarray(jax.grad(loss)(start))
    eps = np.float32(1e-2)
    fd = np.array(
        [
            (float(loss(start + eps * e)) - float(loss(start - eps * e))) / (2 * eps)
            for e in np.eye(start.shape[0], dtype=np.float32)
        ]
    )
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, fd, rtol=0.05, atol=0.02 * np.abs(fd).max())


def _count_compilations(fn):
    """Number of XLA compilations while running ``fn()``."""
    with count_compilations() as n:
        jax.block_until_ready(fn())
    return n.value


def test_repeated_eager_calls_compile_once():
    vol = smooth_phantom()
    labelled = vol.replace(labels=(np.asarray(vol.data) > 0.005).astype(np.int32) + 1)
    cam = fj.Camera(6, 7, 3.0, 200.0)
    poses = [fj.carm_pose(lao, 5.0, 100.0, vol.center) for lao in (10.0, 20.0, 30.0)]
    sources, targets = cam.rays(poses[0])
    calls = {
        "render siddon": lambda p: fj.render(vol, cam, p),
        "render trilinear": lambda p: fj.render(vol, cam, p, "trilinear", n_samples=20),
        "line_integrals": lambda p: fj.line_integrals(vol, sources, targets + p[:3, 3]),
        "render_labels": lambda p: fj.render_labels(labelled, cam, p),
        "render_with_labels": lambda p: fj.render_with_labels(labelled, cam, p),
        "trace_labels": lambda p: fj.trace_labels(labelled, sources, targets + p[:3, 3]),
        "pose gradient": lambda p: jax.grad(lambda q: jnp.sum(fj.render(vol, cam, q)))(p),
    }
    for name, call in calls.items():
        call(poses[0])  # compiles
        counts = [_count_compilations(functools.partial(call, p)) for p in poses[1:]]
        assert counts == [0, 0], (name, counts)
