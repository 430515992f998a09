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
malformed segmentations raise ValueError / FileNotFoundError naming the file, and so does a
case file whose ``images`` is missing or not a list, or an annotation file that is not a list;
a ``file_name`` (or split entry) that is absolute, contains ``..`` or leads out of the root
through a symbolic link is refused (``UnsafePathError``).

The work is split by idea: ``index`` (which case files and images a split holds, path safety),
``decode`` (one image and its annotations into a sample), ``masks`` (resizing, boxes) and
``batching`` (fixed-shape batches from a background thread); this module ties them together.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from fluorojax import _validate
from fluorojax._files import StrPath
from fluorojax.fluoroseg import batching
from fluorojax.fluoroseg.decode import assemble, read_annotations, read_image
from fluorojax.fluoroseg.index import (
    SPLITS,
    UnsafePathError,
    case_files,
    inside_root,
    read_case,
)

__all__ = ["FluoroSegDataset", "UnsafePathError"]

_CATEGORY_MODES = ("reduced", "full")


def _area_bound(name: str, value) -> float | None:
    return None if value is None else _validate.number(name, value, low=0.0, high=1.0)


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
        root: StrPath,
        split: str = "train",
        image_size: tuple[int, int] | None = (224, 224),
        categories: str = "reduced",
        *,
        min_area: float | None = 0.001,
        max_area: float | None = 0.9,
        min_grad_ncc: float | None = None,
        train_fraction: float = 0.9,
        on_error: str = "raise",
    ) -> None:
        self.split = _validate.choice("split", split, SPLITS)
        self.categories = _validate.choice("categories", categories, _CATEGORY_MODES)
        self.on_error = _validate.choice("on_error", on_error, ("raise", "skip"))
        self.image_size = None if image_size is None else _validate.size("image_size", image_size)
        self.min_area, self.max_area = _area_bound("min_area", min_area), _area_bound("max_area", max_area)
        self.min_grad_ncc = None if min_grad_ncc is None else _validate.number("min_grad_ncc", min_grad_ncc)
        train_fraction = _validate.number(
            "train_fraction", train_fraction, low=0.0, high=1.0, low_open=True, high_open=True
        )
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"FluoroSeg dataset root {self.root} is not a directory")
        self.num_skipped = 0
        self._entries: list[tuple[Path, dict]] = []
        for case_path in case_files(self.root, self.split, train_fraction):
            try:
                self._entries += read_case(self.root, case_path, self.split, self.min_grad_ncc)
            except (OSError, ValueError) as err:
                if self.on_error == "raise" or isinstance(err, UnsafePathError):
                    raise
                self.skip(case_path, err)

    def skip(self, path: StrPath, err: BaseException) -> None:
        """Count a skipped case file or sample and warn about it."""
        self.num_skipped += 1
        reason = " ".join(str(err).split())
        if str(path) not in reason:
            reason = f"{path}: {reason}"
        warnings.warn(f"skipped {reason} ({self.num_skipped} skipped so far)", RuntimeWarning, stacklevel=3)

    def file_name(self, index: int) -> Path:
        """The TIFF path of sample ``index``."""
        return self._entries[index][0]

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Sample ``index`` (negative indices count from the end); see the module docstring."""
        index = _validate.integer("dataset index", index)
        if not -len(self) <= index < len(self):
            raise IndexError(f"dataset index {index} out of range for {len(self)} images")
        path, info = self._entries[index]
        height, width = info["height"], info["width"]
        # checked again here: a link may have changed since the index was built
        image = read_image(inside_root(self.root, path, "image file"), height, width)
        annotations = inside_root(self.root, path.with_suffix(".json"), f"annotation file of {path}")
        objects = read_annotations(annotations, height, width, self.categories, self.min_area, self.max_area)
        size = (height, width) if self.image_size is None else self.image_size
        sample = assemble(image, objects, size, self.categories)
        sample.update(
            {
                "original_size": np.array([height, width], np.int64),
                "camera": info.get("camera"),
                "image_info": info,
                "file_name": str(path),
            }
        )
        return sample

    batches = batching.batches  # the method: ``dataset.batches(batch_size, ...)``
