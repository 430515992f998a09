"""Independent float64 numpy references for the renderers (used only by the tests)."""

import numpy as np


def _pieces(shape, affine, source, target):
    """Every plane crossing of the segment, sorted: (alphas (P+1,), voxel index (P, 3) of each
    piece's midpoint, inside (P,) bool, segment length mm), float64."""
    grid_from_world = np.linalg.inv(np.asarray(affine, np.float64))
    s = grid_from_world[:3, :3] @ np.asarray(source, np.float64) + grid_from_world[:3, 3] + 0.5
    t = grid_from_world[:3, :3] @ np.asarray(target, np.float64) + grid_from_world[:3, 3] + 0.5
    d = t - s
    alphas = [0.0, 1.0]
    for axis in range(3):
        if d[axis] != 0:
            a = (np.arange(shape[axis] + 1, dtype=np.float64) - s[axis]) / d[axis]
            alphas.extend(a[(a > 0) & (a < 1)])
    alphas = np.unique(alphas)
    index = np.floor(s + ((alphas[:-1] + alphas[1:]) / 2)[:, None] * d).astype(np.int64)
    inside = np.all((index >= 0) & (index < np.array(shape[:3])), axis=1)
    length = np.linalg.norm(np.asarray(target, np.float64) - np.asarray(source, np.float64))
    return alphas, index, inside, length


def siddon_reference(data, affine, source, target):
    """Exact line integral of a piecewise-constant volume along one segment, float64.

    The original Siddon formulation: collect every plane crossing of the segment, sort them,
    and add the value of the voxel holding each piece's midpoint times the piece's length.
    """
    data = np.asarray(data, np.float64)
    alphas, index, inside, length = _pieces(data.shape, affine, source, target)
    values = data[index[inside, 0], index[inside, 1], index[inside, 2]]
    return np.tensordot(np.diff(alphas)[inside] * length, values, axes=1)


def box_chord(source, target, lower, upper):
    """Length (mm) of the part of the segment source -> target inside an axis-aligned box."""
    s, t = np.asarray(source, np.float64), np.asarray(target, np.float64)
    d = t - s
    lo, hi = 0.0, 1.0
    for axis in range(3):
        if d[axis] == 0:
            if not lower[axis] <= s[axis] <= upper[axis]:
                return 0.0
            continue
        a, b = sorted(((lower[axis] - s[axis]) / d[axis], (upper[axis] - s[axis]) / d[axis]))
        lo, hi = max(lo, a), min(hi, b)
    return max(hi - lo, 0.0) * np.linalg.norm(d)


def ellipsoid_chord(source, target, centre, semi_axes):
    """Length (mm) of the part of the segment inside an axis-aligned ellipsoid."""
    s = (np.asarray(source, np.float64) - centre) / semi_axes
    d = (np.asarray(target, np.float64) - np.asarray(source, np.float64)) / semi_axes
    a, b, c = d @ d, 2 * s @ d, s @ s - 1
    disc = b * b - 4 * a * c
    if disc <= 0:
        return 0.0
    r = np.sqrt(disc)
    lo, hi = max((-b - r) / (2 * a), 0.0), min((-b + r) / (2 * a), 1.0)
    return max(hi - lo, 0.0) * np.linalg.norm(np.asarray(target, np.float64) - np.asarray(source, np.float64))


def label_reference(labels, affine, source, target, label_id):
    """(travel, entry, exit) in mm of one segment through the voxels with ``label_id``, float64.

    Entry and exit are distances from the source; inf when the segment misses the label.
    """
    labels = np.asarray(labels)
    alphas, index, inside, length = _pieces(labels.shape, affine, source, target)
    ours = np.zeros(len(index), bool)
    ours[inside] = labels[index[inside, 0], index[inside, 1], index[inside, 2]] == label_id
    if not ours.any():
        return 0.0, np.inf, np.inf
    travel = np.sum(np.diff(alphas)[ours]) * length
    return travel, alphas[:-1][ours].min() * length, alphas[1:][ours].max() * length
