"""Procedural tools: closed outward meshes whose sizes and volumes match closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fluorojax import tools
from fluorojax.camera import Camera
from fluorojax.raycast.mesh_render import render_mesh
from fluorojax.transforms import make_pose, so3_exp

SMALL = dict(segments=12, rings_per_pitch=4)


def closed(tool):
    tm = tool.mesh.to_trimesh()
    tm.merge_vertices()
    assert tm.is_watertight and tm.is_winding_consistent, tool.name
    assert tm.volume > 0, f"{tool.name} is inside out"
    return tm


def polygon_area(m, r):
    return 0.5 * m * r * r * np.sin(2 * np.pi / m)


def test_primitives_volumes():
    tm = closed(tools.cylinder(2.0, 10.0, segments=16))
    np.testing.assert_allclose(tm.volume, polygon_area(16, 2.0) * 10.0, rtol=1e-6)
    np.testing.assert_allclose(tm.bounds, [[-2, -2, 0], [2, 2, 10]], atol=1e-6)
    np.testing.assert_allclose(closed(tools.box((1.0, 2.0, 3.0))).volume, 6.0, rtol=1e-6)
    sphere = closed(tools.sphere(5.0, subdivisions=3))
    assert 0.98 * 4 / 3 * np.pi * 125 < sphere.volume < 4 / 3 * np.pi * 125


def test_kwire_trocar_tip():
    wire = tools.kwire(diameter=2.0, length=50.0, tip_length=3.0, segments=24)
    tm = closed(wire)
    assert (wire.material, float(wire.density)) == ("stainless_steel", 8.0)
    np.testing.assert_allclose(tm.bounds, [[-1, -1, 0], [1, 1, 50]], atol=1e-6)
    # in the tip every vertex lies on the nearest of three facet planes at distance r z / tip_length from the axis
    v = tm.vertices[(tm.vertices[:, 2] > 0) & (tm.vertices[:, 2] < 1.5)]
    facets = np.array([np.pi / 3, np.pi, 5 * np.pi / 3])
    support = np.max(v[:, :1] * np.cos(facets) + v[:, 1:2] * np.sin(facets), axis=1)
    np.testing.assert_allclose(support, v[:, 2] / 3.0, atol=1e-6)
    shaft = tm.vertices[
        (tm.vertices[:, 2] >= 3.0) & (np.linalg.norm(tm.vertices[:, :2], axis=1) > 0)
    ]  # not the end pole
    np.testing.assert_allclose(np.linalg.norm(shaft[:, :2], axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(tm.vertices[np.argmin(tm.vertices[:, 2])], 0.0, atol=1e-9)  # the point


def test_cortical_screw_thread_and_head():
    screw = tools.cortical_screw(length=10.0, **SMALL)
    tm = closed(screw)
    np.testing.assert_allclose(tm.bounds[:, 2], [0.0, 12.4], atol=1e-6)  # shaft + 2.4 mm head
    np.testing.assert_allclose(np.abs(tm.bounds[:, :2]), 3.0, atol=1e-6)  # head radius
    radius = np.linalg.norm(tm.vertices[:, :2], axis=1)
    shaft = (tm.vertices[:, 2] > 3.0) & (tm.vertices[:, 2] < 10.0)
    np.testing.assert_allclose([radius[shaft].min(), radius[shaft].max()], [1.2, 1.75], atol=1e-6)
    # the helix advances one pitch per turn: the crest angle at height z is 2 pi z / pitch
    crest = shaft & np.isclose(radius, 1.75)
    angle = np.arctan2(tm.vertices[crest, 1], tm.vertices[crest, 0])
    np.testing.assert_allclose(np.cos(angle - 2 * np.pi * (tm.vertices[crest, 2] / 1.25 - 0.5)), 1.0, atol=1e-5)


def test_cannulated_screw_bore_is_empty():
    screw = tools.cannulated_screw(length=30.0, **SMALL)
    assert (screw.material, float(screw.density)) == ("titanium", pytest.approx(4.506))
    closed(screw)
    cam = Camera(9, 9, 0.05, 100.0)  # a thin bundle along the axis, inside the 2.9 mm bore
    render = jax.jit(render_mesh)  # both views share one compilation
    out = render(screw.mesh, cam, make_pose(jnp.eye(3), jnp.array([0.0, 0.0, -50.0])))
    np.testing.assert_array_equal(out.travel, 0.0)
    side = render(screw.mesh, cam, make_pose(so3_exp(jnp.array([0.0, np.pi / 2, 0.0])), jnp.array([-50.0, 0.0, 20.0])))
    # across the unthreaded shank: two walls between the 2.3 mm shank radius and the 1.45 mm bore radius
    np.testing.assert_allclose(side.travel[4, 4], 2 * (2.3 - 1.45), atol=0.05)


def test_plate_volume_and_holes():
    plate = tools.plate(n_holes=3, hole_diameter=3.6, hole_spacing=12.0, width=11.0, thickness=3.0, segments=4)
    tm = closed(plate)
    corners = np.array([[6.0, -5.5], [6.0, 5.5], [-6.0, 5.5], [-6.0, -5.5]])
    ring = np.concatenate(
        [c + np.arange(4)[:, None] / 4 * (np.roll(corners, -1, 0)[k] - c) for k, c in enumerate(corners)]
    )
    angle = np.arctan2(ring[:, 1], ring[:, 0])
    hole = 0.5 * np.abs(np.sum(np.sin(np.diff(np.r_[angle, angle[0] + 2 * np.pi])))) * 1.8**2
    np.testing.assert_allclose(tm.volume, (36.0 * 11.0 - 3 * hole) * 3.0, rtol=1e-6)
    np.testing.assert_allclose(tm.bounds, [[-18, -5.5, 0], [18, 5.5, 3]], atol=1e-6)
    assert tm.euler_number == 2 - 2 * 3  # genus 3: one handle per hole


def test_place_moves_mesh_and_keeps_material():
    wire = tools.kwire(length=20.0, segments=6)
    pose = make_pose(so3_exp(jnp.array([0.3, -0.2, 0.5])), jnp.array([10.0, 0.0, -4.0]))
    placed = wire.place(pose)
    expected = np.asarray(wire.mesh.vertices, np.float64) @ np.asarray(pose[:3, :3]).T + np.asarray(pose[:3, 3])
    np.testing.assert_allclose(placed.mesh.vertices, expected, atol=1e-5)
    assert (placed.material, placed.name, float(placed.density)) == (wire.material, wire.name, 8.0)


def test_bad_parameters():
    with pytest.raises(ValueError, match="diameter"):
        tools.kwire(diameter=-1.0)
    with pytest.raises(ValueError, match="multiple of 3"):
        tools.kwire(segments=8)
    with pytest.raises(ValueError, match="core"):
        tools.cortical_screw(major_diameter=2.0, core_diameter=2.4)
    with pytest.raises(ValueError, match="cannula"):
        tools.cannulated_screw(cannula_diameter=4.0)
    with pytest.raises(ValueError, match="hole_diameter"):
        tools.plate(hole_diameter=12.0)
    with pytest.raises(ValueError, match="extents"):
        tools.box((1.0, 2.0))
    with pytest.raises(ValueError, match="density"):
        tools.Tool(tools.box((1.0, 1.0, 1.0)).mesh, "titanium", 0.0)
