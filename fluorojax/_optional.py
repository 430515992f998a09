"""Optional dependencies: one kind of error, naming the extra that brings the missing package."""

from __future__ import annotations

import importlib
from types import ModuleType


def import_optional(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module``, or raise ImportError saying which extra of fluorojax installs it.

    Args:
      module: the module to import, e.g. ``"ray"``.
      extra: the fluorojax extra that installs it, e.g. ``"ray"`` for ``pip install 'fluorojax[ray]'``.
      purpose: what needs it, for the message, e.g. ``"backend='ray'"``.
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{purpose} needs the optional package {module.split('.')[0]!r}: pip install 'fluorojax[{extra}]'"
        ) from err
