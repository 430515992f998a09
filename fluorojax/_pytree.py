"""Frozen dataclasses registered as JAX pytrees, built the way equinox builds its modules.

A subclass of ``PyTree`` declares its fields and nothing else of its construction::

    class Detector(PyTree):
        pixel_size: jax.Array = field(converter=as_pixel_size)   # a leaf
        height: int = field(static=True, converter=as_height)    # aux data (hashable)

and becomes a frozen dataclass, registered as a pytree (leaves: the fields not marked
``static``, in declaration order; the static ones are the treedef). Its generated ``__init__``
takes the fields in declaration order and builds the object in four steps:

1. every field receives its argument (or default) through its ``converter`` (kind and shape
   checks that read no value, then the dtype: cheap, so they run on tracers too);
2. ``__post_init__``, if the class has one, fills defaults that depend on other fields
   (assignments in it pass through the field's converter, as in equinox's ``__init__``);
3. ``__check_init__``, if any: cheap checks across fields (shapes that must agree);
4. ``__check_values__``, if any, only when every leaf is concrete (no tracer): the host-side
   scans of the values (finite data, ranges, mesh topology), which may also set fields derived
   from what they read. This is the one place where a constructor reads array values.

``obj.replace(**changes)`` is ``dataclasses.replace``: the changed fields pass their converters,
then ``__post_init__`` and ``__check_init__`` run; ``__check_values__`` does not, so an object
derived from a checked one (a volume's new data, a moved mesh) costs no read of its arrays and no
device-to-host copy. Fields declared ``init=False`` (derived by ``__check_values__``) are kept.

Unflattening (inside ``jit``, ``vmap``, ``grad``, ``tree.map``) bypasses all of this, so tracers,
batched leaves and placeholder leaves never meet a converter or a check. Equality, hashing,
``repr`` and pickling are the frozen dataclass's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import jax

_P = TypeVar("_P", bound="PyTree")

_building: set[int] = set()
"""ids of the objects whose construction is under way (their fields may be assigned)."""


def field(
    *,
    static: bool = False,
    converter: Callable[[Any], Any] | None = None,
    default: Any = dataclasses.MISSING,
    init: bool = True,
) -> Any:
    """A field of a ``PyTree``: ``static`` ones are aux data (sizes, flags, names: hashable,
    compared by value), the others leaves; ``converter`` receives every value the field is given
    while the object is built and returns what is stored."""
    return dataclasses.field(default=default, init=init, metadata={"static": static, "converter": converter})


def is_concrete(*values: Any) -> bool:
    """True when no value is a JAX tracer, so it can be inspected on the host."""
    return not any(isinstance(v, jax.core.Tracer) for v in values)


@contextlib.contextmanager
def _construction(obj: PyTree) -> Iterator[None]:
    _building.add(id(obj))
    try:
        yield
    finally:
        _building.discard(id(obj))


def _assign(obj: PyTree, name: str, value: Any) -> None:
    """``obj.name = value`` while ``obj`` is built: converted, then stored; refused afterwards."""
    converters = type(obj)._converters
    if id(obj) not in _building or name not in converters:
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r} of a {type(obj).__name__}")
    convert = converters[name]
    object.__setattr__(obj, name, value if convert is None else convert(value))


def _finish(obj: PyTree) -> None:
    """Steps 2 and 3 of construction, shared by ``__init__`` and ``replace``."""
    post_init = getattr(obj, "__post_init__", None)
    if post_init is not None:
        post_init()
    check = getattr(obj, "__check_init__", None)
    if check is not None:
        check()


def _register(cls: type[PyTree]) -> None:
    """Make ``cls`` a frozen dataclass with the generated ``__init__`` and register it as a pytree."""
    dataclasses.dataclass(frozen=True)(cls)
    fields = dataclasses.fields(cls)
    cls._converters = {f.name: f.metadata.get("converter") for f in fields}
    signature = inspect.signature(cls.__init__)  # the dataclass's: the fields in order, with defaults
    derived = {f.name: f.default for f in fields if not f.init}
    leaves = tuple(f.name for f in fields if not f.metadata.get("static"))
    statics = tuple(f.name for f in fields if f.metadata.get("static"))

    def __init__(self: PyTree, *args: Any, **kwargs: Any) -> None:
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        with _construction(self):
            for name, value in list(bound.arguments.items())[1:]:
                _assign(self, name, value)
            for name, value in derived.items():
                if value is not dataclasses.MISSING:
                    _assign(self, name, value)
            _finish(self)
            check_values = getattr(self, "__check_values__", None)
            if check_values is not None and is_concrete(*jax.tree.leaves([getattr(self, n) for n in leaves])):
                check_values()

    __init__.__signature__ = signature  # type: ignore[attr-defined]
    __init__.__doc__ = f"Build a {cls.__name__} from its fields (see ``fluorojax._pytree``)."
    cls.__init__ = __init__  # type: ignore[method-assign]
    cls.__setattr__ = _assign  # type: ignore[method-assign, assignment]

    def flatten_with_keys(obj: PyTree) -> tuple[tuple[tuple[jax.tree_util.GetAttrKey, Any], ...], tuple]:
        children = tuple((jax.tree_util.GetAttrKey(n), getattr(obj, n)) for n in leaves)
        return children, tuple(getattr(obj, n) for n in statics)

    def unflatten(aux: tuple, children: Any) -> PyTree:
        obj = object.__new__(cls)
        for name, value in zip(leaves + statics, tuple(children) + tuple(aux)):
            object.__setattr__(obj, name, value)
        return obj

    jax.tree_util.register_pytree_with_keys(cls, flatten_with_keys, unflatten)


class PyTree:
    """Base of the package's pytrees: a subclass is a frozen dataclass registered as a pytree,
    built by a generated ``__init__`` (see the module docstring for the steps and the hooks)."""

    _converters: ClassVar[dict[str, Callable[[Any], Any] | None]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _register(cls)

    if TYPE_CHECKING:  # what the subclass's dataclass adds, as mypy cannot read fields through converters
        __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]

        def __init__(self, *args: Any, **kwargs: Any) -> None: ...

    def replace(self: _P, **changes: Any) -> _P:
        """A copy with ``changes`` (field name -> value), built like ``dataclasses.replace``:
        converters on the changed fields, ``__post_init__`` and ``__check_init__``; no
        host-side value scan (``__check_values__``), so no array is read. Fields declared
        ``init=False`` are kept."""
        fields = dataclasses.fields(self)
        settable = {f.name for f in fields if f.init}
        unknown = sorted(set(changes) - settable)
        if unknown:
            raise TypeError(f"{type(self).__name__}.replace: no such field(s) {unknown}; fields: {sorted(settable)}")
        new = object.__new__(type(self))
        with _construction(new):
            for f in fields:
                if f.name in changes:
                    _assign(new, f.name, changes[f.name])
                else:
                    object.__setattr__(new, f.name, getattr(self, f.name))
            _finish(new)
        return new
