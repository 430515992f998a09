"""Frozen dataclasses registered as JAX pytrees.

Array fields are leaves; fields marked ``static_field()`` (sizes, flags) are aux data.
Unflattening bypasses ``__init__``/``__post_init__``, so validation in ``__post_init__`` runs
only when a user builds the object, never on tracers or placeholder leaves inside JAX.
"""

from __future__ import annotations

import dataclasses

import jax


def static_field(**kwargs):
    """A dataclass field that is part of the treedef (hashable, compared by value)."""
    return dataclasses.field(metadata={"static": True}, **kwargs)


def pytree_dataclass(cls):
    """Make ``cls`` a frozen dataclass and register it as a pytree."""
    cls = dataclasses.dataclass(frozen=True)(cls)
    fields = dataclasses.fields(cls)
    leaves = tuple(f.name for f in fields if not f.metadata.get("static"))
    statics = tuple(f.name for f in fields if f.metadata.get("static"))

    def flatten_with_keys(obj):
        children = tuple((jax.tree_util.GetAttrKey(n), getattr(obj, n)) for n in leaves)
        return children, tuple(getattr(obj, n) for n in statics)

    def unflatten(aux, children):
        obj = object.__new__(cls)
        for name, value in zip(leaves + statics, tuple(children) + tuple(aux)):
            object.__setattr__(obj, name, value)
        return obj

    jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten)
    return cls


def is_concrete(*values) -> bool:
    """True when no value is a JAX tracer, so it can be inspected on the host."""
    return not any(isinstance(v, jax.core.Tracer) for v in values)
