"""Ready-made pipelines: FluoroSeg's training and validation augmentation, in JAX.

Both take a raw detector-intensity image (H, W) float32 (before the negative log, as stored
in FluoroSeg TIFFs) and masks (N, H, W), and return an (H', W', 3) float32 image in [0, 1]
and (N, H', W') masks at ``image_size`` = (H', W').

Source: the public FluoroSeg loader, ``build_augmentation(image_size, train)`` in
``src/fluoroseg/alb/build_aug.py`` of https://github.com/arcadelab/fluoroseg (commit
18d6cfd), with ``alb/neglog.py`` and ``alb/window.py`` (Killeen et al., FluoroSAM, MICCAI
2025; CC BY-NC-SA: restated here as a list of steps and parameters, no code taken). Steps,
parameters and probabilities, read with albumentations 1.4 semantics (Compose applies each
step with its own probability; OneOf picks one child with probabilities proportional to the
children's ``p`` and forces it; SomeOf picks n children without replacement weighted by their
``p``, forces them and applies them in listed order; a ``p`` the loader leaves unset is the
transform's albumentations default, 0.5, or 1 for ``Lambda``):

1. negative log (shift by the minimum plus 1e-3);
2. invert;
3. k-means mixture window into three channels (``keep_original=True, model="kmeans"``);
4. invert with probability 0.5;
5. with probability 0.5 (OneOf's default ``p``), one of, equally likely:

   a. CLAHE on the image quantised to uint8, clip limit uniform in [4, 6], OpenCV
      ``tileGridSize=(8, 12)`` (8 tile columns, 12 tile rows), on the L channel of LAB;
   b. n of these (``n=np.random.randint(2, 5)``: 2, 3 or 4), weighted by their ``p``: one of
      Gaussian / motion / median blur with kernel 3-5 (0.5); one of sharpen / emboss with
      alpha 0.2-0.5 (0.5); brightness 0, contrast -2..2 (0.5); Gaussian contrast alpha 0.6-1.4,
      sigma 0.1-0.5 (1, a ``Lambda``); one of fog (``RandomFog``, coefficient 0.1-0.3, alpha
      0.08) / drizzle (``RandomRain(rain_type="drizzle", drop_width=1, blur_value=1)``) (0.5);
      one of pixel dropout 5 % (0.5) / coarse dropout of 8-20 holes of 8-64 px (0.8) (3.0);
      channel shuffle (0.5);

6. resize to ``image_size`` (bilinear image, nearest masks).

Every ``p`` above is either set in the loader or the albumentations default it relies on. The
pixel dropout's weight 0.5 is such a default: the loader calls ``Dropout(dropout_prob=0.05)``
without ``p``. ``Dropout`` comes from the loader's ``alb/dropout.py``, which the public
repository does not include; public copies of that module subclass ``A.PixelDropout`` and
override only the mask, box and keypoint targets (masks untouched, as here), so its ``p`` is
PixelDropout's default, 0.5.

Differences from FluoroSeg. Random streams: JAX keys instead of NumPy and Python generators,
so the same distribution, not the same draws. The SomeOf count: the loader evaluates
``np.random.randint(2, 5)`` once, when it builds the pipeline, so one training run uses one
count throughout; :func:`default_pipeline` draws it per sample by default (the same marginal
distribution) and takes ``intensity_count=n`` to fix it as the loader does. K-means starts at
the quartiles instead of scikit-learn's random k-means++ start and stops by scikit-learn's
rule, so both reach the same two-cluster optimum (see :func:`~fluorojax.augment.mixture_window`).
OpenCV's fixed-point 8-bit arithmetic is matched exactly where it is integer (HSV forward,
circle and line rasterisation, CLAHE) and to within a level elsewhere (the fog layer's
Gaussian blur, RGB <-> LAB around CLAHE, HSV back to RGB).

The validation pipeline is the loader's ``train=False`` branch: negative log, invert, mixture
window, invert, resize.

:func:`render_augmented` fuses rendering and augmentation: DRRs and label masks for a batch of
poses, then a pipeline, in one jittable call.
"""

from __future__ import annotations

import functools
import numbers

import jax

from fluorojax.augment import (
    artefacts,
    blur,
    core,
    equalisation,
    geometric,
    intensity,
    weather,
    windowing,
)

__all__ = ["default_pipeline", "validation_pipeline"]

_P = functools.partial


def _check_size(image_size: tuple[int, int]) -> tuple[int, int]:
    h, w = (int(v) for v in image_size)
    if h < 1 or w < 1:
        raise ValueError(f"image_size must be two positive ints (H, W), got {image_size!r}")
    return h, w


def _mixture_preamble() -> list[core.Transform]:
    return [intensity.negative_log, intensity.invert, windowing.mixture_window]


def default_pipeline(
    image_size: tuple[int, int] = (448, 448),
    *,
    intensity_count: int | tuple[int, int] = (2, 4),
) -> core.Transform:
    """FluoroSeg's training augmentation (see the module docstring for steps and sources).

    ``intensity_count`` is the number of intensity transforms step 5b applies: an int fixes it,
    as FluoroSeg's loader does when it is built (pass ``np.random.randint(2, 5)`` to draw it the
    same way); the default (2, 4) draws it per sample, uniformly in 2..4.

    Returns a transform ``(key, image (H, W) raw intensity, masks (N, H, W)) ->
    (image (H', W', 3) in [0, 1], masks (N, H', W'))`` with (H', W') = ``image_size``, jitted,
    and the same object for the same arguments (so eager calls and :func:`apply_batch` reuse
    its compiled program). Differentiable with respect to the image (each transform's
    docstring says how).
    """
    count: int | tuple[int, ...]
    if isinstance(intensity_count, (int, numbers.Integral)):
        count = int(intensity_count)
    else:
        count = tuple(int(n) for n in intensity_count)
    return _default_pipeline(_check_size(image_size), count)


@functools.cache
def _default_pipeline(size: tuple[int, int], intensity_count) -> core.Transform:
    clahe = _P(equalisation.clahe, clip_limit=(4.0, 6.0), grid=(12, 8))
    intensity_transforms = core.some_of(
        [
            core.one_of(
                [
                    _P(blur.binomial_blur, kernel_size=(3, 5)),
                    _P(blur.motion_blur, kernel_size=(3, 5)),
                    _P(blur.median_blur, kernel_size=(3, 5)),
                ]
            ),
            core.one_of([_P(blur.sharpen, alpha=(0.2, 0.5)), _P(blur.emboss, alpha=(0.2, 0.5))]),
            _P(intensity.brightness_contrast, brightness=(0.0, 0.0), contrast=(-2.0, 2.0)),
            _P(intensity.gaussian_contrast, alpha=(0.6, 1.4), sigma=(0.1, 0.5)),
            core.one_of(
                [
                    _P(weather.fog, coefficient=(0.1, 0.3), alpha=0.08),
                    _P(weather.drizzle, blur=1),
                ]
            ),
            core.one_of(
                [
                    _P(artefacts.pixel_dropout, probability=0.05),
                    _P(artefacts.coarse_dropout, holes=(8, 20), height=(8, 64), width=(8, 64)),
                ],
                weights=(0.5, 0.8),
            ),
            intensity.channel_shuffle,
        ],
        n=intensity_count,
        weights=(0.5, 0.5, 0.5, 1.0, 0.5, 3.0, 0.5),
    )
    return jax.jit(
        core.sequence(
            *_mixture_preamble(),
            core.with_probability(0.5, intensity.invert),
            core.with_probability(0.5, core.one_of([clahe, intensity_transforms])),
            _P(geometric.resize, shape=size),
        )
    )


def validation_pipeline(image_size: tuple[int, int] = (448, 448)) -> core.Transform:
    """FluoroSeg's validation preprocessing: negative log, invert, mixture window, invert,
    resize; deterministic (the key is unused by every step). Same returns as
    :func:`default_pipeline`."""
    return _validation_pipeline(_check_size(image_size))


@functools.cache
def _validation_pipeline(size: tuple[int, int]) -> core.Transform:
    return jax.jit(core.sequence(*_mixture_preamble(), intensity.invert, _P(geometric.resize, shape=size)))
