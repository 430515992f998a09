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

from fluorojax.augment.artefacts import FONT
from fluorojax.augment.artefacts import burnt_in_text
from fluorojax.augment.artefacts import coarse_dropout
from fluorojax.augment.artefacts import collimator
from fluorojax.augment.artefacts import pixel_dropout
from fluorojax.augment.blur import binomial_blur
from fluorojax.augment.blur import detector_blur
from fluorojax.augment.blur import emboss
from fluorojax.augment.blur import median_blur
from fluorojax.augment.blur import motion_blur
from fluorojax.augment.blur import sharpen
from fluorojax.augment.core import Transform
from fluorojax.augment.core import apply_batch
from fluorojax.augment.core import identity
from fluorojax.augment.core import one_of
from fluorojax.augment.core import sequence
from fluorojax.augment.core import some_of
from fluorojax.augment.core import with_probability
from fluorojax.augment.geometric import elastic
from fluorojax.augment.geometric import random_affine
from fluorojax.augment.geometric import resize
from fluorojax.augment.geometric import sample_affine
from fluorojax.augment.geometric import warp_affine
from fluorojax.augment.intensity import brightness_contrast
from fluorojax.augment.intensity import channel_shuffle
from fluorojax.augment.intensity import gamma
from fluorojax.augment.intensity import gaussian_contrast
from fluorojax.augment.intensity import invert
from fluorojax.augment.intensity import negative_log
from fluorojax.augment.detector_noise import electronic_noise
from fluorojax.augment.detector_noise import quantum_noise
from fluorojax.augment.equalisation import clahe
from fluorojax.augment.pipelines import default_pipeline
from fluorojax.augment.pipelines import validation_pipeline
from fluorojax.augment.weather import drizzle
from fluorojax.augment.weather import fog
from fluorojax.augment.windowing import mixture_window
from fluorojax.augment.windowing import window

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
