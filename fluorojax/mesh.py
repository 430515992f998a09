"""Triangle meshes: the ``Mesh`` pytree, file loading (STL / OBJ / PLY via trimesh), placement.

A mesh is a pair of arrays in world millimetres:

  * ``vertices``: (V, 3) float32 mm;
  * ``faces``: (F, 3) int32 vertex indices.

Closed meshes are expected to be outward oriented (counter-clockwise seen from outside), so a
face normal ``cross(v1 - v0, v2 - v0)`` points out of the solid; ``render_mesh`` reads entries
and exits from it. Validation runs where a user builds a mesh from concrete values; meshes made
inside JAX transformations (``transform`` under ``jit`` / ``grad``) are not re-checked.
"""

from __future__ import annotations

import os

import jax.numpy as jnp
import numpy as np

from fluorojax._pytree import is_concrete, pytree_dataclass
from fluorojax.transforms import apply_pose


def _check_mesh(vertices, faces) -> None:
    """Raise ValueError unless (V, 3) finite vertices and (F, 3) valid, non-degenerate faces."""
    v = np.asarray(vertices)
    f = np.asarray(faces)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"Mesh vertices must be (V, 3) mm, got shape {v.shape}")
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"Mesh faces must be (F, 3) vertex indices, got shape {f.shape}")
    if v.shape[0] == 0 or f.shape[0] == 0:
        raise ValueError(f"Mesh is empty: {v.shape[0]} vertices and {f.shape[0]} faces; expected at least one triangle")
    if not np.issubdtype(f.dtype, np.integer):
        raise TypeError(f"Mesh faces must be integer vertex indices, got dtype {f.dtype}")
    bad = ~np.isfinite(v).all(axis=1)
    if bad.any():
        raise ValueError(f"Mesh has {int(bad.sum())} non-finite vertices, first at index {int(np.argmax(bad))}: {v[np.argmax(bad)].tolist()}")
    if f.min() < 0 or f.max() >= v.shape[0]:
        raise ValueError(f"Mesh faces index vertices in [{int(f.min())}, {int(f.max())}], expected [0, {v.shape[0] - 1}]")
    v64 = v.astype(np.float64)
    tri = v64[f]
    area2 = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    scale = max(float(np.ptp(v64, axis=0).max()), 1e-30)
    degenerate = (f[:, 0] == f[:, 1]) | (f[:, 1] == f[:, 2]) | (f[:, 2] == f[:, 0]) | (area2 <= 1e-12 * scale**2)
    if degenerate.any():
        first = int(np.argmax(degenerate))
        raise ValueError(
            f"Mesh has {int(degenerate.sum())} degenerate (zero-area) faces, first face {first} = {f[first].tolist()}; "
            "remove them (trimesh: mesh.update_faces(mesh.nondegenerate_faces()))"
        )


@pytree_dataclass
class Mesh:
    """A triangle mesh in world mm: ``vertices`` (V, 3) float32, ``faces`` (F, 3) int32.

    Both are pytree leaves, so a mesh can be jitted over, vmapped over (equal shapes) and
    differentiated with respect to its vertices.
    """

    vertices: jnp.ndarray
    faces: jnp.ndarray

    def __init__(self, vertices, faces):
        if is_concrete(vertices, faces):
            _check_mesh(vertices, faces)
        object.__setattr__(self, "vertices", jnp.asarray(vertices, jnp.float32))
        object.__setattr__(self, "faces", jnp.asarray(faces, jnp.int32))

    @classmethod
    def from_trimesh(cls, mesh) -> "Mesh":
        """From a ``trimesh.Trimesh`` whose coordinates are world mm."""
        import trimesh

        if not isinstance(mesh, trimesh.Trimesh):
            raise TypeError(f"Mesh.from_trimesh expects a trimesh.Trimesh, got {type(mesh).__name__}")
        return cls(np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int32))

    def to_trimesh(self):
        """A ``trimesh.Trimesh`` copy (float64 vertices, no processing)."""
        import trimesh

        return trimesh.Trimesh(np.asarray(self.vertices, np.float64), np.asarray(self.faces), process=False)

    @property
    def num_vertices(self) -> int:
        return self.vertices.shape[0]

    @property
    def num_faces(self) -> int:
        return self.faces.shape[0]

    def transform(self, world_from_mesh) -> "Mesh":
        """The mesh moved by a rigid (4, 4) ``world_from_mesh`` transform (mm); jit / grad safe."""
        world_from_mesh = jnp.asarray(world_from_mesh, jnp.float32)
        if world_from_mesh.shape != (4, 4):
            raise ValueError(f"Mesh.transform expects a (4, 4) world_from_mesh transform, got shape {world_from_mesh.shape}")
        out = object.__new__(Mesh)
        object.__setattr__(out, "vertices", apply_pose(world_from_mesh, self.vertices))
        object.__setattr__(out, "faces", self.faces)
        return out


def load_mesh(path, *, scale: float = 1.0) -> Mesh:
    """Load an STL / OBJ / PLY (any format trimesh reads) file as a ``Mesh``.

    Coordinates are multiplied by ``scale`` to give mm (e.g. 1000 for a file in metres).
    Multi-body files (scenes) are concatenated. Raises FileNotFoundError for a missing file and
    ValueError for an unreadable, empty, non-finite or degenerate mesh.
    """
    import trimesh

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"load_mesh: no mesh file at {path!r}")
    try:
        loaded = trimesh.load(path, force="mesh", process=False)
    except Exception as err:  # trimesh raises many types for unreadable files
        raise ValueError(f"load_mesh: trimesh could not read {path!r} as a triangle mesh ({err})") from err
    if not isinstance(loaded, trimesh.Trimesh) or len(loaded.faces) == 0:
        raise ValueError(f"load_mesh: {path!r} holds no triangles; expected a non-empty triangle mesh")
    vertices = np.asarray(loaded.vertices, np.float64) * float(scale)
    return Mesh(vertices.astype(np.float32), np.asarray(loaded.faces, np.int32))
