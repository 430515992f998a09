"""Jittable, PRNG-keyed image augmentations for X-ray images with masks.

Every transform is a pure function ``(key, image, masks) -> (image, masks)``: image (H, W) or
(H, W, C) float32, masks (N, H, W) float or bool; options are keyword-only (bind them with
``functools.partial``). Geometric transforms move the masks with the image; all others leave
masks untouched. For batches use :func:`apply_batch`, which maps over the batch on the CPU and
vmaps on accelerators (vmapping a pipeline of ``lax.cond``/``lax.switch`` branches computes
every branch). ``default_pipeline`` is the FluoroSeg training augmentation.

Modules, one idea each: ``core`` (composition and batching), ``intensity`` (pointwise tone
changes), ``windowing`` (the [min, max] and k-means windows), ``equalisation`` (CLAHE),
``weather`` (fog and drizzle), ``blur``, ``detector_noise``, ``artefacts`` (dropout, shutters,
burnt-in text), ``geometric`` and ``pipelines``. Every transform is differentiable with respect
to the image; each module's docstring says how (8-bit steps by stand-in gradients, random
choices held fixed).
"""

from fluorojax.augment.artefacts import FONT, burnt_in_text, coarse_dropout, collimator, pixel_dropout
from fluorojax.augment.blur import binomial_blur, detector_blur, emboss, median_blur, motion_blur, sharpen
from fluorojax.augment.core import Transform, apply_batch, identity, one_of, sequence, some_of, with_probability
from fluorojax.augment.detector_noise import electronic_noise, quantum_noise
from fluorojax.augment.equalisation import clahe
from fluorojax.augment.geometric import elastic, random_affine, resize, sample_affine, warp_affine
from fluorojax.augment.intensity import (
    brightness_contrast,
    channel_shuffle,
    gamma,
    gaussian_contrast,
    invert,
    negative_log,
)
from fluorojax.augment.pipelines import default_pipeline, validation_pipeline
from fluorojax.augment.weather import drizzle, fog
from fluorojax.augment.windowing import mixture_window, window

__all__ = [
    "FONT",
    "Transform",
    "apply_batch",
    "binomial_blur",
    "brightness_contrast",
    "burnt_in_text",
    "channel_shuffle",
    "clahe",
    "coarse_dropout",
    "collimator",
    "default_pipeline",
    "detector_blur",
    "drizzle",
    "electronic_noise",
    "elastic",
    "emboss",
    "fog",
    "gamma",
    "gaussian_contrast",
    "identity",
    "invert",
    "median_blur",
    "mixture_window",
    "motion_blur",
    "negative_log",
    "one_of",
    "pixel_dropout",
    "quantum_noise",
    "random_affine",
    "resize",
    "sample_affine",
    "sequence",
    "sharpen",
    "some_of",
    "validation_pipeline",
    "warp_affine",
    "window",
    "with_probability",
]
