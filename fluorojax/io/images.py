"""Volumes in clinical formats: one entry point that picks the reader by file type."""

from __future__ import annotations

import os

import numpy as np

from fluorojax._files import StrPath
from fluorojax.io.dicom_series import read_dicom_series, series_uid
from fluorojax.io.metaimage import read_metaimage
from fluorojax.io.nrrd import read_nrrd

SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")
"""File types ``read_image`` reads besides NIfTI (which ``fluorojax.volume`` reads itself); a
directory is read as a DICOM series."""


def read_image(path: StrPath, series: str | int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A 3-D image from a DICOM series folder (or one of its files), NRRD or MetaImage:
    ``(data (I, J, K) float32, affine (4, 4) world_from_voxel, RAS+ mm)``.

    ``series`` (SeriesInstanceUID or SeriesNumber) picks one series of a folder holding several.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such image file or DICOM folder: {path}")
    lower = path.lower()
    if os.path.isdir(path):
        return read_dicom_series(path, series)
    if lower.endswith(".dcm"):
        return read_dicom_series(os.path.dirname(path) or ".", series if series is not None else series_uid(path))
    if lower.endswith((".nrrd", ".nhdr")):
        return read_nrrd(path)
    if lower.endswith((".mha", ".mhd")):
        return read_metaimage(path)
    raise ValueError(
        f"cannot tell the format of {path!r}: expected .nii/.nii.gz, {', '.join(SUFFIXES)} or a DICOM folder"
    )
