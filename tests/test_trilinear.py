"""Trilinear ray marching: pose gradients against central differences, the GPU configuration
against the CPU one, its CUDA lowering, and compilation counts of eager calls."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _compiles import count_compilations
from _lowering import loops

import fluorojax as fj
from fluorojax.raycast import trilinear
from fluorojax.raycast.drr import grid_rays
from fluorojax.transforms import se3_exp

AFFINE = np.array([[2.0, 0.0, 0.0, -20.0], [0.0, 2.5, 0.0, -22.0], [0.0, 0.0, 3.0, -18.0], [0.0, 0.0, 0.0, 1.0]])


def smooth_volume(shape=(20, 18, 12)):
    """Two Gaussian blobs (1/mm) on an anisotropic grid: smooth, off-centre, asymmetric."""
    i, j, k = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in shape), indexing="ij")

    def blob(c, r):
        return np.exp(-((i - c[0]) ** 2 + (j - c[1]) ** 2 + (k - c[2]) ** 2) / (2 * r * r))

    data = 0.02 * blob((8.0, 10.0, 5.0), 4.0) + 0.015 * blob((13.0, 6.0, 7.0), 3.0)
    return fj.Volume(data.astype(np.float32), AFFINE)


def rendered(volume, camera, pose, n_samples, path=None):
    """fj.render's trilinear image, with the platform configuration forced by ``path``."""
    sources, targets = camera.rays(pose)
    _, s, t, length = grid_rays(volume, sources, targets)
    values = volume.data.reshape(-1, 1)
    out = trilinear.integrate(volume.shape, n_samples, values, s, t, _path=path)
    return (out[:, 0] * length).reshape(camera.shape)


@pytest.mark.parametrize("pixels", [12, 20])
def test_pose_gradient_matches_central_differences_in_every_component(pixels):
    # Issue 14: d/d rho_z (the camera moved along its axis: a slight magnification) came out
    # ~0 while x, y agreed; each component is checked against its own size here.
    volume = smooth_volume()
    camera = fj.Camera(pixels, pixels, 48.0 / pixels, 300.0)
    pose = fj.carm_pose(10.0, 0.0, 150.0, volume.center) @ se3_exp(jnp.array([2.0, -1.5, 1.0, 0.01, -0.01, 0.005]))
    columns = jnp.linspace(0.0, 1.0, pixels)

    @jax.jit
    def loss(twist):
        return jnp.mean(fj.render(volume, camera, pose @ se3_exp(twist), "trilinear", n_samples=24) * columns)

    grad = np.asarray(jax.grad(loss)(jnp.zeros(6)), np.float64)
    steps = np.array([0.1, 0.1, 0.1, 1e-3, 1e-3, 1e-3], np.float32)  # mm, rad
    fd = np.array(
        [
            (float(loss(h * e)) - float(loss(-h * e))) / (2.0 * float(h))
            for h, e in zip(steps, np.eye(6, dtype=np.float32))
        ]
    )
    assert abs(fd[2]) > 0.03 * np.abs(fd[:3]).max()  # the depth term: small beside x and y, not negligible
    np.testing.assert_allclose(grad, fd, rtol=0.02, atol=0.01 * abs(fd[2]))


def test_integrals_match_a_float64_midpoint_sum():
    volume = smooth_volume((6, 5, 4))
    rng = np.random.default_rng(1)
    s = rng.uniform(-8.0, -2.0, size=(9, 3))
    t = rng.uniform(8.0, 12.0, size=(9, 3))
    values = np.stack([volume.data.reshape(-1), np.arange(120.0) / 120.0], -1)
    n = 17
    got = np.asarray(
        trilinear.integrate(
            volume.shape, n, jnp.asarray(values, jnp.float32), jnp.asarray(s, jnp.float32), jnp.asarray(t, jnp.float32)
        )
    )
    # independent truth: scipy-free float64 trilinear interpolation of the zero-padded grid
    grid = np.pad(values.reshape(6, 5, 4, 2), ((1, 1), (1, 1), (1, 1), (0, 0)))
    want = np.zeros((9, 2))
    for r in range(9):
        d = t[r] - s[r]
        lo = (-0.5 - s[r]) / d
        hi = (np.array([6.5, 5.5, 4.5]) - s[r]) / d
        a_in = np.clip(np.max(np.minimum(lo, hi)), 0, 1)
        a_out = np.clip(np.min(np.maximum(lo, hi)), 0, 1)
        span = max(a_out - a_in, 0.0)
        for i in range(n):
            q = s[r] + (a_in + (i + 0.5) / n * span) * d + 0.5
            base = np.minimum(np.floor(q).astype(int), [6, 5, 4])
            f = q - base
            for corner in np.ndindex(2, 2, 2):
                w = np.prod([f[a] if corner[a] else 1 - f[a] for a in range(3)])
                want[r] += span / n * w * grid[tuple(base + corner)]
    np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("channels", [1, 2])
def test_gpu_configuration_equals_the_cpu_one(channels):
    # 16 x 16 rays x 300 samples: 2 chunks in the CPU configuration, 1 in the GPU one.
    volume = smooth_volume()
    data = volume.data[..., None] * jnp.arange(1.0, channels + 1.0)
    camera = fj.Camera(16, 16, 3.0, 300.0)
    pose = fj.carm_pose(-20.0, 15.0, 150.0, volume.center)
    sources, targets = camera.rays(pose)
    _, s, t, _ = grid_rays(volume, sources, targets)
    values = data.reshape(-1, channels)
    weights = jnp.asarray(np.random.default_rng(2).normal(size=(s.shape[0], channels)), jnp.float32)

    def total(path, values, s, t):
        return jnp.sum(weights * trilinear.integrate(volume.shape, 300, values, s, t, _path=path))

    assert s.shape[0] * 300 > trilinear.CPU_SAMPLES_PER_CHUNK
    cpu = jax.value_and_grad(total, argnums=(1, 2, 3))("cpu", values, s, t)
    gpu = jax.value_and_grad(total, argnums=(1, 2, 3))("gpu", values, s, t)
    auto = jax.value_and_grad(total, argnums=(1, 2, 3))(None, values, s, t)
    for got in (gpu, auto):
        np.testing.assert_allclose(float(got[0]), float(cpu[0]), rtol=1e-6)
        for g, c in zip(got[1], cpu[1]):
            np.testing.assert_allclose(np.asarray(g), np.asarray(c), rtol=1e-5, atol=1e-6 * float(jnp.abs(c).max()))

    def pose_loss(path, twist):
        return jnp.sum(jnp.linspace(0.0, 1.0, 16) * rendered(volume, camera, pose @ se3_exp(twist), 300, path))

    cpu_pose = jax.grad(pose_loss, argnums=1)("cpu", jnp.zeros(6))
    gpu_pose = jax.grad(pose_loss, argnums=1)("gpu", jnp.zeros(6))
    np.testing.assert_allclose(np.asarray(gpu_pose), np.asarray(cpu_pose), rtol=1e-5)


def test_volume_gradient_is_the_exact_linear_map():
    # The integrals are linear in the values: <grad, dv> = f(v + dv) - f(v), in both configurations.
    volume = smooth_volume()
    camera = fj.Camera(10, 10, 3.0, 300.0)
    pose = fj.carm_pose(30.0, -10.0, 150.0, volume.center)
    weights = jnp.asarray(np.random.default_rng(5).uniform(size=(10, 10)), jnp.float32)
    dv = jnp.asarray(np.random.default_rng(6).normal(size=volume.data.shape), jnp.float32)
    for path in ("cpu", "gpu"):

        def f(data, path=path):
            return jnp.sum(weights * rendered(fj.Volume(data, AFFINE), camera, pose, 40, path))

        grad = jax.grad(f)(volume.data)
        np.testing.assert_allclose(float(jnp.vdot(grad, dv)), float(f(volume.data + dv) - f(volume.data)), rtol=1e-4)


def test_cuda_lowering_has_few_static_loop_iterations():
    # 200 x 200 rays x 500 samples = 2e7 samples: 2 chunks of at most 2^24 in the GPU
    # configuration (the CPU one takes 306), forward and with the pose gradient.
    volume = smooth_volume((64, 64, 48))
    camera = fj.Camera(200, 200, 2.0, 1020.0)
    pose = fj.carm_pose(0.0, 0.0, 510.0, volume.center)

    def image(twist):
        return fj.render(volume, camera, pose @ se3_exp(twist), "trilinear", n_samples=500)

    def pose_gradient(twist):
        return jax.grad(lambda w: jnp.sum(image(w)))(twist)

    for fn in (image, pose_gradient):
        exported = jax.export.export(jax.jit(fn), platforms=["cuda"])(jax.ShapeDtypeStruct((6,), jnp.float32))
        report = loops(exported.mlir_module())
        assert not report.data_dependent, report.data_dependent
        assert [loop.trip_count for loop in report.loops] == [2], report.loops


def _count_compilations(fn, calls):
    """XLA compilations of each of ``calls`` successive calls of ``fn``."""
    counts = []
    for _ in range(calls):
        with count_compilations() as n:
            jax.block_until_ready(fn())
        counts.append(n.value)
    return counts


def test_repeated_eager_calls_do_not_recompile():
    volume = smooth_volume()
    camera = fj.Camera(8, 8, 6.0, 300.0)
    pose = fj.carm_pose(5.0, 5.0, 150.0, volume.center)
    sources, targets = camera.rays(pose)
    _, s, t, _ = grid_rays(volume, sources, targets)
    values = volume.data.reshape(-1, 1)
    counts = _count_compilations(lambda: trilinear.integrate(volume.shape, 30, values, s, t), 3)
    assert counts[1:] == [0, 0], counts
    counts = _count_compilations(lambda: fj.render(volume, camera, pose, "trilinear", n_samples=30), 3)
    assert counts[1:] == [0, 0], counts

    def loss(twist):
        return jnp.sum(fj.render(volume, camera, pose @ se3_exp(twist), "trilinear", n_samples=30))

    counts = _count_compilations(lambda: jax.grad(loss)(jnp.zeros(6)), 3)
    assert counts[1:] == [0, 0], counts
