"""2D/3D registration: image similarity metrics, pose errors and optax pose optimisation."""

from fluorojax.registration.metrics import (
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
from fluorojax.registration.optimize import (
    PARAMETERIZATIONS,
    RegistrationResult,
    correction_to_pose,
    downsample,
    pyramid_camera,
    register,
)

__all__ = [
    "PARAMETERIZATIONS",
    "RegistrationResult",
    "correction_to_pose",
    "downsample",
    "gradient_ncc",
    "mtre",
    "multiscale_ncc",
    "mutual_information",
    "ncc",
    "patch_ncc",
    "pyramid_camera",
    "register",
    "reprojection_error",
    "rotation_error",
    "soft_histogram_weights",
    "translation_error",
]
