"""Write datasets in the FluoroSeg layout, atomically and resumably.

Layout written under ``root`` (see the FluoroSeg format document)::

  CASE.json                 COCO case file: info, licenses, categories, volumes, images, annotations
  CASE/0000000000.tiff      single-page float32 raw detector intensity (before the negative log)
  CASE/0000000000.json      top-level JSON array of that image's annotations
  train.txt, val.txt        case files of each split, one a line

Each image's case-file entry (``id``, ``file_name``, ``height``, ``width``, ``camera`` =
``{"focal_length", "pixel_size"}``, plus fluorojax's ``intrinsics``, ``pose``,
``projection_matrix``, ``view``, ``spectrum``, ``seed`` and any extra keys) is also stored as JSON
in the TIFF's ImageDescription tag, so the case file is rebuilt from the image folder by
:meth:`FluoroSegWriter.write_case` and an interrupted run loses nothing it has finished.

Every file is written to a hidden temporary file in its final folder and moved into place with
``os.replace``, the TIFF before the annotation JSON: an image is complete when both of its files
exist, a killed run leaves no half-written file under a final name, and a writer opened on a
partial dataset skips the complete images and removes leftover temporary files. Nothing
written depends on time, host or process: the same inputs give the same bytes (with the same
numpy, pycocotools and tifffile versions). (The guarantee
is against killed processes; the writer does not fsync, so a power loss may lose recent files.)
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import tifffile

from fluorojax import _validate
from fluorojax._files import StrPath, write_atomic
from fluorojax.fluoroseg import rle
from fluorojax.fluoroseg.categories import coco_categories, get_category
from fluorojax.fluoroseg.masks import mask_box
from fluorojax.fluoroseg.text import describe

if TYPE_CHECKING:
    from jax.typing import ArrayLike

    from fluorojax.camera import Camera

_INDEX_DIGITS = 10
_IMAGE_NAME = re.compile(r"(\d{10})\.(json|tiff)")
_TEMP_NAME = re.compile(r"\..+\.tmp-\d+")
_CASE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_ANNOTATION_KEYS = ("category_id", "bbox", "area", "segmentation", "descriptions")
_IMAGE_KEYS = (
    "id",
    "file_name",
    "height",
    "width",
    "camera",
    "intrinsics",
    "pose",
    "projection_matrix",
    "view",
    "spectrum",
    "seed",
)
_CAMERA_KEYS = {"focal_length", "pixel_size", "intrinsics", "pose", "projection_matrix"}
DEFAULT_INFO = {
    "description": "FluoroSeg-format dataset written by fluorojax",
    "url": "https://github.com/arcadelab/fluorosam",
}


@dataclasses.dataclass(frozen=True)
class Annotation:
    """One object of an image, given by exactly one of ``mask``, ``travel`` or ``hits``.

    Attributes:
      category_id: FluoroSeg category id (see ``categories``).
      mask: (H, W) bool -> a BINARY segmentation.
      travel: (H, W) float path length in mm of each pixel's ray through the object -> TRAVEL
        (the mask is ``travel > 0``; values are stored as float16).
      hits: (K, 2, H, W) float entry / exit depths in mm along each ray, non-finite where a ray
        has no k-th entry -> HITS (layers must nest; stored as float16).
      descriptions: text descriptions; None gives ``text.describe(category_id)``.
      extra: more JSON keys for the annotation (e.g. a tool's kind and material).
    """

    category_id: int
    mask: Any = None
    travel: Any = None
    hits: Any = None
    descriptions: Sequence[str] | None = None
    extra: Mapping[str, Any] | None = None


def _jsonable(value, where: str):
    """Plain JSON types from numpy arrays / scalars, tuples and mappings; TypeError otherwise."""
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist(), where)
    if isinstance(value, np.generic):
        return _jsonable(value.item(), where)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not np.isfinite(value):
            raise ValueError(f"{where} must be finite to be written as JSON, got {value!r}")
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, where) for v in value]
    if isinstance(value, Mapping):
        if not all(isinstance(k, str) for k in value):
            raise TypeError(f"{where} must have string keys, got {list(value)!r}")
        return {k: _jsonable(v, f"{where}[{k!r}]") for k, v in value.items()}
    raise TypeError(f"{where} holds a {type(value).__name__}, which cannot be written as JSON")


def _dumps(value) -> bytes:
    return json.dumps(value, allow_nan=False, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def _remove_temp_files(folder: Path) -> None:
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_file() and _TEMP_NAME.fullmatch(entry.name):
                os.unlink(entry.path)


def _merge_extra(target: dict, extra: Mapping[str, Any] | None, reserved, where: str) -> dict:
    if extra:
        clash = sorted(set(extra) & set(reserved))
        if clash:
            raise ValueError(f"{where} keys {clash} clash with the keys the writer sets: {list(reserved)}")
        target.update(_jsonable(dict(extra), where))
    return target


def encode_annotation(annotation: Annotation, height: int, width: int) -> dict | None:
    """The per-image JSON entry of ``annotation`` on a ``height`` x ``width`` image.

    Returns ``{"category_id", "bbox": [x, y, w, h] (pixels, COCO), "area", "segmentation",
    "descriptions", ...extra}``, or None when the object covers no pixel (it is not written).
    """
    get_category(annotation.category_id)
    given = [name for name in ("mask", "travel", "hits") if getattr(annotation, name) is not None]
    if len(given) != 1:
        raise ValueError(
            f"annotation of category {annotation.category_id} needs exactly one of mask, travel, hits; got {given or 'none'}"
        )
    data = np.asarray(getattr(annotation, given[0]))
    if data.shape[-2:] != (height, width):
        raise ValueError(
            f"annotation {given[0]} of category {annotation.category_id} has shape {data.shape}, expected (..., {height}, {width}) like the image"
        )
    if given == ["mask"]:
        segmentation, mask = rle.encode_binary(data), data
    elif given == ["travel"]:
        segmentation, mask = rle.encode_travel(data), data > 0
    else:
        segmentation, mask = rle.encode_hits(data), np.isfinite(data[0, 0])
    box = mask_box(mask)
    if box is None:
        return None
    bbox = [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])]
    descriptions = describe(annotation.category_id) if annotation.descriptions is None else annotation.descriptions
    if isinstance(descriptions, str) or not all(isinstance(d, str) and d for d in descriptions):
        raise ValueError(f"descriptions must be a sequence of non-empty strings, got {descriptions!r}")
    entry = {
        "category_id": int(annotation.category_id),
        "bbox": bbox,
        "area": int(mask.sum()),
        "segmentation": segmentation,
        "descriptions": list(descriptions),
    }
    return _merge_extra(entry, annotation.extra, _ANNOTATION_KEYS, "annotation extra")


def camera_dict(camera: Camera, pose: ArrayLike) -> dict:
    """The ``camera`` argument of :meth:`FluoroSegWriter.write_image` from a fluorojax Camera.

    Args:
      camera: ``fluorojax.camera.Camera``.
      pose: (4, 4) world_from_camera, world mm.
    Returns:
      ``{"focal_length": sdd mm, "pixel_size": [px, py] mm, "intrinsics": (3, 3),
      "pose": (4, 4), "projection_matrix": (3, 4)}`` as numpy float arrays.
    """
    return {
        "focal_length": float(camera.sdd),
        "pixel_size": np.asarray(camera.pixel_size, np.float64).tolist(),
        "intrinsics": np.asarray(camera.intrinsics),
        "pose": np.asarray(pose),
        "projection_matrix": np.asarray(camera.projection_matrix(pose)),
    }


def _camera_entries(camera: Mapping[str, Any]) -> tuple[dict, dict]:
    unknown = sorted(set(camera) - _CAMERA_KEYS)
    if unknown or "focal_length" not in camera or "pixel_size" not in camera:
        raise ValueError(
            f"camera must have focal_length (mm) and pixel_size (mm), optionally intrinsics, pose, projection_matrix; got keys {sorted(camera)}"
        )
    focal_length = _validate.positive_number("camera focal_length", camera["focal_length"], unit="mm")
    pixel_size = _validate.positive_array("camera pixel_size (mm)", camera["pixel_size"])
    if pixel_size.shape not in ((), (1,), (2,)):
        raise ValueError(f"camera pixel_size must be a positive scalar or (px, py) in mm, got shape {pixel_size.shape}")
    pixel_size = np.broadcast_to(pixel_size, (2,))
    extras = {}
    for key, shape in (("intrinsics", (3, 3)), ("pose", (4, 4)), ("projection_matrix", (3, 4))):
        if key in camera:
            matrix = _validate.real_array(f"camera {key}", camera[key])
            if matrix.shape != shape:
                raise ValueError(f"camera {key} must have shape {shape}, got {matrix.shape}")
            extras[key] = _jsonable(matrix, f"camera {key}")
    return {"focal_length": focal_length, "pixel_size": pixel_size.tolist()}, extras


def _check_case(case: str) -> str:
    if not isinstance(case, str) or not _CASE_NAME.fullmatch(case) or case.endswith(".json"):
        raise ValueError(f"case name must match [A-Za-z0-9][A-Za-z0-9._-]* and not end in .json, got {case!r}")
    return case


def _image_stem(index: int) -> str:
    index = _validate.integer("image index", index, minimum=0, maximum=10**_INDEX_DIGITS - 1)
    return f"{index:0{_INDEX_DIGITS}d}"


class FluoroSegWriter:
    """Writes FluoroSeg cases under ``root``; resumes a partial dataset.

    Usage::

      writer = FluoroSegWriter(root)
      for index in range(n):
          if not writer.is_complete("case_0001", index):
              writer.write_image("case_0001", index, image, annotations, camera, seed=...)
      writer.write_case("case_0001", volumes=[...])
      writer.write_splits(train=["case_0001"], val=[])

    Args:
      root: dataset folder (created if missing).
      remove_temp_files: delete temporary files left by killed runs in ``root`` at once and in a
        case folder when the case is first used. Pass False when other processes write the same
        cases concurrently.
    """

    def __init__(self, root: StrPath, *, remove_temp_files: bool = True) -> None:
        self.remove_temp_files = _validate.boolean("remove_temp_files", remove_temp_files)
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._complete: dict[str, set[int]] = {}
        if remove_temp_files:
            _remove_temp_files(self.root)

    def _case_dir(self, case: str) -> Path:
        return self.root / _check_case(case)

    def _scan(self, case: str) -> set[int]:
        folder = self._case_dir(case)
        if not folder.is_dir():
            return set()
        if self.remove_temp_files:
            _remove_temp_files(folder)
        found: dict[str, set[str]] = {}
        with os.scandir(folder) as entries:
            for entry in entries:
                match = _IMAGE_NAME.fullmatch(entry.name)
                if match and entry.is_file():
                    found.setdefault(match[1], set()).add(match[2])
        return {int(stem) for stem, exts in found.items() if exts == {"json", "tiff"}}

    def completed(self, case: str) -> frozenset[int]:
        """Indices of the images of ``case`` whose TIFF and annotation JSON both exist (rescans)."""
        self._complete[case] = self._scan(case)
        return frozenset(self._complete[case])

    def is_complete(self, case: str, index: int) -> bool:
        """Whether image ``index`` of ``case`` is already written (scans the folder once)."""
        if case not in self._complete:
            self.completed(case)
        return int(index) in self._complete[case]

    def write_image(
        self,
        case: str,
        index: int,
        image: npt.ArrayLike,
        annotations: Iterable[Annotation],
        camera: Mapping[str, Any],
        *,
        view: Mapping[str, Any] | None = None,
        spectrum: Mapping[str, Any] | None = None,
        seed: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> bool:
        """Write image ``index`` of ``case`` unless it is complete already.

        Args:
          case: case name (files ``CASE.json`` and ``CASE/``).
          index: image index; files ``CASE/%010d.tiff`` and ``.json``.
          image: (H, W) float raw detector intensity (before the negative log), stored float32.
          annotations: objects in the image; objects covering no pixel are left out.
          camera: ``{"focal_length": mm, "pixel_size": mm or (px, py), optional "intrinsics"
            (3, 3), "pose" (4, 4) world_from_camera, "projection_matrix" (3, 4)}`` (see
            :func:`camera_dict`).
          view, spectrum, seed: stored on the image entry when given (JSON-able values).
          extra: more keys for the image entry (e.g. ``grad_ncc``, ``volume_id``).
        Returns:
          True if written, False if skipped because the image was complete.
        """
        stem = _image_stem(index)
        if self.is_complete(case, index):
            return False
        image = np.asarray(image)
        if (
            image.ndim != 2
            or 0 in image.shape
            or not np.issubdtype(image.dtype, np.floating)
            or not np.all(np.isfinite(image))
        ):
            raise ValueError(
                f"image must be a finite (H, W) float array of raw intensities, got dtype {image.dtype} shape {image.shape}"
            )
        height, width = image.shape
        camera_entry, camera_extras = _camera_entries(camera)
        entry = {
            "id": int(index),
            "file_name": f"{stem}.tiff",
            "height": height,
            "width": width,
            "camera": camera_entry,
            **camera_extras,
        }
        for key, value in (("view", view), ("spectrum", spectrum), ("seed", seed)):
            if value is not None:
                entry[key] = _jsonable(value, key)
        _merge_extra(entry, extra, _IMAGE_KEYS, "image extra")
        encoded = [encode_annotation(a, height, width) for a in annotations]
        annotation_bytes = _dumps([a for a in encoded if a is not None])
        tiff = io.BytesIO()
        tifffile.imwrite(
            tiff,
            image.astype("<f4"),
            photometric="minisblack",
            description=_dumps(entry).decode("ascii"),
            metadata=None,
        )

        folder = self._case_dir(case)
        folder.mkdir(exist_ok=True)
        write_atomic(folder / f"{stem}.tiff", tiff.getvalue())
        write_atomic(folder / f"{stem}.json", annotation_bytes)
        self._complete[case].add(int(index))
        return True

    def image_entry(self, case: str, index: int) -> dict:
        """The case-file entry of a written image, read from its TIFF's ImageDescription."""
        path = self._case_dir(case) / f"{_image_stem(index)}.tiff"
        try:
            with tifffile.TiffFile(path) as tif:
                entry = json.loads(tif.pages[0].description)
        except FileNotFoundError:
            raise FileNotFoundError(f"image {index} of case {case!r} is not written: {path} does not exist") from None
        except (ValueError, tifffile.TiffFileError, IndexError) as err:
            raise ValueError(
                f"{path}: not a fluorojax TIFF with a JSON image entry in its ImageDescription ({err})"
            ) from err
        if not isinstance(entry, dict) or entry.get("file_name") != path.name:
            raise ValueError(
                f"{path}: its ImageDescription entry names {entry.get('file_name') if isinstance(entry, dict) else entry!r}, not {path.name}"
            )
        return entry

    def write_case(
        self,
        case: str,
        *,
        volumes: Sequence[Mapping[str, Any]] = (),
        info: Mapping[str, Any] | None = None,
        licenses: Sequence[Mapping[str, Any]] = (),
    ) -> Path:
        """Write ``CASE.json`` listing every complete image of the case, by index.

        Args:
          volumes: COCO-style ``volumes`` entries (e.g. ``{"id", "file_name"}`` of the CT).
          info: the ``info`` object (default ``DEFAULT_INFO``).
          licenses: the ``licenses`` list.
        Returns:
          the path of the case file.
        """
        indices = sorted(self.completed(case))
        if not indices:
            raise ValueError(f"case {case!r} has no complete image under {self._case_dir(case)}")
        document = {
            "info": _jsonable(dict(DEFAULT_INFO if info is None else info), "info"),
            "licenses": _jsonable(list(licenses), "licenses"),
            "categories": coco_categories(),
            "volumes": _jsonable(list(volumes), "volumes"),
            "images": [self.image_entry(case, i) for i in indices],
            "annotations": [],
        }
        path = self.root / f"{case}.json"
        write_atomic(path, _dumps(document))
        return path

    def write_splits(self, train: Sequence[str], val: Sequence[str]) -> tuple[Path, Path]:
        """Write ``train.txt`` and ``val.txt`` naming the case files of each split.

        Every case must have its case file written; no case may be in both splits.
        """
        train, val = [_check_case(c) for c in train], [_check_case(c) for c in val]
        both = sorted(set(train) & set(val))
        if both:
            raise ValueError(f"cases {both} are in both train and val")
        for case in train + val:
            if not (self.root / f"{case}.json").is_file():
                raise FileNotFoundError(
                    f"case file {self.root / f'{case}.json'} does not exist: call write_case({case!r}) first"
                )
        paths = (self.root / "train.txt", self.root / "val.txt")
        for path, cases in zip(paths, (train, val)):
            write_atomic(path, "".join(f"{case}.json\n" for case in cases).encode("ascii"))
        return paths
