"""Polychromatic Beer-Lambert attenuation and polychromatic DRRs.

An energy-integrating detector pixel records ``I = sum_E w(E) E exp(-sum_m (mu/rho)_m(E) A_m)``
where ``A_m`` (g/cm^2) is the areal density of material m along the pixel's ray and ``w`` the
photon spectrum; a photon-counting detector drops the factor E. Beam hardening follows from
the sum over energies. The flat field (nothing in the beam) is ``I0 = sum_E w(E) E``.

Renderer line integrals of a density volume (g/cm^3) are in g/cm^3 x mm; divide by 10 for
g/cm^2 (``MM_PER_CM``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp

from fluorojax.physics.materials import (
    HU_THRESHOLDS,
    MaterialLike,
    attenuation_table,
    density_channels,
    hu_to_density,
    segment_hu,
    segment_labels,
)
from fluorojax.physics.spectra import Spectrum
from fluorojax.volume import Volume

MM_PER_CM = 10.0

_DETECTORS = ("energy", "counting")


def _detector_weights(spec, detector):
    energy, weights = spec
    if detector not in _DETECTORS:
        raise ValueError(f"detector must be one of {_DETECTORS}, got {detector!r}")
    return weights * energy if detector == "energy" else weights


def log_transmission(
    areal_density: jax.Array, materials: Sequence[MaterialLike], spec: Spectrum, *, detector: str = "energy"
) -> jax.Array:
    """log(I / I0): the log of the detected fraction of the flat-field signal.

    Args:
      areal_density: (..., M) g/cm^2, material m along each ray.
      materials: M material names or ``Material`` objects, matching the last axis.
      spec: (energy_keV (E,), weights (E,)) photon spectrum.
      detector: "energy" (energy-integrating, weight w E) or "counting" (photon counting, weight w).
    Returns (...) float32 log transmission <= 0; ``-log_transmission`` is the -log image.
    Computed with a shift by the least attenuated energy, so it stays finite for thick metal;
    differentiable with respect to ``areal_density`` and the spectrum.
    """
    areal_density = jnp.asarray(areal_density, jnp.float32)
    if areal_density.shape[-1:] != (len(materials),):
        raise ValueError(
            f"areal_density's last axis must hold the {len(materials)} materials, got shape {areal_density.shape}"
        )
    energy, _ = spec
    weights = _detector_weights(spec, detector)
    mu = attenuation_table(materials, energy)  # (M, E) cm^2/g
    optical_depth = areal_density @ mu  # (..., E)
    # Shift by the least attenuated energy that carries weight: exp(0) = 1 never underflows.
    shift = jnp.min(jnp.where(weights > 0, optical_depth, jnp.inf), axis=-1, keepdims=True)
    shift = jax.lax.stop_gradient(shift)
    ratio = jnp.sum(weights * jnp.exp(shift - optical_depth), axis=-1) / jnp.sum(weights)
    return jnp.log(ratio) - shift[..., 0]


def flat_field(spec: Spectrum, *, detector: str = "energy") -> jax.Array:
    """I0 = sum_E w(E) E (energy-integrating; keV per incident photon when the weights sum to 1)
    or sum_E w(E) (counting): the signal with nothing in the beam."""
    return jnp.sum(_detector_weights(spec, detector))


def intensity(
    areal_density: jax.Array,
    materials: Sequence[MaterialLike],
    spec: Spectrum,
    *,
    detector: str = "energy",
    normalize: bool = False,
    upper_bound: float | jax.Array | None = None,
) -> jax.Array:
    """Detector intensity I = sum_E w(E) E exp(-sum_m (mu/rho)_m(E) A_m).

    Args:
      areal_density: (..., M) g/cm^2.
      materials: M material names or ``Material`` objects.
      spec: (energy_keV (E,), weights (E,)).
      detector: "energy" or "counting" (see ``log_transmission``).
      normalize: divide by the flat field I0, so that an empty ray gives 1.
      upper_bound: optional cap on the returned intensity (same units), as detectors saturate.
    Returns (...) float32 intensity: keV per incident photon (energy detector, spectrum weights
    summing to 1), or the transmitted fraction when ``normalize``.
    """
    i = jnp.exp(log_transmission(areal_density, materials, spec, detector=detector))
    if not normalize:
        i = i * flat_field(spec, detector=detector)
    if upper_bound is not None:
        i = jnp.minimum(i, upper_bound)
    return i


def neglog(image: jax.Array, i0: float | jax.Array = 1.0, eps: float = 1e-12) -> jax.Array:
    """-log(I / I0), the line-integral image from intensities (I clamped at ``eps * I0`` so that
    noisy zero counts stay finite). image: (...) intensity; returns (...) float32."""
    image = jnp.asarray(image, jnp.float32)
    return -jnp.log(jnp.maximum(image / i0, eps))


def material_classes(
    hu: jax.Array,
    labels: jax.Array | None = None,
    *,
    thresholds: Sequence[float] = HU_THRESHOLDS,
    label_classes: Mapping[int, int] | None = None,
) -> jax.Array:
    """Material class of every voxel of a CT in HU.

    Classes come from the HU thresholds (``segment_hu``), overridden by ``label_classes`` for
    the labels it lists (e.g. every bone label -> the bone class).

    Args:
      hu: (I, J, K) CT numbers, HU.
      labels: optional (I, J, K) int label map (needed with ``label_classes``).
      thresholds: M - 1 increasing HU thresholds of the M classes.
      label_classes: optional {label id: class index in [0, M)}.
    Returns (I, J, K) int32 class index in [0, M).
    """
    n_materials = len(thresholds) + 1
    classes = segment_hu(hu, thresholds)
    if label_classes is None:
        return classes
    if labels is None:
        raise ValueError("label_classes needs a label map: the volume has labels=None")
    bad = {k: v for k, v in label_classes.items() if not 0 <= int(v) < n_materials}
    if bad:
        raise ValueError(f"label_classes {bad} point outside the {n_materials} material classes")
    return segment_labels(labels, label_classes, default=classes)


def material_densities(
    hu: jax.Array,
    labels: jax.Array | None = None,
    *,
    thresholds: Sequence[float] = HU_THRESHOLDS,
    label_classes: Mapping[int, int] | None = None,
    air_below_hu: float | None = None,
) -> jax.Array:
    """Per-material density channels from a CT in HU: (I, J, K, M) float32 g/cm^3, each voxel's
    density (``hu_to_density``) in the channel of its class (``material_classes``), 0 in the
    others. ``material_volume`` holds the same compactly."""
    classes = material_classes(hu, labels, thresholds=thresholds, label_classes=label_classes)
    return density_channels(hu_to_density(hu, air_below_hu), classes, len(thresholds) + 1)


def material_volume(
    volume: Volume,
    *,
    thresholds: Sequence[float] = HU_THRESHOLDS,
    label_classes: Mapping[int, int] | None = None,
    air_below_hu: float | None = None,
) -> Volume:
    """A segmented ``Volume`` from a HU ``Volume`` (same affine and labels): data (I, J, K) the
    density in g/cm^3 (``hu_to_density``), ``materials`` the class of each voxel
    (``material_classes``), ``n_materials`` M. Rendering it gives every material's line
    integral (g/cm^3 x mm) in one traversal, at about the cost of a one-channel DRR;
    ``.dense()`` is the (I, J, K, M) form of ``material_densities``."""
    classes = material_classes(volume.data, volume.labels, thresholds=thresholds, label_classes=label_classes)
    return volume.replace(
        data=hu_to_density(volume.data, air_below_hu), materials=classes, n_materials=len(thresholds) + 1
    )
