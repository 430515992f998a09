"""Exact sign of a 2 x 2 determinant of float32 numbers, in float32 arithmetic.

``det2_sign(ax, ay, bx, by)`` is the sign of ``ax * by - ay * bx`` computed exactly: each product
is split error-free (Dekker's two-product, with a bit mask instead of Veltkamp's constant so
that no fused multiply-add can change it) and the difference is formed as a nonoverlapping
expansion (Shewchuk's Two_Two_Diff), whose sign is the sign of its largest non-zero component.
The watertight ray-triangle test (``raycast.watertight``) uses it where the float32 sign is not
certain.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _split(a):
    """a = hi + lo exactly, each with at most 12 significant bits (mask, so no FMA can alter it)."""
    bits = jax.lax.bitcast_convert_type(a, jnp.uint32) & jnp.uint32(0xFFFFF000)
    hi = jax.lax.bitcast_convert_type(bits, jnp.float32)
    return hi, a - hi


def _two_product(a, b):
    """(p, e) with p = fl(a * b) and p + e = a * b exactly (Dekker)."""
    p = a * b
    ah, al = _split(a)
    bh, bl = _split(b)
    e = ((ah * bh - p) + ah * bl + al * bh) + al * bl
    return p, e


def _two_sum(a, b):
    x = a + b
    bv = x - a
    av = x - bv
    return x, (a - av) + (b - bv)


def _two_diff(a, b):
    x = a - b
    bv = a - x
    av = x + bv
    return x, (a - av) + (bv - b)


def _expansion_sign(x3, x2, x1, x0):
    s = jnp.sign(x0)
    s = jnp.where(x1 != 0, jnp.sign(x1), s)
    s = jnp.where(x2 != 0, jnp.sign(x2), s)
    return jnp.where(x3 != 0, jnp.sign(x3), s)


def det2_sign(ax: jax.Array, ay: jax.Array, bx: jax.Array, by: jax.Array) -> jax.Array:
    """Exact sign (-1, 0, 1 as float32) of ax * by - ay * bx for float32 inputs (broadcasting)."""
    a1, a0 = _two_product(ax, by)
    b1, b0 = _two_product(ay, bx)
    # Shewchuk's Two_Two_Diff: (a1 + a0) - (b1 + b0) as a nonoverlapping expansion, x3 largest.
    i, x0 = _two_diff(a0, b0)
    j, k = _two_sum(a1, i)
    i, x1 = _two_diff(k, b1)
    x3, x2 = _two_sum(j, i)
    return _expansion_sign(x3, x2, x1, x0)
