"""Procedural surgical tools as closed, outward-oriented triangle meshes.

Every builder runs on the host (NumPy / trimesh) and returns a ``Tool``: a ``Mesh`` in the
tool's own frame (mm), the name of its material (as in ``fluorojax.physics`` materials:
"stainless_steel", "titanium", ...) and its density (g/cm^3). ``tool.place(world_from_mesh)``
moves it into the world with a (4, 4) rigid transform (jit and grad safe).

Frames: elongated tools (K-wire, screws, cylinder) lie along +z with their tip at the origin and
their back end (or head) at positive z; the plate, box and sphere are centred on the origin
(the plate's length along x, width along y, thickness along z from 0 to ``thickness``).

Sizes are mm. The defaults follow common implants: a 2.0 mm K-wire, a 3.5 mm cortical screw
(core 2.4 mm, pitch 1.25 mm, head 6.0 mm), a 7.0 mm cannulated screw (core 4.6 mm, pitch 2.75
mm, 2.9 mm cannula, 16 mm partial thread) and a 3.5 mm-screw plate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from fluorojax import _validate
from fluorojax._pytree import PyTree, field
from fluorojax.mesh import Mesh

STAINLESS_STEEL_DENSITY = 8.0
TITANIUM_DENSITY = 4.506


def _mesh(value: Any) -> Mesh:
    if not isinstance(value, Mesh):
        raise TypeError(f"Tool mesh must be a fluorojax.Mesh, got {type(value).__name__}")
    return value


def _material(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"Tool material must be a non-empty material name, got {value!r}")
    return value


def _density(value: ArrayLike) -> jax.Array:
    return _validate.array("Tool density (g/cm^3)", value, jnp.float32)


class Tool(PyTree):
    """A rigid tool: ``mesh`` (mm), ``density`` (g/cm^3, a leaf) and ``material`` / ``name`` (static).

    A concrete density must be positive and finite (``__check_values__``); ``place`` moves the
    tool without reading its values."""

    mesh: Mesh = field(converter=_mesh)
    material: str = field(static=True, converter=_material)
    density: jax.Array = field(converter=_density)
    name: str = field(static=True, default="tool", converter=str)

    def __check_values__(self) -> None:
        _validate.positive_number("Tool density", self.density, unit="g/cm^3")

    def place(self, world_from_mesh: ArrayLike) -> Tool:
        """The tool moved by a (4, 4) ``world_from_mesh`` rigid transform (mm)."""
        return self.replace(mesh=self.mesh.transform(world_from_mesh))


def _tool(vertices, faces, material, density, name):
    return Tool(Mesh(np.asarray(vertices, np.float32), np.asarray(faces, np.int32)), material, density, name)


def _revolve(z, radius, bottom_z=None, top_z=None, inner_radius=None):
    """Closed solid of (generalised) revolution about the z axis.

    z: (n,) increasing ring heights; radius: (n, m) radius of ring i at angle 2 pi j / m.
    Ends are closed by a pole at (0, 0, bottom_z / top_z) (a flat cap when it equals the end
    ring's z, a point otherwise), or, with ``inner_radius``, the solid is a tube: an inner wall
    of that radius and annular ends. Returns (vertices (V, 3), faces (F, 3)), outward oriented.
    """
    n, m = radius.shape
    theta = 2.0 * np.pi * np.arange(m) / m
    ring = np.stack([radius * np.cos(theta), radius * np.sin(theta), np.broadcast_to(z[:, None], (n, m))], -1)
    vertices = [ring.reshape(-1, 3)]
    idx = np.arange(n * m).reshape(n, m)
    a, b = idx[:-1], np.roll(idx[:-1], -1, axis=1)
    c, d = idx[1:], np.roll(idx[1:], -1, axis=1)
    faces = [np.stack([a, b, d], -1).reshape(-1, 3), np.stack([a, d, c], -1).reshape(-1, 3)]
    j, j1 = np.arange(m), np.roll(np.arange(m), -1)
    if inner_radius is None:
        vertices.append(np.array([[0.0, 0.0, bottom_z], [0.0, 0.0, top_z]]))
        p0, p1 = n * m, n * m + 1
        faces.append(np.stack([np.full(m, p0), idx[0, j1], idx[0, j]], -1))
        faces.append(np.stack([np.full(m, p1), idx[-1, j], idx[-1, j1]], -1))
    else:
        inner = np.stack(
            [
                inner_radius * np.cos(theta)[None].repeat(2, 0),
                inner_radius * np.sin(theta)[None].repeat(2, 0),
                np.array([[z[0]], [z[-1]]]).repeat(m, 1),
            ],
            -1,
        )
        vertices.append(inner.reshape(-1, 3))
        i0, i1 = n * m + j, n * m + m + j
        i0n, i1n = n * m + j1, n * m + m + j1
        faces.append(np.stack([i0, i1n, i0n], -1))  # inner wall faces the axis
        faces.append(np.stack([i0, i1, i1n], -1))
        faces.append(np.stack([idx[0, j], i0, idx[0, j1]], -1))  # bottom annulus faces -z
        faces.append(np.stack([idx[0, j1], i0, i0n], -1))
        faces.append(np.stack([idx[-1, j], idx[-1, j1], i1], -1))  # top annulus faces +z
        faces.append(np.stack([idx[-1, j1], i1n, i1], -1))
    return np.concatenate(vertices), np.concatenate(faces)


def _thread(theta, z, core, major, pitch):
    """Radius (n, m) of a single-start helical thread with a triangular profile."""
    phase = np.mod(z[:, None] / pitch - theta[None, :] / (2.0 * np.pi), 1.0)
    return core + (major - core) * (1.0 - np.abs(2.0 * phase - 1.0))


def kwire(
    diameter: float = 2.0,
    length: float = 150.0,
    tip_length: float | None = None,
    *,
    segments: int = 24,
    material: str = "stainless_steel",
    density: float = STAINLESS_STEEL_DENSITY,
) -> Tool:
    """Kirschner wire with a three-facet trocar tip at the origin, shaft along +z to ``length``.

    ``tip_length`` (default 1.5 x diameter) is the height of the trocar's three planar facets;
    ``segments`` (a multiple of 3) sets the angular resolution.
    """
    _validate.positive_numbers("mm", diameter=diameter, length=length)
    tip_length = 1.5 * diameter if tip_length is None else tip_length
    _validate.positive_numbers("mm", tip_length=tip_length)
    segments = _validate.integer("kwire segments", segments, minimum=6)
    if segments % 3:
        raise ValueError(f"kwire segments must be a multiple of 3 and >= 6, got {segments}")
    if tip_length >= length:
        raise ValueError(f"kwire tip_length {tip_length} must be shorter than length {length}")
    r = 0.5 * diameter
    theta = 2.0 * np.pi * np.arange(segments) / segments
    facets = np.array([np.pi / 3, np.pi, 5 * np.pi / 3])  # facet normals between the sample angles
    n_tip = 8
    z = np.concatenate([tip_length * np.arange(1, n_tip + 1) / n_tip, [length]])
    # facet i is the plane at distance h(z) = r z / tip_length from the axis, normal at angle facets[i]
    h = r * np.minimum(z / tip_length, 1.0)
    cos = np.cos(theta[None, :] - facets[:, None])  # (3, m)
    along = np.where(cos > 1e-6, h[:, None, None] / np.where(cos > 1e-6, cos, 1.0)[None], np.inf)  # (n, 3, m)
    radius = np.minimum(r, along.min(axis=1))
    vertices, faces = _revolve(z, radius, bottom_z=0.0, top_z=length)
    return _tool(vertices, faces, material, density, "k-wire")


def _screw(
    length,
    major,
    core,
    pitch,
    head_diameter,
    head_height,
    thread_length,
    cannula,
    segments,
    rings_per_pitch,
    material,
    density,
    name,
):
    _validate.positive_numbers(
        "mm",
        length=length,
        major_diameter=major,
        core_diameter=core,
        pitch=pitch,
        head_diameter=head_diameter,
        head_height=head_height,
    )
    if not core < major < head_diameter:
        raise ValueError(f"screw diameters must satisfy core {core} < major {major} < head {head_diameter}")
    if cannula is not None and not 0 < _validate.number("cannula_diameter", cannula) < 0.8 * core:
        raise ValueError(f"cannula diameter {cannula} must be positive and below 0.8 x core diameter {core}")
    segments = _validate.integer("screw segments", segments, minimum=8)
    rings_per_pitch = _validate.integer("screw rings_per_pitch", rings_per_pitch, minimum=4)
    if thread_length is not None:
        _validate.positive_numbers("mm", thread_length=thread_length)
    theta = 2.0 * np.pi * np.arange(segments) / segments
    dz = pitch / rings_per_pitch
    z_shaft = np.arange(0.0, length + 0.5 * dz, dz)
    z_shaft[-1] = length
    thread_end = length if thread_length is None else min(thread_length, length)
    threaded = _thread(theta, z_shaft, 0.5 * core, 0.5 * major, pitch)
    taper = np.clip(z_shaft / (1.5 * pitch), 0.0, 1.0)[:, None]  # thread runs out over the first 1.5 pitches
    tip_core = (
        0.5 * core * (0.6 + 0.4 * taper)
        if cannula is None
        else np.maximum(0.5 * core * (0.6 + 0.4 * taper), 0.5 * cannula + 0.3)
    )
    radius = np.where(z_shaft[:, None] > thread_end, 0.5 * core, tip_core + (threaded - 0.5 * core) * taper)
    chamfer = 0.3 * head_height
    z_head = length + np.array([0.0, 1e-3, chamfer, head_height - chamfer, head_height])
    r_head = 0.5 * np.array(
        [core, head_diameter - 2 * chamfer, head_diameter, head_diameter, head_diameter - 2 * chamfer]
    )
    z = np.concatenate([z_shaft, z_head[1:]])
    radius = np.concatenate([radius, np.broadcast_to(r_head[1:, None], (4, segments))])
    if cannula is None:
        vertices, faces = _revolve(z, radius, bottom_z=0.0, top_z=z[-1])
    else:
        vertices, faces = _revolve(z, radius, inner_radius=0.5 * cannula)
    return _tool(vertices, faces, material, density, name)


def cortical_screw(
    length: float = 30.0,
    major_diameter: float = 3.5,
    core_diameter: float = 2.4,
    pitch: float = 1.25,
    head_diameter: float = 6.0,
    head_height: float = 2.4,
    *,
    segments: int = 32,
    rings_per_pitch: int = 8,
    material: str = "stainless_steel",
    density: float = STAINLESS_STEEL_DENSITY,
) -> Tool:
    """Fully threaded cortical screw: tip at the origin, thread to z = ``length``, head above.

    The thread is a single-start helix with a triangular profile between the core and major
    radii, running out over the first 1.5 pitches of the blunt tip; the head is a chamfered
    cylinder ``head_height`` tall. ``segments`` x ``rings_per_pitch`` set the resolution
    (about 2 * segments * rings_per_pitch triangles per pitch).
    """
    return _screw(
        length,
        major_diameter,
        core_diameter,
        pitch,
        head_diameter,
        head_height,
        None,
        None,
        segments,
        rings_per_pitch,
        material,
        density,
        "cortical screw",
    )


def cannulated_screw(
    length: float = 60.0,
    major_diameter: float = 7.0,
    core_diameter: float = 4.6,
    pitch: float = 2.75,
    head_diameter: float = 9.0,
    head_height: float = 3.5,
    thread_length: float = 16.0,
    cannula_diameter: float = 2.9,
    *,
    segments: int = 32,
    rings_per_pitch: int = 8,
    material: str = "titanium",
    density: float = TITANIUM_DENSITY,
) -> Tool:
    """Partially threaded cannulated screw: thread over the ``thread_length`` mm from the tip,
    a smooth shank (core diameter) up to the head, and a ``cannula_diameter`` bore end to end."""
    return _screw(
        length,
        major_diameter,
        core_diameter,
        pitch,
        head_diameter,
        head_height,
        thread_length,
        cannula_diameter,
        segments,
        rings_per_pitch,
        material,
        density,
        "cannulated screw",
    )


def _extrude(points, triangles, thickness):
    """Prism of a 2D counter-clockwise triangulation: z from 0 to ``thickness``, outward faces."""
    points, inverse = np.unique(np.round(points, 9), axis=0, return_inverse=True)
    triangles = inverse.reshape(-1)[triangles]
    n = len(points)
    vertices = np.concatenate([np.c_[points, np.full(n, thickness)], np.c_[points, np.zeros(n)]])
    edges = np.concatenate([triangles[:, (0, 1)], triangles[:, (1, 2)], triangles[:, (2, 0)]])
    key = np.sort(edges, axis=1)
    _, first, counts = np.unique(key, axis=0, return_index=True, return_counts=True)
    boundary = edges[first[counts == 1]]  # interior of the region on the left of a -> b
    a, b = boundary[:, 0], boundary[:, 1]
    walls = np.concatenate([np.stack([a, a + n, b + n], -1), np.stack([a, b + n, b], -1)])
    faces = np.concatenate([triangles, triangles[:, ::-1] + n, walls])
    return vertices, faces


def plate(
    n_holes: int = 6,
    hole_diameter: float = 3.6,
    hole_spacing: float = 12.0,
    width: float = 11.0,
    thickness: float = 3.3,
    *,
    segments: int = 8,
    material: str = "stainless_steel",
    density: float = STAINLESS_STEEL_DENSITY,
) -> Tool:
    """Straight bone plate with a row of round holes on its centre line.

    The plate is ``n_holes * hole_spacing`` long (x, centred), ``width`` wide (y, centred) and
    ``thickness`` thick (z in [0, thickness]); each hole is a polygon with 4 * ``segments``
    corners.
    """
    _validate.positive_numbers(
        "mm", hole_diameter=hole_diameter, hole_spacing=hole_spacing, width=width, thickness=thickness
    )
    n_holes = _validate.positive_int("plate n_holes", n_holes)
    segments = _validate.integer("plate segments", segments, minimum=2)
    if hole_diameter >= min(width, hole_spacing):
        raise ValueError(
            f"hole_diameter {hole_diameter} must be smaller than width {width} and hole_spacing {hole_spacing}"
        )
    hx, hy = 0.5 * hole_spacing, 0.5 * width
    s = np.arange(segments) / segments
    side = lambda p, q: p[None] + s[:, None] * (q - p)[None]  # noqa: E731
    corners = np.array([[hx, -hy], [hx, hy], [-hx, hy], [-hx, -hy]])
    outer = np.concatenate([side(corners[k], corners[(k + 1) % 4]) for k in range(4)])  # CCW cell boundary
    angle = np.arctan2(outer[:, 1], outer[:, 0])
    inner = 0.5 * hole_diameter * np.stack([np.cos(angle), np.sin(angle)], -1)
    m = len(outer)
    k, k1 = np.arange(m), np.roll(np.arange(m), -1)
    cell = np.concatenate([np.stack([k, k1, m + k1], -1), np.stack([k, m + k1, m + k], -1)])  # outer k, inner m + k
    points, triangles = [], []
    for i in range(n_holes):
        centre = np.array([(i - 0.5 * (n_holes - 1)) * hole_spacing, 0.0])
        triangles.append(cell + 2 * m * i)
        points.append(np.concatenate([outer, inner]) + centre)
    vertices, faces = _extrude(np.concatenate(points), np.concatenate(triangles), thickness)
    return _tool(vertices, faces, material, density, "plate")


def cylinder(
    radius: float,
    height: float,
    *,
    segments: int = 32,
    material: str = "stainless_steel",
    density: float = STAINLESS_STEEL_DENSITY,
) -> Tool:
    """Solid cylinder along +z from z = 0 to ``height``."""
    _validate.positive_numbers("mm", radius=radius, height=height)
    segments = _validate.integer("cylinder segments", segments, minimum=3)
    radius_grid = np.full((2, segments), float(radius))
    vertices, faces = _revolve(np.array([0.0, height]), radius_grid, bottom_z=0.0, top_z=height)
    return _tool(vertices, faces, material, density, "cylinder")


def box(
    extents: ArrayLike | Sequence[float], *, material: str = "stainless_steel", density: float = STAINLESS_STEEL_DENSITY
) -> Tool:
    """Axis-aligned box of ``extents`` (3,) mm centred on the origin."""
    import trimesh

    extents = _validate.real_array("box extents", extents, shape=(3,))
    _validate.positive_numbers("mm", **{f"extents[{i}]": float(e) for i, e in enumerate(extents)})
    mesh = trimesh.creation.box(extents=extents)
    return _tool(mesh.vertices, mesh.faces, material, density, "box")


def sphere(
    radius: float, *, subdivisions: int = 3, material: str = "stainless_steel", density: float = STAINLESS_STEEL_DENSITY
) -> Tool:
    """Icosphere of ``radius`` centred on the origin (20 * 4**subdivisions triangles)."""
    import trimesh

    _validate.positive_numbers("mm", radius=radius)
    subdivisions = _validate.integer("sphere subdivisions", subdivisions, minimum=0)
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions, radius=radius)
    return _tool(mesh.vertices, mesh.faces, material, density, "sphere")
