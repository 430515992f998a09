"""The loop-free (GPU) Siddon equals the CPU traversal: values, label travel and depths, gradients.

Both implementations run here on the CPU, forced through ``drr.exact_integrals``'s ``impl``;
``"auto"`` picks the traversal on the CPU and the slab form for CUDA, checked on its lowering.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import fluorojax as fj
from fluorojax.raycast import drr, labels, siddon_slab
from fluorojax.raycast.siddon import SiddonSettings
from fluorojax.transforms import se3_exp

SHAPE = (9, 11, 7)


def rays(rng, n, shape=SHAPE):
    """Rays (n, 3) in grid coordinates: through the grid from outside, from inside, missing,
    and along voxel faces, edges and the main diagonal."""
    centre = np.asarray(shape) / 2
    a = rng.normal(size=(n, 3))
    s = centre + 15 * a / np.linalg.norm(a, axis=1, keepdims=True)
    t = centre + rng.normal(size=(n, 3)) * 8
    s[: n // 4] = centre + rng.normal(size=(n // 4, 3))  # starts inside
    special = np.array(
        [
            [[-3.0, 2.5, 3.5], [12.0, 2.5, 3.5]],  # along the x axis, through voxel centres
            [[-3.0, 2.0, 3.0], [12.0, 2.0, 3.0]],  # along a voxel edge
            [[-1.0, -1.0, -1.0], [10.0, 10.0, 10.0]],  # the main diagonal, through corners
            [[-3.0, 40.0, 3.0], [12.0, 40.0, 3.0]],  # misses the grid
            [[4.2, 5.1, -3.0], [4.2, 5.1, 10.0]],  # along z, the grid's shortest side
        ]
    )
    s[-5:], t[-5:] = special[:, 0], special[:, 1]
    return jnp.asarray(s, jnp.float32), jnp.asarray(t, jnp.float32)


@pytest.mark.parametrize("channels", [1, 2])
def test_slab_values_and_gradients_equal_the_traversal(channels):
    rng = np.random.default_rng(0)
    values = jnp.asarray(rng.uniform(size=(np.prod(SHAPE), channels)), jnp.float32)
    s, t = rays(rng, 300)
    g = jnp.asarray(rng.normal(size=(300, channels)), jnp.float32)

    def loss(impl, v, s, t):
        out = drr.exact_integrals(SiddonSettings(SHAPE, 64), v, None, None, s, t, impl=impl)
        return jnp.sum(g * out), out

    both = jax.jit(jax.value_and_grad(loss, argnums=(1, 2, 3), has_aux=True), static_argnums=0)
    (_, want), grads_want = both("traversal", values, s, t)
    (_, got), grads_got = both("slab", values, s, t)
    assert float(jnp.abs(want).max()) > 0.3  # alpha units: a fraction of each ray
    np.testing.assert_allclose(got, want, atol=1e-6)
    np.testing.assert_allclose(grads_got[0], grads_want[0], atol=2e-6 * float(jnp.abs(grads_want[0]).max()))
    # rays along voxel edges and through corners are not differentiable there: both give
    # finite one-sided values, not necessarily the same ones
    for name, a, b in zip(("sources", "targets"), grads_got[1:], grads_want[1:]):
        assert np.all(np.isfinite(np.asarray(a)))
        np.testing.assert_allclose(a[:-4], b[:-4], atol=2e-6 * float(jnp.abs(b).max()), err_msg=name)


def test_slab_chunks_do_not_change_the_result():
    rng = np.random.default_rng(1)
    values = jnp.asarray(rng.uniform(size=(np.prod(SHAPE), 1)), jnp.float32)
    s, t = rays(rng, 100)
    settings = SiddonSettings(SHAPE)
    whole = jax.jit(siddon_slab.integrate, static_argnums=0)(settings, values, None, None, s, t)
    chunked = jax.jit(siddon_slab.integrate, static_argnums=(0, 6))(
        settings, values, None, None, s, t, 3 * max(SHAPE) * 7
    )
    np.testing.assert_allclose(chunked, whole, rtol=1e-6)  # summation order may differ


def test_slab_segmented_volume_equals_the_traversal():
    rng = np.random.default_rng(2)
    values = jnp.asarray(rng.uniform(0.5, 1.0, size=(np.prod(SHAPE), 1)), jnp.float32)
    materials = jnp.asarray(rng.integers(0, 3, size=np.prod(SHAPE)), jnp.int32)
    s, t = rays(rng, 200)
    g = jnp.asarray(rng.normal(size=(200, 3)), jnp.float32)

    def loss(impl, v):
        return jnp.sum(
            g * drr.exact_integrals(SiddonSettings(SHAPE, 64, n_materials=3), v, materials, None, s, t, impl=impl)
        )

    # the traversal reads values whose 2 lowest mantissa bits carry the class: 1e-6 relative
    both = jax.jit(jax.value_and_grad(loss, argnums=1), static_argnums=0)
    (want, grad_want), (got, grad_got) = both("traversal", values), both("slab", values)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    np.testing.assert_allclose(grad_got, grad_want, atol=1e-5)


def test_slab_label_travel_and_depths_equal_the_traversal():
    rng = np.random.default_rng(3)
    values = jnp.asarray(rng.uniform(size=(np.prod(SHAPE), 1)), jnp.float32)
    channels = jnp.asarray(rng.integers(0, 4, size=np.prod(SHAPE)), jnp.int32)  # 3 labels, 0: none
    s, t = rays(rng, 300)
    trace = jax.jit(drr.exact_integrals, static_argnums=0, static_argnames="impl")
    settings = SiddonSettings(SHAPE, 64, n_labels=3)
    want = trace(settings, values, None, channels, s, t, impl="traversal")
    got = trace(settings, values, None, channels, s, t, impl="slab")
    for name, a, b in zip(("image", "travel", "entry", "exit"), got, want):
        finite = np.isfinite(np.asarray(b))
        np.testing.assert_array_equal(np.isfinite(np.asarray(a)), finite, err_msg=name)
        np.testing.assert_allclose(np.asarray(a)[finite], np.asarray(b)[finite], atol=2e-6, err_msg=name)
    assert np.isfinite(np.asarray(want[2])).mean() > 0.3


def test_slab_pose_and_volume_gradients_of_a_render_equal_the_traversal():
    rng = np.random.default_rng(4)
    affine = np.array([[2.0, 0, 0, -9.0], [0, 1.5, 0, -8.0], [0, 0, 2.5, -9.0], [0, 0, 0, 1]])
    vol = fj.Volume(rng.uniform(size=SHAPE).astype(np.float32), affine)
    cam = fj.Camera(10, 12, 3.0, 200.0)
    pose = fj.carm_pose(25.0, -10.0, 100.0, vol.center)
    w = jnp.asarray(rng.normal(size=(10, 12)), jnp.float32)

    def loss(impl, twist, data):
        return jnp.sum(w * drr._render(vol.replace(data=data), cam, pose @ se3_exp(twist), "siddon", 1, 64, impl))

    grad = jax.jit(jax.grad(loss, argnums=(1, 2)), static_argnums=0)
    grads = {impl: grad(impl, jnp.zeros(6), vol.data) for impl in ("slab", "traversal")}
    assert float(jnp.abs(grads["traversal"][0]).max()) > 1.0
    for a, b in zip(grads["slab"], grads["traversal"]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5 * float(jnp.abs(b).max()))


def test_slab_labels_through_render_with_labels():
    rng = np.random.default_rng(5)
    ids = rng.integers(0, 3, size=SHAPE).astype(np.int32) * 4
    vol = fj.Volume(rng.uniform(size=SHAPE).astype(np.float32), np.eye(4), ids)
    cam = fj.Camera(8, 9, 2.0, 100.0)
    pose = fj.carm_pose(15.0, 20.0, 50.0, vol.center)
    a = labels._render_with_labels(vol, cam, pose, (4, 8), 64, "slab")
    b = labels._render_with_labels(vol, cam, pose, (4, 8), 64, "traversal")
    np.testing.assert_allclose(a.image, b.image, rtol=1e-5)
    np.testing.assert_allclose(a.travel, b.travel, atol=1e-4)
    hit = np.isfinite(np.asarray(b.entry))
    assert hit.mean() > 0.3
    np.testing.assert_array_equal(np.isfinite(np.asarray(a.entry)), hit)
    np.testing.assert_allclose(np.asarray(a.entry)[hit], np.asarray(b.entry)[hit], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(a.exit)[hit], np.asarray(b.exit)[hit], rtol=1e-5)


def test_cuda_lowering_has_no_loops():
    vol = fj.Volume(np.ones(SHAPE, np.float32), np.eye(4), np.ones(SHAPE, np.int32))
    cam = fj.Camera(8, 8, 2.0, 100.0)
    pose = fj.carm_pose(15.0, 20.0, 50.0, vol.center)
    grad = jax.grad(lambda w: jnp.sum(fj.render(vol, cam, pose @ se3_exp(w))))
    for fn, arg in (
        (lambda p: fj.render(vol, cam, p), pose),
        (grad, jnp.zeros(6)),
        (lambda p: fj.render_labels(vol, cam, p, [1]), pose),
    ):
        cuda = jax.export.export(jax.jit(fn), platforms=["cuda"])(arg).mlir_module()
        cpu = jax.export.export(jax.jit(fn), platforms=["cpu"])(arg).mlir_module()
        assert "stablehlo.while" not in cuda
        assert "stablehlo.while" in cpu  # the CPU keeps the traversal
