"""Read FluoroSeg-format datasets into numpy: map-style samples and fixed-shape batches.

Follows the FluoroSeg format document: case files listed in ``train.txt`` / ``val.txt`` (or the
sorted ``ROOT/*.json`` split 90 % / 10 %), cases without an image folder skipped, per-image
annotation arrays streamed with ijson, BINARY / TRAVEL / HITS / polygon segmentations, the
57-class reduction and the 0.1 % / 90 % area filter (applied to each annotation at full
resolution, before merging, as the FluoroSeg training loader does).

A sample is a dict of numpy arrays (C objects: the 57 reduced classes, or the N annotations of
the image with ``categories="full"``):

  * ``image``: (H, W) float32 raw detector intensity (before the negative log; the first
    ``fluorojax.augment`` step applies it);
  * ``masks``: (C, H, W) bool; ``labels``: (C,) int32, the reduced class index or the FluoroSeg
    category id; ``valid``: (C,) bool, whether the class / object has a mask;
  * ``travel``: (C, H, W) float32 mm through the object (summed over merged objects; from TRAVEL
    or HITS segmentations, zero otherwise); ``has_travel``: (C,) bool;
  * ``bboxes``: (C, 4) float32 [x, y, w, h] in output pixels (union box when merged);
  * ``descriptions``: C lists of str (stored on the annotation, else ``text.describe``; in
    reduced mode ``text.describe_reduced`` for present classes);
  * ``original_size``: (2,) int64 (h, w); ``camera``: the image entry's camera dict;
    ``image_info``: the whole image entry; ``file_name``: the TIFF path.

Images are resized bilinearly and masks / travel by nearest neighbour, both sampling at pixel
centres. Missing or corrupt files, annotations whose RLE size disagrees with the image, and
malformed segmentations raise ValueError / FileNotFoundError naming the file; a ``file_name``
(or split entry) that is absolute or contains ``..`` is refused.
"""

from __future__ import annotations

import os
import queue
import re
import threading
import warnings
from pathlib import Path
from typing import Any, Iterator

import ijson
import numpy as np
import tifffile

from fluorojax.fluoroseg import rle
from fluorojax.fluoroseg.categories import NUM_REDUCED_CLASSES, is_known_category, reduced_index
from fluorojax.fluoroseg.text import describe, describe_reduced

_SPLITS = ("train", "val")
_CATEGORY_MODES = ("reduced", "full")


class UnsafePathError(ValueError):
    """A file name in the dataset that is absolute or contains ``..`` (always refused)."""


def _safe_relative(name, where: str) -> str:
    """``name`` if it is a relative path that stays inside its folder; UnsafePathError otherwise."""
    if not isinstance(name, str) or not name or os.path.isabs(name) or name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        raise UnsafePathError(f"{where}: refusing {name!r}: expected a relative path inside the dataset root")
    if ".." in re.split(r"[\\/]", name):
        raise UnsafePathError(f"{where}: refusing {name!r}: '..' would leave the dataset root")
    return name


def _source_index(n_out: int, n_in: int) -> np.ndarray:
    """Nearest source index of each output pixel centre."""
    return np.minimum(((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(np.int64), n_in - 1)


def _resize_nearest(array: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(..., h, w) -> (..., H, W) nearest neighbour at pixel centres."""
    h, w = array.shape[-2:]
    if (h, w) == size:
        return array
    return array[..., _source_index(size[0], h)[:, None], _source_index(size[1], w)[None, :]]


def _linear_weights(n_out: int, n_in: int):
    x = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0.0, n_in - 1)
    lo = np.floor(x).astype(np.int64)
    hi = np.minimum(lo + 1, n_in - 1)
    return lo, hi, (x - lo).astype(np.float32)


def _resize_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) -> (H, W) bilinear at pixel centres (edge pixels clamp), float32."""
    if image.shape == size:
        return image
    r0, r1, fr = _linear_weights(size[0], image.shape[0])
    c0, c1, fc = _linear_weights(size[1], image.shape[1])
    rows = image[r0] * (1 - fr)[:, None] + image[r1] * fr[:, None]
    return (rows[:, c0] * (1 - fc) + rows[:, c1] * fc).astype(np.float32)


class FluoroSegDataset:
    """Map-style FluoroSeg reader (``len``, ``dataset[i]``) with a prefetching batch iterator.

    Args:
      root: dataset folder.
      split: "train" or "val".
      image_size: (H, W) output size, or None for each image's full resolution.
      categories: "reduced" (57 merged classes) or "full" (every annotation, FluoroSeg ids).
      min_area, max_area: keep annotations covering at least / at most this fraction of the image
        (FluoroSeg: 0.001 and 0.9); None disables a bound.
      min_grad_ncc: drop images whose ``grad_ncc`` is below this (images without it are kept).
      train_fraction: share of the sorted ``ROOT/*.json`` case files used for training when
        neither ``train.txt`` nor ``val.txt`` exists; with only one of them, the other split is
        empty.
      on_error: "raise", or "skip": unreadable case files are left out at construction and bad
        samples are left out of ``batches``, each with a warning counting the skips so far
        (``num_skipped``). ``dataset[i]`` always raises; refused paths always raise.
    """

    def __init__(
        self,
        root,
        split: str = "train",
        image_size: tuple[int, int] | None = (224, 224),
        categories: str = "reduced",
        *,
        min_area: float | None = 0.001,
        max_area: float | None = 0.9,
        min_grad_ncc: float | None = None,
        train_fraction: float = 0.9,
        on_error: str = "raise",
    ):
        if split not in _SPLITS:
            raise ValueError(f"split must be one of {_SPLITS}, got {split!r}")
        if categories not in _CATEGORY_MODES:
            raise ValueError(f"categories must be one of {_CATEGORY_MODES}, got {categories!r}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if image_size is not None:
            if len(image_size) != 2 or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in image_size):
                raise ValueError(f"image_size must be None or (H, W) positive ints, got {image_size!r}")
            image_size = (int(image_size[0]), int(image_size[1]))
        if not 0.0 < train_fraction < 1.0:
            raise ValueError(f"train_fraction must be in (0, 1), got {train_fraction!r}")
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"FluoroSeg dataset root {self.root} is not a directory")
        self.split = split
        self.image_size = image_size
        self.categories = categories
        self.min_area, self.max_area, self.min_grad_ncc = min_area, max_area, min_grad_ncc
        self.on_error = on_error
        self.num_skipped = 0
        self._entries: list[tuple[Path, dict]] = []
        for case_path in self._case_files(train_fraction):
            try:
                self._entries += self._read_case(case_path)
            except (OSError, ValueError) as err:
                if on_error == "raise" or isinstance(err, UnsafePathError):
                    raise
                self._skip(case_path, err)

    # -- index -----------------------------------------------------------------------------

    def _case_files(self, train_fraction: float) -> list[Path]:
        split_file = self.root / f"{self.split}.txt"
        other = self.root / f"{_SPLITS[1 - _SPLITS.index(self.split)]}.txt"
        if not split_file.exists() and not other.exists():
            cases = sorted(p for p in self.root.glob("*.json") if p.is_file())
            cut = int(len(cases) * train_fraction)
            return cases[:cut] if self.split == "train" else cases[cut:]
        # With one split file present, the other split is what its own file lists (maybe nothing).
        names = self._split_names(split_file)
        shared = sorted(set(names) & set(self._split_names(other)))
        if shared:
            raise ValueError(f"{split_file}: cases {shared} are also listed in {other}")
        return [self.root / _safe_relative(name, str(split_file)) for name in names]

    @staticmethod
    def _split_names(path: Path) -> list[str]:
        if not path.exists():
            return []
        return [line.strip() for line in path.read_text("utf-8").splitlines() if line.strip()]

    def _read_case(self, case_path: Path) -> list[tuple[Path, dict]]:
        image_dir = case_path.with_suffix("")
        if not case_path.is_file():
            raise FileNotFoundError(f"case file {case_path} listed for split {self.split!r} does not exist")
        if not image_dir.is_dir():
            return []
        entries = []
        with open(case_path, "rb") as f:
            try:
                for i, image in enumerate(ijson.items(f, "images.item", use_float=True)):
                    if not isinstance(image, dict) or not {"file_name", "height", "width"} <= set(image):
                        raise ValueError(f"{case_path}: image entry {i} lacks file_name, height or width")
                    if not all(isinstance(image[k], int) and image[k] > 0 for k in ("height", "width")):
                        raise ValueError(f"{case_path}: image entry {i} has height {image['height']!r}, width {image['width']!r}; expected positive ints")
                    name = _safe_relative(image["file_name"], f"{case_path} image entry {i}")
                    if self.min_grad_ncc is not None and image.get("grad_ncc", np.inf) < self.min_grad_ncc:
                        continue
                    entries.append((image_dir / name, image))
            except ijson.JSONError as err:
                raise ValueError(f"{case_path}: corrupt case file ({err})") from err
        return entries

    def _skip(self, path, err) -> None:
        self.num_skipped += 1
        reason = " ".join(str(err).split())
        if str(path) not in reason:
            reason = f"{path}: {reason}"
        warnings.warn(f"skipped {reason} ({self.num_skipped} skipped so far)", RuntimeWarning, stacklevel=3)

    def __len__(self) -> int:
        return len(self._entries)

    # -- one sample ------------------------------------------------------------------------

    def _read_image(self, path: Path, height: int, width: int) -> np.ndarray:
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
            raise ValueError(f"{path}: expected a single-channel float32 image, got dtype {image.dtype} shape {image.shape}")
        if image.shape != (height, width):
            raise ValueError(f"{path}: image is {image.shape[0]} x {image.shape[1]} but its case entry says {height} x {width}")
        if not np.all(np.isfinite(image)):
            raise ValueError(f"{path}: image holds non-finite intensities")
        return image

    def _read_annotations(self, path: Path, height: int, width: int) -> list[dict]:
        """Decoded, filtered annotations: dicts with category_id, mask, travel, bbox, descriptions."""
        low = -np.inf if self.min_area is None else self.min_area * height * width
        high = np.inf if self.max_area is None else self.max_area * height * width
        objects = []
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            raise FileNotFoundError(f"annotation file {path} does not exist") from None
        with f:
            try:
                for i, annotation in enumerate(ijson.items(f, "item", use_float=True)):
                    if not isinstance(annotation, dict) or not {"category_id", "segmentation"} <= set(annotation):
                        raise ValueError(f"annotation {i} lacks category_id or segmentation")
                    category_id = annotation["category_id"]
                    if isinstance(category_id, bool) or not isinstance(category_id, int):
                        raise ValueError(f"annotation {i} has category_id {category_id!r}, expected an int")
                    if self.categories == "reduced" and reduced_index(category_id) is None:
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
                    objects.append({"category_id": category_id, "mask": mask, "travel": travel, "descriptions": list(descriptions)})
            except ijson.JSONError as err:
                raise ValueError(f"{path}: corrupt annotation file ({err})") from err
            except ValueError as err:
                raise ValueError(f"{path}: {err}") from err
        return objects

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Sample ``index`` (negative indices count from the end); see the module docstring."""
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"dataset index must be an int, got {type(index).__name__}")
        if not -len(self) <= index < len(self):
            raise IndexError(f"dataset index {index} out of range for {len(self)} images")
        path, info = self._entries[index]
        height, width = info["height"], info["width"]
        image = self._read_image(path, height, width)
        objects = self._read_annotations(path.with_suffix(".json"), height, width)
        size = (height, width) if self.image_size is None else self.image_size
        sy, sx = size[0] / height, size[1] / width
        if self.categories == "reduced":
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
            masks[slot] |= _resize_nearest(o["mask"], size)
            if o["travel"] is not None:
                travel[slot] += _resize_nearest(o["travel"], size)
                has_travel[slot] = True
            rows, cols = np.flatnonzero(o["mask"].any(axis=1)), np.flatnonzero(o["mask"].any(axis=0))
            if rows.size:
                box = np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], float)
                boxes[slot] = np.concatenate([np.fmin(boxes[slot, :2], box[:2]), np.fmax(boxes[slot, 2:], box[2:])])
        valid = ~np.isnan(boxes[:, 0])
        boxes = np.nan_to_num(boxes)
        bboxes = np.stack([boxes[:, 0] * sx, boxes[:, 1] * sy, (boxes[:, 2] - boxes[:, 0]) * sx, (boxes[:, 3] - boxes[:, 1]) * sy], axis=1).astype(np.float32)
        if self.categories == "reduced":
            descriptions = [list(describe_reduced(c)) if valid[c] else [] for c in range(n)]
        else:
            descriptions = [o["descriptions"] for o in objects]
        return {
            "image": _resize_bilinear(image, size),
            "masks": masks,
            "labels": labels,
            "valid": valid,
            "travel": travel,
            "has_travel": has_travel,
            "bboxes": bboxes,
            "descriptions": descriptions,
            "original_size": np.array([height, width], np.int64),
            "camera": info.get("camera"),
            "image_info": info,
            "file_name": str(path),
        }

    # -- batches ---------------------------------------------------------------------------

    def _pad(self, sample: dict, max_objects: int) -> dict:
        n = len(sample["labels"])
        if n > max_objects:
            raise ValueError(f"{sample['file_name']}: {n} objects exceed max_objects={max_objects}")
        pad = max_objects - n
        out = dict(sample)
        for key in ("masks", "labels", "valid", "travel", "has_travel", "bboxes"):
            out[key] = np.pad(sample[key], [(0, pad)] + [(0, 0)] * (sample[key].ndim - 1))
        out["descriptions"] = sample["descriptions"] + [[] for _ in range(pad)]
        return out

    def _batch_stream(self, order, batch_size, drop_last, max_objects, stop: threading.Event):
        samples = []
        for index in order:
            if stop.is_set():
                return
            try:
                sample = self[int(index)]
                if self.categories == "full":
                    sample = self._pad(sample, max_objects)
                if samples and sample["image"].shape != samples[0]["image"].shape:
                    raise ValueError(f"{sample['file_name']}: image size {sample['image'].shape} differs from the batch's {samples[0]['image'].shape}; pass image_size to batch images of different sizes")
            except (OSError, ValueError) as err:
                if self.on_error == "raise":
                    raise
                self._skip(self._entries[int(index)][0], err)
                continue
            samples.append(sample)
            if len(samples) == batch_size:
                yield _collate(samples)
                samples = []
        if samples and not drop_last:
            yield _collate(samples)

    def batches(
        self,
        batch_size: int,
        *,
        shuffle: bool = False,
        seed: int = 0,
        drop_last: bool = True,
        max_objects: int | None = None,
        prefetch: int = 2,
    ) -> Iterator[dict[str, Any]]:
        """Iterate over fixed-shape batches, loading ahead in a background thread.

        Args:
          batch_size: samples per batch.
          shuffle, seed: visit samples in ``np.random.default_rng(seed).permutation`` order.
          drop_last: leave out a last, smaller batch (so every batch has the same shape).
          max_objects: with ``categories="full"`` (required there), pad every sample to this many
            objects (``valid`` False, label 0); a sample with more raises (or is skipped).
          prefetch: batches loaded ahead by the thread; 0 loads in the caller's thread.
        Yields:
          dicts with the sample keys stacked: ``image`` (B, H, W), ``masks`` (B, C, H, W),
          ``labels``, ``valid``, ``has_travel`` (B, C), ``travel`` (B, C, H, W), ``bboxes``
          (B, C, 4), ``original_size`` (B, 2); ``descriptions``, ``camera``, ``image_info``,
          ``file_name`` as lists of length B.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if self.categories == "full" and (not isinstance(max_objects, int) or max_objects < 1):
            raise ValueError(f"categories='full' needs max_objects (a positive int) to pad objects to a fixed count, got {max_objects!r}")
        if not isinstance(prefetch, int) or prefetch < 0:
            raise ValueError(f"prefetch must be a non-negative int, got {prefetch!r}")
        order = np.random.default_rng(seed).permutation(len(self)) if shuffle else np.arange(len(self))
        stop = threading.Event()
        if prefetch == 0:
            yield from self._batch_stream(order, batch_size, drop_last, max_objects, stop)
            return
        slots: queue.Queue = queue.Queue(maxsize=prefetch)
        done = object()

        def put(item) -> None:
            while not stop.is_set():
                try:
                    slots.put(item, timeout=0.1)
                    return
                except queue.Full:
                    continue

        def produce() -> None:
            try:
                for batch in self._batch_stream(order, batch_size, drop_last, max_objects, stop):
                    put(batch)
            except BaseException as err:  # handed to the consumer, which re-raises it
                put(err)
            else:
                put(done)

        thread = threading.Thread(target=produce, name="FluoroSegDataset.batches", daemon=True)
        thread.start()
        try:
            while True:
                item = slots.get()
                if item is done:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            thread.join()


def _collate(samples: list[dict]) -> dict[str, Any]:
    batch = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        batch[key] = np.stack(values) if isinstance(values[0], np.ndarray) else values
    return batch
