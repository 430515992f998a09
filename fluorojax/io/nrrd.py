"""NRRD (.nrrd / .nhdr) -> (data, RAS+ affine), read with pynrrd (the ``dicom`` extra).

The header's ``space directions`` (one vector per axis) and ``space origin`` give the affine in
the header's ``space``; LPS-type spaces (3D Slicer's and ITK's default) are turned to RAS+.
"""

from __future__ import annotations

import os

import numpy as np

from fluorojax._files import StrPath
from fluorojax._optional import import_optional

# Sign of each world axis, from the header's space, to reach RAS+.
_SPACE_SIGNS = {
    "right-anterior-superior": (1, 1, 1),
    "ras": (1, 1, 1),
    "left-anterior-superior": (-1, 1, 1),
    "las": (-1, 1, 1),
    "left-posterior-superior": (-1, -1, 1),
    "lps": (-1, -1, 1),
    "scanner-xyz": (1, 1, 1),
    "3d-right-handed": (1, 1, 1),
}


def read_nrrd(path: StrPath) -> tuple[np.ndarray, np.ndarray]:
    """Read a 3-D scalar NRRD: ``(data (I, J, K) float32, affine (4, 4) RAS+ mm)``."""
    nrrd = import_optional("nrrd", "dicom", "reading NRRD")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such NRRD file: {path}")
    try:
        data, header = nrrd.read(path)
    except Exception as err:  # pynrrd raises NRRDError and others for bad files
        raise ValueError(f"cannot read {path} as NRRD: {err}") from err
    space = str(header.get("space", "")).lower()
    if space not in _SPACE_SIGNS:
        raise ValueError(
            f"{path}: NRRD space {header.get('space')!r} is not supported; expected one of {sorted(_SPACE_SIGNS)}"
        )
    directions = np.asarray(header.get("space directions"), dtype=object)
    spatial = [i for i, d in enumerate(directions) if d is not None and not (isinstance(d, float) and np.isnan(d))]
    spatial = [i for i in spatial if np.all(np.isfinite(np.asarray(directions[i], np.float64)))]
    extra = [i for i in range(data.ndim) if i not in spatial]
    if len(spatial) != 3 or any(data.shape[i] != 1 for i in extra):
        raise ValueError(
            f"{path}: expected a 3-D scalar volume, got shape {data.shape} with space directions {header.get('space directions')}"
        )
    data = np.squeeze(data, axis=tuple(extra)) if extra else data
    affine = np.eye(4)
    affine[:3, :3] = np.stack([np.asarray(directions[i], np.float64) for i in spatial], axis=1)
    affine[:3, 3] = np.asarray(header.get("space origin", np.zeros(3)), np.float64)
    return np.asarray(data, np.float32), np.diag(list(_SPACE_SIGNS[space]) + [1.0]) @ affine
