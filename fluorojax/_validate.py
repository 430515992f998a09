"""Argument checks shared by every public constructor and function: one behaviour whatever the type.

A value is checked the same way whether it arrives as a Python number, a NumPy or JAX scalar,
a 0-d or n-d array, or something else (a string, None): the message names the argument, says
what was expected and shows what was given. Wrong kinds of value (a string where a number
belongs, a float where an integer count belongs, a bool anywhere numeric) raise
``ArgumentTypeError``, which is both a TypeError and a ValueError, so callers that catch either
keep working; wrong values of the right kind raise ValueError.

Only concrete values can be checked. Under ``jax.jit`` / ``vmap`` / ``grad`` a traced argument
passes unchecked (``is_concrete`` tells which is which) and each function's docstring says
what an invalid traced value produces; ``jax.experimental.checkify`` with
``checkify.float_checks`` reports NaNs produced inside a jitted function.
"""

from __future__ import annotations

import numbers
import os
from collections.abc import Collection
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from fluorojax._pytree import is_concrete

__all__ = [
    "BYTES_PER_PIXEL",
    "ArgumentTypeError",
    "array",
    "boolean",
    "choice",
    "finite_array",
    "fits_memory",
    "float_array",
    "integer",
    "is_concrete",
    "memory_limit",
    "number",
    "positive_array",
    "positive_int",
    "positive_number",
    "positive_numbers",
    "probability",
    "real_array",
    "size",
]


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong kind (e.g. a string where a number belongs); both a TypeError
    and a ValueError."""


def _describe(value: object) -> str:
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"{text} ({type(value).__name__})"


def _scalar(name: str, value: object, expected: str) -> int | float:
    """The Python scalar inside a number, a NumPy / JAX scalar or a 0-d real array;
    ArgumentTypeError for anything else (strings, bools, None, sequences, n-d arrays)."""
    if isinstance(value, (bool, np.bool_, str, bytes)) or value is None:
        raise ArgumentTypeError(f"{name} must be {expected}, got {_describe(value)}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if hasattr(value, "shape") and hasattr(value, "dtype") and np.shape(value) == ():
        dtype = np.dtype(value.dtype)
        if dtype == np.bool_ or not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
            raise ArgumentTypeError(f"{name} must be {expected}, got {_describe(value)}")
        return np.asarray(value).item()
    raise ArgumentTypeError(f"{name} must be {expected}, got {_describe(value)}")


def integer(name: str, value: object, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as a Python int: ints, NumPy / JAX integer scalars and 0-d integer arrays;
    floats (even 3.0), bools and strings are refused. Bounds are inclusive."""
    bounds = _bounds_text(minimum, maximum)
    expected = f"an integer{bounds}"
    scalar = _scalar(name, value, expected)
    if not isinstance(scalar, numbers.Integral):
        raise ArgumentTypeError(f"{name} must be {expected}, got {_describe(value)}")
    scalar = int(scalar)
    if (minimum is not None and scalar < minimum) or (maximum is not None and scalar > maximum):
        raise ValueError(f"{name} must be {expected}, got {scalar}")
    return scalar


def positive_int(name: str, value: object) -> int:
    """``integer(name, value, minimum=1)``."""
    return integer(name, value, minimum=1)


def number(
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    unit: str = "",
) -> float:
    """``value`` as a finite Python float in [low, high] (open ends where asked): ints, floats,
    NumPy / JAX real scalars and 0-d arrays; bools, strings, NaN and inf are refused."""
    expected = _number_text(low, high, low_open, high_open, unit)
    scalar = float(_scalar(name, value, expected))
    if not np.isfinite(scalar) or _outside(scalar, low, high, low_open, high_open):
        raise ValueError(f"{name} must be {expected}, got {scalar!r}")
    return scalar


def positive_number(name: str, value: object, *, unit: str = "") -> float:
    """A finite float > 0."""
    return number(name, value, low=0.0, low_open=True, unit=unit)


def positive_numbers(unit: str = "", **values: object) -> list[float]:
    """``positive_number`` of each keyword argument, named by its keyword."""
    return [positive_number(name, value, unit=unit) for name, value in values.items()]


def probability(name: str, value: object) -> float:
    """A finite float in [0, 1]."""
    return number(name, value, low=0.0, high=1.0)


def boolean(name: str, value: object) -> bool:
    """True / False (Python or NumPy bool); 0 / 1 and strings are refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentTypeError(f"{name} must be True or False, got {_describe(value)}")
    return bool(value)


def choice(name: str, value: object, options: Collection[str]) -> str:
    """``value`` if it is one of ``options``."""
    if isinstance(value, str) and value in options:
        return value
    raise ValueError(f"{name} must be one of {tuple(options)}, got {_describe(value)}")


def real_array(name: str, value: object, *, shape: tuple[int | None, ...] | None = None) -> np.ndarray:
    """``value`` as a float64 NumPy array (host copy) of real numbers, optionally of ``shape``
    (None entries match any length); strings, bools, objects and complex numbers are refused."""
    try:
        array = np.asarray(value)
    except (TypeError, ValueError) as err:
        raise ArgumentTypeError(f"{name} must be an array of real numbers, got {_describe(value)} ({err})") from None
    if array.dtype == np.bool_ or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise ArgumentTypeError(
            f"{name} must be an array of real numbers, got {_describe(value)} with dtype {array.dtype}"
        )
    if shape is not None and (
        array.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, array.shape))
    ):
        wanted = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        raise ValueError(f"{name} must have shape {wanted}, got shape {array.shape}")
    return array.astype(np.float64)


def positive_array(name: str, value: object, *, unit: str = "") -> np.ndarray:
    """A real array (any shape) whose every entry is finite and > 0."""
    array = real_array(name, value)
    bad = ~(np.isfinite(array) & (array > 0))
    if bad.any():
        first = float(array[bad].ravel()[0])
        what = "a positive, finite number" + (f" of {unit}" if unit else "")
        raise ValueError(
            f"{name} must be {what} (every entry), got {int(bad.sum())} entries that are not, e.g. {first!r}"
        )
    return array


def finite_array(name: str, value: object, *, shape: tuple[int | None, ...] | None = None) -> np.ndarray:
    """A real array with every entry finite (no NaN or inf)."""
    array = real_array(name, value, shape=shape)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite, got {int((~np.isfinite(array)).sum())} NaN / inf entries")
    return array


def float_array(name: str, value: object, trailing: tuple[int, ...] = ()) -> jax.Array:
    """``value`` as a float32 JAX array whose last axes are ``trailing`` (e.g. (4, 4) for poses).

    Only the kind and the shape are checked (both known under ``jax.jit``); values are not
    scanned, so this costs nothing on a hot path: NaN / inf entries pass and propagate.
    """
    if isinstance(value, (str, bytes)) or value is None:
        raise ArgumentTypeError(f"{name} must be an array of numbers, got {_describe(value)}")
    try:
        array = jnp.asarray(value, jnp.float32)
    except (TypeError, ValueError) as err:
        raise ArgumentTypeError(f"{name} must be an array of numbers, got {_describe(value)} ({err})") from None
    if array.shape[array.ndim - len(trailing) :] != tuple(trailing) or array.ndim < len(trailing):
        wanted = "(..., " + ", ".join(map(str, trailing)) + ")"
        raise ValueError(f"{name} must have shape {wanted}, got shape {array.shape}")
    return array


def array(name: str, value: Any, dtype: DTypeLike, *, what: str | None = None) -> jax.Array:
    """``value`` as a JAX array of ``dtype``, its kind judged by its dtype alone: no value is read,
    so this costs nothing on device arrays and works on tracers (the pytrees' converters).

    An integer ``dtype`` takes integers only, a float one integers and floats; strings, None,
    bools, complex numbers and objects raise ArgumentTypeError naming ``name`` and ``what`` was
    expected (default "real numbers" or "integers")."""
    integer = jnp.issubdtype(dtype, jnp.integer)
    what = what or ("integers" if integer else "real numbers")
    if isinstance(value, (str, bytes)) or value is None:
        raise ArgumentTypeError(f"{name} must be an array of {what}, got {_describe(value)}")
    if not hasattr(value, "dtype"):  # Python numbers and sequences
        try:
            value = jnp.asarray(value)
        except (TypeError, ValueError) as err:
            raise ArgumentTypeError(f"{name} must be an array of {what}, got {_describe(value)} ({err})") from None
    kind = np.dtype(value.dtype)
    if kind == np.bool_ or not (
        jnp.issubdtype(kind, jnp.integer) or (not integer and jnp.issubdtype(kind, jnp.floating))
    ):
        raise ArgumentTypeError(f"{name} must be an array of {what}, got dtype {kind}")
    return jnp.asarray(value, dtype)


def size(name: str, value: Any) -> tuple[int, int]:
    """(H, W): two positive integers of pixels."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ArgumentTypeError(f"{name} must be (H, W), two positive integers of pixels, got {_describe(value)}")
    return (integer(f"{name}[0] (H)", value[0], minimum=1), integer(f"{name}[1] (W)", value[1], minimum=1))


def memory_limit() -> int | None:
    """Bytes this process can at most use: the host's physical memory, or the default JAX
    device's memory when it reports less; None when neither is known."""
    limits = []
    try:
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows) or no such name
        pass
    stats = jax.local_devices()[0].memory_stats()
    if stats and stats.get("bytes_limit"):
        limits.append(int(stats["bytes_limit"]))
    return min(limits) if limits else None


BYTES_PER_PIXEL = 64
"""A lower bound on the memory one rendered pixel takes (its ray's ends, the image, the
intermediates of a render), used to refuse image sizes that cannot fit before anything is
allocated or written."""


def fits_memory(what: str, n_images: int, height: int, width: int) -> None:
    """ValueError when rendering ``n_images`` images of ``height`` x ``width`` at once needs more
    than ``memory_limit()`` (at ``BYTES_PER_PIXEL``): sizes are checked before allocating."""
    nbytes = n_images * height * width * BYTES_PER_PIXEL
    limit = memory_limit()
    if limit is not None and nbytes > limit:
        raise ValueError(
            f"{what} needs at least {nbytes / 2**30:.1f} GiB, more than the {limit / 2**30:.1f} GiB of memory "
            f"of this machine"
        )


def _bounds_text(minimum, maximum) -> str:
    if minimum is not None and maximum is not None:
        return f" in [{minimum}, {maximum}]"
    if minimum == 1:
        return " >= 1"
    if minimum is not None:
        return f" >= {minimum}"
    if maximum is not None:
        return f" <= {maximum}"
    return ""


def _number_text(low, high, low_open, high_open, unit) -> str:
    suffix = f" ({unit})" if unit else ""
    if low == 0.0 and low_open and high is None:
        return f"a positive, finite number{suffix}"
    if low is None and high is None:
        return f"a finite number{suffix}"
    if high is None:
        return f"a finite number {'>' if low_open else '>='} {low:g}{suffix}"
    if low is None:
        return f"a finite number {'<' if high_open else '<='} {high:g}{suffix}"
    return f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}{suffix}"


def _outside(x, low, high, low_open, high_open) -> bool:
    if low is not None and (x < low or (low_open and x == low)):
        return True
    return high is not None and (x > high or (high_open and x == high))
