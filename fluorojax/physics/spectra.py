"""X-ray tube spectra: shipped tungsten-anode spectra, user spectra, monochromatic beams, filters.

A spectrum is a pair ``(energy_keV, weights)`` of (E,) float32 arrays: bin energies in keV and
photon fluence per bin (the shipped and constructed spectra are normalised to sum to 1).
The shipped spectra come from spekpy (see ``data/README.md``).
"""

from __future__ import annotations

import csv
import functools
from importlib import resources

import jax
import jax.numpy as jnp
import numpy as np

from fluorojax._pytree import is_concrete
from fluorojax.physics.materials import MaterialLike, as_material, mass_attenuation

Spectrum = tuple[jax.Array, jax.Array]
"""A photon spectrum: (energy_keV (E,), weights (E,)) float32."""


@functools.cache
def _table():
    path = resources.files("fluorojax.physics") / "data" / "spectra.csv"
    with path.open("r", newline="") as f:
        rows = list(csv.DictReader(f))
    out = {}
    for row in rows:
        kvp = int(row["kvp"])
        out.setdefault(
            kvp,
            {
                "filtration_mm_al": float(row["filtration_mm_al"]),
                "hvl_mm_al": float(row["hvl_mm_al"]),
                "energy": [],
                "weight": [],
            },
        )
        out[kvp]["energy"].append(float(row["energy_keV"]))
        out[kvp]["weight"].append(float(row["photon_fraction"]))
    return out


def available_kvps() -> tuple[int, ...]:
    """Tube voltages (kVp) of the shipped spectra."""
    return tuple(sorted(_table()))


def spectrum_info(kvp: int) -> dict:
    """Filtration (mm Al) and first half-value layer (mm Al) of a shipped spectrum, from spekpy."""
    entry = _table()[_check_kvp(kvp)]
    return {"kvp": kvp, "filtration_mm_al": entry["filtration_mm_al"], "hvl_mm_al": entry["hvl_mm_al"]}


def _check_kvp(kvp):
    table = _table()
    if kvp not in table:
        raise ValueError(
            f"no shipped spectrum for {kvp!r} kVp; available: {available_kvps()} "
            "(pass your own with custom_spectrum(energies, weights))"
        )
    return kvp


def spectrum(kvp: int, n_bins: int | None = None) -> Spectrum:
    """A shipped tube spectrum (tungsten anode, typical aluminium filtration, 1 keV bins).

    Args:
      kvp: tube voltage, one of ``available_kvps()`` (60, 80, 90, 100, 120).
      n_bins: optionally merge the 1 keV bins into this many equal-width energy bins (each bin's
        energy is the fluence-weighted mean of the bins it merges, so the mean energy is kept);
        fewer bins make polychromatic rendering cheaper.
    Returns (energy_keV (E,), weights (E,)) float32, weights summing to 1.
    """
    entry = _table()[_check_kvp(kvp)]
    energy = np.asarray(entry["energy"], np.float64)
    weight = np.asarray(entry["weight"], np.float64)
    if n_bins is not None:
        if not isinstance(n_bins, (int, np.integer)) or not 1 <= n_bins <= energy.size:
            raise ValueError(f"n_bins must be an integer in [1, {energy.size}], got {n_bins!r}")
        edges = np.linspace(energy[0] - 0.5, energy[-1] + 0.5, n_bins + 1)
        which = np.clip(np.searchsorted(edges, energy, side="right") - 1, 0, n_bins - 1)
        merged_w = np.asarray(np.bincount(which, weight, n_bins), np.float64)
        merged_e = np.asarray(np.bincount(which, weight * energy, n_bins), np.float64)
        keep = merged_w > 0
        energy, weight = merged_e[keep] / merged_w[keep], merged_w[keep]
    return jnp.asarray(energy, jnp.float32), jnp.asarray(weight / weight.sum(), jnp.float32)


def monochromatic(energy_keV: float | jax.Array) -> Spectrum:
    """A single-energy beam: (energy_keV (1,), weights (1,) = [1])."""
    return custom_spectrum(jnp.reshape(jnp.asarray(energy_keV, jnp.float32), (1,)), jnp.ones((1,), jnp.float32))


def custom_spectrum(energy_keV: jax.Array, weights: jax.Array) -> Spectrum:
    """A user spectrum: (E,) energies in keV and (E,) non-negative photon weights, normalised to sum 1.

    Differentiable with respect to both arrays.
    """
    energy = jnp.asarray(energy_keV, jnp.float32)
    weights = jnp.asarray(weights, jnp.float32)
    if energy.ndim != 1 or weights.shape != energy.shape:
        raise ValueError(
            f"spectrum needs (E,) energies and (E,) weights, got shapes {energy.shape} and {weights.shape}"
        )
    if is_concrete(energy, weights):
        e, w = np.asarray(energy), np.asarray(weights)
        if not (np.all(np.isfinite(e)) and np.all(e > 0)):
            raise ValueError(f"spectrum energies must be positive keV, got {e.tolist()}")
        if not (np.all(np.isfinite(w)) and np.all(w >= 0) and w.sum() > 0):
            raise ValueError(f"spectrum weights must be >= 0 with a positive sum, got {w.tolist()}")
    return energy, weights / jnp.sum(weights)


def filter_spectrum(
    spec: Spectrum,
    material: MaterialLike,
    thickness_mm: float | jax.Array,
    density: float | jax.Array | None = None,
) -> Spectrum:
    """Harden a spectrum through a filter slab (e.g. 0.1-0.3 mm copper in fluoroscopy).

    Args:
      spec: (energy_keV (E,), weights (E,)).
      material: filter material name or ``Material``.
      thickness_mm: slab thickness, mm.
      density: g/cm^3, default the material's nominal density.
    Returns the filtered spectrum (energy_keV, weights), weights renormalised to sum 1.
    """
    energy, weights = spec
    mat = as_material(material)
    rho = mat.density if density is None else density
    transmitted = weights * jnp.exp(
        -mass_attenuation(mat, energy) * rho * jnp.asarray(thickness_mm, jnp.float32) / 10.0
    )
    return energy, transmitted / jnp.sum(transmitted)


def mean_energy(spec: Spectrum) -> jax.Array:
    """Fluence-weighted mean energy of a spectrum, keV."""
    energy, weights = spec
    return jnp.sum(energy * weights) / jnp.sum(weights)
