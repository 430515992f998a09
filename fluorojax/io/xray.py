"""X-ray images with their imaging geometry: DICOM (XA, RF, DX, CR) in and out, PNG/TIFF in.

What the DICOM tags mean, and how they become a fluorojax ``Camera`` and pose:

* ``DistanceSourceToDetector`` (SID, mm) is the camera's ``sdd``.
* ``ImagerPixelSpacing`` (row spacing, column spacing; mm at the detector) is its
  ``pixel_size`` (column, row). ``PixelSpacing`` is used only where ImagerPixelSpacing is
  absent: it is calibrated at the isocentre, so it is multiplied by the magnification
  (``EstimatedRadiographicMagnificationFactor`` if present, else SID / DistanceSourceToPatient),
  and ``XRay.tags["magnification"]`` says which factor was applied.
* ``DetectorActiveOrigin`` (mm), where present, is read as the (row, column) offset of the
  image's top-left corner from the point where the principal ray meets the detector; without it
  the principal point is the image centre.
* ``PositionerPrimaryAngle`` (alpha) and ``PositionerSecondaryAngle`` (beta) place the
  *detector* (DICOM PS3.3 C.8.7.5): alpha is the LAO (+) / RAO (-) rotation about the patient's
  long axis, beta the cranial (+) / caudal (-) tilt; at 0, 0 the detector is anterior (the source
  under the table: a PA beam). The unit vector from the isocentre toward the detector is
  ``d = (-sin a cos b, cos a cos b, sin b)`` in RAS+, the source sits ``DistanceSourceToPatient``
  mm from the isocentre along ``-d``, and the patient's head is at the top of the image.
  ``fluorojax.carm_pose`` instead moves the *source* of an AP view, so the two conventions
  are related by ``positioner_pose(a, b) == carm_pose(lao_deg=a + 180, cra_deg=-b)``: clinical
  LAO 30 (detector toward the patient's left, source toward the right) is fluorojax LAO 210
  (= RAO 150); at clinical LAO 90 the patient's left is nearest the detector.
* Images: a radiograph is displayed as seen from the detector facing the source (at 0, 0 the
  patient's right is on the viewer's left), while a fluorojax image is seen from the source
  (``camera.py``). ``load_xray`` therefore reverses the columns of the stored pixels and
  ``save_xray`` reverses them back, so ``XRay.image`` follows the fluorojax convention and
  files follow the clinical one; ``XRay.tags["stored_columns_reversed"]`` records it.

The world frame of a pose read from DICOM has the isocentre at the origin (RAS+ mm, patient
axes from the positioner's definition): the caller places it on a CT (``isocenter=``).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import BinaryIO

import jax
import numpy as np
import numpy.typing as npt

from fluorojax._files import StrPath
from fluorojax._optional import import_optional
from fluorojax.camera import Camera, carm_pose

_XRAY_MODALITIES = ("XA", "RF", "DX", "CR", "MG", "PX", "IO")


@dataclasses.dataclass(frozen=True)
class XRay:
    """An X-ray image and its geometry.

    Attributes:
      image: (H, W) float32, the stored pixels after the modality rescale (slope, intercept),
        columns ordered as seen from the source (see the module docstring).
      camera: the ``Camera`` (sdd, pixel size at the detector, principal point), or None when
        the file does not give SID and pixel spacing.
      pose: (4, 4) float32 world_from_camera with the isocentre at ``isocenter`` (default the
        world origin), or None when the positioner angles or the source distance are absent.
      tags: the raw tag values used (keyword -> value) and what was derived from them.
    """

    image: np.ndarray
    camera: Camera | None
    pose: np.ndarray | None
    tags: dict


def positioner_pose(
    primary_deg: npt.ArrayLike,
    secondary_deg: npt.ArrayLike,
    source_to_isocenter: npt.ArrayLike,
    isocenter: npt.ArrayLike = (0.0, 0.0, 0.0),
) -> jax.Array:
    """Pose (..., 4, 4) world_from_camera (RAS+ mm) from DICOM positioner angles, which place the
    detector: ``carm_pose(primary_deg + 180, -secondary_deg, source_to_isocenter, isocenter)``
    (see the module docstring for the derivation and the clinical meaning)."""
    return carm_pose(
        np.asarray(primary_deg, np.float32) + 180.0,
        -np.asarray(secondary_deg, np.float32),
        np.asarray(source_to_isocenter, np.float32),
        np.asarray(isocenter, np.float32),
    )


def positioner_angles(pose: npt.ArrayLike, isocenter: npt.ArrayLike = (0.0, 0.0, 0.0)) -> tuple[float, float, float]:
    """(primary_deg, secondary_deg, source_to_isocenter mm) of a pose (4, 4) whose principal ray
    passes through ``isocenter`` and whose image has the patient's head up (no roll about the
    principal ray): the inverse of ``positioner_pose``. Raises ValueError for other poses, which
    DICOM positioner angles cannot describe."""
    pose = np.asarray(pose, np.float64)
    if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
        raise ValueError(f"pose must be a finite (4, 4) world_from_camera matrix, got shape {pose.shape}")
    z, source = pose[:3, 2], pose[:3, 3]
    iso = np.asarray(isocenter, np.float64)
    to_iso = iso - source
    distance = float(to_iso @ z)
    miss = np.linalg.norm(to_iso - distance * z)
    if distance <= 0 or miss > 1e-3 * max(distance, 1.0):
        raise ValueError(
            f"the isocentre {iso.tolist()} must lie on the pose's principal ray in front of the source; "
            f"it is {miss:.3g} mm off the ray at depth {distance:.3g} mm"
        )
    secondary = np.degrees(np.arcsin(np.clip(z[2], -1.0, 1.0)))
    primary = np.degrees(np.arctan2(-z[0], z[1])) if np.hypot(z[0], z[1]) > 1e-9 else 0.0
    expected = np.asarray(positioner_pose(primary, secondary, distance, isocenter), np.float64)
    roll = np.degrees(np.arctan2(expected[:3, 0] @ pose[:3, 1], expected[:3, 1] @ pose[:3, 1]))
    if abs(roll) > 1e-2:
        raise ValueError(
            f"the pose is rolled {roll:.3g} degrees about its principal ray; DICOM positioner angles describe "
            "only head-up views (rotate the image, or use a pose from positioner_pose / carm_pose)"
        )
    return float(primary), float(secondary), distance


def _tag(ds, keyword, n=None):
    if keyword not in ds or ds[keyword].value in (None, ""):
        return None
    value = ds[keyword].value
    values = [float(v) for v in value] if n else float(value)
    if n and len(values) != n:
        raise ValueError(f"DICOM {keyword} must hold {n} numbers, got {value!r}")
    return values


def _dicom_geometry(ds, width, height, isocenter):
    tags = {
        k: _tag(ds, k)
        for k in (
            "DistanceSourceToDetector",
            "DistanceSourceToPatient",
            "PositionerPrimaryAngle",
            "PositionerSecondaryAngle",
            "EstimatedRadiographicMagnificationFactor",
        )
    }
    for keyword in ("ImagerPixelSpacing", "PixelSpacing", "DetectorActiveOrigin"):
        tags[keyword] = _tag(ds, keyword, 2)
    sid, sod = tags["DistanceSourceToDetector"], tags["DistanceSourceToPatient"]
    spacing = tags["ImagerPixelSpacing"]
    tags["magnification"] = 1.0
    if spacing is None and tags["PixelSpacing"] is not None:
        if tags["EstimatedRadiographicMagnificationFactor"] is not None:
            tags["magnification"] = tags["EstimatedRadiographicMagnificationFactor"]
        elif sid is not None and sod is not None:
            tags["magnification"] = sid / sod
        spacing = [s * tags["magnification"] for s in tags["PixelSpacing"]]
    camera = pose = None
    if sid is not None and spacing is not None:
        row_spacing, col_spacing = spacing
        principal = None
        if tags["DetectorActiveOrigin"] is not None:
            row_mm, col_mm = tags["DetectorActiveOrigin"]
            principal = (width + col_mm / col_spacing, -row_mm / row_spacing)  # stored columns reversed below
        camera = Camera(height, width, (col_spacing, row_spacing), sid, principal)
    if sod is not None and tags["PositionerPrimaryAngle"] is not None:
        secondary = tags["PositionerSecondaryAngle"] or 0.0
        pose = np.asarray(positioner_pose(tags["PositionerPrimaryAngle"], secondary, sod, isocenter), np.float32)
    return camera, pose, tags


def _read_plain(path):
    if path.lower().endswith((".tif", ".tiff")):
        import tifffile

        return tifffile.imread(path)
    from PIL import Image

    return np.asarray(Image.open(path).convert("F"))


def load_xray(
    path: StrPath,
    frame: int | None = None,
    camera: Camera | None = None,
    pose: npt.ArrayLike | None = None,
    isocenter: npt.ArrayLike = (0.0, 0.0, 0.0),
) -> XRay:
    """Read an X-ray image and its geometry.

    Args:
      path: a DICOM file (XA, RF, DX, CR and other projection radiographs), or a PNG/TIFF/NPY
        image whose geometry the caller gives.
      frame: the frame of a multi-frame DICOM (required for more than one frame).
      camera, pose: the geometry of a PNG/TIFF/NPY image (pose optional); for DICOM they
        override what the tags give.
      isocenter: (3,) world mm where the positioner's isocentre is placed (DICOM poses).

    Returns an ``XRay`` (image (H, W) float32 as seen from the source; see the module docstring).
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such X-ray image: {path}")
    if path.lower().endswith((".png", ".tif", ".tiff", ".npy")):
        image = np.load(path) if path.lower().endswith(".npy") else _read_plain(path)
        image = np.asarray(image, np.float32)
        if image.ndim != 2:
            raise ValueError(f"{path}: expected a single-channel (H, W) image, got shape {image.shape}")
        if camera is None:
            raise ValueError(f"{path} carries no geometry: pass camera= (and pose= if known)")
        if camera.shape != image.shape:
            raise ValueError(
                f"camera is {camera.shape[0]} x {camera.shape[1]} pixels, the image {image.shape[0]} x {image.shape[1]}"
            )
        return XRay(image, camera, None if pose is None else np.asarray(pose, np.float32), {})
    pydicom = import_optional("pydicom", "dicom", "reading DICOM X-ray images")
    try:
        ds = pydicom.dcmread(path)
    except pydicom.errors.InvalidDicomError as err:
        raise ValueError(
            f"{path} is not a DICOM file (X-ray images are read from DICOM, PNG, TIFF or NPY): {err}"
        ) from err
    modality = str(ds.get("Modality", ""))
    if modality not in _XRAY_MODALITIES:
        raise ValueError(
            f"{path}: Modality {modality!r} is not a projection X-ray; expected one of {_XRAY_MODALITIES} "
            "(read CT series with fluorojax.load_volume)"
        )
    pixels = np.asarray(ds.pixel_array, np.float64)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        if frame is None or not 0 <= frame < frames:
            raise ValueError(f"{path} holds {frames} frames: pass frame= in [0, {frames}), got {frame!r}")
        pixels = pixels[frame]
    elif frame not in (None, 0):
        raise ValueError(f"{path} holds a single frame, got frame={frame!r}")
    if pixels.ndim != 2:
        raise ValueError(f"{path}: expected a single-channel image, got pixel array shape {pixels.shape}")
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    image = (pixels * slope + intercept)[:, ::-1].astype(np.float32)
    height, width = image.shape
    dicom_camera, dicom_pose, tags = _dicom_geometry(ds, width, height, isocenter)
    tags.update(
        Modality=modality,
        PhotometricInterpretation=str(ds.get("PhotometricInterpretation", "")),
        RescaleSlope=slope,
        RescaleIntercept=intercept,
        frame=frame,
        stored_columns_reversed=True,
    )
    return XRay(
        image,
        camera if camera is not None else dicom_camera,
        np.asarray(pose, np.float32) if pose is not None else dicom_pose,
        tags,
    )


def _orientation_letters(direction):
    """DICOM PatientOrientation letters of a RAS+ direction, dominant axis first."""
    letters = (("R", "L"), ("A", "P"), ("H", "F"))
    order = np.argsort(-np.abs(direction))
    return "".join(letters[i][0 if direction[i] > 0 else 1] for i in order if abs(direction[i]) > 0.25)


def save_xray(
    path: StrPath | BinaryIO,
    image: npt.ArrayLike,
    camera: Camera,
    pose: npt.ArrayLike | None = None,
    isocenter: npt.ArrayLike = (0.0, 0.0, 0.0),
    modality: str = "DX",
) -> str | BinaryIO:
    """Write an X-ray image and its geometry as a DICOM file (Digital X-Ray Image Storage, For
    Presentation) that other tools read: SID, ImagerPixelSpacing, DetectorActiveOrigin, and with
    a pose the positioner angles and DistanceSourceToPatient (``positioner_angles``).

    Args:
      path: output file (.dcm), or an open binary file.
      image: (H, W) float, as seen from the source (the fluorojax convention); stored as 16-bit
        with RescaleSlope / RescaleIntercept (quantisation error at most slope / 2).
      camera: its ``Camera``; pose: optional (4, 4) world_from_camera whose principal ray passes
        through ``isocenter`` (3,) world mm, head up.
      modality: the Modality tag (DX by default; XA or RF for fluoroscopy).

    Returns the path. ``load_xray(path, isocenter=isocenter)`` gives back image, camera and pose.
    """
    pydicom = import_optional("pydicom", "dicom", "writing DICOM X-ray images")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, generate_uid

    image = np.asarray(image, np.float64)
    if image.shape != camera.shape:
        raise ValueError(f"image shape {image.shape} does not match the camera's {camera.shape}")
    if not np.all(np.isfinite(image)):
        raise ValueError("image must be finite to be stored as DICOM")
    if modality not in _XRAY_MODALITIES:
        raise ValueError(f"modality must be one of {_XRAY_MODALITIES}, got {modality!r}")
    lo, hi = float(image.min()), float(image.max())
    slope = (hi - lo) / 65535.0 if hi > lo else 1.0
    stored = np.round((image[:, ::-1] - lo) / slope).astype(np.uint16)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    now = datetime.datetime.now(datetime.timezone.utc)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Modality, ds.PresentationIntentType, ds.ImageType = modality, "FOR PRESENTATION", ["DERIVED", "SECONDARY"]
    ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.Manufacturer, ds.SeriesDescription = "fluorojax", "fluorojax DRR"
    ds.PatientName, ds.PatientID = "", ""
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.Rows, ds.Columns = camera.height, camera.width
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = f"{slope:.10g}", f"{lo:.10g}", "US"
    ds.PixelData = stored.tobytes()
    col_spacing, row_spacing = (float(v) for v in np.asarray(camera.pixel_size))
    u0, v0 = (float(v) for v in np.asarray(camera.principal_point))
    ds.DistanceSourceToDetector = f"{float(camera.sdd):.10g}"
    ds.ImagerPixelSpacing = [f"{row_spacing:.10g}", f"{col_spacing:.10g}"]
    ds.DetectorActiveOrigin = [f"{-v0 * row_spacing:.10g}", f"{(u0 - camera.width) * col_spacing:.10g}"]
    if pose is not None:
        primary, secondary, distance = positioner_angles(pose, isocenter)
        ds.PositionerPrimaryAngle = f"{primary:.10g}"
        ds.PositionerSecondaryAngle = f"{secondary:.10g}"
        ds.DistanceSourceToPatient = f"{distance:.10g}"
        ds.EstimatedRadiographicMagnificationFactor = f"{float(camera.sdd) / distance:.10g}"
        ds.PixelSpacing = [
            f"{row_spacing * distance / float(camera.sdd):.10g}",
            f"{col_spacing * distance / float(camera.sdd):.10g}",
        ]
        axes = np.asarray(pose, np.float64)[:3, :2]
        ds.PatientOrientation = [_orientation_letters(-axes[:, 0]), _orientation_letters(axes[:, 1])]
    if isinstance(path, (str, os.PathLike)):
        path = os.fspath(path)  # an open binary file is written as it is
    ds.save_as(path, enforce_file_format=True)
    return path
