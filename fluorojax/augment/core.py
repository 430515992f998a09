"""Composition of augmentations: sequence, probability, one-of, some-of, batching.

A *transform* is a pure function ``(key, image, masks) -> (image, masks)``:
``image`` is (H, W) or (H, W, C) float32, ``masks`` is (N, H, W) float or bool. Options are
keyword-only arguments bound with :func:`functools.partial` before composing. Randomness comes
only from ``key``: the same key gives the same output, bit for bit.

Branching (:func:`with_probability`, :func:`one_of`, :func:`some_of`) uses ``lax.cond`` and
``lax.switch``: under ``jax.vmap`` every branch is computed for every image and the results are
selected. :func:`apply_batch` therefore batches with a ``lax.map`` (one image at a time, only the
taken branches run) on a CPU and with ``jax.vmap`` on accelerators, chosen when the program is
lowered for its platform; both give identical results.

All branches of :func:`one_of` and :func:`some_of` must return arrays of the same shape and
dtype as their input (a transform that changes the channel count cannot be one of several).
"""

from __future__ import annotations

import functools
import numbers
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

Transform = Callable[[jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]

__all__ = [
    "Transform",
    "identity",
    "sequence",
    "with_probability",
    "one_of",
    "some_of",
    "apply_batch",
]


def identity(key: jax.Array, image: jax.Array, masks: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The transform that returns ``(image, masks)`` unchanged (``key`` is unused)."""
    del key
    return image, masks


def _check_transforms(transforms: Sequence[Transform], name: str) -> tuple[Transform, ...]:
    transforms = tuple(transforms)
    if not transforms:
        raise ValueError(f"{name} needs at least one transform, got none")
    for t in transforms:
        if not callable(t):
            raise TypeError(f"{name} expects callables (key, image, masks), got {t!r}")
    return transforms


def _normalised_weights(weights: Sequence[float] | None, n: int, name: str) -> jax.Array:
    if weights is None:
        return jnp.full((n,), 1.0 / n, jnp.float32)
    weights = tuple(float(w) for w in weights)
    if len(weights) != n or any(w < 0 for w in weights) or sum(weights) <= 0:
        raise ValueError(f"{name}: weights must be {n} non-negative numbers with a positive sum, got {weights}")
    total = sum(weights)
    return jnp.asarray([w / total for w in weights], jnp.float32)


def sequence(*transforms: Transform) -> Transform:
    """Apply ``transforms`` one after the other, each with its own subkey."""
    transforms = _check_transforms(transforms, "sequence")

    def apply(key, image, masks):
        keys = jax.random.split(key, len(transforms))
        for k, t in zip(keys, transforms):
            image, masks = t(k, image, masks)
        return image, masks

    return apply


def with_probability(p: float, transform: Transform) -> Transform:
    """Apply ``transform`` with probability ``p`` (a number in [0, 1]), else the identity."""
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"with_probability: p must be in [0, 1], got {p}")
    _check_transforms([transform], "with_probability")

    def apply(key, image, masks):
        k_coin, k_apply = jax.random.split(key)
        coin = jax.random.uniform(k_coin) < p
        return jax.lax.cond(
            coin,
            lambda im, m: transform(k_apply, im, m),
            lambda im, m: (im, m),
            image,
            masks,
        )

    return apply


def one_of(transforms: Sequence[Transform], weights: Sequence[float] | None = None) -> Transform:
    """Apply exactly one of ``transforms``, drawn with probabilities proportional to ``weights``
    (uniform when None)."""
    transforms = _check_transforms(transforms, "one_of")
    probs = _normalised_weights(weights, len(transforms), "one_of")

    def apply(key, image, masks):
        k_choice, k_apply = jax.random.split(key)
        index = jax.random.choice(k_choice, len(transforms), p=probs)
        return jax.lax.switch(index, transforms, k_apply, image, masks)

    return apply


def some_of(
    transforms: Sequence[Transform],
    n: int | tuple[int, int],
    weights: Sequence[float] | None = None,
) -> Transform:
    """Apply a random subset of ``transforms`` without replacement.

    The subset size is ``n``, or uniform over the integers ``lo..hi`` inclusive for
    ``n=(lo, hi)``; members are drawn without replacement with probabilities proportional to
    ``weights`` (Gumbel top-k; uniform when None) and applied in their listed order.
    """
    transforms = _check_transforms(transforms, "some_of")
    lo, hi = (int(n), int(n)) if isinstance(n, (int, numbers.Integral)) else (int(n[0]), int(n[1]))
    if not 0 <= lo <= hi <= len(transforms):
        raise ValueError(f"some_of: n must satisfy 0 <= lo <= hi <= {len(transforms)}, got {n!r}")
    log_w = jnp.log(_normalised_weights(weights, len(transforms), "some_of"))

    def apply(key, image, masks):
        k_n, k_pick, *k_apply = jax.random.split(key, 2 + len(transforms))
        count = jax.random.randint(k_n, (), lo, hi + 1)
        scores = log_w + jax.random.gumbel(k_pick, log_w.shape)
        rank = jnp.argsort(jnp.argsort(-scores))
        chosen = rank < count
        for i, t in enumerate(transforms):
            image, masks = jax.lax.cond(
                chosen[i],
                lambda im, m, t=t, k=k_apply[i]: t(k, im, m),
                lambda im, m: (im, m),
                image,
                masks,
            )
        return image, masks

    return apply


def _map_batch(transform: Transform, keys, images, masks):
    return jax.lax.map(lambda args: transform(*args), (keys, images, masks))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _apply_batch(transform: Transform, vectorize: bool | None, keys, images, masks):
    if vectorize is None:
        return jax.lax.platform_dependent(
            keys,
            images,
            masks,
            cpu=functools.partial(_map_batch, transform),
            default=jax.vmap(transform),
        )
    if vectorize:
        return jax.vmap(transform)(keys, images, masks)
    return _map_batch(transform, keys, images, masks)


def apply_batch(
    transform: Transform,
    keys: jax.Array,
    images: jax.Array,
    masks: jax.Array,
    *,
    vectorize: bool | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Apply ``transform`` to a batch: keys (B,) (or (B, 2) raw keys), images (B, H, W[, C]),
    masks (B, N, H, W); returns the transform's outputs stacked along a leading batch axis.

    The batching: ``vectorize=None`` (default) picks the faster one for the platform the call
    is lowered for: ``lax.map`` on the CPU, ``jax.vmap`` on GPUs and TPUs. ``vectorize=True``
    forces ``jax.vmap`` (every branch of every ``lax.cond``/``lax.switch`` is computed for every
    image and selected: on the CPU the FluoroSeg pipeline at 448 x 448 runs ~40x slower this
    way), ``False`` forces ``lax.map`` (one image at a time, only the taken branches run; on an
    accelerator the images run one after another). All three give the same result.

    Jitted (``transform`` static, so pass the same transform object to reuse the compiled
    program: :func:`~fluorojax.augment.default_pipeline` returns the same object for the same
    arguments).
    """
    if keys.shape[0] != images.shape[0] or masks.shape[0] != images.shape[0]:
        raise ValueError(
            "apply_batch: keys, images and masks need the same batch size, got "
            f"{keys.shape[0]}, {images.shape[0]}, {masks.shape[0]}"
        )
    if vectorize is not None and not isinstance(vectorize, bool):
        raise TypeError(f"apply_batch: vectorize must be None, True or False, got {vectorize!r}")
    return _apply_batch(transform, vectorize, keys, images, masks)
