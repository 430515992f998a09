"""Polychromatic DRRs: a renderer's per-material line integrals through the physics of
``fluorojax.physics`` (polychromatic Beer-Lambert), the one path every polychromatic image takes.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import jax

from fluorojax.camera import Camera, OrthographicCamera
from fluorojax.physics.attenuation import MM_PER_CM, intensity, material_volume
from fluorojax.physics.materials import DEFAULT_MATERIALS, HU_THRESHOLDS, MaterialLike
from fluorojax.raycast import render
from fluorojax.raycast.drr import check_pose
from fluorojax.volume import Volume


def polychromatic_image(
    line: jax.Array,
    materials: Sequence[MaterialLike],
    spec: tuple[jax.Array, jax.Array],
    *,
    detector: str = "energy",
    normalize: bool = True,
    upper_bound: float | jax.Array | None = None,
) -> jax.Array:
    """Detector intensity from renderer line integrals of density.

    Args:
      line: (..., M) line integrals of the M materials' densities, g/cm^3 x mm (a render of a
        ``material_volume``).
      materials, spec, detector, normalize, upper_bound: see ``fluorojax.physics.intensity``
        (normalised by default: 1 = flat field).
    Returns (...) float32 intensity.
    """
    return intensity(line / MM_PER_CM, materials, spec, detector=detector, normalize=normalize, upper_bound=upper_bound)


def render_polychromatic(
    volume: Volume,
    camera: Camera | OrthographicCamera,
    pose: jax.Array,
    spec: tuple[jax.Array, jax.Array],
    *,
    materials: Sequence[MaterialLike] = DEFAULT_MATERIALS,
    thresholds: Sequence[float] = HU_THRESHOLDS,
    label_classes: Mapping[int, int] | None = None,
    method: str = "siddon",
    detector: str = "energy",
    normalize: bool = True,
    upper_bound: float | jax.Array | None = None,
    air_below_hu: float | None = None,
    **render_kwargs: Any,
) -> jax.Array:
    """Polychromatic DRR of a CT in HU: one traversal for every material's areal density, then
    the detector model of ``intensity``.

    Args:
      volume: ``Volume`` with (I, J, K) HU data (and labels if ``label_classes`` is used), or
        one with M channels of per-material densities in g/cm^3: the segmented volume of
        ``material_volume`` (computed once, so that rendering many poses skips the
        decomposition; thresholds are then unused), or any (I, J, K, M) density data.
      camera: ``Camera`` or ``OrthographicCamera``; pose: (4, 4) or (B, 4, 4) world_from_camera.
      spec: (energy_keV (E,), weights (E,)), e.g. ``spectrum(90)``.
      materials: the M attenuation curves of the M classes (default air, soft tissue, cortical bone).
      thresholds, label_classes, air_below_hu: material decomposition, see ``material_densities``.
      method: renderer, "siddon" or "trilinear"; render_kwargs go to ``fluorojax.render``.
      detector, normalize, upper_bound: see ``intensity`` (normalised by default: 1 = flat field).
    Returns (H, W) or (B, H, W) float32 intensity; ``neglog(image)`` gives the -log image.
    Differentiable with respect to the pose and the volume data.
    """
    if volume.channels is not None:
        if volume.channels != len(materials):
            raise ValueError(f"material volume has {volume.channels} channels for {len(materials)} materials")
    elif len(materials) != len(thresholds) + 1:
        raise ValueError(
            f"{len(materials)} materials for {len(thresholds) + 1} HU classes: pass one material per class"
        )
    label_items = None if label_classes is None else tuple(sorted((int(k), int(v)) for k, v in label_classes.items()))
    return _render_polychromatic(
        volume,
        camera,
        check_pose(pose),
        spec,
        upper_bound,
        materials=tuple(materials),
        thresholds=tuple(float(t) for t in thresholds),
        label_classes=label_items,
        method=method,
        detector=detector,
        normalize=normalize,
        air_below_hu=air_below_hu,
        render_kwargs=tuple(sorted(render_kwargs.items())),
    )


@functools.partial(
    jax.jit,
    static_argnames=(
        "materials",
        "thresholds",
        "label_classes",
        "method",
        "detector",
        "normalize",
        "air_below_hu",
        "render_kwargs",
    ),
)
def _render_polychromatic(
    volume,
    camera,
    pose,
    spec,
    upper_bound,
    *,
    materials,
    thresholds,
    label_classes,
    method,
    detector,
    normalize,
    air_below_hu,
    render_kwargs,
):
    """One compiled program per setting (eager calls reuse it): the decomposition, the traversal
    and the detector model fused."""
    if volume.channels is None:
        volume = material_volume(
            volume,
            thresholds=thresholds,
            air_below_hu=air_below_hu,
            label_classes=None if label_classes is None else dict(label_classes),
        )
    line = render(volume, camera, pose, method=method, **dict(render_kwargs))
    return polychromatic_image(line, materials, spec, detector=detector, normalize=normalize, upper_bound=upper_bound)
