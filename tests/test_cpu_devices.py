"""The CPU Siddon split over several CPU devices (``raycast/cpu_devices``) gives what one device
gives: values, label travel and depths, segmented volumes, pose and volume gradients, batches
and vmap over poses; its results mix with ordinary arrays; eager calls compile once.

JAX's CPU device count is fixed when its backend starts, and this pytest process has one, so the
checks run in a child process started with two (``JAX_NUM_CPU_DEVICES=2``), each against the
single-device traversal (``impl="traversal"``) in that same child. The child runs once per module;
each check is its own test.
"""

import functools
import json
import os
import subprocess
import sys
import traceback

import numpy as np
import pytest

SHAPE = (14, 12, 10)
AFFINE = np.array([[2.0, 0, 0, -13.0], [0, 1.5, 0, -8.0], [0, 0, 2.5, -11.0], [0, 0, 0, 1]])


def _scene():
    import fluorojax as fj

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, SHAPE).astype(np.int32) * 4
    vol = fj.Volume(rng.uniform(0.0, 0.05, SHAPE).astype(np.float32), AFFINE, labels)
    camera = fj.Camera(9, 11, 3.0, 200.0)  # 99 rays: odd, so the split pads a ray
    poses = np.stack([np.asarray(fj.carm_pose(a, b, 100.0, vol.center)) for a, b in ((20, -10), (-35, 5), (80, 30))])
    return vol, camera, poses


def _assert_close(got, want, err_msg=""):
    # the split program is compiled apart from the one-device one: the rays' float32 rounding differs
    got, want = np.asarray(got), np.asarray(want)
    scale = np.abs(want[np.isfinite(want)]).max()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale, err_msg=err_msg)


def _one_device(vol, camera, pose, **kw):
    from fluorojax.raycast import drr

    return drr._render(vol, camera, pose, "siddon", 1, kw.get("chunk", 8192), "traversal")


def check_the_child_has_two_cpu_devices_and_a_ray_mesh():
    import jax

    from fluorojax.raycast import cpu_devices

    assert jax.device_count() == 2
    assert cpu_devices.ray_mesh().devices.size == 2


def check_forward_equals_one_device():
    import fluorojax as fj
    from fluorojax.raycast import cpu_devices

    vol, camera, poses = _scene()
    got = fj.render(vol, camera, poses)
    assert len(got.sharding.device_set) == 2  # the split ran
    _assert_close(got, _one_device(vol, camera, poses))
    assert float(np.asarray(got).max()) > 0.1
    placed = cpu_devices.replicate(vol)  # on every device once: no copy per call
    assert len(placed.data.sharding.device_set) == 2
    _assert_close(fj.render(placed, camera, poses), got)
    small = fj.render(vol, camera, poses[0], chunk_size=7)  # chunks smaller than a device's share
    _assert_close(small, _one_device(vol, camera, poses[0], chunk=7))


def check_channels_and_segmented_volumes_equal_one_device():
    import fluorojax as fj

    vol, camera, poses = _scene()
    rng = np.random.default_rng(1)
    channels = vol.replace(data=rng.uniform(size=SHAPE + (3,)).astype(np.float32))
    _assert_close(fj.render(channels, camera, poses[1]), _one_device(channels, camera, poses[1]))
    segmented = fj.Volume(vol.data, AFFINE, materials=np.asarray(vol.labels) // 4, n_materials=3)
    got, want = fj.render(segmented, camera, poses[1]), _one_device(segmented, camera, poses[1])
    assert got.shape == (9, 11, 3)
    _assert_close(got, want)


def check_label_travel_entry_exit_equal_one_device():
    import fluorojax as fj
    from fluorojax.raycast import labels

    vol, camera, poses = _scene()
    got = fj.render_with_labels(vol, camera, poses[2], (4, 8))
    want = labels._render_with_labels(vol, camera, poses[2], (4, 8), 8192, "traversal")
    assert np.isfinite(np.asarray(want.entry)).mean() > 0.3
    for name in ("image", "travel", "entry", "exit"):
        _assert_close(getattr(got, name), getattr(want, name), err_msg=name)


def check_pose_and_volume_gradients_equal_one_device():
    import jax
    import jax.numpy as jnp

    from fluorojax.raycast import drr
    from fluorojax.transforms import se3_exp

    vol, camera, poses = _scene()
    w = jnp.asarray(np.random.default_rng(2).normal(size=(9, 11)), jnp.float32)

    def loss(impl, twist, data):
        image = drr._render(vol.replace(data=data), camera, poses[0] @ se3_exp(twist), "siddon", 1, 8192, impl)
        return jnp.sum(w * image)

    grad = jax.jit(jax.grad(loss, argnums=(1, 2)), static_argnums=0)
    got, want = grad("auto", jnp.zeros(6), vol.data), grad("traversal", jnp.zeros(6), vol.data)
    assert float(jnp.abs(want[0]).max()) > 0.1 and float(jnp.abs(want[1]).max()) > 0.1
    for a, b in zip(got, want):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6 * float(jnp.abs(b).max()))


def check_vmap_over_poses_equals_one_device():
    import jax

    import fluorojax as fj

    vol, camera, poses = _scene()
    got = jax.jit(jax.vmap(lambda p: fj.render(vol, camera, p)))(poses)
    _assert_close(got, _one_device(vol, camera, poses))


def check_results_mix_with_ordinary_arrays():
    import jax
    import jax.numpy as jnp

    import fluorojax as fj

    vol, camera, poses = _scene()
    image = fj.render(vol, camera, poses[0])
    want = np.asarray(_one_device(vol, camera, poses[0]), np.float64)
    target = jnp.full((9, 11), 0.2)
    np.testing.assert_allclose(float(jnp.mean((image - target) ** 2)), np.mean((want - 0.2) ** 2), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(image + np.ones((9, 11), np.float32)), want + 1.0, rtol=1e-6)
    trilinear = fj.render(vol, camera, poses[0], "trilinear", n_samples=64)  # a one-device program
    assert len(trilinear.sharding.device_set) == 1
    difference = jax.jit(jnp.subtract)(image, trilinear)
    np.testing.assert_array_equal(np.asarray(difference), np.asarray(image) - np.asarray(trilinear))


def check_registration_with_optax_finds_the_pose():
    import jax.numpy as jnp

    import fluorojax as fj
    from fluorojax.registration import ncc
    from fluorojax.transforms import se3_exp

    vol, camera, poses = _scene()
    target = fj.render(vol, camera, poses[0])
    start = poses[0] @ se3_exp(jnp.array([1.5, -1.0, 0.0, 0.0, 0.0, 0.0]))
    result = fj.register(vol, camera, target, start, steps=20, scales=(1,), similarity=ncc)
    # the loss is minus the NCC with the target: -1 at the true pose
    assert float(result.losses[0]) > -0.1 and float(result.loss) < -0.9


def check_repeated_eager_calls_compile_once():
    import jax
    from _compiles import count_compilations

    import fluorojax as fj

    vol, camera, poses = _scene()
    jax.block_until_ready(fj.render(vol, camera, poses[1]))
    with count_compilations() as again:
        for pose in (poses[1], poses[2]):
            jax.block_until_ready(fj.render(vol, camera, pose))
    assert again.value == 0


def check_a_default_device_keeps_the_render_on_it():
    # fluorojax generate renders one scene per device this way, its volume committed there
    import jax

    import fluorojax as fj

    vol, camera, poses = _scene()
    device = jax.devices()[1]
    with jax.default_device(device):
        got = fj.render(jax.device_put(vol, device), camera, poses[0])
    assert got.sharding.device_set == {device}
    _assert_close(got, _one_device(vol, camera, poses[0]))


def check_export_for_cuda_lowers_only_the_slab():
    import jax

    import fluorojax as fj

    vol, camera, poses = _scene()
    exported = jax.export.export(jax.jit(lambda v, p: fj.render(v, camera, p)), platforms=["cuda"])(vol, poses[0])
    text = exported.mlir_module()
    assert "siddon_slab.py" in text
    assert "sdy.manual_computation" not in text and "stablehlo.while" not in text
    # the limit cpu_devices documents: traced with two CPU devices, the program spans two devices
    assert exported.nr_devices == 2


CHECKS = sorted(name for name in dir() if name.startswith("check_"))
SLOW = (
    "check_channels_and_segmented_volumes_equal_one_device",
    "check_registration_with_optax_finds_the_pose",
    "check_vmap_over_poses_equals_one_device",
)


@functools.cache
def _child(names):
    """Run the checks ``names`` in one child process with two CPU devices; {name: "ok" or traceback}."""
    env = dict(os.environ, JAX_NUM_CPU_DEVICES="2", JAX_PLATFORMS="cpu")
    here = os.path.dirname(os.path.abspath(__file__))
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(here), env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, __file__, *names], capture_output=True, text=True, env=env, timeout=900)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    assert lines, f"the two-device child failed:\n{out.stderr[-3000:]}"
    return json.loads(lines[-1])


def _python(code, **env):
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.dirname(here), os.environ.get("PYTHONPATH", "")]), **env)
    env.pop("JAX_NUM_CPU_DEVICES", None)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)


def test_the_device_count_can_be_set_after_importing_fluorojax():
    # importing fluorojax must not start JAX's backend, which fixes the CPU device count
    out = _python(
        "import fluorojax, jax; jax.config.update('jax_num_cpu_devices', 2); print(jax.device_count())",
        JAX_PLATFORMS="cpu",
    )
    assert out.stdout.strip().splitlines()[-1:] == ["2"], out.stderr[-2000:]


def test_the_command_gives_jax_a_cpu_device_per_core(tmp_path):
    code = (
        "import jax, os; from fluorojax.cli import main; "
        f"assert main(['render', '--size', '16', '16', '--out', {str(tmp_path / 'drr.npy')!r}]) == 0; "
        "print(jax.device_count(), len(os.sched_getaffinity(0)))"
    )
    out = _python(code, JAX_PLATFORMS="cpu")
    devices, cores = out.stdout.strip().splitlines()[-1].split()
    assert devices == cores, out.stderr[-2000:]
    assert np.load(tmp_path / "drr.npy").shape == (16, 16)


@pytest.mark.parametrize("name", [name for name in CHECKS if name not in SLOW])
def test_two_cpu_devices(name):
    result = _child(tuple(name for name in CHECKS if name not in SLOW))[name]
    assert result == "ok", result


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW)
def test_two_cpu_devices_slow(name):
    result = _child(SLOW)[name]
    assert result == "ok", result


if __name__ == "__main__":
    results = {}
    for name in sys.argv[1:]:
        try:
            globals()[name]()
            results[name] = "ok"
        except Exception:  # every failure is reported by its own test in the parent
            results[name] = traceback.format_exc()[-3000:]
    print(json.dumps(results))
