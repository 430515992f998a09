"""fluorojax.viz: the 3D scene's geometry, checked headless after a GLB round trip."""

import numpy as np
import pytest

import fluorojax as fj
from fluorojax import viz

trimesh = pytest.importorskip("trimesh")


def _setup():
    shape = (20, 20, 20)
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1)
    data = np.where(np.linalg.norm(ijk - 9.5, axis=-1) < 6, 1000.0, -1000.0).astype(np.float32)
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -19.0
    volume = fj.Volume(data, affine)
    camera = fj.Camera(12, 16, (1.5, 2.0), 800.0, principal_point=(7.0, 6.5))
    pose = np.asarray(fj.carm_pose(30.0, 15.0, 400.0), np.float64)
    image = np.arange(12 * 16, dtype=np.float32).reshape(12, 16)  # increasing along rows: orientation visible
    return volume, camera, pose, image


def test_scene_geometry_after_glb_round_trip(tmp_path):
    volume, camera, pose, image = _setup()
    tool = fj.tools.kwire(diameter=2.0, length=60.0)
    built = viz.scene(volume, camera, pose, image=image, tools=[tool])
    path = viz.save_scene(built, tmp_path / "scene.glb")
    loaded = trimesh.load(path, force="scene")
    meshes = {name: geom for name, geom in loaded.geometry.items()}
    assert {"source", "detector", "anatomy", "tool_0"} <= set(meshes)

    def world(name):
        node = next(n for n in loaded.graph.nodes_geometry if loaded.graph[n][1] == name)
        transform, _ = loaded.graph[node]
        return trimesh.transformations.transform_points(meshes[name].vertices, transform)

    # source: the marker sphere is centred on the pose's translation
    np.testing.assert_allclose(world("source").mean(axis=0), pose[:3, 3], atol=1e-3)
    # detector corners project to the image corners and lie sdd along the principal ray
    corners = world("detector")
    assert corners.shape == (4, 3)
    np.testing.assert_allclose(
        np.asarray(camera.project(pose, corners)), [[0, 0], [16, 0], [16, 12], [0, 12]], atol=1e-3
    )
    np.testing.assert_allclose((corners - pose[:3, 3]) @ pose[:3, 2], 800.0, atol=1e-3)
    # the isosurface of the ball: radius ~12 mm around the volume's centre
    radii = np.linalg.norm(world("anatomy") - np.asarray(volume.center), axis=1)
    assert 10.0 < radii.mean() < 13.0
    # texture: the top-left corner's uv samples the image's first row
    visual = meshes["detector"].visual
    texture = np.asarray(visual.material.baseColorTexture.convert("L"), np.float64)
    assert texture.shape == image.shape
    u, v = visual.uv[np.argmin(np.linalg.norm(corners - world("detector")[0], axis=1))]
    row = int(round((1 - v) * (image.shape[0] - 1)))
    assert row == 0 and texture[0].mean() < texture[-1].mean()


def test_html_is_self_contained(tmp_path):
    volume, camera, pose, image = _setup()
    path = viz.save_scene(viz.scene(None, camera, pose, image=image), tmp_path / "scene.html")
    html = open(path, encoding="utf-8").read()
    assert "base64" in html.lower() or "B64" in html
    assert '<script src="http' not in html  # three.js is inline: no network needed


def test_bad_inputs():
    volume, camera, pose, image = _setup()
    with pytest.raises(ValueError, match="does not match"):
        viz.scene(None, camera, pose, image=image[:5])
    with pytest.raises(ValueError, match="outside the volume's range"):
        viz.scene(volume, camera, pose, iso_level=5000.0)
    with pytest.raises(ValueError, match=".glb or .html"):
        viz.save_scene(viz.scene(None, camera, pose), "scene.obj")
