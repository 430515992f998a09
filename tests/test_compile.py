"""Eager calls compile once: a public function called again with the same shapes reuses its
compiled program (a notebook user who never writes ``jax.jit`` must not pay compilation per call).

Each case calls the function once (it may compile), then twice more; the XLA backend compilations
of the repeated calls, counted through ``jax.monitoring``, must be zero.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _compiles import count_compilations

import fluorojax as fj
from fluorojax import augment, physics


def test_counter_sees_a_fresh_compilation():
    # the truth the other tests rely on: a new program is counted, a cached one is not
    f = jax.jit(lambda x: jnp.sin(x) * 3.0 + 1.5)
    x = jnp.arange(7.0)
    with count_compilations() as first:
        jax.block_until_ready(f(x))
    with count_compilations() as again:
        jax.block_until_ready(f(x))
    assert first.value == 1 and again.value == 0


@functools.cache
def _scene():
    rng = np.random.default_rng(0)
    hu = rng.uniform(-1000.0, 1500.0, (10, 9, 8)).astype(np.float32)
    labels = rng.integers(0, 3, (10, 9, 8)).astype(np.int32)
    affine = np.diag([4.0, 4.0, 5.0, 1.0]).astype(np.float32)
    ct = fj.Volume(hu, affine, labels)
    camera = fj.Camera(height=8, width=8, pixel_size=12.0, sdd=1000.0)
    pose = fj.carm_pose(lao_deg=10.0, cra_deg=5.0, source_to_isocenter=500.0, isocenter=ct.center)
    mu = fj.hu_to_mu(ct)
    return ct, mu, camera, pose


def _cases():
    def render_siddon():
        ct, mu, camera, pose = _scene()
        return fj.render(mu, camera, pose)

    def render_trilinear():
        ct, mu, camera, pose = _scene()
        return fj.render(mu, camera, pose, "trilinear", n_samples=32)

    def render_batch():
        ct, mu, camera, pose = _scene()
        return fj.render(mu, camera, jnp.stack([pose, pose]))

    def pose_gradient():
        ct, mu, camera, pose = _scene()
        return jax.grad(lambda w: jnp.mean(fj.render(mu, camera, pose @ fj.transforms.se3_exp(w))))(jnp.zeros(6))

    def render_labels():
        ct, mu, camera, pose = _scene()
        return fj.render_labels(ct, camera, pose)

    def render_with_labels():
        ct, mu, camera, pose = _scene()
        return fj.render_with_labels(mu, camera, pose)

    def line_integrals():
        ct, mu, camera, pose = _scene()
        sources, targets = camera.rays(pose)
        return fj.line_integrals(mu, sources, targets)

    def render_polychromatic():
        ct, mu, camera, pose = _scene()
        return fj.render_polychromatic(ct, camera, pose, physics.spectrum(90, n_bins=8))

    def detector_noise():
        return physics.detector_noise(jax.random.key(0), jnp.full((8, 8), 0.5), 1e4, crosstalk_fraction=0.1)

    def add_scatter():
        return physics.add_scatter(jnp.full((8, 8), 0.5), 0.2, 2.0)

    def material_volume():
        ct, mu, camera, pose = _scene()
        return physics.material_volume(ct).data

    def render_mesh():
        ct, mu, camera, pose = _scene()
        return fj.render_mesh(fj.tools.kwire(diameter=4.0, length=40.0).mesh.transform(pose), camera, pose, max_hits=4)

    def render_mesh_soft():
        ct, mu, camera, pose = _scene()
        return fj.render_mesh_soft(fj.tools.kwire(diameter=4.0, length=40.0).mesh.transform(pose), camera, pose)

    def register():
        ct, mu, camera, pose = _scene()
        target = fj.render(mu, camera, pose)
        return fj.register(mu, camera, target, pose, steps=2).pose

    def default_pipeline():
        image = jnp.full((16, 16), 0.5)
        masks = jnp.zeros((2, 16, 16), bool)
        return augment.default_pipeline((16, 16))(jax.random.key(3), image, masks)

    def validation_pipeline():
        image = jnp.full((16, 16), 0.5)
        masks = jnp.zeros((2, 16, 16), bool)
        return augment.validation_pipeline((16, 16))(jax.random.key(3), image, masks)

    def apply_batch():
        images = jnp.full((2, 16, 16), 0.5)
        masks = jnp.zeros((2, 2, 16, 16), bool)
        return augment.apply_batch(
            augment.validation_pipeline((16, 16)), jax.random.split(jax.random.key(3), 2), images, masks
        )

    return {
        f.__name__: f
        for f in (
            render_siddon,
            render_trilinear,
            render_batch,
            pose_gradient,
            render_labels,
            render_with_labels,
            line_integrals,
            render_polychromatic,
            detector_noise,
            add_scatter,
            material_volume,
            render_mesh,
            render_mesh_soft,
            register,
            default_pipeline,
            validation_pipeline,
            apply_batch,
        )
    }


CASES = _cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_repeated_eager_calls_do_not_compile(name):
    call = CASES[name]
    first = call()
    with count_compilations() as n:
        for _ in range(2):
            again = call()
        jax.block_until_ready(again)
    assert n.value == 0, f"{name}: {n.value} XLA compilations over two repeated eager calls with the same shapes"
    # the cached program computes the same thing
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(again)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
