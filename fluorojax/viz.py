"""A 3D view of an imaging scene: the X-ray source, the beam's frustum, the detector textured with
its image, the CT's isosurface or organ meshes, and tools, as a ``trimesh.Scene``.

``save_scene`` writes it as GLB (any glTF viewer, Blender, 3D Slicer) or as one self-contained
HTML page (trimesh's viewer: three.js and the GLB embedded, no network needed). Everything is in
world mm (RAS+); the detector quad's corners are the outer corners of the image's corner pixels
on the plane z = sdd of the camera, textured so that the image reads as seen from the source.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from fluorojax._files import StrPath
from fluorojax.camera import Camera
from fluorojax.mesh import Mesh
from fluorojax.tools import Tool
from fluorojax.volume import Volume

if TYPE_CHECKING:  # trimesh is imported when a scene is built
    import trimesh

_COLOURS = {
    "source": (255, 200, 0, 255),
    "frustum": (255, 160, 0, 255),
    "anatomy": (230, 220, 200, 255),
    "tool": (90, 140, 230, 255),
}


def detector_corners(camera: Camera, pose: npt.ArrayLike) -> np.ndarray:
    """(4, 3) world mm: the detector's corners at pixel coordinates (0, 0), (W, 0), (W, H), (0, H)
    (top-left, top-right, bottom-right, bottom-left as seen from the source)."""
    px, py = np.asarray(camera.pixel_size, np.float64)
    u0, v0 = np.asarray(camera.principal_point, np.float64)
    uv = np.array([[0, 0], [camera.width, 0], [camera.width, camera.height], [0, camera.height]], np.float64)
    local = np.column_stack([(uv[:, 0] - u0) * px, (uv[:, 1] - v0) * py, np.full(4, float(camera.sdd))])
    pose = np.asarray(pose, np.float64)
    return local @ pose[:3, :3].T + pose[:3, 3]


def _texture(image):
    from PIL import Image

    image = np.asarray(image, np.float64)
    lo, hi = np.percentile(image, [0.5, 99.5])
    grey = np.round(np.clip((image - lo) / max(hi - lo, 1e-12), 0, 1) * 255).astype(np.uint8)
    return Image.fromarray(np.repeat(grey[..., None], 3, axis=-1), "RGB")


def _detector(camera, pose, image):
    import trimesh

    corners = detector_corners(camera, pose)
    faces = np.array([[0, 2, 1], [0, 3, 2]])  # facing the source
    quad = trimesh.Trimesh(corners, faces, process=False)
    if image is None:
        quad.visual.face_colors = (200, 200, 200, 255)
        return quad
    image = np.asarray(image)
    if image.shape != camera.shape:
        raise ValueError(f"image shape {image.shape} does not match the camera's {camera.shape}")
    uv = np.array([[0, 1], [1, 1], [1, 0], [0, 0]], np.float64)  # texture v runs upward: row 0 at the top
    quad.visual = trimesh.visual.TextureVisuals(uv=uv, image=_texture(image))
    return quad


def _frustum(source, corners):
    import trimesh

    segments = [[source, c] for c in corners] + [[corners[i], corners[(i + 1) % 4]] for i in range(4)]
    path = trimesh.load_path(np.asarray(segments))
    path.colors = np.tile(_COLOURS["frustum"], (len(path.entities), 1))
    return path


def _isosurface(volume: Volume, level, step):
    import trimesh
    from skimage.measure import marching_cubes

    data = np.array(volume.data, np.float32)  # a writable copy (marching_cubes needs one)
    if data.ndim != 3:
        raise ValueError(f"an isosurface needs scalar (I, J, K) data, got shape {data.shape}")
    if not data.min() < level < data.max():
        raise ValueError(f"iso_level {level} is outside the volume's range [{data.min():.4g}, {data.max():.4g}]")
    vertices, faces, _, _ = marching_cubes(data, level=level, step_size=step)
    affine = np.asarray(volume.affine, np.float64)
    return trimesh.Trimesh(
        vertices @ affine[:3, :3].T + affine[:3, 3], faces, process=False, face_colors=_COLOURS["anatomy"]
    )


def _trimesh(item, colour):
    import trimesh

    mesh = item.mesh if isinstance(item, Tool) else item
    if isinstance(mesh, Mesh):
        mesh = trimesh.Trimesh(np.asarray(mesh.vertices, np.float64), np.asarray(mesh.faces), process=False)
    elif not isinstance(mesh, trimesh.Trimesh):
        raise TypeError(f"expected a fluorojax Mesh or Tool or a trimesh.Trimesh, got {type(item).__name__}")
    mesh = mesh.copy()
    mesh.visual.face_colors = colour
    return mesh


def scene(
    volume_or_meshes: Volume | Sequence[Mesh | trimesh.Trimesh] | None,
    camera: Camera,
    pose: npt.ArrayLike,
    image: npt.ArrayLike | None = None,
    tools: Sequence[Tool | Mesh | trimesh.Trimesh] = (),
    iso_level: float = 300.0,
    step: int = 2,
    source_radius: float = 10.0,
) -> trimesh.Scene:
    """The imaging scene as a ``trimesh.Scene`` (world mm, RAS+).

    Args:
      volume_or_meshes: a ``Volume`` (its isosurface at ``iso_level`` in data units, e.g. 300 HU
        for bone, by marching cubes every ``step`` voxels), or a sequence of meshes (fluorojax
        ``Mesh`` or ``trimesh.Trimesh``, e.g. ``fluorojax.organs`` output), or None.
      camera, pose: the imager and its (4, 4) world_from_camera pose.
      image: optional (H, W) image shown on the detector (e.g. the DRR), as seen from the source.
      tools: fluorojax ``Tool``s or meshes, drawn in blue.
      source_radius: mm, the radius of the sphere marking the source.

    Nodes: ``source``, ``frustum`` (source-to-corner rays and the detector outline),
    ``detector``, ``anatomy`` or ``anatomy_<i>``, ``tool_<i>``.
    """
    import trimesh

    pose = np.asarray(pose, np.float64)
    if pose.shape != (4, 4):
        raise ValueError(f"pose must be (4, 4) world_from_camera, got shape {pose.shape}")
    out = trimesh.Scene()
    source = pose[:3, 3]
    marker = trimesh.creation.icosphere(subdivisions=2, radius=source_radius)
    marker.apply_translation(source)
    marker.visual.face_colors = _COLOURS["source"]
    out.add_geometry(marker, geom_name="source")
    corners = detector_corners(camera, pose)
    out.add_geometry(_frustum(source, corners), geom_name="frustum")
    out.add_geometry(_detector(camera, pose, image), geom_name="detector")
    if isinstance(volume_or_meshes, Volume):
        out.add_geometry(_isosurface(volume_or_meshes, iso_level, step), geom_name="anatomy")
    elif volume_or_meshes is not None:
        for i, mesh in enumerate(volume_or_meshes):
            out.add_geometry(_trimesh(mesh, _COLOURS["anatomy"]), geom_name=f"anatomy_{i}")
    for i, tool in enumerate(tools):
        out.add_geometry(_trimesh(tool, _COLOURS["tool"]), geom_name=f"tool_{i}")
    return out


def save_scene(built: trimesh.Scene, path: StrPath) -> str:
    """Write a scene as ``.glb`` or as a self-contained ``.html`` page; returns the path."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"output folder does not exist: {folder}")
    if path.lower().endswith(".glb"):
        data = built.export(file_type="glb")
        with open(path, "wb") as f:
            f.write(data)
    elif path.lower().endswith(".html"):
        from trimesh.viewer.notebook import scene_to_html

        with open(path, "w", encoding="utf-8") as f:
            f.write(scene_to_html(built))
    else:
        raise ValueError(f"a scene is saved as .glb or .html, got {path!r}")
    return path
