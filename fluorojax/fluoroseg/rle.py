"""FluoroSeg segmentations: COCO RLE masks, TRAVEL and HITS payloads, polygons (pycocotools).

Formats (see the FluoroSeg format document):
  * BINARY ``{"size": [h, w], "counts": str}``: COCO compressed RLE of the mask (column-major).
  * TRAVEL ``{"size", "counts", "travel"}``: ``counts`` is the RLE of ``travel > 0``; ``travel`` is
    base64 of the float16 little-endian values ``travel[mask]`` in NumPy row-major order (mm).
  * HITS ``{"size", "counts": [str, ...], "hits": [str, ...]}``: for layer k (the k-th entry into
    the object along the ray) ``counts[k]`` is the RLE of the pixels that have a k-th entry and
    ``hits[2k]``, ``hits[2k + 1]`` are base64 float16 entry and exit depths (mm along the ray) of
    those pixels; ``counts[0]`` is the object's mask. An object with no pixels has one empty layer
    with empty strings.
  * polygon: a COCO list of ``[x0, y0, x1, y1, ...]`` rings (union of the rings).
Masks are (H, W) bool arrays indexed [row, col].
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from pycocotools import mask as coco_mask

BINARY, TRAVEL, HITS, POLYGON = "BINARY", "TRAVEL", "HITS", "POLYGON"
_KEYS = {
    frozenset(("size", "counts")): BINARY,
    frozenset(("size", "counts", "travel")): TRAVEL,
    frozenset(("size", "counts", "hits")): HITS,
}


def segmentation_kind(segmentation: object) -> str:
    """``"BINARY"``, ``"TRAVEL"``, ``"HITS"`` (by the exact key set) or ``"POLYGON"`` (a list)."""
    if isinstance(segmentation, list):
        return POLYGON
    if isinstance(segmentation, dict) and frozenset(segmentation) in _KEYS:
        return _KEYS[frozenset(segmentation)]
    keys = sorted(segmentation) if isinstance(segmentation, dict) else type(segmentation).__name__
    raise ValueError(
        f"unknown segmentation type with keys {keys}: expected {{size, counts}}, {{size, counts, travel}}, {{size, counts, hits}} or a polygon list"
    )


def _check_mask(mask, name="mask") -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.dtype != bool:
        raise ValueError(f"{name} must be a (H, W) bool array, got dtype {mask.dtype} shape {mask.shape}")
    return mask


def encode_rle(mask: npt.ArrayLike) -> str:
    """COCO compressed RLE string of a (H, W) bool mask (pycocotools, column-major runs)."""
    mask = _check_mask(mask)
    return coco_mask.encode(np.asfortranarray(mask, dtype=np.uint8))["counts"].decode("ascii")


def rle_run_lengths(counts: str) -> np.ndarray:
    """Run lengths (int64, starting with a run of zeros) of a COCO compressed RLE string.

    Used to validate a string before pycocotools decodes it: pycocotools does not check that
    the runs add up to h * w.
    """
    try:
        chars = np.frombuffer(counts.encode("ascii"), np.uint8).astype(np.int64) - 48
    except UnicodeEncodeError as err:
        raise ValueError(f"RLE counts must be an ASCII string, got {counts[:40]!r}") from err
    if chars.size and (chars.min() < 0 or chars.max() > 63 or chars[-1] & 0x20):
        raise ValueError(f"malformed COCO RLE counts string {counts[:40]!r}")
    ends = np.flatnonzero((chars & 0x20) == 0)
    starts = np.concatenate([[0], ends[:-1] + 1])
    group = np.repeat(np.arange(ends.size), ends - starts + 1)
    if ends.size and (ends - starts).max() >= 12:
        raise ValueError(f"malformed COCO RLE counts string {counts[:40]!r}: a run needs more than 60 bits")
    position = np.arange(chars.size) - starts[group]
    values = np.zeros(ends.size, np.int64)
    np.add.at(values, group, (chars & 0x1F) << (5 * position))
    negative = (chars[ends] & 0x10) != 0
    values[negative] -= np.int64(1) << (5 * (ends - starts + 1))[negative]
    runs = values.copy()
    # Runs 3, 5, 7, ... are stored relative to the run two before; likewise 4, 6, 8, ... from 2.
    runs[1::2] = np.cumsum(values[1::2])
    runs[2::2] = np.cumsum(values[2::2])
    return runs


def decode_rle(counts: str, size: Sequence[int]) -> np.ndarray:
    """(h, w) bool mask of a COCO compressed RLE string; ValueError if the runs do not cover it."""
    h, w = _check_size(size)
    if not isinstance(counts, str):
        raise ValueError(f"RLE counts must be a COCO compressed string, got {type(counts).__name__}")
    runs = rle_run_lengths(counts)
    if (runs.size and runs.min() < 0) or runs.sum() != h * w:
        raise ValueError(
            f"RLE runs cover {int(runs.sum())} pixels (min run {int(runs.min()) if runs.size else 0}), but its size {h} x {w} has {h * w}"
        )
    return coco_mask.decode({"size": [h, w], "counts": counts.encode("ascii")}).astype(bool)


def _check_size(size) -> tuple[int, int]:
    if not (
        isinstance(size, (list, tuple))
        and len(size) == 2
        and all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in size)
    ):
        raise ValueError(f"segmentation size must be [height, width] positive ints, got {size!r}")
    return int(size[0]), int(size[1])


def encode_values(values: npt.ArrayLike) -> str:
    """base64 of ``values`` cast to little-endian float16 (FluoroSeg's travel / hits payload)."""
    return base64.b64encode(np.asarray(values).astype("<f2").tobytes()).decode("ascii")


def decode_values(payload: str, count: int) -> np.ndarray:
    """(count,) float32 from a base64 float16 payload; ValueError if it holds another count."""
    try:
        raw = base64.b64decode(payload.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, AttributeError) as err:
        raise ValueError(f"float16 payload is not valid base64: {str(payload)[:40]!r}") from err
    if len(raw) != 2 * count:
        raise ValueError(f"float16 payload holds {len(raw) / 2:g} values, but its mask has {count} pixels")
    return np.frombuffer(raw, "<f2").astype(np.float32)


def encode_binary(mask: npt.ArrayLike) -> dict:
    """BINARY segmentation of a (H, W) bool mask."""
    mask = _check_mask(mask)
    return {"size": list(mask.shape), "counts": encode_rle(mask)}


def encode_travel(travel: npt.ArrayLike) -> dict:
    """TRAVEL segmentation of (H, W) path lengths in mm; the mask is ``travel > 0``."""
    travel = np.asarray(travel)
    if travel.ndim != 2 or not np.issubdtype(travel.dtype, np.floating) or not np.all(np.isfinite(travel)):
        raise ValueError(
            f"travel must be a finite (H, W) float array in mm, got dtype {travel.dtype} shape {travel.shape}"
        )
    mask = travel > 0
    return {"size": list(mask.shape), "counts": encode_rle(mask), "travel": encode_values(travel[mask])}


def encode_hits(hits: npt.ArrayLike) -> dict:
    """HITS segmentation of (K, 2, H, W) entry / exit depths in mm along each ray.

    ``hits[k, 0]`` and ``hits[k, 1]`` are the k-th entry and exit depths; a non-finite value
    means the ray has no k-th entry. Layers must nest (a pixel with a k-th entry has every earlier
    one), so layer 0 is the object's mask. Trailing empty layers are not written.
    """
    hits = np.asarray(hits)
    if hits.ndim != 4 or hits.shape[1] != 2 or hits.shape[0] < 1 or not np.issubdtype(hits.dtype, np.floating):
        raise ValueError(
            f"hits must be a (K, 2, H, W) float array of entry / exit depths, got dtype {hits.dtype} shape {hits.shape}"
        )
    layers = np.isfinite(hits)
    if np.any(layers[:, 0] != layers[:, 1]):
        raise ValueError("hits entry and exit depths must be finite at the same pixels")
    layers = layers[:, 0]
    if np.any(layers[1:] & ~layers[:-1]):
        raise ValueError("hits layers must nest: a pixel with a k-th entry needs a (k-1)-th entry")
    segmentation = {"size": list(hits.shape[2:]), "counts": [], "hits": []}
    for k in range(hits.shape[0]):
        if k > 0 and not layers[k].any():
            break
        segmentation["counts"].append(encode_rle(layers[k]))
        segmentation["hits"] += [encode_values(hits[k, 0][layers[k]]), encode_values(hits[k, 1][layers[k]])]
    return segmentation


def decode_segmentation(
    segmentation: Any, height: int, width: int
) -> tuple[str, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Decode any FluoroSeg segmentation of an image of ``height`` x ``width`` pixels.

    Returns:
      (kind, mask, travel, hits): ``mask`` (H, W) bool; ``travel`` (H, W) float32 mm for TRAVEL
      (zero off the mask) and for HITS (the sum of exit - entry over layers), else None; ``hits``
      (K, 2, H, W) float32 mm with +inf where a ray has no k-th entry for HITS, else None.
    Raises ValueError when the segmentation is malformed or its size is not [height, width].
    """
    kind = segmentation_kind(segmentation)
    if kind == POLYGON:
        if not segmentation or not all(
            isinstance(ring, list) and len(ring) >= 6 and len(ring) % 2 == 0 for ring in segmentation
        ):
            raise ValueError(
                "polygon segmentation must be a non-empty list of [x0, y0, x1, y1, ...] rings with at least 3 points"
            )
        rles = coco_mask.frPyObjects(segmentation, height, width)
        return kind, coco_mask.decode(coco_mask.merge(rles)).astype(bool), None, None
    size = _check_size(segmentation["size"])
    if size != (height, width):
        raise ValueError(f"RLE size {list(size)} does not match the image size [{height}, {width}]")
    if kind == BINARY:
        return kind, decode_rle(segmentation["counts"], size), None, None
    if kind == TRAVEL:
        mask = decode_rle(segmentation["counts"], size)
        travel = np.zeros(size, np.float32)
        travel[mask] = decode_values(segmentation["travel"], int(mask.sum()))
        return kind, mask, travel, None
    counts, payloads = segmentation["counts"], segmentation["hits"]
    if not isinstance(counts, list) or not isinstance(payloads, list) or not counts or len(payloads) != 2 * len(counts):
        raise ValueError(
            f"HITS segmentation needs a non-empty list of RLEs and twice as many payloads, got {len(counts) if isinstance(counts, list) else counts!r} and {len(payloads) if isinstance(payloads, list) else payloads!r}"
        )
    hits = np.full((len(counts), 2) + size, np.inf, np.float32)
    layers = np.stack([decode_rle(counts_k, size) for counts_k in counts])
    for k, layer in enumerate(layers):
        for j in range(2):
            hits[k, j][layer] = decode_values(payloads[2 * k + j], int(layer.sum()))
    mask = layers[0]
    travel = np.subtract(hits[:, 1], hits[:, 0], out=np.zeros_like(hits[:, 0]), where=layers).sum(axis=0)
    return kind, mask, travel, hits
