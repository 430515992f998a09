"""Triangle meshes: the ``Mesh`` pytree, file loading (STL / OBJ / PLY via trimesh), placement.

A mesh is a pair of arrays in world millimetres:

  * ``vertices``: (V, 3) float32 mm;
  * ``faces``: (F, 3) int32 vertex indices.

Closed meshes are outward oriented (counter-clockwise seen from outside), so a face normal
``cross(v1 - v0, v2 - v0)`` points out of the solid; ``render_mesh`` reads entries and exits from
it. A mesh built from concrete arrays is checked on the host (finite vertices, valid and
non-degenerate faces) and its topology is read, with vertices at equal coordinates taken as one
(STL files repeat them):

  * closed: every edge is matched by an edge in the opposite direction (any number of faces
    may share it), so the surface bounds a solid and a ray's travel through it is defined;
  * inside out: closed with a negative enclosed volume (every face wound clockwise seen from
    outside): the winding is reversed (``faces[:, ::-1]``) with a ``UserWarning``, so travel is
    positive; cavities (inner shells facing inward) are kept, as they belong to the solid;
  * open: ``open_edges`` (static) counts the unmatched edges; ``render_mesh`` refuses such a
    mesh (its hits and travel are undefined: 500 mm through a single triangle, say), while
    ``render_mesh_soft`` draws its outline.

A mesh made inside JAX transformations (``Mesh(...)`` of traced arrays) is not checked and has
``open_edges = None`` (unknown: rendered as given); ``transform`` keeps the topology of its mesh.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from fluorojax import _validate
from fluorojax._pytree import PyTree, field, is_concrete
from fluorojax.transforms import apply_pose


def _check_finite(v: np.ndarray, context: str) -> None:
    bad = ~np.isfinite(v).all(axis=1)
    if bad.any():
        raise ValueError(
            f"{context} {int(bad.sum())} non-finite vertices, first at index {int(np.argmax(bad))}: {v[np.argmax(bad)].tolist()}"
        )


def _topology(vertices: np.ndarray, faces: np.ndarray) -> tuple[int, float]:
    """(open edges, enclosed volume mm^3) of a mesh, vertices at equal coordinates merged.

    An undirected edge is open when the faces using it in one direction are not as many as
    those using it in the other; with none open the surface is closed and the volume (the
    divergence theorem over the faces, about the centroid) is signed by the orientation.
    """
    v = np.asarray(vertices, np.float64)
    _, merged = np.unique(np.asarray(vertices, np.float32), axis=0, return_inverse=True)
    f = merged.reshape(-1)[np.asarray(faces)]
    a, b = f.reshape(-1), f[:, (1, 2, 0)].reshape(-1)
    key = np.minimum(a, b).astype(np.int64) * (f.max() + 1) + np.maximum(a, b)
    edges, index = np.unique(key, return_inverse=True)
    balance = np.bincount(index.reshape(-1), weights=np.where(a < b, 1.0, -1.0), minlength=len(edges))
    tri = v[np.asarray(faces)] - v.mean(axis=0)
    volume = float(np.einsum("fk,fk->", tri[:, 0], np.cross(tri[:, 1], tri[:, 2]))) / 6.0
    return int(np.count_nonzero(balance)), volume


def _vertices(value: ArrayLike) -> jax.Array:
    """(V, 3) float32 mm."""
    vertices = _validate.array("Mesh vertices", value, jnp.float32)
    if vertices.ndim != 2 or vertices.shape[1] != 3:
        raise ValueError(f"Mesh vertices must be (V, 3) mm, got shape {vertices.shape}")
    return vertices


def _faces(value: ArrayLike) -> jax.Array:
    """(F, 3) int32 vertex indices."""
    faces = _validate.array("Mesh faces", value, jnp.int32, what="integer vertex indices")
    if faces.ndim != 2 or faces.shape[1] != 3:
        raise ValueError(f"Mesh faces must be (F, 3) vertex indices, got shape {faces.shape}")
    return faces


def _check_values(v: np.ndarray, f: np.ndarray) -> None:
    """Raise ValueError unless the vertices are finite and the faces valid and non-degenerate."""
    _check_finite(v, "Mesh has")
    if f.min() < 0 or f.max() >= v.shape[0]:
        raise ValueError(
            f"Mesh faces index vertices in [{int(f.min())}, {int(f.max())}], expected [0, {v.shape[0] - 1}]"
        )
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


class Mesh(PyTree):
    """A triangle mesh in world mm: ``vertices`` (V, 3) float32, ``faces`` (F, 3) int32.

    Both are pytree leaves, so a mesh can be jitted over, vmapped over (equal shapes) and
    differentiated with respect to its vertices. ``open_edges`` (static, not an argument): the
    number of edges not matched by one in the opposite direction, 0 for a closed mesh, None when
    unknown (built from traced arrays). ``Mesh(vertices, faces)`` of concrete arrays reads them on
    the host (``__check_values__``: finite vertices, valid and non-degenerate faces, the
    topology) and turns a closed inside-out mesh outward (see the module docstring); kinds and
    shapes are checked on every construction. ``replace`` and ``transform`` keep ``open_edges``
    (the topology of the faces), so they suit moved or deformed vertices; new faces make a new
    ``Mesh``.
    """

    vertices: jax.Array = field(converter=_vertices)
    faces: jax.Array = field(converter=_faces)
    open_edges: int | None = field(static=True, default=None, init=False)

    def __check_init__(self) -> None:
        if self.vertices.shape[0] == 0 or self.faces.shape[0] == 0:
            raise ValueError(
                f"Mesh is empty: {self.vertices.shape[0]} vertices and {self.faces.shape[0]} faces; "
                "expected at least one triangle"
            )

    def __check_values__(self) -> None:
        """Check the values on the host, read the topology into ``open_edges`` and reverse the
        faces of a closed inside-out mesh (with a UserWarning)."""
        vertices, faces = np.asarray(self.vertices), np.asarray(self.faces)
        _check_values(vertices, faces)
        self.open_edges, volume = _topology(vertices, faces)
        if self.open_edges == 0 and volume < 0:
            warnings.warn(
                f"Mesh is inside out (closed, enclosed volume {volume:.4g} mm^3 < 0): its faces are reversed to face outward",
                UserWarning,
                stacklevel=3,  # the caller of Mesh(...), through the generated __init__
            )
            self.faces = self.faces[:, ::-1]

    @classmethod
    def from_trimesh(cls, mesh: Any) -> Mesh:
        """From a ``trimesh.Trimesh`` whose coordinates are world mm."""
        import trimesh

        if not isinstance(mesh, trimesh.Trimesh):
            raise TypeError(f"Mesh.from_trimesh expects a trimesh.Trimesh, got {type(mesh).__name__}")
        return cls(np.asarray(mesh.vertices, np.float32), np.asarray(mesh.faces, np.int32))

    def to_trimesh(self) -> Any:
        """A ``trimesh.Trimesh`` copy (float64 vertices, no processing)."""
        import trimesh

        return trimesh.Trimesh(np.asarray(self.vertices, np.float64), np.asarray(self.faces), process=False)

    @property
    def num_vertices(self) -> int:
        return self.vertices.shape[0]

    @property
    def num_faces(self) -> int:
        return self.faces.shape[0]

    @property
    def closed(self) -> bool | None:
        """True for a closed surface, False for an open one, None when unknown."""
        return None if self.open_edges is None else self.open_edges == 0

    def transform(self, world_from_mesh: ArrayLike) -> Mesh:
        """The mesh moved by a rigid (4, 4) ``world_from_mesh`` transform (mm); jit / grad safe.

        A concrete transform must be finite with a rotation of positive determinant (a
        reflection would turn the mesh inside out): ValueError otherwise. The topology
        (``open_edges``) is kept.
        """
        transform = jnp.asarray(world_from_mesh, jnp.float32)
        if transform.shape != (4, 4):
            raise ValueError(f"Mesh.transform expects a (4, 4) world_from_mesh transform, got shape {transform.shape}")
        if is_concrete(transform):
            m = np.asarray(transform, np.float64)
            if not np.all(np.isfinite(m)):
                raise ValueError(
                    f"Mesh.transform: world_from_mesh must be finite, got {int((~np.isfinite(m)).sum())} NaN/inf entries"
                )
            if np.linalg.det(m[:3, :3]) <= 0:
                raise ValueError(
                    f"Mesh.transform: world_from_mesh must be rigid (rotation determinant > 0), got determinant "
                    f"{np.linalg.det(m[:3, :3]):.4g}; a reflection turns the mesh inside out"
                )
        return self.replace(vertices=apply_pose(transform, self.vertices))


def load_mesh(path: str | os.PathLike, *, scale: float = 1.0) -> Mesh:
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
