"""Blurs and other small-kernel filters; masks are left untouched.

Transforms ``(key, image, masks) -> (image, masks)``; image (H, W) or (H, W, C) float32. Kernel
sizes are odd pixel counts drawn from a static range; kernels are zero-padded to the largest
size so shapes stay static. Linear filters use mirrored borders (OpenCV's BORDER_REFLECT_101),
the median filter repeats the edge (as OpenCV's medianBlur). Blurs are normalised (they keep the
mean of an image whose border band is constant); sharpen and emboss clip to [0, 1].

Gradients with respect to the image: the linear filters are exact (zero where a clip
saturates); the median passes each output's derivative to the input pixel it selected (the
min/max network's gradient). Kernel sizes, angles and weights depend only on the key.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from fluorojax.augment import _image

__all__ = [
    "binomial_blur",
    "motion_blur",
    "median_blur",
    "detector_blur",
    "sharpen",
    "emboss",
]


def _odd_sizes(kernel_size: tuple[int, int], name: str) -> tuple[int, ...]:
    lo, hi = int(kernel_size[0]), int(kernel_size[1])
    sizes = tuple(k for k in range(lo, hi + 1) if k % 2 == 1)
    if lo < 1 or not sizes:
        raise ValueError(f"{name}: kernel_size must contain an odd size >= 1, got {kernel_size}")
    return sizes


def _pick(key: jax.Array, n: int) -> jax.Array:
    return jax.random.randint(key, (), 0, n)


def _binomial(k: int, size: int) -> np.ndarray:
    """Row k-1 of Pascal's triangle / 2^(k-1), centred in ``size`` taps."""
    w = np.array([math.comb(k - 1, i) for i in range(k)], np.float32) / 2.0 ** (k - 1)
    pad = (size - k) // 2
    return np.pad(w, (pad, pad))


@_image.image_only(hwc=True)
def binomial_blur(key: jax.Array, image: jax.Array, *, kernel_size: tuple[int, int] = (3, 5)) -> jax.Array:
    """Separable binomial blur of odd size k drawn from ``kernel_size`` (the sampled Gaussian
    OpenCV's GaussianBlur uses for k <= 7 when sigma is 0, std sqrt(k - 1) / 2 pixels: the
    augmentation albumentations calls GaussianBlur; the fixed-width Gaussian of detector physics
    is ``fluorojax.physics.gaussian_blur``)."""
    sizes = _odd_sizes(kernel_size, "binomial_blur")
    kernels = jnp.asarray(np.stack([_binomial(k, sizes[-1]) for k in sizes]))
    k1 = kernels[_pick(key, len(sizes))]
    return _image.separable(image, k1, k1)


def _line_kernel(length: jax.Array, angle: jax.Array, size: int) -> jax.Array:
    """(size, size) anti-aliased segment of ``length`` pixels through the centre, normalised."""
    r = size // 2
    dy, dx = jnp.meshgrid(jnp.arange(-r, r + 1.0), jnp.arange(-r, r + 1.0), indexing="ij")
    u = jnp.stack([jnp.sin(angle), jnp.cos(angle)])
    t = jnp.clip(dy * u[0] + dx * u[1], -(length - 1) / 2, (length - 1) / 2)
    dist = jnp.hypot(dy - t * u[0], dx - t * u[1])
    w = jnp.clip(1.0 - dist, 0.0, 1.0)
    return w / jnp.sum(w)


@_image.image_only(hwc=True)
def motion_blur(key: jax.Array, image: jax.Array, *, kernel_size: tuple[int, int] = (3, 5)) -> jax.Array:
    """Blur along a straight segment of odd length k (drawn from ``kernel_size``) through the
    pixel, at an angle uniform in [0, pi); the kernel is the anti-aliased segment, normalised."""
    sizes = _odd_sizes(kernel_size, "motion_blur")
    k_len, k_ang = jax.random.split(key)
    length = jnp.asarray(sizes, jnp.float32)[_pick(k_len, len(sizes))]
    angle = _image.uniform(k_ang, (0.0, math.pi))
    kernel = _line_kernel(length, angle, sizes[-1])
    return _image.filter2d(image, kernel)


def _batcher_pairs(n: int) -> list[tuple[int, int]]:
    """Comparators (i, j), i < j, of Batcher's odd-even merge sort of n = 2^p wires, in order."""
    pairs = []
    p = 1
    while p < n:
        k = p
        while k >= 1:
            for j in range(k % p, n - k, 2 * k):
                for i in range(min(k, n - j - k)):
                    if (i + j) // (2 * p) == (i + j + k) // (2 * p):
                        pairs.append((i + j, i + j + k))
            k //= 2
        p *= 2
    return pairs


@functools.cache
def _median_network(m: int) -> tuple[tuple[tuple[int, int], ...], ...]:
    """The comparators of a sorting network on m wires that decide the middle one (m odd), in
    layers of disjoint comparators.

    Batcher's network on the next power of two, with the wires past m holding +inf (so their
    comparators do nothing and are dropped), pruned backwards to the comparators the middle
    wire depends on: 24 in 9 layers for m = 9, 113 in 15 layers for m = 25."""
    n = 1 << (m - 1).bit_length()
    pairs = [(a, b) for a, b in _batcher_pairs(n) if b < m]
    need, kept = {m // 2}, []
    for a, b in reversed(pairs):
        if a in need or b in need:
            kept.append((a, b))
            need |= {a, b}
    depth: dict[int, int] = {}
    layers: list[list[tuple[int, int]]] = []
    for a, b in reversed(kept):
        d = max(depth.get(a, 0), depth.get(b, 0))
        depth[a] = depth[b] = d + 1
        layers += [[] for _ in range(d + 1 - len(layers))]
        layers[d].append((a, b))
    return tuple(tuple(layer) for layer in layers)


def _median(x_hwc: jax.Array, k: int) -> jax.Array:
    """Median of every k x k window (edges repeated) by a min/max selection network: elementwise
    work (a sort along a window axis is ~100x slower on a CPU). Every second layer's wires are
    materialised (``optimization_barrier``): fusing the whole network would recompute shared
    inputs exponentially often."""
    h, w = x_hwc.shape[:2]
    r = k // 2
    p = jnp.pad(x_hwc, ((r, r), (r, r), (0, 0)), mode="edge")
    wires = [p[i : i + h, j : j + w] for i in range(k) for j in range(k)]
    for depth, layer in enumerate(_median_network(k * k)):
        for a, b in layer:
            wires[a], wires[b] = jnp.minimum(wires[a], wires[b]), jnp.maximum(wires[a], wires[b])
        if depth % 2:
            wires = list(jax.lax.optimization_barrier(tuple(wires)))
    return wires[(k * k) // 2]


@_image.image_only(hwc=True)
def median_blur(key: jax.Array, image: jax.Array, *, kernel_size: tuple[int, int] = (3, 5)) -> jax.Array:
    """Median over a k x k window, k odd drawn from ``kernel_size`` (edges repeated)."""
    sizes = _odd_sizes(kernel_size, "median_blur")
    branches = [lambda v, k=k: _median(v, k) for k in sizes]
    return jax.lax.switch(_pick(key, len(sizes)), branches, image)


@_image.image_only(hwc=True)
def detector_blur(
    key: jax.Array,
    image: jax.Array,
    *,
    sigma: tuple[float, float] = (0.5, 1.5),
    glare: tuple[float, float] = (0.0, 0.1),
    glare_sigma: float = 8.0,
) -> jax.Array:
    """Detector point-spread function: a Gaussian core of std drawn from ``sigma`` (pixels) plus
    a fraction drawn from ``glare`` of a wide Gaussian (std ``glare_sigma`` pixels, static) for
    light spread and scatter in the scintillator. Normalised, so the mean is kept."""
    k_s, k_g = jax.random.split(key)
    s = _image.uniform(k_s, sigma)
    g = _image.uniform(k_g, glare)
    core_k = _image.gaussian_kernel1d(s, max(1, math.ceil(3.0 * sigma[1])))
    wide_k = _image.gaussian_kernel1d(jnp.float32(glare_sigma), max(1, math.ceil(3.0 * glare_sigma)))
    core = _image.separable(image, core_k, core_k)
    return (1.0 - g) * core + g * _image.separable(image, wide_k, wide_k)


_IDENTITY3 = np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], np.float32)


@_image.image_only(hwc=True)
def sharpen(
    key: jax.Array,
    image: jax.Array,
    *,
    alpha: tuple[float, float] = (0.2, 0.5),
    lightness: tuple[float, float] = (0.5, 1.0),
) -> jax.Array:
    """3 x 3 sharpening: kernel ``(1 - a) I + a L`` with L = 8 + l at the centre and -1 on the
    eight neighbours (a from ``alpha``, l from ``lightness``); output clipped to [0, 1]."""
    k_a, k_l = jax.random.split(key)
    a = _image.uniform(k_a, alpha)
    light = _image.uniform(k_l, lightness)
    effect = -jnp.ones((3, 3)) + (9.0 + light) * _IDENTITY3
    kernel = (1.0 - a) * _IDENTITY3 + a * effect
    return jnp.clip(_image.filter2d(image, kernel), 0.0, 1.0)


@_image.image_only(hwc=True)
def emboss(
    key: jax.Array,
    image: jax.Array,
    *,
    alpha: tuple[float, float] = (0.2, 0.5),
    strength: tuple[float, float] = (0.2, 0.7),
) -> jax.Array:
    """3 x 3 relief: kernel ``(1 - a) I + a E`` with E = [[-1-s, -s, 0], [-s, 1, s],
    [0, s, 1+s]] (a from ``alpha``, s from ``strength``); output clipped to [0, 1]."""
    k_a, k_s = jax.random.split(key)
    a = _image.uniform(k_a, alpha)
    s = _image.uniform(k_s, strength)
    effect = jnp.asarray([[-1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) + s * jnp.asarray(
        [[-1.0, -1.0, 0.0], [-1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]
    )
    kernel = (1.0 - a) * _IDENTITY3 + a * effect
    return jnp.clip(_image.filter2d(image, kernel), 0.0, 1.0)
