"""The FluoroSeg dataset format: categories, RLE codecs, text descriptions, writer and reader."""

from fluorojax.fluoroseg.categories import CATEGORIES
from fluorojax.fluoroseg.categories import CUTOFF_ID_OFFSET
from fluorojax.fluoroseg.categories import NUM_REDUCED_CLASSES
from fluorojax.fluoroseg.categories import REDUCED_NAMES
from fluorojax.fluoroseg.categories import Category
from fluorojax.fluoroseg.categories import coco_categories
from fluorojax.fluoroseg.categories import cutoff_category_id
from fluorojax.fluoroseg.categories import get_category
from fluorojax.fluoroseg.categories import is_known_category
from fluorojax.fluoroseg.categories import reduced_index
from fluorojax.fluoroseg.categories import reduced_members
from fluorojax.fluoroseg.reader import FluoroSegDataset
from fluorojax.fluoroseg.reader import UnsafePathError
from fluorojax.fluoroseg.text import describe
from fluorojax.fluoroseg.text import describe_reduced
from fluorojax.fluoroseg.text import describe_tool
from fluorojax.fluoroseg.writer import Annotation
from fluorojax.fluoroseg.writer import FluoroSegWriter
from fluorojax.fluoroseg.writer import camera_dict
from fluorojax.fluoroseg.writer import encode_annotation

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
