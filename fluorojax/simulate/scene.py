"""Render a scene for a batch of views: the DRR of the CT with its tools, and every mask.

One batch is B views of one scene (a CT with its label map and a fixed set of tools), each with
its own camera (equal image size), pose, spectrum, noise key and photon count. Stages, each one
jitted call over the batch:

1. volume pass: one Siddon traversal per ray of the per-material density volume gives every
   material's areal density and every label's travel, entry and exit depth (``trace_labels``
   on the rays of every view at once);
2. tool pass: every tool's hits, travel and mask (``render_mesh``, mapped over the views);
3. tissue under the tools (optional): the CT's areal densities along the union of all tools'
   entry / exit intervals (``interval_union``), removed from the CT's, so the tools replace the
   tissue they occupy, once where they overlap;
4. physics: polychromatic (or monochromatic) Beer-Lambert over the CT materials and the tool
   materials, each tool contributing ``travel x density`` to its material's areal density,
   then optional Poisson detector noise (``fluorojax.physics``).

Images are normalised intensities (1 = open beam), before the negative log, as FluoroSeg stores
them; noisy images are clamped at half a photon (``0.5 / photons``) so their -log stays finite.
A batch runs on the default device (``jax.default_device``) as the same compiled programs
whatever the number of devices: the output of a batch depends on its inputs and shapes only, so
``fluorojax.scene.generate`` spreads scenes over local devices and stays bit for bit the same.
(XLA may round a view differently in batches of other sizes, which is why a batch is never split
or padded here.)
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from fluorojax.camera import CAMERA_TYPES, Camera
from fluorojax.mesh import Mesh
from fluorojax.physics import detector_noise
from fluorojax.physics.materials import MaterialLike
from fluorojax.raycast import line_integrals, trace_labels
from fluorojax.raycast.mesh_render import render_mesh
from fluorojax.simulate.polychromatic import polychromatic_image
from fluorojax.tools import Tool
from fluorojax.volume import Volume


class SceneRender(NamedTuple):
    """A rendered batch; B views, L labels, T tools, K max hits.

    Attributes:
      image: (B, H, W) float32 intensity, 1 = open beam (before the negative log).
      label_travel: (B, L, H, W) mm through each label.
      label_entry, label_exit: (B, L, H, W) mm from the source (from the plane z = 0 for an
        ``OrthographicCamera``; inf where missed).
      tool_travel: (T, B, H, W) mm through each tool.
      tool_hits: (T, B, H, W, K) mm, ascending surface crossings (inf padded).
    """

    image: jax.Array
    label_travel: jax.Array
    label_entry: jax.Array
    label_exit: jax.Array
    tool_travel: jax.Array
    tool_hits: jax.Array


def stack_cameras(cameras: Sequence[Camera]) -> Camera:
    """One camera whose leaves carry a leading batch axis (all must be of one type, ``Camera``
    or ``OrthographicCamera``, and share height and width)."""
    kinds = sorted({type(c).__name__ for c in cameras})
    if not all(isinstance(c, CAMERA_TYPES) for c in cameras):
        raise TypeError(f"cameras must be Camera or OrthographicCamera, got {kinds}")
    if len(kinds) > 1:
        raise ValueError(f"cameras of one batch must be of one type, got {kinds}")
    shapes = {c.shape for c in cameras}
    if len(shapes) != 1:
        raise ValueError(f"cameras of one batch must share an image size, got {sorted(shapes)}")
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *cameras)


@functools.partial(jax.jit, static_argnames=("label_ids",))
def volume_pass(
    densities: Volume, label_ids: tuple[int, ...], cameras: Camera, poses: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Per-material line integrals (B, H, W, M) g/cm^3 x mm and label travel / entry / exit
    (B, L, H, W) mm, from one traversal per ray; cameras batched like poses (B, 4, 4)."""
    sources, targets = jax.vmap(lambda c, p: c.rays(p))(cameras, poses)
    trace = trace_labels(densities, sources, targets, label_ids)  # every ray of the batch in one traversal
    first = lambda x: jnp.moveaxis(x, -1, 1)  # noqa: E731
    return trace.image, first(trace.travel), first(trace.entry), first(trace.exit)


@functools.partial(jax.jit, static_argnames=("max_hits",))
def tool_pass(mesh: Mesh, cameras: Camera, poses: jax.Array, max_hits: int) -> tuple[jax.Array, jax.Array]:
    """Hits (B, H, W, K) and travel (B, H, W) mm of one mesh, mapped over the views."""
    out = jax.lax.map(lambda cp: render_mesh(mesh, cp[0], cp[1], max_hits), (cameras, poses))
    return out.hits, out.travel


def interval_union(entry: jax.Array, exit_: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The union of intervals along each ray as disjoint pieces, one piece per interval.

    Piece i is what interval i adds beyond the intervals that enter before it (ties by index):
    those cover, from its entry on, up to the furthest exit among them, so the piece is
    ``[max(entry_i, reach_i), max(exit_i, reach_i))``. Found by comparing all pairs, P^2 per
    ray, which for the few intervals of a ray is cheaper than sorting them.

    Args:
      entry, exit_: (..., P) mm from the source; an interval counts where both are finite and
        ``exit_ > entry``.
    Returns:
      (start, stop), each (..., P) mm, in the order of the intervals: the pieces
      ``[start, stop)`` with ``stop > start`` are disjoint and together cover exactly the union
      of the valid intervals; the other pieces are empty (``stop <= start``; ``inf`` for the
      invalid intervals).
    """
    valid = jnp.isfinite(entry) & jnp.isfinite(exit_) & (exit_ > entry)
    entry = jnp.where(valid, entry, jnp.inf)
    exit_ = jnp.where(valid, exit_, jnp.inf)
    index = jnp.arange(entry.shape[-1])
    ei, ej = entry[..., :, None], entry[..., None, :]
    before = (ej < ei) | ((ej == ei) & (index[None, :] < index[:, None]))  # (..., i, j): j enters before i
    reach = jnp.max(jnp.where(before, exit_[..., None, :], -jnp.inf), axis=-1)
    return jnp.maximum(entry, reach), jnp.maximum(exit_, reach)


@jax.jit
def tool_union(hits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The union of every tool's entry / exit intervals along each ray as (start, stop), each
    (B, H, W, T * K / 2) mm (``interval_union``), from ``hits`` (T, B, H, W, K) mm, each tool's
    ascending surface crossings (pairs (0, 1), (2, 3), ...; non-finite pairs add nothing)."""
    pairs = lambda x: jnp.moveaxis(x, 0, -2).reshape(x.shape[1:-1] + (-1,))  # noqa: E731
    return interval_union(pairs(hits[..., 0::2]), pairs(hits[..., 1::2]))


@jax.jit
def tissue_along(densities: Volume, cameras: Camera, poses: jax.Array, start: jax.Array, stop: jax.Array) -> jax.Array:
    """(B, H, W, M) line integrals of the density channels over the pieces ``[start, stop)``
    (B, H, W, P) mm from the source (pieces with ``stop <= start``, or non-finite, add nothing);
    cameras batched like poses (B, 4, 4)."""
    unit = jax.vmap(lambda c, p: c.ray_directions(p))(cameras, poses)
    sources = jax.vmap(lambda c, p: c.rays(p)[0])(cameras, poses)  # where the depths start
    piece = jnp.isfinite(start) & jnp.isfinite(stop) & (stop > start)
    # empty pieces integrate a harmless 1 mm segment at the source, then drop out
    a = sources[..., None, :] + unit[..., None, :] * jnp.where(piece, start, 0.0)[..., None]
    b = sources[..., None, :] + unit[..., None, :] * jnp.where(piece, stop, 1.0)[..., None]
    lines = line_integrals(densities, a, b)  # (B, H, W, P, M), all pieces in one traversal
    return jnp.sum(jnp.where(piece[..., None], lines, 0.0), axis=-2)


@functools.partial(jax.jit, static_argnames=("materials", "noise"))
def physics_pass(
    line: jax.Array,
    energies: jax.Array,
    weights: jax.Array,
    keys: jax.Array,
    photons: jax.Array,
    materials: tuple[MaterialLike, ...],
    noise: bool,
) -> jax.Array:
    """Intensity (B, H, W) from line integrals of density (B, H, W, M) g/cm^3 x mm of
    ``materials``, per-view spectra (B, E), and (with ``noise``) Poisson noise of ``photons`` (B,)."""

    def one(view_line, e, w, key, n):
        image = polychromatic_image(view_line, materials, (e, w))
        if noise:
            image = jnp.maximum(detector_noise(key, image, n), 0.5 / n)
        return image

    return jax.vmap(one)(line, energies, weights, keys, photons)


class _Stages:
    def __init__(self, stages):
        self.stages = stages
        self.start = time.perf_counter()

    def lap(self, name, value):
        if self.stages is not None:
            jax.block_until_ready(value)
            now = time.perf_counter()
            self.stages[name] = self.stages.get(name, 0.0) + now - self.start
            self.start = now
        return value


def render_scene(
    densities: Volume,
    label_ids: Sequence[int],
    cameras: Sequence[Camera],
    poses: ArrayLike,
    spectra: Sequence[tuple[jax.Array, jax.Array]],
    tools: Sequence[Tool] = (),
    keys: jax.Array | None = None,
    photons: ArrayLike | None = None,
    *,
    materials: Sequence[str],
    tool_materials: Sequence[str] = (),
    replace_tissue: bool = True,
    max_hits: int = 4,
    stages: dict[str, float] | None = None,
) -> SceneRender:
    """Render B views of a scene on the default device.

    Args:
      densities: ``Volume`` of per-material densities (I, J, K, M) g/cm^3 with the label map
        (``fluorojax.physics.material_volume``).
      label_ids: the L label ids to report (static).
      cameras: B cameras of one type (``Camera`` or ``OrthographicCamera``) and image size.
      poses: (B, 4, 4) world_from_camera.
      spectra: B (energy_keV (E,), weights (E,)) spectra of equal length E.
      tools: placed ``fluorojax.tools.Tool`` s (world mm).
      keys: (B,) PRNG keys for the noise; photons: (B,) photons per pixel; both None: no noise.
      materials: the M materials of the density channels.
      tool_materials: materials tools may have (each gets one channel).
      replace_tissue: remove the CT's densities along the union of the tools' hit intervals
        (once where tools overlap).
      max_hits: K, tool surface crossings kept per pixel (even).
      stages: optional dict that accumulates seconds per stage ("volume", "tools", "tissue",
        "physics"), blocking after each.
    Returns:
      ``SceneRender``.
    """
    tool_materials = tuple(tool_materials)
    for tool in tools:
        if tool.material not in tool_materials:
            raise ValueError(f"tool {tool.name!r} is {tool.material!r}, not one of tool_materials {tool_materials}")
    n = len(cameras)
    poses = jnp.asarray(poses, jnp.float32)
    if poses.shape != (n, 4, 4):
        raise ValueError(f"poses must be (B, 4, 4) for the {n} cameras, got {poses.shape}")
    if (keys is None) != (photons is None):
        raise ValueError("keys and photons go together: give both for noise, or neither")
    energies = jnp.stack([jnp.asarray(s[0], jnp.float32) for s in spectra])
    weights = jnp.stack([jnp.asarray(s[1], jnp.float32) for s in spectra])
    noise = keys is not None
    keys = jax.random.split(jax.random.key(0), n) if keys is None else keys
    photons = jnp.ones((n,), jnp.float32) if photons is None else jnp.asarray(photons, jnp.float32)
    cams = stack_cameras(cameras)
    clock = _Stages(stages)
    line, travel, entry, exit_ = clock.lap(
        "volume", volume_pass(densities, tuple(int(i) for i in label_ids), cams, poses)
    )
    h, w = cameras[0].shape
    tool_line = jnp.zeros(line.shape[:3] + (len(tool_materials),), jnp.float32)
    travels, hits_per_tool = [], []
    for tool in tools:
        hits, t_travel = clock.lap("tools", tool_pass(tool.mesh, cams, poses, max_hits))
        travels.append(t_travel)
        hits_per_tool.append(hits)
        tool_line = tool_line.at[..., tool_materials.index(tool.material)].add(t_travel * tool.density)
    tool_travel = jnp.stack(travels) if tools else jnp.zeros((0, n, h, w), jnp.float32)
    tool_hits = jnp.stack(hits_per_tool) if tools else jnp.zeros((0, n, h, w, max_hits), jnp.float32)
    if replace_tissue and tools:
        start, stop = tool_union(tool_hits)
        removed = jnp.zeros_like(line)
        for k in range(0, start.shape[-1], max_hits // 2):  # one traversal per tool's pieces: compiled once for any T
            removed = removed + clock.lap(
                "tissue",
                tissue_along(
                    densities, cams, poses, start[..., k : k + max_hits // 2], stop[..., k : k + max_hits // 2]
                ),
            )
        # the pieces are disjoint parts of each ray, so the tissue removed never exceeds the CT's
        # line integral; the clamp only absorbs float rounding where tools fill all of a ray's
        # tissue (the two traversals agree to a few ulp, not bit for bit)
        line = jnp.maximum(line - removed, 0.0)
    all_materials = tuple(materials) + tool_materials
    image = clock.lap(
        "physics",
        physics_pass(jnp.concatenate([line, tool_line], -1), energies, weights, keys, photons, all_materials, noise),
    )
    return SceneRender(image, travel, entry, exit_, tool_travel, tool_hits)
