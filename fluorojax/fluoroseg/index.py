"""The index of a FluoroSeg dataset: which case files a split holds and which images they list.

Case files are those listed in ``train.txt`` / ``val.txt`` or, when neither exists, the sorted
``ROOT/*.json`` split by ``train_fraction``; a case without an image folder is skipped. Every
path the dataset names (split entries, case files, image files and their annotation files) must
stay inside the dataset root: absolute names, ``..`` components and symbolic links that lead
out of the root are refused with ``UnsafePathError``, whatever ``on_error`` says.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import ijson
import numpy as np

from fluorojax.fluoroseg._json import KINDS, note_kinds

SPLITS = ("train", "val")


class UnsafePathError(ValueError):
    """A file name in the dataset that is absolute, contains ``..`` or leads out of the dataset
    root through a symbolic link (always refused)."""


def safe_relative(name: object, where: str) -> str:
    """``name`` if it is a relative path that stays inside its folder; UnsafePathError otherwise."""
    if (
        not isinstance(name, str)
        or not name
        or os.path.isabs(name)
        or name.startswith(("/", "\\"))
        or re.match(r"[A-Za-z]:", name)
    ):
        raise UnsafePathError(f"{where}: refusing {name!r}: expected a relative path inside the dataset root")
    if ".." in re.split(r"[\\/]", name):
        raise UnsafePathError(f"{where}: refusing {name!r}: '..' would leave the dataset root")
    return name


def inside_root(root: Path, path: Path, where: str) -> Path:
    """``path`` if its real path (symbolic links resolved) lies inside ``root``'s real path;
    UnsafePathError naming where it leads otherwise."""
    real, real_root = Path(os.path.realpath(path)), Path(os.path.realpath(root))
    if real != real_root and real_root not in real.parents:
        raise UnsafePathError(
            f"{where}: refusing {str(path)!r}: a symbolic link leads it to {str(real)!r}, "
            f"outside the dataset root {str(real_root)!r}"
        )
    return path


def split_names(path: Path) -> list[str]:
    """The non-blank lines of a split file (none if it does not exist)."""
    if not path.exists():
        return []
    inside_root(path.parent, path, "split file")
    return [line.strip() for line in path.read_text("utf-8").splitlines() if line.strip()]


def case_files(root: Path, split: str, train_fraction: float) -> list[Path]:
    """The case files of ``split`` under ``root`` (see the module docstring)."""
    split_file = root / f"{split}.txt"
    other = root / f"{SPLITS[1 - SPLITS.index(split)]}.txt"
    if not split_file.exists() and not other.exists():
        cases = sorted(p for p in root.glob("*.json") if p.is_file())
        cut = int(len(cases) * train_fraction)
        chosen = cases[:cut] if split == "train" else cases[cut:]
        return [inside_root(root, p, f"case file of split {split!r}") for p in chosen]
    # With one split file present, the other split is what its own file lists (maybe nothing).
    names = split_names(split_file)
    shared = sorted(set(names) & set(split_names(other)))
    if shared:
        raise ValueError(f"{split_file}: cases {shared} are also listed in {other}")
    return [inside_root(root, root / safe_relative(name, str(split_file)), str(split_file)) for name in names]


def read_case(root: Path, case_path: Path, split: str, min_grad_ncc: float | None) -> list[tuple[Path, dict]]:
    """(image path, image entry) of every image a case file lists (none without an image folder),
    dropping those whose ``grad_ncc`` is below ``min_grad_ncc``."""
    image_dir = case_path.with_suffix("")
    if not case_path.is_file():
        raise FileNotFoundError(f"case file {case_path} listed for split {split!r} does not exist")
    if not image_dir.is_dir():
        return []
    inside_root(root, image_dir, f"image folder of {case_path}")
    entries = []
    seen: dict = {}
    with open(case_path, "rb") as f:
        try:
            for i, image in enumerate(
                ijson.items(note_kinds(ijson.parse(f, use_float=True), seen, ("", "images")), "images.item")
            ):
                if not isinstance(image, dict) or not {"file_name", "height", "width"} <= set(image):
                    raise ValueError(f"{case_path}: image entry {i} lacks file_name, height or width")
                if not all(
                    isinstance(image[k], int) and not isinstance(image[k], bool) and image[k] > 0
                    for k in ("height", "width")
                ):
                    raise ValueError(
                        f"{case_path}: image entry {i} has height {image['height']!r}, width {image['width']!r}; expected positive ints"
                    )
                name = safe_relative(image["file_name"], f"{case_path} image entry {i}")
                path = inside_root(root, image_dir / name, f"{case_path} image entry {i}")
                grad_ncc = image.get("grad_ncc", np.inf)
                if isinstance(grad_ncc, bool) or not isinstance(grad_ncc, (int, float)):
                    raise ValueError(f"{case_path}: image entry {i} has grad_ncc {grad_ncc!r}, expected a number")
                if min_grad_ncc is not None and grad_ncc < min_grad_ncc:
                    continue
                entries.append((path, image))
        except ijson.JSONError as err:
            raise ValueError(f"{case_path}: corrupt case file ({err})") from err
    if seen.get("") != "start_map":
        raise ValueError(
            f"{case_path}: a case file must be a JSON object with an 'images' list, got {KINDS[seen.get('')]} at the top level"
        )
    if seen.get("images") != "start_array":
        found = "no 'images' key" if "images" not in seen else f"'images' is {KINDS[seen['images']]}"
        raise ValueError(f"{case_path}: expected 'images' to be a list of image entries, found {found}")
    return entries
