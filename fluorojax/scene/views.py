"""Anatomy-aware views: the patient's frame from a label map, standard views, sampled views.

The anatomical frame (right, anterior, superior; a right-handed RAS frame attached to the
patient) comes from the structures present: the superior axis is the line through the
vertebra centroids (fitted by SVD, oriented from the lumbar toward the cervical levels), the
right axis from paired organs (the mean of ``centroid(*_right) - centroid(*_left)`` over the
pairs present), made orthogonal to the superior axis; anterior = superior x right. Without
two vertebrae or a pair, the world's RAS axes stand in.

A view direction is the unit vector from the isocentre to the source, in the anatomical frame;
C-arm angles map to it as in ``fluorojax.camera.carm_pose``: ``d = Rz(lao) Rx(cra) (0, 1, 0)``
(``carm_rotation``, evaluated here in float64; LAO positive toward the patient's left, CRA
positive toward the head).

Standard views: ``ap``, ``pa``, ``lateral_left`` (LAO 90), ``lateral_right`` (RAO 90),
``lao45``, ``rao45``; ``inlet`` (CRA 45) and ``outlet`` (CAU 40) when the pelvis (sacrum or hip)
is present; ``ap_<level>`` and ``lateral_<level>`` for every vertebra not cut off by the CT,
centred on it. Near-standard views lie uniformly on a small sphere cap around a standard
direction; random views uniformly on a large cap (e.g. 75 degrees around AP). Every view is
centred on a target structure (its centroid is the isocentre, on the principal ray), its image
up vector is the superior axis turned by a small roll, and it records its name and the angle
to the nearest standard view.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from numpy.typing import ArrayLike

from fluorojax.camera import carm_rotation, look_at
from fluorojax.fluoroseg.categories import get_category
from fluorojax.scene.devices import host_rng
from fluorojax.scene.spec import ViewConfig
from fluorojax.transforms import axis_rotation

_VERTEBRA = re.compile(r"vertebrae_([CTLS])(\d+)")
_REGION_ORDER = {"C": 0, "T": 1, "L": 2, "S": 3}
PELVIS_STRUCTURES = ("sacrum", "hip_left", "hip_right")
_GENERAL_VIEWS = (
    ("ap", 0.0, 0.0),
    ("pa", 180.0, 0.0),
    ("lateral_left", 90.0, 0.0),
    ("lateral_right", -90.0, 0.0),
    ("lao45", 45.0, 0.0),
    ("rao45", -45.0, 0.0),
)
_PELVIS_VIEWS = (("inlet", 0.0, 45.0), ("outlet", 0.0, -40.0))


def direction(lao_deg: ArrayLike, cra_deg: ArrayLike) -> np.ndarray:
    """(..., 3) float64 unit vectors isocentre -> source in the anatomical frame for C-arm angles
    (degrees, broadcast): column 1 of ``carm_rotation``, as in ``carm_pose``, in float64."""
    with jax.enable_x64(True):
        lao, cra = (jnp.deg2rad(jnp.asarray(a, jnp.float64)) for a in (lao_deg, cra_deg))
        return np.asarray(carm_rotation(lao, cra)[..., :, 1])


def _unit(v: ArrayLike) -> np.ndarray:
    """(..., 3) float64 unit vectors along ``v``."""
    x = np.asarray(v, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def carm_angles(d: ArrayLike) -> tuple[float, float]:
    """(lao_deg, cra_deg) of an anatomical direction (3,) (inverse of ``direction``)."""
    x, y, z = _unit(d)
    return float(np.rad2deg(np.arctan2(-x, y))), float(np.rad2deg(np.arcsin(np.clip(z, -1.0, 1.0))))


def angle_deg(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Angle in degrees between direction(s) a (..., 3) and b (..., 3) (numerically safe near 0)."""
    ua, ub = _unit(a), _unit(b)
    return np.rad2deg(np.arctan2(np.linalg.norm(np.cross(ua, ub), axis=-1), np.sum(ua * ub, axis=-1)))


def cap_directions(u: ArrayLike, v: ArrayLike, axis: ArrayLike, half_angle_deg: float) -> np.ndarray:
    """Map uniforms u, v in [0, 1) (...) to directions (..., 3) uniform on the sphere cap of
    ``half_angle_deg`` around ``axis`` (3,): cos(theta) uniform in [cos(half), 1], azimuth 2 pi v."""
    e0 = _unit(axis)
    e1 = _unit(np.cross(e0, np.eye(3)[np.argmin(np.abs(e0))]))
    e2 = np.cross(e0, e1)
    cos_t = 1.0 - np.asarray(u, np.float64) * (1.0 - np.cos(np.deg2rad(half_angle_deg)))
    sin_t = np.sqrt(np.maximum(0.0, 1.0 - cos_t**2))
    phi = 2.0 * np.pi * np.asarray(v, np.float64)
    return cos_t[..., None] * e0 + sin_t[..., None] * (np.cos(phi)[..., None] * e1 + np.sin(phi)[..., None] * e2)


@dataclasses.dataclass(frozen=True)
class Structure:
    """A labelled structure: label id, name, centroid (3,) world mm, voxel count, and
    ``cutoff`` "I" / "S" when it touches the CT's inferior / superior end (else None)."""

    id: int
    name: str
    centroid: np.ndarray
    voxels: int
    cutoff: str | None


@dataclasses.dataclass(frozen=True)
class StandardView:
    """A standard view: name, C-arm angles in the anatomical frame, and the structure it is
    centred on (None: any target)."""

    name: str
    lao_deg: float
    cra_deg: float
    target: str | None = None

    @functools.cached_property
    def direction(self) -> np.ndarray:
        """(3,) unit vector isocentre -> source in the anatomical frame (computed once)."""
        return direction(self.lao_deg, self.cra_deg)


@dataclasses.dataclass(frozen=True)
class Anatomy:
    """What views and tools need to know about a labelled CT.

    Attributes:
      frame: (3, 3) world_from_anatomical rotation, columns right, anterior, superior.
      origin: (3,) world mm, centroid of every labelled voxel.
      structures: {name: ``Structure``} of every named label present.
      points: {name: (N, 3) world mm} voxel centres of each bone (at most 4096, evenly picked).
      standard_views: the ``StandardView`` s this anatomy offers.
    """

    frame: np.ndarray
    origin: np.ndarray
    structures: Mapping[str, Structure]
    points: Mapping[str, np.ndarray]
    standard_views: tuple[StandardView, ...]

    def standard(self, name: str) -> StandardView:
        for view in self.standard_views:
            if view.name == name:
                return view
        raise ValueError(
            f"no standard view {name!r} in this anatomy; available: {[v.name for v in self.standard_views]}"
        )


def _vertebra_rank(name: str):
    match = _VERTEBRA.fullmatch(name)
    return None if match is None else _REGION_ORDER[match[1]] * 100 + int(match[2])


def anatomical_frame(structures: Mapping[str, Structure]) -> np.ndarray:
    """(3, 3) world_from_anatomical rotation (columns right, anterior, superior) from the
    vertebra centroids and paired left / right structures; world axes where they are missing."""
    vertebrae = sorted((r, s.centroid) for s in structures.values() if (r := _vertebra_rank(s.name)) is not None)
    superior = np.array([0.0, 0.0, 1.0])
    if len(vertebrae) >= 2:
        ranks = np.array([r for r, _ in vertebrae], np.float64)
        points = np.stack([c for _, c in vertebrae])
        axis = np.linalg.svd(points - points.mean(0), full_matrices=False)[2][0]
        # cervical levels (low rank) are superior: the axis must decrease with the rank
        superior = axis if np.dot(points @ axis - np.mean(points @ axis), ranks - ranks.mean()) < 0 else -axis
    right = np.zeros(3)
    for name, s in structures.items():
        if "left" in name.split("_"):
            twin = "_".join("right" if w == "left" else w for w in name.split("_"))
            if twin in structures:
                right += structures[twin].centroid - s.centroid
    right = right - np.dot(right, superior) * superior
    if np.linalg.norm(right) < 1e-6:
        right = np.array([1.0, 0.0, 0.0]) - superior[0] * superior
    right = _unit(right)
    anterior = np.cross(superior, right)
    return np.stack([right, anterior, superior], axis=1)


def standard_views(structures: Mapping[str, Structure]) -> tuple[StandardView, ...]:
    """The standard views for the structures present (see the module docstring)."""
    views = [StandardView(n, lao, cra) for n, lao, cra in _GENERAL_VIEWS]
    pelvis = [p for p in PELVIS_STRUCTURES if p in structures]
    if pelvis:
        views += [StandardView(n, lao, cra, pelvis[0]) for n, lao, cra in _PELVIS_VIEWS]
    vertebrae = sorted(
        (r, s.name) for s in structures.values() if (r := _vertebra_rank(s.name)) is not None and s.cutoff is None
    )
    for _, name in vertebrae:
        level = name.split("_", 1)[1]
        views += [StandardView(f"ap_{level}", 0.0, 0.0, name), StandardView(f"lateral_{level}", 90.0, 0.0, name)]
    return tuple(views)


def anatomy_from_labels(
    labels: ArrayLike,
    affine: ArrayLike,
    names: Mapping[int, str],
    *,
    bones: Sequence[str] | None = None,
    max_points: int = 4096,
) -> Anatomy:
    """Build the ``Anatomy`` of a label map.

    Args:
      labels: (I, J, K) int label ids (0 background).
      affine: (4, 4) world_from_voxel.
      names: {label id: structure name}; ids without a name are ignored.
      bones: names of the structures to keep voxel points of (default: every name that is a
        FluoroSeg bone category).
      max_points: points kept per bone (evenly strided).
    """
    labels = np.asarray(labels)
    affine = np.asarray(affine, np.float64)
    flat = labels.ravel()
    order = np.argsort(flat, kind="stable")
    counts = np.bincount(flat, minlength=int(flat.max()) + 1)
    starts = np.concatenate([[0], np.cumsum(counts)])
    # the voxel axis closest to the world's superior direction decides the cut-off ends
    axis_dirs = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    k_axis = int(np.argmax(np.abs(axis_dirs[2])))
    inferior_at_zero = axis_dirs[2, k_axis] > 0
    structures, points = {}, {}
    for label_id, name in sorted(names.items()):
        if label_id <= 0 or label_id >= len(counts) or counts[label_id] == 0:
            continue
        idx = np.stack(np.unravel_index(order[starts[label_id] : starts[label_id + 1]], labels.shape), -1)
        world = idx @ affine[:3, :3].T + affine[:3, 3]
        low, high = idx[:, k_axis].min() == 0, idx[:, k_axis].max() == labels.shape[k_axis] - 1
        cut_i, cut_s = (low, high) if inferior_at_zero else (high, low)
        cutoff = "I" if cut_i else ("S" if cut_s else None)
        structures[name] = Structure(int(label_id), name, world.mean(0), int(counts[label_id]), cutoff)
        if (name in bones) if bones is not None else _is_bone(name):
            step = max(1, -(-len(world) // max_points))
            points[name] = world[::step]
    if not structures:
        raise ValueError(f"no named structure of {sorted(names)} is present in the label map")
    mask = labels > 0
    centre = np.argwhere(mask).mean(0) if mask.any() else (np.asarray(labels.shape) - 1) / 2.0
    return Anatomy(
        frame=anatomical_frame(structures),
        origin=affine[:3, :3] @ centre + affine[:3, 3],
        structures=structures,
        points=points,
        standard_views=standard_views(structures),
    )


def _is_bone(name: str) -> bool:
    try:
        return get_category(name).supercategory == "totalsegmentator_bone"
    except ValueError:
        return False


@dataclasses.dataclass(frozen=True)
class View:
    """A sampled view.

    Attributes:
      name: the standard view's name for a near-standard view, "random" for a random one.
      kind: "near_standard" or "random".
      standard: the standard view the view was drawn around (the cone's axis).
      nearest: the standard view nearest in direction; angle_deg: the angle to it.
      direction: (3,) unit vector isocentre -> source in the anatomical frame.
      lao_deg, cra_deg: the same direction as C-arm angles.
      roll_deg: rotation of the image about the principal ray.
      target: the structure the view is centred on; isocenter: (3,) world mm (its centroid).
      source_to_isocenter: mm.
    """

    name: str
    kind: str
    standard: str
    nearest: str
    angle_deg: float
    direction: tuple
    lao_deg: float
    cra_deg: float
    roll_deg: float
    target: str
    isocenter: tuple
    source_to_isocenter: float

    def pose(self, frame: ArrayLike) -> np.ndarray:
        """(4, 4) world_from_camera float32 for the anatomical ``frame`` (3, 3)."""
        frame = np.asarray(frame, np.float64)
        d = frame @ np.asarray(self.direction)
        superior = frame[:, 2]
        up = superior if abs(np.dot(d, superior)) < 0.99 else frame[:, 1]
        iso = np.asarray(self.isocenter, np.float64)
        pose = np.asarray(look_at(iso + self.source_to_isocenter * d, iso, up), np.float64)
        with jax.enable_x64(True):  # the roll about the principal ray (camera z), in float64
            roll = np.asarray(axis_rotation("Z", jnp.deg2rad(jnp.asarray(self.roll_deg, jnp.float64))))
        pose[:3, :3] = pose[:3, :3] @ roll
        return pose.astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> View:
        return cls(**{**data, "direction": tuple(data["direction"]), "isocenter": tuple(data["isocenter"])})


def nearest_standard(d: ArrayLike, views: Sequence[StandardView]) -> tuple[str, float]:
    """Name of the standard view nearest to direction d (3,) and the angle to it, degrees
    (ties go to the first in ``views``)."""
    angles = angle_deg(np.asarray(d)[None], np.stack([v.direction for v in views]))
    i = int(np.argmin(angles))
    return views[i].name, float(angles[i])


def _targets(anatomy: Anatomy, config: ViewConfig) -> list[str]:
    names = anatomy.structures if config.targets is None else [n for n in config.targets if n in anatomy.structures]
    targets = sorted(n for n in names if anatomy.structures[n].voxels >= config.min_target_voxels)
    if not targets:
        raise ValueError(f"no target structure with at least {config.min_target_voxels} voxels among {sorted(names)}")
    return targets


def sample_view(key: jax.Array, anatomy: Anatomy, config: ViewConfig, source_to_isocenter: float) -> View:
    """Draw a near-standard or random view (see the module docstring) for one image."""
    rng = host_rng(key)
    standards = anatomy.standard_views
    if config.standard_views is not None:
        standards = tuple(v for v in standards if v.name in config.standard_views)
        if not standards:
            raise ValueError(
                f"none of views.standard_views {list(config.standard_views)} exists here; available: {[v.name for v in anatomy.standard_views]}"
            )
    near = rng.random() < config.near_standard_fraction
    if near:
        standard, half = standards[rng.integers(len(standards))], config.near_deg
    else:
        around = [v for v in standards if v.name in config.random_around] or [standards[0]]
        standard, half = around[rng.integers(len(around))], config.random_deg
    u, v = rng.random(2)
    d = cap_directions(u, v, standard.direction, half)
    targets = _targets(anatomy, config)
    target = standard.target if standard.target is not None else targets[rng.integers(len(targets))]
    roll = rng.uniform(-config.roll_deg, config.roll_deg)
    nearest, angle = nearest_standard(d, (standard,) + standards)
    lao, cra = carm_angles(d)
    return View(
        name=standard.name if near else "random",
        kind="near_standard" if near else "random",
        standard=standard.name,
        nearest=nearest,
        angle_deg=angle,
        direction=tuple(float(x) for x in d),
        lao_deg=lao,
        cra_deg=cra,
        roll_deg=float(roll),
        target=target,
        isocenter=tuple(float(x) for x in anatomy.structures[target].centroid),
        source_to_isocenter=float(source_to_isocenter),
    )
