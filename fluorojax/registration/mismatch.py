"""Registration targets that look like radiographs rather than DRRs (physics mismatch).

A target is made from the HU volume at a true pose by a different physics than the moving
image (the monochromatic DRR of ``hu_to_mu``): a polychromatic tube spectrum (beam hardening),
scatter, quantum noise, metal tools present only in the X-ray, a collimated field and a random
intensity window with gamma, as a display or a detector's processing would apply. Each
factor is drawn from ``key``; ``MismatchSettings`` holds the ranges.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fluorojax import tools
from fluorojax.camera import Camera
from fluorojax.physics import add_scatter, mass_attenuation, mean_energy, neglog, poisson_noise, spectrum
from fluorojax.raycast.mesh_render import render_mesh
from fluorojax.simulate import render_polychromatic
from fluorojax.transforms import make_pose, so3_exp
from fluorojax.volume import Volume

MM_PER_CM = 10.0


class MismatchSettings(NamedTuple):
    """Ranges of the physics drawn per target (all uniform unless said).

    Attributes:
      kvps: tube voltages (kVp) to choose from (tabulated spectra).
      photons: (low, high) photons per unattenuated pixel, drawn log-uniformly.
      scatter_to_primary: (low, high) mean scatter-to-primary ratio.
      scatter_sigma_mm: standard deviation of the scatter kernel on the detector, mm.
      tools: (low, high) number of metal tools (K-wires and cortical screws) in the target.
      collimation: (low, high) fraction of the width or height shuttered on each side.
      shutter_transmission: transmission of the collimator's shutters.
      window_low: (low, high) quantile of the -log image mapped to 0.
      window_high: (low, high) quantile mapped to 1 (values outside are clipped: saturated).
      gamma: (low, high) exponent applied after windowing.
    """

    kvps: tuple[int, ...] = (60, 80, 90, 100, 120)
    photons: tuple[float, float] = (1e3, 1e5)
    scatter_to_primary: tuple[float, float] = (0.1, 0.5)
    scatter_sigma_mm: float = 40.0
    tools: tuple[int, int] = (1, 3)
    collimation: tuple[float, float] = (0.0, 0.08)
    shutter_transmission: float = 0.02
    window_low: tuple[float, float] = (0.0, 0.05)
    window_high: tuple[float, float] = (0.95, 1.0)
    gamma: tuple[float, float] = (0.7, 1.4)


DEFAULT_MISMATCH = MismatchSettings()
"""The ranges ``mismatched_target`` draws from by default."""


@functools.cache
def _tools():
    """The K-wire and screw placed in mismatched targets (built on first use, not at import:
    building them starts JAX's backend, which would fix its CPU device count)."""
    return tools.kwire(diameter=2.0, length=120.0), tools.cortical_screw(length=40.0, segments=12, rings_per_pitch=4)


@jax.jit
def _tool_travel(mesh, camera, pose):
    """(H, W) mm of metal crossed by each pixel's ray."""
    return render_mesh(mesh, camera, pose).travel


@jax.jit
def _primary(hu_volume, camera, pose, spec):
    """(H, W) normalised polychromatic intensity (default materials)."""
    return render_polychromatic(hu_volume, camera, pose, spec)


def _tool_poses(rng, center, n):
    """``n`` random (4, 4) world_from_mesh placements within 40 mm of ``center``."""
    poses = []
    for _ in range(n):
        axis = rng.standard_normal(3)
        rotation = np.asarray(so3_exp(jnp.asarray(rng.uniform(0, np.pi) * axis / np.linalg.norm(axis), jnp.float32)))
        poses.append(np.asarray(make_pose(rotation, center + rng.uniform(-40.0, 40.0, 3))))
    return poses


def mismatched_target(
    key: jax.Array, hu_volume: Volume, camera: Camera, pose: jax.Array, settings: MismatchSettings = DEFAULT_MISMATCH
) -> tuple[jax.Array, dict[str, Any]]:
    """A radiograph-like target (H, W) in [0, 1] of a HU volume at ``pose``, and what was drawn.

    Args:
      key: jax.random key; every random choice follows from it.
      hu_volume: ``Volume`` in Hounsfield units (labels ignored).
      camera: ``Camera``; pose: (4, 4) world_from_camera, the true pose.
      settings: ``MismatchSettings``.
    Returns:
      (image (H, W) float32 in [0, 1], brighter = more attenuation, record dict of the drawn
      kvp, photons, scatter-to-primary ratio, number of tools, collimation margins (top, bottom,
      left, right) in pixels, window quantiles and gamma). Host-side (it places meshes), not jittable.
    """
    seed = int(jax.random.randint(key, (), 0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    kvp = int(rng.choice(settings.kvps))
    photons = float(np.exp(rng.uniform(*np.log(settings.photons))))
    spr = float(rng.uniform(*settings.scatter_to_primary))
    spec = spectrum(kvp)
    primary = _primary(hu_volume.replace(labels=None), camera, pose, spec)

    n_tools = int(rng.integers(settings.tools[0], settings.tools[1] + 1))
    energy = mean_energy(spec)
    for i, placement in enumerate(_tool_poses(rng, np.asarray(hu_volume.center, np.float64), n_tools)):
        tool = _tools()[i % 2]
        travel = _tool_travel(tool.place(placement).mesh, camera, pose)
        mu = mass_attenuation(tool.material, energy) * tool.density / MM_PER_CM  # 1/mm at the mean energy
        primary = primary * jnp.exp(-mu * travel)

    h, w = camera.shape
    margins = np.floor(rng.uniform(*settings.collimation, 4) * np.array([h, h, w, w])).astype(int)
    rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
    open_field = (rows >= margins[0]) & (rows < h - margins[1]) & (cols >= margins[2]) & (cols < w - margins[3])
    primary = primary * jnp.where(jnp.asarray(open_field), 1.0, settings.shutter_transmission)

    sigma_px = settings.scatter_sigma_mm / float(camera.pixel_size[0])
    total = add_scatter(primary, spr, sigma_px)
    noisy = poisson_noise(jax.random.fold_in(key, 1), total / (1.0 + spr), photons)
    line = np.asarray(neglog(jnp.maximum(noisy, 0.5 / photons)), np.float64)

    q_low, q_high = rng.uniform(*settings.window_low), rng.uniform(*settings.window_high)
    gamma = float(rng.uniform(*settings.gamma))
    low, high = np.quantile(line[open_field], [q_low, q_high])
    image = np.clip((line - low) / max(high - low, 1e-6), 0.0, 1.0) ** gamma
    record = {
        "kvp": kvp,
        "photons": photons,
        "scatter_to_primary": spr,
        "tools": n_tools,
        "collimation_px": margins.tolist(),
        "window": (float(q_low), float(q_high)),
        "gamma": gamma,
    }
    return jnp.asarray(image, jnp.float32), record
