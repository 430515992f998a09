"""CT DICOM series -> (HU voxels, RAS+ affine), with the checks a series needs before it is a volume.

Reader: pydicom. The choice was between SimpleITK (ITK's GDCM series reader, a 53 MB binary
wheel) and pydicom (pure Python, the de-facto standard DICOM toolkit, ~2 MB). pydicom wins here:
the geometry checks this module makes (slices ordered by position along the slice normal, uniform
spacing, gantry tilt refused, several series listed by UID and description) need the per-file
tags in any case, which SimpleITK's ImageSeriesReader hides (it would resample nothing, warn and
silently accept a tilted or gapped series); pydicom is also what ``fluorojax.io.xray`` needs to
write X-ray DICOM files, so one small optional dependency serves both directions. Compressed
transfer syntaxes decode through pydicom's plugins (``pylibjpeg``, ``gdcm``) when installed.

Geometry (DICOM PS3.3 C.7.6.2): voxel (i, j, k) = (column, row, slice) lies at
``IPP_0 + i * dc * X + j * dr * Y + k * ds * N`` in patient LPS mm, where X and Y are the two
direction cosines of ImageOrientationPatient (along a row, along a column), (dr, dc) =
PixelSpacing (between rows, between columns), N = X x Y and slices are sorted by IPP . N. The
affine is turned to RAS+ (x and y negated), so the volume's data is indexed [column, row, slice].
"""

from __future__ import annotations

import collections
import os

import numpy as np
import numpy.typing as npt

from fluorojax._files import StrPath
from fluorojax._optional import import_optional

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_ORIENTATION_TOL = 1e-4
_POSITION_TOL_MM = 0.01


def _dicom():
    return import_optional("pydicom", "dicom", "reading DICOM")


def _files(directory):
    for root, _, names in sorted(os.walk(directory)):
        for name in sorted(names):
            yield os.path.join(root, name)


def _headers(directory):
    """{SeriesInstanceUID: [(path, dataset without pixels)]} of every image file with a position."""
    pydicom = _dicom()
    series = collections.defaultdict(list)
    for path in _files(directory):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except (pydicom.errors.InvalidDicomError, OSError, ValueError):
            continue
        if "Rows" in ds:  # an image (pixels not read yet)
            series[str(ds.get("SeriesInstanceUID", "<no SeriesInstanceUID>"))].append((path, ds))
    return series


def series_uid(path: StrPath) -> str:
    """The SeriesInstanceUID of one DICOM file."""
    return str(_dicom().dcmread(os.fspath(path), stop_before_pixels=True).SeriesInstanceUID)


def list_series(directory: StrPath) -> list[dict]:
    """The image series found under ``directory`` (walked recursively): one dict per series with
    ``uid``, ``number`` (SeriesNumber or None), ``description``, ``modality`` and ``files``
    (count), sorted by series number then UID."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"no such DICOM directory: {directory}")
    rows = []
    for uid, items in _headers(directory).items():
        ds = items[0][1]
        number = ds.get("SeriesNumber")
        rows.append(
            {
                "uid": uid,
                "number": None if number in (None, "") else int(number),
                "description": str(ds.get("SeriesDescription", "")),
                "modality": str(ds.get("Modality", "")),
                "files": len(items),
            }
        )
    return sorted(rows, key=lambda r: (r["number"] is None, r["number"] or 0, r["uid"]))


def _describe(rows):
    return "\n".join(
        f"  series={r['uid']!r} (SeriesNumber {r['number']}, {r['modality']}, {r['files']} files, {r['description']!r})"
        for r in rows
    )


def _pick(directory, series):
    groups = _headers(directory)
    if not groups:
        raise ValueError(f"no DICOM image files under {directory}")
    rows = list_series(directory) if len(groups) > 1 or series is not None else None
    if series is None:
        if len(groups) > 1:
            raise ValueError(
                f"{directory} holds {len(groups)} DICOM series; choose one with series=UID or SeriesNumber:\n{_describe(rows)}"
            )
        return next(iter(groups.values()))
    chosen = [r["uid"] for r in rows if series in (r["uid"], r["number"], str(r["number"]))]
    if len(chosen) != 1:
        raise ValueError(
            f"series={series!r} matches {len(chosen)} of the series under {directory}; they are:\n{_describe(rows)}"
        )
    return groups[chosen[0]]


def _vector(ds, tag, n, path):
    if tag not in ds:
        raise ValueError(f"{path}: missing {tag}, needed to place the slice in space")
    value = np.asarray([float(v) for v in ds[tag].value], np.float64)
    if value.shape != (n,) or not np.all(np.isfinite(value)):
        raise ValueError(f"{path}: {tag} must hold {n} finite numbers, got {ds[tag].value!r}")
    return value


def _geometry(items):
    """Sorted items, (3, 3) LPS axis vectors (columns: column step, row step, slice step) and origin."""
    path0, ds0 = items[0]
    if int(ds0.get("NumberOfFrames", 1) or 1) != 1:
        raise ValueError(
            f"{path0} is a multi-frame (enhanced) image; only single-frame CT series are read "
            "(convert it with dcm2niix)"
        )
    orientation = _vector(ds0, "ImageOrientationPatient", 6, path0)
    spacing = _vector(ds0, "PixelSpacing", 2, path0)
    shape = (int(ds0.Rows), int(ds0.Columns))
    for path, ds in items[1:]:
        if not np.allclose(_vector(ds, "ImageOrientationPatient", 6, path), orientation, atol=_ORIENTATION_TOL):
            raise ValueError(
                f"inconsistent series: {path} has ImageOrientationPatient {list(ds.ImageOrientationPatient)}, "
                f"{path0} has {orientation.tolist()}"
            )
        if not np.allclose(_vector(ds, "PixelSpacing", 2, path), spacing, rtol=1e-4):
            raise ValueError(
                f"inconsistent series: {path} has PixelSpacing {list(ds.PixelSpacing)}, {path0} has {spacing.tolist()}"
            )
        if (int(ds.Rows), int(ds.Columns)) != shape:
            raise ValueError(
                f"inconsistent series: {path} is {ds.Rows} x {ds.Columns} pixels, {path0} is {shape[0]} x {shape[1]}"
            )
    x, y = orientation[:3], orientation[3:]
    normal = np.cross(x, y)
    positions = np.stack([_vector(ds, "ImagePositionPatient", 3, p) for p, ds in items])
    order = np.argsort(positions @ normal, kind="stable")
    items = [items[i] for i in order]
    positions = positions[order]
    along = positions @ normal
    if len(items) > 1:
        steps = np.diff(along)
        if np.any(steps < _POSITION_TOL_MM):
            dup = int(np.argmin(steps))
            raise ValueError(
                f"inconsistent series: {items[dup][0]} and {items[dup + 1][0]} lie at the same position "
                f"{positions[dup].tolist()} (several acquisitions or echoes in one series?)"
            )
        if np.ptp(steps) > max(_POSITION_TOL_MM, 1e-3 * np.median(steps)):
            raise ValueError(
                f"inconsistent series: slice spacing varies from {steps.min():.4g} to {steps.max():.4g} mm "
                "(missing slices?); a volume needs uniform spacing"
            )
        offsets = positions - positions[0]
        lateral = offsets - np.outer(offsets @ normal, normal)
        tilt = np.degrees(np.arctan2(np.linalg.norm(lateral[-1]), abs(along[-1] - along[0])))
        if np.max(np.linalg.norm(lateral, axis=1)) > _POSITION_TOL_MM + 1e-4 * abs(along[-1] - along[0]):
            raise ValueError(
                f"gantry-tilted series refused: slice positions drift {tilt:.3g} degrees off the slice normal "
                f"(GantryDetectorTilt {ds0.get('GantryDetectorTilt', 'absent')}); resample it to an orthogonal grid "
                "first (e.g. dcm2niix, which corrects tilt)"
            )
        step = (positions[-1] - positions[0]) / (len(items) - 1)
    else:
        thickness = float(ds0.get("SpacingBetweenSlices", ds0.get("SliceThickness", 1.0)) or 1.0)
        step = thickness * normal
    axes = np.stack([x * spacing[1], y * spacing[0], step], axis=1)
    return items, axes, positions[0]


def read_dicom_series(directory: StrPath, series: str | int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read a CT DICOM series into ``(data, affine)``.

    Args:
      directory: folder holding the series' files (walked recursively; file names and
        InstanceNumber do not matter: slices are ordered by position along the slice normal).
      series: SeriesInstanceUID or SeriesNumber, needed when the folder holds several series
        (the error lists them).

    Returns:
      data: (columns, rows, slices) float32, RescaleSlope * stored + RescaleIntercept
        (Hounsfield units for CT).
      affine: (4, 4) float64 world_from_voxel, NIfTI RAS+ mm (oblique orientations kept).

    Raises ValueError for gantry-tilted series, inconsistent orientation, spacing or size
    between files, repeated or missing slice positions.
    """
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise FileNotFoundError(f"no such DICOM directory: {directory}")
    items, axes, origin = _geometry(_pick(directory, series))
    pydicom = _dicom()
    slices = []
    for path, _ in items:
        ds = pydicom.dcmread(path)
        pixels = ds.pixel_array.astype(np.float64)
        slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
        intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
        slices.append(pixels * slope + intercept)
    data = np.stack(slices, axis=-1).transpose(1, 0, 2).astype(np.float32)
    affine = np.eye(4)
    affine[:3, :3] = axes
    affine[:3, 3] = origin
    return data, LPS_TO_RAS @ affine


def save_dicom_series(
    folder: StrPath, data: npt.ArrayLike, affine: npt.ArrayLike, series_description: str = "fluorojax CT"
) -> list[str]:
    """Write a volume as a CT DICOM series, one file per k slice (``slice_0000.dcm``, ...).

    Args:
      folder: output folder (created).
      data: (I, J, K) Hounsfield units (rounded to int16 with RescaleIntercept -1024, slope 1).
      affine: (4, 4) world_from_voxel, RAS+ mm (oblique kept; IPP/IOP in LPS).

    Returns the written paths. ``read_dicom_series(folder)`` gives back the grid and the rounded values.
    """
    pydicom = _dicom()
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

    data = np.asarray(data, np.float64)
    if data.ndim != 3:
        raise ValueError(f"a CT series needs (I, J, K) data, got shape {data.shape}")
    stored = np.round(data + 1024.0)
    if stored.min() < -32768 or stored.max() > 32767:
        raise ValueError(f"HU range [{data.min():.6g}, {data.max():.6g}] does not fit int16 with intercept -1024")
    lps = LPS_TO_RAS @ np.asarray(affine, np.float64)
    spacing = np.linalg.norm(lps[:3, :2], axis=0)
    x, y = lps[:3, 0] / spacing[0], lps[:3, 1] / spacing[1]
    if abs(x @ y) > 1e-6 or abs(np.cross(x, y) @ lps[:3, 2]) < 0.999 * np.linalg.norm(lps[:3, 2]):
        raise ValueError(
            "the affine's slice axis must be orthogonal to its first two axes (DICOM has no sheared series)"
        )
    os.makedirs(folder, exist_ok=True)
    study, series, frame = generate_uid(), generate_uid(), generate_uid()  # UIDs are at most 64 characters
    paths = []
    for k in range(data.shape[2]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CTImageStorage, generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber, ds.SeriesDescription = "CT", 1, k + 1, series_description
        ds.PatientName, ds.PatientID = "", ""
        ds.ImagePositionPatient = [f"{v:.6f}" for v in lps[:3, 3] + k * lps[:3, 2]]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in np.concatenate([x, y])]
        ds.PixelSpacing = [f"{spacing[1]:.8f}", f"{spacing[0]:.8f}"]
        ds.SliceThickness = f"{np.linalg.norm(lps[:3, 2]):.8f}"
        ds.Rows, ds.Columns = data.shape[1], data.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = "1", "-1024", "HU"
        ds.PixelData = stored[:, :, k].T.astype(np.int16).tobytes()
        path = os.path.join(os.fspath(folder), f"slice_{k:04d}.dcm")
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
