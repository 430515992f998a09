"""Optional readers: import a package of the ``dicom`` extra or raise one clear ImportError."""

from __future__ import annotations

import importlib

EXTRA = "dicom"
"""The extra that installs the clinical readers: ``pip install "fluorojax[dicom]"`` (pydicom, pynrrd)."""


def require(module: str, purpose: str):
    """The imported ``module``, or ImportError naming the extra that installs it and why it is needed."""
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"{purpose} needs the package {module.split('.')[0]!r}, which is not installed: "
            f'pip install "fluorojax[{EXTRA}]"  ({err})'
        ) from err
