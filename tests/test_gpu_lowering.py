"""Every public renderer and its pose gradient lowers for CUDA here, without a GPU, and the
lowering holds no data-dependent XLA loop and few loop iterations (issue 13, items 2(b), 2(c)).

``jax.export`` with ``platforms=["cuda"]`` lowers the whole program for CUDA on this CPU (Pallas
Triton kernels included: their custom call is allowed through ``disabled_checks``). On a GPU each
iteration of an XLA ``while`` is a host round trip plus kernel launches, and a loop whose trip
count depends on data cannot even be planned ahead; ``tests/_lowering.py`` reads the loops off
the StableHLO text. Inputs are tiny (one ray chunk), so the counts below are the fixed cost per
call: the loops a GPU path keeps whatever the image size, e.g. over samples or pair blocks; the
``_512`` cases render a 512 x 512 detector to count ray chunks as well.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _lowering import loops
from jax import lax

import fluorojax as fj
from fluorojax import tools
from fluorojax.physics import material_volume
from fluorojax.registration import correction_to_pose, ncc
from fluorojax.simulate import render_scene

TRITON = jax.export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")

# XLA-level loop iterations allowed per call on the tiny inputs below ("a few dozen at most in
# all", issue 13 item 1): forward passes 24, forward + pose gradient 48.
MAX_ITERATIONS = {
    "siddon": 24,
    "siddon_grad": 48,
    "trilinear": 24,
    "trilinear_grad": 48,
    "line_integrals": 24,
    "line_integrals_grad": 48,
    "siddon_batch": 24,
    "siddon_512": 24,
    "siddon_512_grad": 48,
    "trilinear_512_grad": 48,
    "render_labels": 24,
    "render_with_labels_grad": 48,
    "polychromatic": 24,
    "polychromatic_grad": 48,
    "render_mesh": 24,
    "render_mesh_grad": 48,
    "render_mesh_soft": 24,
    "render_mesh_soft_grad": 48,
    "render_scene": 48,
    "registration_step": 48,
}


def lowered_loops(f, *args):
    """The ``LoopReport`` of ``jax.jit(f)(*args)`` lowered for CUDA."""
    exported = jax.export.export(jax.jit(f), platforms=["cuda"], disabled_checks=[TRITON])(*args)
    return loops(exported.mlir_module())


# ------------------------------------------------------------------------------------------
# the parser on hand-made loops


def test_parser_counts_static_loops_and_flags_data_dependent_ones():
    def f(x, n):
        x = lax.fori_loop(0, 10, lambda i, c: c * 1.5 + i, x)  # static: 10
        x = lax.fori_loop(0, n, lambda i, c: c + 1.0, x)  # traced bound
        x = lax.while_loop(lambda c: c[0] < 100.0, lambda c: c * 2.0, x)  # on data
        x, _ = lax.scan(lambda c, a: (c + a, None), x, jnp.ones((7, 4)))  # static: 7
        return x

    report = lowered_loops(f, jnp.ones(4), jnp.int32(3))
    assert sorted(loop.trip_count or 0 for loop in report.loops) == [0, 0, 7, 10]
    assert report.total_iterations == 17
    assert len(report.data_dependent) == 2


def test_parser_multiplies_nested_loops_through_calls():
    inner = jax.jit(lambda c: lax.fori_loop(2, 12, lambda j, d: d * 0.9, c))  # a func.call: 10 each

    def f(x):
        x = lax.fori_loop(0, 3, lambda i, c: inner(c), x)  # 3 x (1 + 10)
        return lax.map(lambda r: r * 2.0, x.reshape(2, 2))  # 2

    report = lowered_loops(f, jnp.ones(4))
    assert sorted(loop.iterations for loop in report.loops) == [2, 3, 30]
    assert report.total_iterations == 35 and report.data_dependent == []


def test_parser_counts_downward_and_strided_loops():
    def f(x):
        x = lax.fori_loop(0, 9, lambda i, c: c + 1.0, x)  # 9
        return lax.scan(lambda c, a: (c * a, None), x, jnp.ones(5), reverse=True)[0]  # 5

    assert lowered_loops(f, jnp.float32(1.0)).total_iterations == 14


def test_parser_sees_a_while_nested_in_a_data_dependent_loop_as_unbounded():
    def f(x):
        def body(c):
            return lax.fori_loop(0, 4, lambda i, d: d + 1.0, c)

        return lax.while_loop(lambda c: c < 50.0, body, x)

    report = lowered_loops(f, jnp.float32(0.0))
    assert len(report.data_dependent) == 2 and report.total_iterations == 0


def test_parser_flags_branches_on_data_and_passes_platform_branches():
    def f(x, i):
        x = lax.platform_dependent(x, cpu=lambda x: x + 1.0, default=lambda x: x * 2.0)  # 2 cases, static
        x = lax.cond(x[0] > 0.0, lambda x: x + 1.0, lambda x: x - 1.0, x)  # on data
        x = lax.switch(i, [lambda x: x, lambda x: -x, lambda x: 2.0 * x], x)  # on an argument
        return lax.fori_loop(0, 2, lambda k, c: lax.cond(c[0] > k, jnp.sin, jnp.cos, c), x)  # on a loop value

    args = (jnp.ones(4), jnp.int32(1))
    report = lowered_loops(f, *args)
    assert [b.static for b in report.branches] == [True, True, False, False, False]
    assert [b.op for b in report.data_dependent_branches] == ["case"] * 3
    assert report.data_dependent_branches[1].defined_by == "stablehlo.clamp"  # switch clamps its index
    # exported for two platforms the platform is an argument of @main, still no data
    both = jax.export.export(jax.jit(f), platforms=["cpu", "cuda"])(*args).mlir_module()
    report = loops(both)
    assert report.branches[0].defined_by == "platform index"
    assert len(report.data_dependent_branches) == 3


def test_parser_follows_branch_selectors_through_calls():
    forward = jax.jit(lambda x: lax.platform_dependent(x, cpu=jnp.sin, default=jnp.cos))  # a func.call
    pick = jax.jit(lambda x, i: lax.switch(i, [jnp.sin, jnp.cos], x))

    def f(x, i):  # the backward pass gets the forward's platform index as a call result
        return jax.grad(lambda x: jnp.sum(forward(x)))(x) + pick(x, i)

    report = lowered_loops(f, jnp.ones(4), jnp.int32(1))
    assert len(report.branches) == 5 and {b.function for b in report.branches} >= {"<lambda>", "<lambda>_0"}
    assert [(b.function, b.defined_by) for b in report.data_dependent_branches] == [("<lambda>_1", "stablehlo.clamp")]


def test_parser_counts_a_pallas_triton_kernel_as_one_launch_and_its_loop_as_no_xla_loop():
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import triton as pltriton

    def kernel(x_ref, o_ref):
        o_ref[...] = lax.fori_loop(0, 7, lambda i, acc: acc + x_ref[...] * i, jnp.zeros_like(x_ref[...]))

    def f(x):
        spec = pl.BlockSpec((16,), lambda i: (i,))
        y = pl.pallas_call(
            kernel,
            out_shape=jax.ShapeDtypeStruct(x.shape, x.dtype),
            grid=(4,),
            in_specs=[spec],
            out_specs=spec,
            compiler_params=pltriton.CompilerParams(num_warps=4),
        )(x)
        return lax.fori_loop(0, 3, lambda i, c: c + 1.0, y)

    report = lowered_loops(f, jnp.ones(64))
    assert report.total_iterations == 3 and report.data_dependent == []
    assert report.custom_calls == {"__gpu$xla.gpu.triton": 1}


# ------------------------------------------------------------------------------------------
# the renderers


def _volume():
    rng = np.random.default_rng(0)
    data = rng.uniform(0.0, 0.03, (6, 5, 4)).astype(np.float32)
    labels = rng.integers(0, 3, (6, 5, 4)).astype(np.int16)
    affine = np.diag([2.0, 2.5, 3.0, 1.0]).astype(np.float32)
    return fj.Volume(data, affine, labels=labels)


CAM = fj.Camera(8, 8, 4.0, 200.0)
CAM_512 = fj.Camera(512, 512, 0.0625, 200.0)


def _pose(volume):
    return fj.carm_pose(10.0, 5.0, 100.0, volume.center)


def _mesh(volume):
    return tools.box((6.0, 5.0, 4.0)).place(jnp.eye(4).at[:3, 3].set(volume.center)).mesh


def _hu(volume):
    return volume.replace(data=volume.data * 40000.0 - 1000.0)


def _cases():
    """name -> (function, arguments)."""
    v = _volume()
    pose = _pose(v)
    poses = jnp.stack([pose, _pose(v.replace(affine=v.affine.at[0, 3].set(1.0)))])
    mesh = _mesh(v)
    spec = fj.spectrum(90, n_bins=8)
    target = fj.render(v, CAM, pose)
    params = {"rotation": jnp.zeros(3), "translation": jnp.zeros(3)}

    def summed(f):
        return jax.grad(lambda p, *a: jnp.sum(f(p, *a)))

    def registration_step(params, vol, pose, target):
        def loss(p):
            return -ncc(fj.render(vol, CAM, correction_to_pose(p, pose, vol.center)), target, None)

        return jax.value_and_grad(loss)(params)

    def scene(densities, poses):
        box = tools.box((6.0, 5.0, 4.0)).place(jnp.eye(4).at[:3, 3].set(v.center))
        out = render_scene(
            densities,
            (1, 2),
            [CAM, CAM],
            poses,
            [spec, spec],
            [box],
            materials=("air", "soft_tissue", "cortical_bone"),
            tool_materials=("stainless_steel",),
        )
        return out.image, out.label_travel, out.tool_travel

    sources, targets = CAM.rays(pose)
    return {
        "siddon": (lambda vol, p: fj.render(vol, CAM, p), (v, pose)),
        "siddon_grad": (summed(lambda p, vol: fj.render(vol, CAM, p)), (pose, v)),
        "trilinear": (lambda vol, p: fj.render(vol, CAM, p, "trilinear"), (v, pose)),
        "trilinear_grad": (summed(lambda p, vol: fj.render(vol, CAM, p, "trilinear")), (pose, v)),
        "line_integrals": (fj.line_integrals, (v, sources, targets)),
        "line_integrals_grad": (summed(lambda s, vol, t: fj.line_integrals(vol, s, t)), (sources, v, targets)),
        "siddon_batch": (lambda vol, p: fj.render(vol, CAM, p), (v, poses)),
        # a full detector: ray chunks, if any, show here
        "siddon_512": (lambda vol, p: fj.render(vol, CAM_512, p), (v, pose)),
        "siddon_512_grad": (summed(lambda p, vol: fj.render(vol, CAM_512, p)), (pose, v)),
        "trilinear_512_grad": (summed(lambda p, vol: fj.render(vol, CAM_512, p, "trilinear")), (pose, v)),
        "render_labels": (lambda vol, p: fj.render_labels(vol, CAM, p, (1, 2)), (v, pose)),
        "render_with_labels_grad": (summed(lambda p, vol: fj.render_with_labels(vol, CAM, p, (1, 2)).image), (pose, v)),
        "polychromatic": (lambda vol, p: fj.render_polychromatic(vol, CAM, p, spec), (_hu(v), pose)),
        "polychromatic_grad": (summed(lambda p, vol: fj.render_polychromatic(vol, CAM, p, spec)), (pose, _hu(v))),
        "render_mesh": (lambda m, p: fj.render_mesh(m, CAM, p).travel, (mesh, pose)),
        "render_mesh_grad": (summed(lambda p, m: fj.render_mesh(m, CAM, p).travel), (pose, mesh)),
        "render_mesh_soft": (lambda m, p: fj.render_mesh_soft(m, CAM, p), (mesh, pose)),
        "render_mesh_soft_grad": (summed(lambda p, m: fj.render_mesh_soft(m, CAM, p)), (pose, mesh)),
        "render_scene": (scene, (material_volume(_hu(v)), poses)),
        "registration_step": (registration_step, (params, v, pose, target)),
    }


CASES = _cases()


@pytest.mark.parametrize("name", sorted(CASES))
def test_lowers_for_cuda_without_data_dependent_loops(name):
    f, args = CASES[name]
    report = lowered_loops(f, *args)
    assert report.data_dependent == [], f"{name}: data-dependent XLA loops\n{report.describe()}"
    assert report.data_dependent_branches == [], f"{name}: branches on data\n{report.describe()}"
    assert report.total_iterations <= MAX_ITERATIONS[name], f"{name}: too many XLA loop iterations\n{report.describe()}"
