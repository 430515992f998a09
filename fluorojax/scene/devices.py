"""Imaging devices drawn per image: detector, geometry, tube voltage and dose.

Ranges come from a ``DeviceRanges`` (defaults: the device ranges of the FluoroSeg generator,
see ``DeviceRanges``). Sampling runs on the host (image sizes are static shapes), from a NumPy
generator seeded by a JAX key (``host_rng``), so the same key gives the same device on every
machine.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from fluorojax.camera import Camera
from fluorojax.scene.spec import DeviceRanges


def host_rng(key: ArrayLike) -> np.random.Generator:
    """A NumPy generator seeded by the bits of a JAX PRNG key (typed or raw uint32)."""
    key = jnp.asarray(key) if not isinstance(key, jax.Array) else key
    data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return np.random.default_rng(np.asarray(data, np.uint32).ravel().tolist())


@dataclasses.dataclass(frozen=True)
class Device:
    """One image's device.

    Attributes:
      height, width: image size, pixels.
      pixel_size: square pixel size, mm.
      sdd: source-to-detector distance, mm.
      source_to_isocenter: source to the point of interest (the view's target), mm.
      kvp: tube voltage (a shipped spectrum).
      photons: open-beam photons per pixel, or None (noise-free).
    """

    height: int
    width: int
    pixel_size: float
    sdd: float
    source_to_isocenter: float
    kvp: int
    photons: float | None

    def camera(self) -> Camera:
        """The ``Camera`` (principal point at the detector centre)."""
        return Camera(self.height, self.width, self.pixel_size, self.sdd)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Device:
        return cls(**data)


def sample_device(key: jax.Array, ranges: DeviceRanges) -> Device:
    """Draw a ``Device`` from ``ranges``: sdd, detector width and isocentre fraction uniform,
    image size and kVp uniform over their lists, photons log-uniform."""
    rng = host_rng(key)
    height, width = ranges.image_sizes[rng.integers(len(ranges.image_sizes))]
    sdd = rng.uniform(*ranges.sdd_mm)
    detector = rng.uniform(*ranges.detector_mm)
    fraction = rng.uniform(*ranges.isocenter_fraction)
    kvp = ranges.kvps[rng.integers(len(ranges.kvps))]
    photons = None
    if ranges.photons is not None:
        photons = float(np.exp(rng.uniform(np.log(ranges.photons[0]), np.log(ranges.photons[1]))))
    return Device(
        int(height), int(width), float(detector / width), float(sdd), float(fraction * sdd), int(kvp), photons
    )
