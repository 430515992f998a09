"""The FluoroSeg dataset format: categories, RLE codecs, text descriptions, writer and reader."""

from fluorojax.fluoroseg.categories import (
    CATEGORIES,
    CUTOFF_ID_OFFSET,
    NUM_REDUCED_CLASSES,
    REDUCED_NAMES,
    Category,
    coco_categories,
    cutoff_category_id,
    get_category,
    is_known_category,
    reduced_index,
    reduced_members,
)
from fluorojax.fluoroseg.reader import FluoroSegDataset, UnsafePathError
from fluorojax.fluoroseg.text import describe, describe_reduced, describe_tool
from fluorojax.fluoroseg.writer import Annotation, FluoroSegWriter, camera_dict, encode_annotation

__all__ = (
    "CATEGORIES",
    "CUTOFF_ID_OFFSET",
    "NUM_REDUCED_CLASSES",
    "REDUCED_NAMES",
    "Annotation",
    "Category",
    "FluoroSegDataset",
    "FluoroSegWriter",
    "UnsafePathError",
    "camera_dict",
    "coco_categories",
    "cutoff_category_id",
    "describe",
    "describe_reduced",
    "describe_tool",
    "encode_annotation",
    "get_category",
    "is_known_category",
    "reduced_index",
    "reduced_members",
)
