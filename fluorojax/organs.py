"""Label map -> organ surface meshes (host side: scikit-image, trimesh, fast-simplification).

For each structure id: the binary mask (padded so the surface closes at the volume's border)
goes through marching cubes at level 0.5 (scikit-image), Taubin smoothing (trimesh; shrinks
far less than Laplacian smoothing), quadric decimation to a triangle budget
(trimesh + fast-simplification), removal of degenerate faces, and orientation so normals point
out of the structure. Vertices are mapped to world mm with the volume affine (voxel centres at
integer indices), so the meshes overlay the CT and render with ``render_mesh`` in the same
frame as the DRR.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from fluorojax.mesh import Mesh
from fluorojax.volume import Volume


def label_mesh(
    labels: npt.ArrayLike,
    affine: npt.ArrayLike,
    label_id: int,
    *,
    max_faces: int | None = 20000,
    smoothing_iterations: int = 10,
) -> Mesh:
    """Closed, outward-oriented surface of ``labels == label_id`` in world mm.

    Args:
      labels: (I, J, K) integer label map.
      affine: (4, 4) world_from_voxel (voxel centres at integer indices), mm.
      label_id: the structure id (must be present).
      max_faces: triangle budget; larger surfaces are decimated to it (None keeps all).
      smoothing_iterations: Taubin smoothing passes (0 for none).
    Returns:
      ``Mesh``. Separate connected components stay in one mesh (each closed).
    """
    import skimage.measure as measure  # host-side libraries, loaded when organ meshes are built
    import trimesh

    labels = np.asarray(labels)
    affine = np.asarray(affine, np.float64)
    if labels.ndim != 3 or not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be an (I, J, K) integer array, got shape {labels.shape} dtype {labels.dtype}")
    if affine.shape != (4, 4) or not np.isfinite(affine).all():
        raise ValueError(f"affine must be a finite (4, 4) world_from_voxel matrix, got {affine!r}")
    if max_faces is not None and max_faces < 4:
        raise ValueError(f"max_faces must be >= 4 (a tetrahedron) or None, got {max_faces!r}")
    inside = labels == label_id
    if not inside.any():
        raise ValueError(f"label {label_id!r} does not occur in the label map")
    nz = np.nonzero(inside)
    lo = np.array([a.min() for a in nz])
    hi = np.array([a.max() for a in nz]) + 1
    crop = np.pad(inside[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]].astype(np.float32), 1)
    verts, faces, _, _ = measure.marching_cubes(crop, level=0.5)
    index = verts + lo - 1.0  # voxel indices of the full grid
    world = index @ affine[:3, :3].T + affine[:3, 3]
    mesh = trimesh.Trimesh(world, faces, process=True)
    if smoothing_iterations:
        trimesh.smoothing.filter_taubin(mesh, iterations=smoothing_iterations)
    if max_faces is not None and len(mesh.faces) > max_faces:
        mesh = mesh.simplify_quadric_decimation(face_count=int(max_faces))
    mesh.update_faces(mesh.nondegenerate_faces(height=1e-9))
    mesh.remove_unreferenced_vertices()
    trimesh.repair.fix_normals(mesh, multibody=True)
    return Mesh.from_trimesh(mesh)


def label_meshes(
    volume: Volume,
    label_ids: npt.ArrayLike | None = None,
    *,
    max_faces: int | None = 20000,
    smoothing_iterations: int = 10,
) -> dict[int, Mesh]:
    """Meshes of several structures of a label map: {label_id: Mesh}, ids ascending.

    ``volume`` is a ``fluorojax.Volume`` whose ``labels`` (or, without labels, integer-valued
    ``data``) hold the ids; ``label_ids`` defaults to every non-zero id present. ``max_faces``
    is the budget per structure.
    """
    labels = np.asarray(volume.labels if volume.labels is not None else volume.data)
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.array_equal(labels, np.round(labels)):
            raise ValueError("label_meshes: the volume has no labels and its data are not integer ids")
        labels = labels.astype(np.int32)
    ids = np.unique(labels[labels != 0]) if label_ids is None else np.asarray(label_ids).reshape(-1)
    affine = np.asarray(volume.affine, np.float64)
    return {
        int(i): label_mesh(labels, affine, int(i), max_faces=max_faces, smoothing_iterations=smoothing_iterations)
        for i in sorted(ids)
    }
