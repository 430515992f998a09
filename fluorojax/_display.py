"""Display windowing: floating-point images to [0, 1] grey levels and 8-bit pixels."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def window(image: npt.ArrayLike, percentiles: tuple[float, float] = (0.5, 99.5)) -> np.ndarray:
    """``image`` (...) mapped linearly so its ``percentiles`` go to 0 and 1, clipped: float64."""
    image = np.asarray(image, np.float64)
    lo, hi = np.percentile(image, percentiles)
    return np.clip((image - lo) / max(hi - lo, 1e-12), 0.0, 1.0)


def to_uint8(unit: npt.ArrayLike) -> np.ndarray:
    """Values in [0, 1] (...) -> uint8 levels 0..255, rounded."""
    return np.round(np.asarray(unit) * 255).astype(np.uint8)
