"""The key tree of a generator run: every image's randomness from (seed, case name, index).

Image ``i`` of case ``c`` uses ``image_key(seed, c, i) = fold_in(fold_in(key(seed),
case_id(c)), i)``, split by ``fold_in`` into its device (``DEVICE``), view (``VIEW``) and noise
(``NOISE``) keys; a scene's tools come from ``fold_in(image_key(seed, c, first image), SCENE)``.
Nothing depends on which images were already written, on the order cases are visited, on the
number of devices or on the backend.
"""

from __future__ import annotations

import zlib

import jax

from fluorojax import _validate

DEVICE, VIEW, NOISE, SCENE = 0, 1, 2, 3


def case_id(name: str) -> int:
    """A stable 31-bit id of a case name (CRC-32), used to fold the case into the key."""
    if not isinstance(name, str):
        raise _validate.ArgumentTypeError(f"case name must be a str, got {name!r} ({type(name).__name__})")
    return zlib.crc32(name.encode("utf-8")) & 0x7FFFFFFF


def image_key(seed: int, case: str, index: int) -> jax.Array:
    """The key of image ``index`` of ``case``: fold_in(fold_in(key(seed), case_id(case)), index)."""
    seed = _validate.integer("seed", seed, minimum=0)
    index = _validate.integer("image index", index, minimum=0)
    return jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), case_id(case)), index)
