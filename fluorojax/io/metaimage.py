"""MetaImage (.mha / .mhd + raw) -> (data, RAS+ affine), read here without a dependency.

MetaImage is ITK's plain-text header format (``Key = Value`` lines, then the raw voxels or the
name of the file holding them). Its world frame is ITK's LPS; ``TransformMatrix`` holds the
direction cosine of each voxel axis, one axis after another, ``Offset`` the position of voxel
(0, 0, 0) and ``ElementSpacing`` the voxel size. Reading it needs nothing but numpy and zlib,
which is lighter than SimpleITK's 53 MB for one text header; the tests compare this reader with
ITK's own writer when ``itk`` is installed.
"""

from __future__ import annotations

import os
import zlib

import numpy as np

from fluorojax._files import StrPath
from fluorojax.io.dicom_series import LPS_TO_RAS

_TYPES = {
    "MET_CHAR": "i1",
    "MET_UCHAR": "u1",
    "MET_SHORT": "i2",
    "MET_USHORT": "u2",
    "MET_INT": "i4",
    "MET_UINT": "u4",
    "MET_LONG": "i4",
    "MET_ULONG": "u4",
    "MET_LONG_LONG": "i8",
    "MET_ULONG_LONG": "u8",
    "MET_FLOAT": "f4",
    "MET_DOUBLE": "f8",
}


def _header(raw, path):
    fields, position = {}, 0
    while True:
        end = raw.find(b"\n", position)
        if end < 0:
            raise ValueError(f"{path}: MetaImage header has no ElementDataFile line")
        line = raw[position:end].decode("latin-1").strip()
        position = end + 1
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{path}: not a MetaImage header line: {line!r}")
        fields[key.strip()] = value.strip()
        if key.strip() == "ElementDataFile":
            return fields, position


def _numbers(fields, key, n, path, default=None):
    if key not in fields:
        if default is None:
            raise ValueError(f"{path}: MetaImage header lacks {key}")
        return np.asarray(default, np.float64)
    values = np.asarray(fields[key].split(), np.float64)
    if values.shape != (n,):
        raise ValueError(f"{path}: MetaImage {key} must hold {n} numbers, got {fields[key]!r}")
    return values


def read_metaimage(path: StrPath) -> tuple[np.ndarray, np.ndarray]:
    """Read a 3-D scalar MetaImage (.mha, or .mhd with its data file): ``(data (I, J, K) float32,
    affine (4, 4) RAS+ mm)``; voxel (i, j, k) is at ``Offset + TransformMatrix (spacing * ijk)`` in LPS."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such MetaImage file: {path}")
    with open(path, "rb") as f:
        raw = f.read()
    fields, data_start = _header(raw, path)
    if int(fields.get("NDims", 0)) != 3 or int(fields.get("ElementNumberOfChannels", 1)) != 1:
        raise ValueError(
            f"{path}: expected a 3-D scalar MetaImage, got NDims {fields.get('NDims')}, "
            f"{fields.get('ElementNumberOfChannels', 1)} channels"
        )
    if fields.get("ElementType") not in _TYPES:
        raise ValueError(
            f"{path}: unsupported ElementType {fields.get('ElementType')!r}; expected one of {sorted(_TYPES)}"
        )
    shape = tuple(int(v) for v in _numbers(fields, "DimSize", 3, path))
    spacing = _numbers(fields, "ElementSpacing", 3, path, default=(1.0, 1.0, 1.0))
    key = next((k for k in ("Offset", "Position", "Origin") if k in fields), "Offset")
    origin = _numbers(fields, key, 3, path, default=(0.0, 0.0, 0.0))
    key = next((k for k in ("TransformMatrix", "Rotation", "Orientation") if k in fields), "TransformMatrix")
    directions = _numbers(fields, key, 9, path, default=np.eye(3).ravel()).reshape(3, 3)
    big_endian = any(
        fields.get(k, "False").lower() == "true" for k in ("BinaryDataByteOrderMSB", "ElementByteOrderMSB")
    )
    dtype = np.dtype(_TYPES[fields["ElementType"]]).newbyteorder(">" if big_endian else "<")
    source = fields["ElementDataFile"]
    if source == "LOCAL":
        payload = raw[data_start:]
    elif source.split()[0] in ("LIST",) or "%" in source:
        raise ValueError(f"{path}: ElementDataFile {source!r} (one file per slice) is not supported")
    else:
        data_path = os.path.join(os.path.dirname(path), source)
        if not os.path.exists(data_path):
            raise FileNotFoundError(f"{path}: its data file {data_path} does not exist")
        with open(data_path, "rb") as f:
            payload = f.read()
    if fields.get("CompressedData", "False").lower() == "true":
        payload = zlib.decompress(payload)
    count = int(np.prod(shape))
    header_size = int(fields.get("HeaderSize", 0))
    payload = payload[len(payload) - count * dtype.itemsize :] if header_size == -1 else payload[header_size:]
    if len(payload) < count * dtype.itemsize:
        raise ValueError(
            f"{path}: {len(payload)} bytes of voxel data, expected {count * dtype.itemsize} for {shape} {fields['ElementType']}"
        )
    data = np.frombuffer(payload, dtype, count).reshape(shape[::-1]).transpose(2, 1, 0)
    affine = np.eye(4)
    affine[:3, :3] = directions.T * spacing
    affine[:3, 3] = origin
    return data.astype(np.float32), LPS_TO_RAS @ affine
