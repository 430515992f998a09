"""2D/3D registration: image similarity metrics, pose errors and optax pose optimisation."""

from fluorojax.registration.animate import write_animation
from fluorojax.registration.metrics import (
    double_geodesic,
    gradient_field_alignment,
    gradient_ncc,
    mean_projection_error,
    mean_reprojection_error,
    mtre,
    multiscale_ncc,
    mutual_information,
    ncc,
    patch_ncc,
    reprojection_error,
    rotation_error,
    soft_histogram_weights,
    summarize,
    translation_error,
)
from fluorojax.registration.mismatch import MismatchSettings, mismatched_target
from fluorojax.registration.optimize import (
    PARAMETERIZATIONS,
    RegistrationResult,
    Search,
    correction_to_pose,
    downsample,
    pyramid_camera,
    register,
    register_views,
)
from fluorojax.registration.preprocess import saturation_mask

__all__ = [
    "PARAMETERIZATIONS",
    "MismatchSettings",
    "RegistrationResult",
    "Search",
    "correction_to_pose",
    "double_geodesic",
    "downsample",
    "gradient_field_alignment",
    "gradient_ncc",
    "mean_projection_error",
    "mean_reprojection_error",
    "mismatched_target",
    "mtre",
    "multiscale_ncc",
    "mutual_information",
    "ncc",
    "patch_ncc",
    "pyramid_camera",
    "register",
    "register_views",
    "reprojection_error",
    "rotation_error",
    "saturation_mask",
    "soft_histogram_weights",
    "summarize",
    "translation_error",
    "write_animation",
]
