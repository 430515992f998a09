"""2D/3D registration: image similarity metrics, pose errors and optax pose optimisation."""

from fluorojax.register.metrics import (
    gradient_ncc,
    mtre,
    multiscale_ncc,
    mutual_information,
    ncc,
    patch_ncc,
    reprojection_error,
    rotation_error,
    soft_histogram_weights,
    translation_error,
)

__all__ = [
    "gradient_ncc",
    "mtre",
    "multiscale_ncc",
    "mutual_information",
    "ncc",
    "patch_ncc",
    "reprojection_error",
    "rotation_error",
    "soft_histogram_weights",
    "translation_error",
]
