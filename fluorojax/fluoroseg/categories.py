"""The FluoroSeg category table: ids, names, supercategories and the 57-class reduction.

Loaded from ``fluorojax/data/fluoroseg_categories.csv`` (id, name, supercategory, reduced_index,
reduced_name). Base ids: 1-117 TotalSegmentator v2 classes, 301-311 appendicular bones, 1000
``tool``. Every anatomical class (supercategory ``totalsegmentator`` or ``totalsegmentator_bone``)
also has two cut-off categories, ``<name>_cutoff_I`` and ``<name>_cutoff_S`` (the structure is
cut by the CT's inferior / superior end), numbered as FluoroSeg numbers them: with the base rows
in table order at positions ``p = 0 .. n_base - 1``, ``<name>_cutoff_I`` has id ``10000 + p`` and
``<name>_cutoff_S`` has id ``10000 + n_base + p``; their supercategory is
``<supercategory>_cutoff_<I|S>``. Cut-off categories and classes without a reduced index (kidney
cysts, iliac vessels) have no reduced class: the 57-class reduction drops them, as FluoroSeg's
training loader does.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Mapping
from importlib import resources

CUTOFF_ID_OFFSET = 10000
_ANATOMICAL_SUPERCATEGORIES = ("totalsegmentator", "totalsegmentator_bone")
_CUTOFF_ENDS = ("I", "S")


@dataclasses.dataclass(frozen=True)
class Category:
    """One FluoroSeg category.

    Attributes:
      id: FluoroSeg category id.
      name: FluoroSeg name (TotalSegmentator name, ``tool``, or ``<base name>_cutoff_<I|S>``).
      supercategory: COCO supercategory.
      reduced_index: index into the 57 reduced classes, or None when the reduction drops it.
      reduced_name: name of that reduced class, or None.
      base_id: id of the uncut structure (equal to ``id`` for base categories).
      cutoff: None, or ``"I"`` / ``"S"`` when the structure is cut off by the CT's inferior /
        superior end.
    """

    id: int
    name: str
    supercategory: str
    reduced_index: int | None
    reduced_name: str | None
    base_id: int
    cutoff: str | None = None

    def coco(self) -> dict:
        """The COCO ``categories`` entry: ``{"id", "name", "supercategory"}``."""
        return {"id": self.id, "name": self.name, "supercategory": self.supercategory}


def _load_base_rows() -> tuple[Category, ...]:
    text = resources.files("fluorojax").joinpath("data/fluoroseg_categories.csv").read_text("utf-8")
    rows = []
    for line, row in enumerate(csv.DictReader(text.splitlines()), start=2):
        reduced = row["reduced_index"].strip()
        if bool(reduced) != bool(row["reduced_name"].strip()):
            raise ValueError(
                f"fluoroseg_categories.csv line {line}: reduced_index and reduced_name must be both set or both empty, got {row!r}"
            )
        cid = int(row["id"])
        rows.append(
            Category(
                id=cid,
                name=row["name"].strip(),
                supercategory=row["supercategory"].strip(),
                reduced_index=int(reduced) if reduced else None,
                reduced_name=row["reduced_name"].strip() or None,
                base_id=cid,
            )
        )
    return tuple(rows)


def _build_table() -> tuple[tuple[Category, ...], tuple[str, ...]]:
    base = _load_base_rows()
    n_base = len(base)
    cutoffs = []
    for k, end in enumerate(_CUTOFF_ENDS):
        for position, cat in enumerate(base):
            if cat.supercategory in _ANATOMICAL_SUPERCATEGORIES:
                cutoffs.append(
                    Category(
                        id=CUTOFF_ID_OFFSET + k * n_base + position,
                        name=f"{cat.name}_cutoff_{end}",
                        supercategory=f"{cat.supercategory}_cutoff_{end}",
                        reduced_index=None,
                        reduced_name=None,
                        base_id=cat.id,
                        cutoff=end,
                    )
                )
    table = base + tuple(cutoffs)
    if len({c.id for c in table}) != len(table) or len({c.name for c in table}) != len(table):
        raise ValueError("fluoroseg_categories.csv: category ids and names must be unique")
    reduced: dict[int, str] = {}
    for cat in base:
        if cat.reduced_index is None or cat.reduced_name is None:  # both set or both None (_load_base_rows)
            continue
        if reduced.setdefault(cat.reduced_index, cat.reduced_name) != cat.reduced_name:
            raise ValueError(
                f"fluoroseg_categories.csv: reduced index {cat.reduced_index} has two names, {reduced[cat.reduced_index]!r} and {cat.reduced_name!r}"
            )
    if sorted(reduced) != list(range(len(reduced))):
        raise ValueError(
            f"fluoroseg_categories.csv: reduced indices must be 0..{len(reduced) - 1}, got {sorted(reduced)}"
        )
    return table, tuple(reduced[i] for i in range(len(reduced)))


CATEGORIES, REDUCED_NAMES = _build_table()
"""CATEGORIES: every FluoroSeg category (base rows in table order, then cut-off ones by id);
REDUCED_NAMES: the names of the 57 reduced classes, by reduced index."""
NUM_REDUCED_CLASSES = len(REDUCED_NAMES)

_BY_ID: Mapping[int, Category] = {c.id: c for c in CATEGORIES}
_BY_NAME: Mapping[str, Category] = {c.name: c for c in CATEGORIES}


def get_category(key: int | str) -> Category:
    """The category with FluoroSeg id ``key`` (int) or name ``key`` (str); ValueError if unknown."""
    found = None if isinstance(key, bool) else _BY_NAME.get(key) if isinstance(key, str) else _BY_ID.get(key)
    if found is None:
        raise ValueError(
            f"unknown FluoroSeg category {key!r}: expected an id or name from fluoroseg_categories.csv (ids 1-117, 301-311, 1000, cut-off ids from {CUTOFF_ID_OFFSET})"
        )
    return found


def is_known_category(category_id: int) -> bool:
    """Whether ``category_id`` is a FluoroSeg category id."""
    return category_id in _BY_ID


def cutoff_category_id(key: int | str, end: str) -> int:
    """Id of the cut-off version of anatomical category ``key`` (id or name); ``end`` "I" or "S"."""
    if end not in _CUTOFF_ENDS:
        raise ValueError(f"cut-off end must be 'I' (inferior) or 'S' (superior), got {end!r}")
    base = get_category(key)
    if base.cutoff is not None or base.supercategory not in _ANATOMICAL_SUPERCATEGORIES:
        raise ValueError(f"category {key!r} ({base.name}) has no cut-off version: only anatomical base categories do")
    return _BY_NAME[f"{base.name}_cutoff_{end}"].id


def reduced_index(category_id: int) -> int | None:
    """Reduced class index (0..56) of a FluoroSeg id; None when the reduction drops it (cut-off
    categories, kidney cysts, iliac vessels, ids outside the table)."""
    category = _BY_ID.get(category_id)
    return None if category is None else category.reduced_index


def reduced_members(index: int) -> tuple[int, ...]:
    """FluoroSeg ids merged into reduced class ``index`` (0..56)."""
    if isinstance(index, bool) or not 0 <= index < NUM_REDUCED_CLASSES:
        raise ValueError(f"reduced class index must be in [0, {NUM_REDUCED_CLASSES}), got {index!r}")
    return tuple(c.id for c in CATEGORIES if c.reduced_index == index)


def coco_categories() -> list[dict]:
    """The COCO ``categories`` list of a case file: every category, base and cut-off."""
    return [c.coco() for c in CATEGORIES]
