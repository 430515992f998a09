"""Tools placed in the anatomy: K-wires and screws along plausible trajectories near bones.

A ``ToolPlacement`` is plain data (kind, material, length, tip and axis in world mm), so it is
stored with every image and rebuilt into a ``fluorojax.tools.Tool`` by ``build_tool``. Tools
are drawn once per scene by ``sample_tools`` from the bones of an ``Anatomy``:

* vertebra: a pedicle-screw-like trajectory: the tip near the vertebral body's centroid, the
  shaft leaving posteriorly, converging medially by 5-25 degrees and tilted cranio-caudally by
  up to 10 degrees, entering 8-20 mm lateral of the midline;
* any other bone: the tip at a voxel of the bone, the shaft within 30 degrees of the bone's
  principal axis (along a rib, the clavicle, a long bone), either way round.

Meshes use fixed resolutions and lengths drawn from short lists, so the number of distinct
mesh shapes (each compiles the mesh renderer once) stays small.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from fluorojax import tools as tool_builders
from fluorojax.physics import material
from fluorojax.scene.devices import host_rng
from fluorojax.scene.spec import ToolConfig
from fluorojax.scene.views import Anatomy, cap_directions
from fluorojax.transforms import make_pose

_MESH_OPTIONS = {
    "k_wire": lambda length: tool_builders.kwire(2.0, length, segments=12),
    "cortical_screw": lambda length: tool_builders.cortical_screw(length, segments=16, rings_per_pitch=4),
    "cannulated_screw": lambda length: tool_builders.cannulated_screw(length, segments=16, rings_per_pitch=4),
}


@dataclasses.dataclass(frozen=True)
class ToolPlacement:
    """A tool in the world.

    Attributes:
      kind: "k_wire", "cortical_screw" or "cannulated_screw".
      material: a ``fluorojax.physics`` material name; its nominal density is used.
      length_mm: shaft length (mm).
      tip: (3,) world mm, the tool's tip.
      axis: (3,) world unit vector from the tip toward the back end (head).
      bone: the structure it was placed in.
    """

    kind: str
    material: str
    length_mm: float
    tip: tuple
    axis: tuple
    bone: str

    def world_from_mesh(self) -> np.ndarray:
        """(4, 4) transform putting the tool's frame (tip at the origin, shaft along +z) here."""
        z = np.asarray(self.axis, np.float64)
        z = z / np.linalg.norm(z)
        helper = np.eye(3)[np.argmin(np.abs(z))]
        x = np.cross(helper, z)
        x /= np.linalg.norm(x)
        rotation = np.stack([x, np.cross(z, x), z], axis=1)
        return np.asarray(make_pose(rotation.astype(np.float32), np.asarray(self.tip, np.float32)))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToolPlacement:
        return cls(**{**data, "tip": tuple(data["tip"]), "axis": tuple(data["axis"])})


def build_tool(placement: ToolPlacement) -> tool_builders.Tool:
    """The placed ``fluorojax.tools.Tool`` (mesh in world mm, material, nominal density)."""
    if placement.kind not in _MESH_OPTIONS:
        raise ValueError(f"tool kind must be one of {sorted(_MESH_OPTIONS)}, got {placement.kind!r}")
    tool = _MESH_OPTIONS[placement.kind](float(placement.length_mm))
    tool = tool_builders.Tool(tool.mesh, placement.material, material(placement.material).density, placement.kind)
    return tool.place(placement.world_from_mesh())


def _vertebra_trajectory(rng, anatomy: Anatomy, name: str):
    right, anterior, superior = anatomy.frame.T
    centroid = anatomy.structures[name].centroid
    side = rng.choice([-1.0, 1.0])
    convergence = np.deg2rad(rng.uniform(5.0, 25.0))
    tilt = np.deg2rad(rng.uniform(-10.0, 10.0))
    # from the tip toward the back: posterior, turned outward (lateral) by the convergence angle
    back = -anterior * np.cos(convergence) + side * right * np.sin(convergence)
    back = back * np.cos(tilt) + superior * np.sin(tilt)
    tip = centroid + rng.normal(0.0, 2.0, 3) + side * right * rng.uniform(0.0, 4.0)
    return tip, back / np.linalg.norm(back)


def _bone_trajectory(rng, anatomy: Anatomy, name: str):
    points = anatomy.points[name]
    tip = points[rng.integers(len(points))]
    centred = points - points.mean(0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0] if len(points) >= 3 else anatomy.frame[:, 2]
    axis = axis * rng.choice([-1.0, 1.0])
    u, v = rng.random(2)
    return tip, cap_directions(u, v, axis, 30.0)


def sample_tools(key: jax.Array, anatomy: Anatomy, config: ToolConfig) -> tuple[ToolPlacement, ...]:
    """Draw the tools of one scene: none with probability 1 - ``config.probability``, else
    1..max_count tools, each in a bone drawn uniformly from the bones present."""
    rng = host_rng(key)
    bones = sorted(anatomy.points)
    if not bones or rng.random() >= config.probability:
        return ()
    placements = []
    for _ in range(int(rng.integers(1, config.max_count + 1))):
        kind = config.kinds[rng.integers(len(config.kinds))]
        lengths = config.kwire_lengths_mm if kind == "k_wire" else config.screw_lengths_mm
        length = float(lengths[rng.integers(len(lengths))])
        material = config.materials[rng.integers(len(config.materials))]
        bone = bones[rng.integers(len(bones))]
        trajectory = _vertebra_trajectory if bone.startswith("vertebrae_") else _bone_trajectory
        tip, axis = trajectory(rng, anatomy, bone)
        placements.append(
            ToolPlacement(kind, material, length, tuple(float(x) for x in tip), tuple(float(x) for x in axis), bone)
        )
    return tuple(placements)
