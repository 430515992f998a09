"""The PyTree base: generated constructors (converters, __post_init__, __check_init__, value scans
on concrete leaves only), the one ``replace`` (no value scan), frozen objects, pytree behaviour
under jit / vmap / grad, equality and pickling; and the package's pytrees derived without a scan."""

import dataclasses
import inspect
import pickle

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fluorojax import tools
from fluorojax._pytree import PyTree, field
from fluorojax.camera import Camera, OrthographicCamera
from fluorojax.mesh import Mesh
from fluorojax.transforms import make_pose, so3_exp
from fluorojax.volume import Volume

CALLS: list[str] = []


def _as_vector(value):
    CALLS.append("convert")
    v = jnp.asarray(value, jnp.float32)
    if v.ndim != 1:
        raise ValueError(f"vector must be 1-D, got shape {v.shape}")
    return v


class Segment(PyTree):
    """A toy: a 1-D vector, its static length, and a scale that defaults to the length."""

    vector: jax.Array = field(converter=_as_vector)
    length: int = field(static=True, converter=int)
    scale: jax.Array = field(default=None, converter=lambda s: None if s is None else jnp.asarray(s, jnp.float32))

    def __post_init__(self):
        CALLS.append("post_init")
        if self.scale is None:
            self.scale = float(self.length)  # passes the field's converter

    def __check_init__(self):
        CALLS.append("check_init")
        if self.vector.shape != (self.length,):
            raise ValueError(f"vector shape {self.vector.shape} does not match length {self.length}")

    def __check_values__(self):
        CALLS.append("check_values")
        if not np.all(np.isfinite(np.asarray(self.vector))):
            raise ValueError("vector must be finite")


def test_generated_constructor_runs_the_steps_in_order():
    CALLS.clear()
    s = Segment([1, 2, 3], np.int64(3))
    assert CALLS == ["convert", "post_init", "check_init", "check_values"]
    assert s.vector.dtype == jnp.float32 and isinstance(s.length, int) and type(s.length) is int
    assert s.scale.dtype == jnp.float32 and float(s.scale) == 3.0  # the default went through the converter
    assert list(inspect.signature(Segment).parameters) == ["vector", "length", "scale"]
    with pytest.raises(ValueError, match="does not match length"):
        Segment([1.0, 2.0], 3)
    with pytest.raises(ValueError, match="finite"):
        Segment([1.0, np.nan], 2)
    with pytest.raises(TypeError, match="length"):
        Segment([1.0])


def test_traced_leaves_skip_only_the_value_scan():
    CALLS.clear()
    out = jax.jit(lambda v: Segment(v, 2).vector * 2.0)(jnp.array([1.0, np.nan]))
    assert CALLS == ["convert", "post_init", "check_init"]  # traced: no scan, the NaN propagates
    assert np.isnan(np.asarray(out)[1]) and float(out[0]) == 2.0
    with pytest.raises(ValueError, match="does not match length"):  # shapes are static: checked under jit
        jax.jit(lambda v: Segment(v, 3).vector)(jnp.ones(2))


def test_replace_converts_and_checks_shapes_but_never_scans_values():
    s = Segment([1.0, 2.0], 2, scale=5.0)
    CALLS.clear()
    t = s.replace(vector=[np.nan, 4.0])
    assert CALLS == ["convert", "post_init", "check_init"]
    assert t.vector.dtype == jnp.float32 and np.isnan(np.asarray(t.vector)[0]) and float(t.scale) == 5.0
    assert s.replace(scale=None).scale == 2.0  # dataclasses.replace semantics: __post_init__ fills the default
    with pytest.raises(ValueError, match="does not match length"):
        s.replace(vector=[1.0, 2.0, 3.0])
    with pytest.raises(TypeError, match="no such field"):
        s.replace(width=3)


def test_frozen_after_construction():
    s = Segment([1.0], 1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.vector = jnp.zeros(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.other = 1


def test_unflattening_bypasses_the_constructor():
    s = Segment([1.0, 2.0], 2)
    leaves, treedef = jax.tree.flatten(s)
    assert [np.asarray(x).tolist() for x in leaves] == [[1.0, 2.0], 2.0]
    CALLS.clear()
    shapes = jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct((7,), jnp.float32), None])  # placeholders
    assert CALLS == [] and shapes.vector.shape == (7,) and shapes.length == 2


def _camera_and_volume():
    cam = Camera(4, 6, (0.5, 0.75), 1000.0, (2.5, 2.0))
    data = np.arange(60, dtype=np.float32).reshape(3, 4, 5)
    vol = Volume(data, np.diag([2.0, 3.0, 4.0, 1.0]), labels=np.ones((3, 4, 5), np.int32))
    return cam, vol


def test_jit_vmap_grad_pickle_and_equality_over_the_package_pytrees():
    cam, vol = _camera_and_volume()
    kw = tools.kwire(diameter=2.0, length=20.0, segments=6)
    # jit: the statics stay Python values, the leaves arrays
    k = jax.jit(lambda c: c.intrinsics)(cam)
    np.testing.assert_allclose(
        np.asarray(k), [[2000.0, 0.0, 2.5], [0.0, 1000.0 / 0.75, 2.0], [0.0, 0.0, 1.0]], rtol=1e-6
    )
    assert float(jax.jit(lambda t: t.density * t.mesh.vertices.shape[0])(kw)) == pytest.approx(
        8.0 * kw.mesh.num_vertices
    )
    # vmap over stacked cameras (batched leaves never meet the shape checks)
    stacked = jax.tree.map(lambda *x: jnp.stack(x), cam, cam.replace(sdd=500.0))
    np.testing.assert_allclose(np.asarray(jax.vmap(lambda c: c.intrinsics[0, 0])(stacked)), [2000.0, 1000.0])
    # grad through replace (a traced volume, no scan)
    g = jax.grad(lambda d: jnp.sum(vol.replace(data=d).data ** 2))(vol.data)
    np.testing.assert_allclose(np.asarray(g), 2.0 * np.asarray(vol.data))
    # pickling round trips every field; equality is the dataclass's (fields compared in order)
    for obj in (cam, vol, kw, OrthographicCamera(4, 4, 1.0)):
        back = pickle.loads(pickle.dumps(obj))
        assert type(back) is type(obj)
        for a, b in zip(jax.tree.leaves(obj), jax.tree.leaves(back)):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        assert jax.tree.structure(back) == jax.tree.structure(obj)
    assert kw.mesh.open_edges == pickle.loads(pickle.dumps(kw)).mesh.open_edges == 0
    assert cam == cam and Camera(4, 6, (0.5, 0.75), 1000.0, (2.5, 2.0)) != OrthographicCamera(4, 6, 0.5)


def test_derived_cameras_meshes_and_tools_are_not_scanned(monkeypatch):
    """binned, transform and place go through replace: converters and shape checks, no value
    scan (``__check_values__`` would fail here) and no device-to-host copy (the guard bites on an
    accelerator; on the CPU device and host memory are one)."""
    cam, _ = _camera_and_volume()
    kw = tools.kwire(diameter=2.0, length=20.0, segments=6)
    pose = make_pose(so3_exp(jnp.array([0.1, -0.2, 0.3])), jnp.array([1.0, 2.0, 3.0]))

    def refuse(self):
        raise AssertionError(f"{type(self).__name__}.__check_values__ ran on a derived object")

    for cls in (Camera, Mesh, tools.Tool):
        monkeypatch.setattr(cls, "__check_values__", refuse)
    with jax.transfer_guard_device_to_host("disallow"):
        half = cam.binned(2)
        placed = kw.place(pose)
    monkeypatch.undo()
    assert half.shape == (2, 3) and isinstance(half.height, int)
    np.testing.assert_allclose(np.asarray(half.pixel_size), [1.0, 1.5])
    np.testing.assert_allclose(np.asarray(half.principal_point), [1.25, 1.0])
    want = np.asarray(kw.mesh.vertices, np.float64) @ np.asarray(pose[:3, :3], np.float64).T + np.asarray(pose[:3, 3])
    np.testing.assert_allclose(np.asarray(placed.mesh.vertices), want, atol=1e-4)
    assert placed.mesh.open_edges == 0 and placed.material == kw.material and placed.name == kw.name
    np.testing.assert_array_equal(np.asarray(placed.mesh.faces), np.asarray(kw.mesh.faces))
    # the constructors still scan concrete values
    with pytest.raises(ValueError, match="sdd"):
        Camera(4, 6, 0.5, -1.0)
    with pytest.raises(ValueError, match="non-finite"):
        Mesh(np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, np.nan, 0.0]]), [[0, 1, 2]])
    with pytest.raises(ValueError, match="Tool density"):
        tools.Tool(kw.mesh, "titanium", -1.0)
