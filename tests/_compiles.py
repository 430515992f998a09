"""Counting XLA compilations, the truth behind every "an eager call compiles once" test."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
"""The event JAX reports once per XLA backend compilation (never for a cache hit)."""


class Count:
    """``value``: the compilations seen so far inside a ``count_compilations`` block."""

    value: int = 0


@contextlib.contextmanager
def count_compilations() -> Iterator[Count]:
    """Count the XLA compilations made inside the ``with`` block (``count.value``, kept live)."""
    count = Count()

    def listener(event: str, duration: float, **kwargs: object) -> None:
        if event == COMPILE_EVENT:
            count.value += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield count
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)
