"""Mesh pytree, loading, organ meshes and the JAX mesh renderer against independent truths."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import trimesh
from _lowering import loops
from absl.testing import absltest

from fluorojax.camera import Camera, look_at
from fluorojax.mesh import Mesh, load_mesh
from fluorojax.organs import label_mesh, label_meshes
from fluorojax.raycast import render
from fluorojax.raycast.blocks import block_size
from fluorojax.raycast.mesh_render import _render, render_mesh
from fluorojax.raycast.mesh_soft import _render_soft, render_mesh_soft
from fluorojax.raycast.predicates import det2_sign
from fluorojax.transforms import make_pose, se3_exp, so3_exp
from fluorojax.volume import Volume

CAM = Camera(32, 32, 1.0, 1000.0)


def brute_force(vertices, faces, sources, targets):
    """float64 Moller-Trumbore over all rays x triangles: (hit, t mm, +1 exit / -1 entry), each (R, F)."""
    tri = np.asarray(vertices, np.float64)[np.asarray(faces)]
    o = np.asarray(sources, np.float64).reshape(-1, 3)
    d = np.asarray(targets, np.float64).reshape(-1, 3) - o
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    e1, e2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    p = np.cross(d[:, None], e2[None])
    det = np.einsum("rfk,fk->rf", p, e1)
    inv = 1.0 / np.where(det == 0, 1.0, det)
    s = o[:, None] - tri[None, :, 0]
    u = np.einsum("rfk,rfk->rf", s, p) * inv
    q = np.cross(s, e1[None])
    v = np.einsum("rk,rfk->rf", d, q) * inv
    t = np.einsum("fk,rfk->rf", e2, q) * inv
    hit = (det != 0) & (u >= 0) & (v >= 0) & (u + v <= 1) & (t > 0)
    sign = np.where(d @ np.cross(e1, e2).T > 0, 1, -1)
    return hit, t, sign


def tilted_annulus():
    tm = trimesh.creation.annulus(5.0, 15.0, 20.0, sections=20)
    tm.apply_transform(trimesh.transformations.rotation_matrix(0.4, [1.0, 1.0, 0.0]))
    return Mesh.from_trimesh(tm)


class RenderExactTest(chex.TestCase):
    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_float64_brute_force(self):
        mesh = tilted_annulus()
        pose = look_at((10.0, -400.0, 30.0), (0.0, 0.0, 0.0))
        out = self.variant(lambda m, p: render_mesh(m, CAM, p, max_hits=6, chunk=512))(mesh, pose)
        sources, targets = CAM.rays(pose)
        hit, t, sign = brute_force(mesh.vertices, mesh.faces, sources, targets)
        travel = np.where(hit, t * sign, 0.0).sum(1).reshape(32, 32)
        depths = np.sort(np.where(hit, t, np.inf), axis=1)[:, :6].reshape(32, 32, 6)
        np.testing.assert_array_equal(np.isfinite(out.hits), np.isfinite(depths))
        finite = np.isfinite(depths)
        np.testing.assert_allclose(np.asarray(out.hits)[finite], depths[finite], atol=1e-3)
        np.testing.assert_allclose(out.travel, travel, atol=1e-3)
        np.testing.assert_array_equal(out.count, hit.sum(1).reshape(32, 32))
        np.testing.assert_array_equal(out.mask, travel > 1e-3)
        self.assertGreater(int(out.mask.sum()), 100)
        np.testing.assert_array_equal(out.winding, 0)

    def test_exact_determinant_sign(self):
        rng = np.random.default_rng(0)
        n = 200_000
        ax = (rng.normal(size=n) * rng.choice([1e-3, 1.0, 1e3], n)).astype(np.float32)
        ay = rng.normal(size=n).astype(np.float32)
        k = (1 + rng.normal(size=n) * 1e-6).astype(np.float32)
        bx = (ax * k).astype(np.float32)
        by = (ay * k + rng.integers(-3, 4, n) * np.spacing(ay * k)).astype(np.float32)
        bx[:500], by[:500] = 2 * ax[:500], 2 * ay[:500]  # exactly collinear
        exact = np.sign(
            ax.astype(np.float64) * by - ay.astype(np.float64) * bx
        )  # float32 products are exact in float64
        got = jax.jit(det2_sign)(ax, ay, bx, by)
        np.testing.assert_array_equal(got, exact)
        self.assertGreater(int(np.sum(np.sign(ax * by - ay * bx) != exact)), 1000)  # the naive sign is wrong often

    def test_sphere_chords_between_inscribed_and_circumscribed(self):
        radius, centre = 20.0, np.array([3.0, 2.0, -4.0])
        tm = trimesh.creation.icosphere(3, radius=radius)
        tm.apply_translation(centre)
        mesh = Mesh.from_trimesh(tm)
        r_in = np.min(np.abs(np.einsum("fk,fk->f", tm.face_normals, tm.triangles[:, 0] - centre)))
        pose = look_at((0.0, -600.0, 0.0), (0.0, 0.0, 0.0))
        out = render_mesh(mesh, CAM, pose)
        s, t = (np.asarray(a, np.float64).reshape(-1, 3) for a in CAM.rays(pose))
        d = (t - s) / np.linalg.norm(t - s, axis=1, keepdims=True)
        rel = centre - s
        off = np.linalg.norm(rel - np.sum(rel * d, 1, keepdims=True) * d, axis=1)  # ray-centre distance
        inner = 2 * np.sqrt(np.clip(r_in**2 - off**2, 0, None))
        outer = 2 * np.sqrt(np.clip(radius**2 - off**2, 0, None))
        travel = np.asarray(out.travel).reshape(-1)
        self.assertTrue(np.all(travel >= inner - 1e-3) and np.all(travel <= outer + 1e-3))
        self.assertGreater(int(np.sum(off < r_in)), 200)

    def test_box_through_shared_vertices_and_edges_no_speckle(self):
        # Source at the origin looking along +z; the front face at z = 200 has a vertex every 2 mm, which is
        # exactly on a pixel ray (pixel pitch 1 mm at sdd 100), so many rays pass through vertices and edges.
        cam = Camera(33, 33, 1.0, 100.0)
        tm = trimesh.creation.box(extents=(16.0, 16.0, 100.0))
        for _ in range(2):
            tm = tm.subdivide()
        tm.apply_translation((0.0, 0.0, 250.0))
        mesh = Mesh.from_trimesh(tm)
        out = render_mesh(mesh, cam, jnp.eye(4), chunk=1000)
        s, t = (np.asarray(a, np.float64).reshape(-1, 3) for a in cam.rays(jnp.eye(4)))
        d = (t - s) / np.linalg.norm(t - s, axis=1, keepdims=True)
        lo, hi = np.array([-8.0, -8.0, 200.0]), np.array([8.0, 8.0, 300.0])
        with np.errstate(divide="ignore", invalid="ignore"):
            a, b = (lo - s) / d, (hi - s) / d
        t_in = np.nanmax(np.minimum(a, b), axis=1)
        t_out = np.nanmin(np.maximum(a, b), axis=1)
        chord = np.clip(t_out - t_in, 0, None).reshape(33, 33)
        np.testing.assert_allclose(out.travel, chord, atol=1e-3)
        on_vertex = np.isin(np.abs(np.arange(33) - 16), [0, 2, 4])  # 0, 4, 8 mm at z = 200: front-face vertices
        inside = chord > 1e-6
        self.assertTrue(np.all(inside[np.ix_(on_vertex, on_vertex)][1:-1, 1:-1]))
        np.testing.assert_array_equal(np.asarray(out.count)[inside], 2)
        np.testing.assert_array_equal(out.winding, 0)

    def test_matches_trimesh_ray_casting(self):
        tm = trimesh.creation.torus(12.0, 4.0, major_sections=16, minor_sections=8)
        tm.apply_transform(trimesh.transformations.rotation_matrix(0.7, [0.2, 1.0, 0.3]))
        pose = look_at((40.0, -300.0, 60.0), (1.0, 2.0, 0.0))
        out = render_mesh(Mesh.from_trimesh(tm), CAM, pose, max_hits=4)
        s, t = (np.asarray(a, np.float64).reshape(-1, 3) for a in CAM.rays(pose))
        d = (t - s) / np.linalg.norm(t - s, axis=1, keepdims=True)
        locations, index_ray, _ = trimesh.ray.ray_triangle.RayMeshIntersector(tm).intersects_location(
            s, d, multiple_hits=True
        )
        depth = np.einsum("rk,rk->r", locations - s[index_ray], d[index_ray])
        expected = np.full((len(s), 4), np.inf)
        for r in np.unique(index_ray):
            hits = np.sort(depth[index_ray == r])[:4]
            expected[r, : len(hits)] = hits
        got = np.asarray(out.hits).reshape(-1, 4)
        np.testing.assert_array_equal(np.isfinite(got), np.isfinite(expected))
        np.testing.assert_allclose(got[np.isfinite(got)], expected[np.isfinite(expected)], atol=1e-3)
        self.assertGreater(int(np.sum(np.isfinite(got[:, 3]))), 20)

    def test_source_inside_and_truncated_hits(self):
        tm = trimesh.creation.icosphere(2, radius=30.0)
        out = render_mesh(Mesh.from_trimesh(tm), CAM, look_at((0.0, -10.0, 0.0), (0.0, 50.0, 0.0)), max_hits=1)
        np.testing.assert_array_equal(out.winding, 1)
        np.testing.assert_array_equal(out.count, 1)
        np.testing.assert_allclose(out.travel, out.hits[..., 0], atol=1e-4)  # path from the source to the exit
        self.assertTrue(np.all((out.travel > 20.0) & (out.travel < 40.0)))
        stacked = Mesh.from_trimesh(trimesh.util.concatenate([tm, tm.copy().apply_translation((0, 80.0, 0))]))
        far = render_mesh(stacked, CAM, look_at((0.0, -400.0, 0.0), (0.0, 0.0, 0.0)), max_hits=2)
        centre = far.count[16, 16], far.hits[16, 16], far.travel[16, 16]
        self.assertEqual(int(centre[0]), 4)
        np.testing.assert_allclose(centre[1], [370.0, 430.0], atol=0.2)  # only the nearest two kept...
        self.assertAlmostEqual(float(centre[2]), 120.0, delta=0.4)  # ...but travel sums all four


def assert_matches_brute_force(out, mesh, cam, pose, max_hits):
    """hits, travel, count and winding of ``out`` against float64 ray casting over all pairs."""
    sources, targets = cam.rays(pose)
    hit, t, sign = brute_force(mesh.vertices, mesh.faces, sources, targets)
    shape = (cam.height, cam.width)
    depths = np.sort(np.where(hit, t, np.inf), axis=1)[:, :max_hits].reshape(shape + (max_hits,))
    finite = np.isfinite(depths)
    np.testing.assert_array_equal(np.isfinite(out.hits), finite)
    np.testing.assert_allclose(np.asarray(out.hits)[finite], depths[finite], atol=1e-3)
    np.testing.assert_allclose(out.travel, np.where(hit, t * sign, 0.0).sum(1).reshape(shape), atol=2e-3)
    np.testing.assert_array_equal(out.count, hit.sum(1).reshape(shape))
    np.testing.assert_array_equal(out.winding, np.where(hit, sign, 0).sum(1).reshape(shape))
    return hit.sum(1).reshape(shape)


def tilted(tm, angle=0.5, axis=(1.0, 0.7, 0.2)):
    return tm.apply_transform(trimesh.transformations.rotation_matrix(angle, axis))


def pair_loop_scenes():
    """(name, mesh, pose, max_hits, chunk): boxes crossing the source plane, clipped to the image, ties, merges."""
    sphere = tilted(trimesh.creation.icosphere(2, radius=30.0))
    plate = tilted(trimesh.creation.box(extents=(300.0, 300.0, 4.0)).subdivide(), 1.2, (1.0, 0.2, 0.0))
    big = tilted(trimesh.creation.box(extents=(900.0, 700.0, 500.0)).subdivide())
    ring = tilted(trimesh.creation.annulus(5.0, 15.0, 20.0, sections=20), 0.4, (1.0, 1.0, 0.0))
    twin = trimesh.Trimesh(
        np.vstack([ring.vertices, ring.vertices]), np.vstack([ring.faces, ring.faces + len(ring.vertices)])
    )
    stack = trimesh.util.concatenate([sphere.copy().apply_translation((0.0, 70.0 * i, 0.0)) for i in range(3)])
    return [
        # the source inside a sphere: its far side has corners on both sides of the source plane
        ("source_inside", sphere, look_at((3.0, -12.0, 5.0), (10.0, 50.0, 0.0)), 2, 700),
        # a plate through the source plane: whole-image boxes, each larger than a chunk
        ("plate_through_source", plate, look_at((4.0, -2.0, 7.0), (30.0, 200.0, -60.0)), 2, 700),
        # a mesh far larger than the field of view: boxes clipped to the image
        ("larger_than_image", big, look_at((20.0, -1500.0, 40.0), (0.0, 0.0, 0.0)), 4, 5000),
        # every face twice: equal depths on every ray must take separate slots
        ("coincident_faces", twin, look_at((10.0, -400.0, 30.0), (0.0, 0.0, 0.0)), 5, 333),
        # six crossings per ray, two kept, merged across many small chunks
        ("truncated_merges", stack, look_at((2.0, -400.0, 1.0), (0.0, 300.0, 0.0)), 2, 97),
    ]


@pytest.mark.parametrize("name, tm, pose, max_hits, chunk", pair_loop_scenes(), ids=[s[0] for s in pair_loop_scenes()])
def test_pair_loop_matches_float64_brute_force(name, tm, pose, max_hits, chunk):
    mesh = Mesh.from_trimesh(tm)
    out = jax.jit(lambda m, p: render_mesh(m, CAM, p, max_hits=max_hits, chunk=chunk))(mesh, pose)
    count = assert_matches_brute_force(out, mesh, CAM, pose, max_hits)
    assert np.sum(count > 0) > 100
    if name == "source_inside":
        np.testing.assert_array_equal(out.winding, 1)
    if name in ("larger_than_image", "plate_through_source"):
        assert np.all(count > 0)  # the mesh covers the whole image
    if name == "coincident_faces":
        assert np.all(count % 2 == 0) and np.any(count == 4)
        np.testing.assert_array_equal(out.hits[..., 0], out.hits[..., 1])
    if name == "truncated_merges":
        assert np.sum(count == 6) > 50


def test_chunk_size_does_not_change_the_image():
    mesh = tilted_annulus()
    pose = look_at((10.0, -400.0, 30.0), (0.0, 0.0, 0.0))
    outs = [render_mesh(mesh, CAM, pose, max_hits=3, chunk=c) for c in (1, 64, 4096, 1 << 20)]
    for out in outs[
        1:
    ]:  # same pairs and decisions; depths may differ in the last bit as code is vectorised differently
        np.testing.assert_array_equal(np.isfinite(out.hits), np.isfinite(outs[0].hits))
        np.testing.assert_allclose(out.hits, outs[0].hits, atol=1e-4)
        np.testing.assert_array_equal(out.count, outs[0].count)
        np.testing.assert_allclose(out.travel, outs[0].travel, atol=1e-4)
    with pytest.raises(ValueError, match="chunk must be a positive int"):
        render_mesh(mesh, CAM, pose, chunk=0)
    with pytest.raises(ValueError, match="max_hits must be a positive int"):
        render_mesh(mesh, CAM, pose, max_hits=0)
    with pytest.raises(ValueError, match="chunk must be a positive int"):
        render_mesh_soft(mesh, CAM, pose, chunk=-1)
    with pytest.raises(ValueError, match="edge_width must be > 0"):
        render_mesh_soft(mesh, CAM, pose, edge_width=0.0)


# ----------------------------------------------------------------------------------------
# the GPU schedule (static blocks of triangles x every pixel), checked on the CPU


def assert_same_render(a, b):
    """Two MeshRenders with the same hit decisions and the same depths up to float32 rounding."""
    np.testing.assert_array_equal(np.isfinite(a.hits), np.isfinite(b.hits))
    np.testing.assert_allclose(
        np.where(np.isfinite(a.hits), a.hits, 0), np.where(np.isfinite(b.hits), b.hits, 0), atol=2e-4
    )
    np.testing.assert_allclose(a.travel, b.travel, atol=2e-4)
    for name in ("mask", "count", "winding"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


@pytest.mark.parametrize("name", ["source_inside", "coincident_faces", "truncated_merges"])
def test_block_schedule_equals_pair_schedule(name):
    _, tm, pose, max_hits, chunk = next(s for s in pair_loop_scenes() if s[0] == name)
    mesh = Mesh.from_trimesh(tm)
    pairs = render_mesh(mesh, CAM, pose, max_hits=max_hits, chunk=chunk, path="pairs")
    blocks = render_mesh(mesh, CAM, pose, max_hits=max_hits, chunk=97 * 1024, path="blocks")  # blocks of 97 faces
    assert mesh.num_faces > 2 * 97
    assert_same_render(blocks, pairs)
    assert_matches_brute_force(blocks, mesh, CAM, pose, max_hits)


def test_block_schedule_equals_pair_schedule_soft_and_gradients():
    mesh = Mesh.from_trimesh(trimesh.creation.box(extents=(10.0, 14.0, 6.0)).subdivide())
    cam = Camera(12, 12, 3.0, 1000.0)
    base = look_at((40.0, -30.0, -500.0), (0.0, 0.0, 0.0), up=(0, 1, 0))
    weight = jnp.linspace(0.5, 1.5, 144).reshape(12, 12)

    def loss(x, path):
        moved = mesh.transform(make_pose(so3_exp(x[3:6]), x[:3]))
        pose = base @ se3_exp(x[6:])
        out = render_mesh(moved, cam, pose, max_hits=2, chunk=40 * 144, path=path)
        soft = render_mesh_soft(moved, cam, pose, edge_width=1.5, chunk=40 * 144, path=path)
        return jnp.sum(
            weight
            * (
                out.hits[..., 0]
                + 0.5 * jnp.where(jnp.isfinite(out.hits[..., 1]), out.hits[..., 1], 0)
                + 3.0 * out.travel
                + 50.0 * soft
            )
        )

    x0 = jnp.array([0.5, -0.3, 0.2, 0.02, -0.03, 0.01, 0.3, -0.2, 0.1, 0.004, 0.002, -0.003], jnp.float32)
    soft = [render_mesh_soft(mesh, cam, base, 1.5, path=p) for p in ("pairs", "blocks")]
    np.testing.assert_array_equal(soft[0], soft[1])
    assert 0 < int(np.sum((soft[0] > 0) & (soft[0] < 1)))
    grads = [jax.jit(jax.grad(loss), static_argnums=1)(x0, p) for p in ("pairs", "blocks")]
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-4, atol=1e-4 * float(np.abs(grads[0]).max()))
    assert float(np.abs(grads[0]).max()) > 100.0


def lowered(fn, args, platform):
    """The ``LoopReport`` (loops and branches) of ``jax.jit(fn)(*args)`` lowered for ``platform``."""
    return loops(jax.export.export(jax.jit(fn), platforms=[platform])(*args).mlir_module())


def test_lowers_for_cuda_with_static_loops_only():
    # the bench_mesh.py scene, the 20,880-triangle screw at 512 x 512, lowered (not run) for CUDA
    faces, height = 20880, 512
    cam = Camera(height, height, 0.15, 1000.0)
    mesh = object.__new__(Mesh)  # a closed mesh of abstract arrays
    for name, value in (
        ("vertices", jax.ShapeDtypeStruct((10442, 3), jnp.float32)),
        ("faces", jax.ShapeDtypeStruct((faces, 3), jnp.int32)),
        ("open_edges", 0),
    ):
        object.__setattr__(mesh, name, value)
    pose, x = jax.ShapeDtypeStruct((4, 4), jnp.float32), jax.ShapeDtypeStruct((6,), jnp.float32)
    steps = -(-faces // block_size(faces, height * height))
    assert steps == 21
    moved = lambda m, x: m.transform(make_pose(so3_exp(x[3:]), x[:3]))  # noqa: E731
    programs = [  # (name, function, arguments, loop iterations in all)
        ("render_mesh", lambda m, p: render_mesh(m, cam, p).travel, (mesh, pose), steps),
        (
            "render_mesh pose gradient",
            lambda m, p, x: jax.grad(lambda x: jnp.sum(render_mesh(moved(m, x), cam, p).travel))(x),
            (mesh, pose, x),
            2 * steps,
        ),
        ("render_mesh_soft", lambda m, p: render_mesh_soft(m, cam, p), (mesh, pose), steps),
        (
            "render_mesh_soft pose gradient",
            lambda m, p, x: jax.grad(lambda x: jnp.sum(render_mesh_soft(moved(m, x), cam, p)))(x),
            (mesh, pose, x),
            steps,
        ),
    ]
    for name, fn, args, iterations in programs:
        report = lowered(fn, args, "cuda")
        assert report.data_dependent == [] and report.data_dependent_branches == [], (name, report.describe())
        assert report.total_iterations == iterations, (name, report.describe())
    report = lowered(programs[0][1], (mesh, pose), "cpu")
    assert report.data_dependent == report.loops != [], report.describe()  # the CPU keeps its pair loop, no counted one


def test_eager_calls_compile_once():
    mesh = tilted_annulus()
    cam = Camera(8, 8, 4.0, 1000.0)
    pose = np.asarray(look_at((10.0, -400.0, 30.0), (0.0, 0.0, 0.0)))
    for call, jitted in (
        (lambda: render_mesh(mesh, cam, pose).travel, _render),
        (lambda: render_mesh_soft(mesh, cam, pose), _render_soft),
    ):
        first = np.asarray(call())
        size = jitted._cache_size()
        with jax.log_compiles(), absltest.TestCase().assertNoLogs("jax", level="WARNING"):
            second = np.asarray(call())
        assert jitted._cache_size() == size
        np.testing.assert_array_equal(first, second)


class BatchAndGradTest(chex.TestCase):
    def test_pose_batch_and_vmap_equal_loop(self):
        mesh = tilted_annulus()
        poses = jnp.stack([look_at((x, -400.0, 10.0), (0.0, 0.0, 0.0)) for x in (-30.0, 0.0, 25.0)])
        cam = Camera(16, 16, 2.0, 1000.0)
        fn = lambda p: render_mesh(mesh, cam, p, max_hits=4, chunk=300).travel  # noqa: E731
        single = jax.jit(fn)
        loop = np.stack([single(p) for p in poses])
        np.testing.assert_allclose(single(poses), loop, atol=1e-4)  # (B, 4, 4): mapped sequentially
        np.testing.assert_allclose(jax.jit(jax.vmap(fn))(poses), loop, atol=1e-4)
        self.assertGreater(int(np.sum(loop > 0)), 100)

    def test_travel_gradient_closed_form(self):
        # A slab seen face-on: travel = thickness / cos(angle), so d travel / d (z scale) = travel.
        tm = trimesh.creation.box(extents=(40.0, 40.0, 6.0))
        cam = Camera(8, 8, 1.0, 1000.0)
        mesh = Mesh.from_trimesh(tm)

        def total(scale):
            moved = Mesh(mesh.vertices * jnp.stack([1.0, 1.0, scale]), mesh.faces)
            return jnp.sum(render_mesh(moved, cam, look_at((0.0, 0.0, -500.0), (0.0, 0.0, 0.0), up=(0, 1, 0))).travel)

        value, grad = jax.jit(jax.value_and_grad(total))(jnp.float32(1.0))
        self.assertGreater(float(value), 64 * 6.0)
        np.testing.assert_allclose(grad, value, rtol=1e-4)

    def test_hits_and_travel_gradients_match_finite_differences(self):
        # a slab seen obliquely, every ray through face interiors: depths are smooth in the mesh and camera poses
        mesh = Mesh.from_trimesh(trimesh.creation.box(extents=(80.0, 80.0, 6.0)))
        cam = Camera(8, 8, 1.0, 1000.0)
        base = look_at((40.0, -30.0, -500.0), (0.0, 0.0, 0.0), up=(0, 1, 0))
        weight = jnp.linspace(0.5, 1.5, 64).reshape(8, 8)

        def loss(x):
            moved = mesh.transform(make_pose(so3_exp(x[3:6]), x[:3]))
            out = render_mesh(moved, cam, base @ se3_exp(x[6:]), max_hits=2, chunk=40)
            return jnp.sum(weight * (out.hits[..., 0] + 0.5 * out.hits[..., 1] + 3.0 * out.travel))

        x0 = jnp.array([0.5, -0.3, 0.2, 0.02, -0.03, 0.01, 0.3, -0.2, 0.1, 0.004, 0.002, -0.003], jnp.float32)
        grad = jax.jit(jax.grad(loss))(x0)
        step = jnp.array([0.05] * 3 + [1e-3] * 3 + [0.05] * 3 + [1e-3] * 3)
        shifts = jnp.concatenate([jnp.diag(step), -jnp.diag(step)])
        values = np.asarray(jax.jit(jax.vmap(lambda d: loss(x0 + d)))(shifts), np.float64)
        fd = (values[:12] - values[12:]) / (2 * np.asarray(step))
        np.testing.assert_allclose(grad, fd, rtol=0.02, atol=0.02 * np.abs(fd).max())
        self.assertGreater(float(np.abs(fd).max()), 100.0)

    def test_soft_mask_matches_float64_distance(self):
        mesh = tilted_annulus()
        pose = look_at((10.0, -900.0, 30.0), (0.0, 0.0, 0.0))
        width = 2.5
        soft = np.asarray(render_mesh_soft(mesh, CAM, pose, edge_width=width))
        hard = np.asarray(render_mesh(mesh, CAM, pose).mask)
        # float64 truth: distance from each pixel centre to the nearest projected triangle
        p = np.asarray(CAM.projection_matrix(pose), np.float64)
        tri = np.asarray(mesh.vertices, np.float64)[np.asarray(mesh.faces)]
        h = tri @ p[:, :3].T + p[:, 3]
        uv = h[..., :2] / h[..., 2:]
        pix = np.stack(np.meshgrid(np.arange(32) + 0.5, np.arange(32) + 0.5), -1).reshape(-1, 1, 1, 2)
        a, e = uv[None], np.roll(uv, -1, axis=1)[None] - uv[None]
        rel = pix - a
        t = np.clip(np.sum(rel * e, -1) / np.sum(e * e, -1), 0, 1)
        dist = np.linalg.norm(rel - t[..., None] * e, axis=-1).min(-1)
        cross = e[..., 0] * rel[..., 1] - e[..., 1] * rel[..., 0]
        dist = np.where(np.all(cross >= 0, -1) | np.all(cross <= 0, -1), 0.0, dist).min(-1).reshape(32, 32)
        x = np.clip(1 - dist / width, 0, 1)
        np.testing.assert_allclose(soft, x * x * (3 - 2 * x), atol=2e-4)
        small_chunks = render_mesh_soft(mesh, CAM, pose, edge_width=width, chunk=37)
        np.testing.assert_allclose(small_chunks, soft, atol=1e-6)
        self.assertTrue(np.all(soft[hard] == 1.0))
        self.assertGreater(int(np.sum((soft > 0) & (soft < 1))), 20)
        self.assertGreater(int(hard.sum()), 100)

    def test_soft_mask_gradient_matches_finite_differences(self):
        tm = trimesh.creation.box(extents=(12.0, 18.0, 6.0))
        mesh = Mesh.from_trimesh(tm)
        pose = look_at((0.0, -500.0, 0.0), (0.0, 0.0, 0.0))
        weight = jnp.linspace(0.0, 1.0, 32)[None, :] + jnp.linspace(0.0, 0.5, 32)[:, None]

        def loss(x):
            moved = mesh.transform(make_pose(so3_exp(x[3:]), x[:3]))
            return jnp.sum(render_mesh_soft(moved, CAM, pose, edge_width=2.0) * weight)

        x0 = jnp.array([0.3, 0.0, -0.2, 0.05, 0.1, -0.08], jnp.float32)
        grad = jax.jit(jax.grad(loss))(x0)
        step = 1e-2
        shifts = jnp.concatenate([jnp.eye(6), -jnp.eye(6)]) * step
        values = np.asarray(jax.jit(jax.vmap(lambda d: loss(x0 + d)))(shifts), np.float64)
        fd = (values[:6] - values[6:]) / (2 * step)
        np.testing.assert_allclose(grad, fd, rtol=0.03, atol=0.03 * np.abs(fd).max())
        self.assertGreater(float(np.abs(fd).max()), 1.0)

    def test_optax_recovers_tool_pose_from_two_masks(self):
        # an L-shaped tool (no symmetry, so no pose-flipped local minimum), seen in two orthogonal views
        tm = trimesh.util.concatenate(
            [
                trimesh.creation.box(extents=(4.0, 16.0, 4.0)),
                trimesh.creation.box(extents=(10.0, 4.0, 3.0)).apply_translation((5.0, 6.0, 2.0)),
            ]
        )
        mesh = Mesh.from_trimesh(tm)
        poses = jnp.stack([look_at((0.0, -400.0, 0.0), (0.0, 0.0, 0.0)), look_at((400.0, 0.0, 0.0), (0.0, 0.0, 0.0))])
        truth = jnp.array([1.5, -1.0, 0.8, 0.08, 0.12, -0.1], jnp.float32)  # translation mm, rotation vector rad
        place = lambda x: mesh.transform(make_pose(so3_exp(x[3:]), x[:3]))  # noqa: E731
        target = render_mesh_soft(place(truth), CAM, poses, edge_width=3.0)
        loss = lambda x: jnp.mean((render_mesh_soft(place(x), CAM, poses, edge_width=3.0) - target) ** 2)  # noqa: E731
        opt = optax.adam(0.03)

        @jax.jit
        def step(x, state):
            updates, state = opt.update(jax.grad(loss)(x), state)
            return optax.apply_updates(x, updates), state

        x = jnp.zeros(6, jnp.float32)
        state = opt.init(x)
        for _ in range(160):
            x, state = step(x, state)
        np.testing.assert_allclose(x[:3], truth[:3], atol=0.05)
        np.testing.assert_allclose(x[3:], truth[3:], atol=0.01)


class MeshIOTest(absltest.TestCase):
    def test_validation_errors(self):
        with self.assertRaisesRegex(ValueError, "empty"):
            Mesh(np.zeros((0, 3)), np.zeros((0, 3), np.int32))
        with self.assertRaisesRegex(ValueError, "non-finite"):
            Mesh(np.array([[0, 0, 0], [1, 0, 0], [0, np.nan, 0]], np.float32), [[0, 1, 2]])
        with self.assertRaisesRegex(ValueError, "degenerate"):
            Mesh(np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0]], np.float32), [[0, 1, 2]])
        with self.assertRaisesRegex(ValueError, "degenerate"):
            Mesh(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32), [[0, 1, 1]])
        with self.assertRaisesRegex(ValueError, r"index vertices in \[0, 3\]"):
            Mesh(np.eye(3, dtype=np.float32), [[0, 1, 3]])
        with self.assertRaisesRegex(ValueError, r"\(V, 3\)"):
            Mesh(np.zeros((3, 2)), [[0, 1, 2]])
        with self.assertRaises(FileNotFoundError):
            load_mesh("/nonexistent/tool.stl")

    def test_transform_and_trimesh_round_trip(self):
        tm = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
        mesh = Mesh.from_trimesh(tm)
        pose = make_pose(so3_exp(jnp.array([0.1, -0.4, 0.7])), jnp.array([5.0, -2.0, 1.0]))
        moved = jax.jit(lambda m, p: m.transform(p))(mesh, pose)
        expected = np.asarray(tm.vertices) @ np.asarray(pose[:3, :3], np.float64).T + np.asarray(pose[:3, 3])
        np.testing.assert_allclose(moved.vertices, expected, atol=1e-5)
        np.testing.assert_array_equal(moved.faces, tm.faces)
        self.assertAlmostEqual(moved.to_trimesh().volume, 6.0, places=4)


@pytest.mark.parametrize("ext", ["stl", "obj", "ply"])
def test_load_round_trip(tmp_path, ext):
    tm = trimesh.creation.icosphere(1, radius=7.0)
    path = tmp_path / f"sphere.{ext}"
    tm.export(path)
    mesh = load_mesh(path, scale=2.0)
    back = trimesh.Trimesh(np.asarray(mesh.vertices), np.asarray(mesh.faces))
    back.merge_vertices()
    assert back.is_watertight
    np.testing.assert_allclose(back.volume, 8.0 * tm.volume, rtol=1e-5)


def test_load_empty_file(tmp_path):
    path = tmp_path / "empty.obj"
    path.write_text("# nothing\n")
    with pytest.raises(ValueError, match="no triangles|could not read"):
        load_mesh(path)


class OrganMeshTest(absltest.TestCase):
    def setUp(self):
        grid = np.mgrid[:30, :30, :24]
        self.labels = np.zeros((30, 30, 24), np.int32)
        self.labels[np.sum((grid - np.array([15, 15, 12])[:, None, None, None]) ** 2, 0) < 9**2] = 3
        self.labels[3:9, 4:26, 2:8] = 7
        self.affine = np.array([[0.9, 0, 0, -12.0], [0, 0.8, 0, 4.0], [0, 0, 1.5, 20.0], [0, 0, 0, 1]])

    def test_closed_oriented_within_budget(self):
        meshes = label_meshes(Volume(np.zeros(self.labels.shape), self.affine, self.labels), max_faces=400)
        self.assertEqual(sorted(meshes), [3, 7])
        for i, mesh in meshes.items():
            tm = mesh.to_trimesh()
            tm.merge_vertices()
            self.assertTrue(tm.is_watertight and tm.is_winding_consistent)
            self.assertLessEqual(mesh.num_faces, 400)
            voxels = np.sum(self.labels == i) * 0.9 * 0.8 * 1.5
            self.assertAlmostEqual(tm.volume / voxels, 1.0, delta=0.08)  # positive: outward normals
            centroid = (self.affine @ np.r_[np.mean(np.nonzero(self.labels == i), axis=1), 1.0])[:3]
            np.testing.assert_allclose(tm.center_mass, centroid, atol=0.5)

    def test_mesh_mask_matches_volumetric_mask(self):
        mesh = label_mesh(self.labels, self.affine, 3, max_faces=600)
        volume = Volume((self.labels == 3).astype(np.float32), self.affine)
        centre = (self.affine @ np.array([15.0, 15.0, 12.0, 1.0]))[:3]
        pose = look_at(centre + np.array([20.0, -300.0, 10.0]), centre)
        vol_mask = np.asarray(render(volume, CAM, pose)) > 0
        mesh_mask = np.asarray(render_mesh(mesh, CAM, pose).mask)
        iou = np.sum(vol_mask & mesh_mask) / np.sum(vol_mask | mesh_mask)
        self.assertGreater(iou, 0.9)
        self.assertGreater(int(mesh_mask.sum()), 100)

    def test_bad_labels(self):
        with self.assertRaisesRegex(ValueError, "does not occur"):
            label_mesh(self.labels, self.affine, 99)
        with self.assertRaisesRegex(ValueError, "integer"):
            label_mesh(self.labels.astype(np.float32), self.affine, 3)


if __name__ == "__main__":
    pytest.main([__file__])
