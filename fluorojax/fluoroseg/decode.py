"""Decoding one FluoroSeg image into a sample: its TIFF, its annotation file, the area filter,
the 57-class reduction or the full object list, and resizing to the output size.

A sample is a dict of numpy arrays (C objects: the 57 reduced classes, or the N annotations of
the image with ``categories="full"``); see ``fluorojax.fluoroseg.reader`` for the keys.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ijson
import numpy as np
import tifffile

from fluorojax.fluoroseg import rle
from fluorojax.fluoroseg._json import KINDS, note_kinds
from fluorojax.fluoroseg.categories import (
    NUM_REDUCED_CLASSES,
    is_known_category,
    reduced_index,
)
from fluorojax.fluoroseg.masks import mask_box, resize_bilinear, resize_nearest
from fluorojax.fluoroseg.text import describe, describe_reduced


def read_image(path: Path, height: int, width: int) -> np.ndarray:
    """The (height, width) float32 image of a single-page TIFF; ValueError / FileNotFoundError
    naming the file otherwise."""
    try:
        with tifffile.TiffFile(path) as tif:
            if len(tif.pages) != 1:
                raise ValueError(f"{len(tif.pages)} readable pages, expected one")
            image = tif.pages[0].asarray()
    except FileNotFoundError:
        raise FileNotFoundError(f"image file {path} does not exist") from None
    except (ValueError, OSError, tifffile.TiffFileError) as err:
        raise ValueError(f"{path}: corrupt TIFF ({err})") from err
    if image.ndim != 2 or image.dtype != np.float32:
        raise ValueError(
            f"{path}: expected a single-channel float32 image, got dtype {image.dtype} shape {image.shape}"
        )
    if image.shape != (height, width):
        raise ValueError(
            f"{path}: image is {image.shape[0]} x {image.shape[1]} but its case entry says {height} x {width}"
        )
    if not np.all(np.isfinite(image)):
        raise ValueError(f"{path}: image holds non-finite intensities")
    return image


def read_annotations(
    path: Path, height: int, width: int, categories: str, min_area: float | None, max_area: float | None
) -> list[dict]:
    """Decoded, filtered annotations of an image's annotation file (a JSON list): dicts with
    category_id, mask, travel and descriptions."""
    low = -np.inf if min_area is None else min_area * height * width
    high = np.inf if max_area is None else max_area * height * width
    objects = []
    seen: dict = {}
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        raise FileNotFoundError(f"annotation file {path} does not exist") from None
    with f:
        try:
            for i, annotation in enumerate(
                ijson.items(note_kinds(ijson.parse(f, use_float=True), seen, ("",)), "item")
            ):
                if not isinstance(annotation, dict) or not {"category_id", "segmentation"} <= set(annotation):
                    raise ValueError(f"annotation {i} lacks category_id or segmentation")
                category_id = annotation["category_id"]
                if isinstance(category_id, bool) or not isinstance(category_id, int):
                    raise ValueError(f"annotation {i} has category_id {category_id!r}, expected an int")
                if categories == "reduced" and reduced_index(category_id) is None:
                    continue
                try:
                    _, mask, travel, _ = rle.decode_segmentation(annotation["segmentation"], height, width)
                except (ValueError, TypeError, KeyError) as err:
                    raise ValueError(f"annotation {i} (category {category_id}): {err}") from err
                area = int(mask.sum())
                if not low <= area <= high:
                    continue
                descriptions = annotation.get("descriptions")
                if descriptions is None:
                    descriptions = list(describe(category_id)) if is_known_category(category_id) else []
                objects.append(
                    {"category_id": category_id, "mask": mask, "travel": travel, "descriptions": list(descriptions)}
                )
        except ijson.JSONError as err:
            raise ValueError(f"{path}: corrupt annotation file ({err})") from err
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from err
    if seen.get("") != "start_array":
        raise ValueError(
            f"{path}: an annotation file must be a JSON list of annotations, got {KINDS[seen.get('')]} at the top level"
        )
    return objects


def assemble(image: np.ndarray, objects: list[dict], size: tuple[int, int], categories: str) -> dict[str, Any]:
    """The sample arrays (image, masks, labels, valid, travel, has_travel, bboxes, descriptions)
    of an image and its decoded objects at output ``size`` (H, W)."""
    height, width = image.shape
    sy, sx = size[0] / height, size[1] / width
    if categories == "reduced":
        n = NUM_REDUCED_CLASSES
        slots = [reduced_index(o["category_id"]) for o in objects]
        labels = np.arange(n, dtype=np.int32)
    else:
        n = len(objects)
        slots = list(range(n))
        labels = np.array([o["category_id"] for o in objects], np.int32)
    # Nearest-neighbour resizing is a gather, so resizing before merging gives the same result.
    masks = np.zeros((n,) + size, bool)
    travel = np.zeros((n,) + size, np.float32)
    has_travel = np.zeros(n, bool)
    boxes = np.full((n, 4), np.nan)  # x0, y0, x1, y1 in source pixels, merged by min / max
    for slot, o in zip(slots, objects):
        masks[slot] |= resize_nearest(o["mask"], size)
        if o["travel"] is not None:
            travel[slot] += resize_nearest(o["travel"], size)
            has_travel[slot] = True
        box = mask_box(o["mask"])
        if box is not None:
            corners = np.array(box, float)
            boxes[slot] = np.concatenate([np.fmin(boxes[slot, :2], corners[:2]), np.fmax(boxes[slot, 2:], corners[2:])])
    valid = ~np.isnan(boxes[:, 0])
    boxes = np.nan_to_num(boxes)
    bboxes = np.stack(
        [boxes[:, 0] * sx, boxes[:, 1] * sy, (boxes[:, 2] - boxes[:, 0]) * sx, (boxes[:, 3] - boxes[:, 1]) * sy], axis=1
    ).astype(np.float32)
    if categories == "reduced":
        descriptions = [list(describe_reduced(c)) if valid[c] else [] for c in range(n)]
    else:
        descriptions = [o["descriptions"] for o in objects]
    return {
        "image": resize_bilinear(image, size),
        "masks": masks,
        "labels": labels,
        "valid": valid,
        "travel": travel,
        "has_travel": has_travel,
        "bboxes": bboxes,
        "descriptions": descriptions,
    }
