"""Benchmark: FluoroSeg's training augmentation, fluorojax.augment vs albumentations.

Batches of 32 raw-intensity images at 448 x 448 (FluoroSAM's input size) with 16 boolean masks
each go through ``fluorojax.augment.default_pipeline((448, 448))`` (one jitted call per batch,
both batch modes of ``apply_batch``) and through FluoroSeg's loader pipeline built from
albumentations 1.4 (its ``build_augmentation(train=True)`` steps and arguments: RandomFog,
RandomRain drizzle, PixelDropout, CoarseDropout, CLAHE on LAB as albumentations does; its custom
steps, negative log, k-means mixture window with scikit-learn's KMeans, Gaussian contrast, are
written here in numpy as ``A.Lambda``), on the same images in the same run. As in the loader,
the SomeOf count is drawn once when the pipeline is built; both sides use the same count.
Reports seconds per batch (median of the timed batches, after one warm-up batch that includes
JAX's compilation, reported separately) and writes a markdown table to
benchmarks/results/augment.md.

Setup (albumentations kept out of the main environment, as it pins its own deps):

    python -m venv --system-site-packages .venv-aug
    .venv-aug/bin/pip install "albumentations==1.4.24" scikit-learn
    .venv-aug/bin/python benchmarks/bench_augment.py [--batches 3] [--machine "..."]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

import fluorojax.augment as fa

SIZE = 448
BATCH = 32
N_MASKS = 16


def synthetic_batch(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(B, H, W) raw detector intensities exp(-line integral) of random ellipses, and
    (B, N, H, W) bool masks of those ellipses."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    images = np.empty((BATCH, SIZE, SIZE), np.float32)
    masks = np.empty((BATCH, N_MASKS, SIZE, SIZE), bool)
    for b in range(BATCH):
        li = np.full((SIZE, SIZE), 0.5)
        for n in range(N_MASKS):
            cy, cx = rng.uniform(0.2, 0.8, 2)
            ry, rx = rng.uniform(0.05, 0.3, 2)
            inside = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1
            li += inside * rng.uniform(0.1, 1.0)
            masks[b, n] = inside
        images[b] = np.exp(-li)
    return images, masks


# ---------------------------------------------------------------- albumentations version


def albumentations_pipeline(rng: np.random.Generator, n_intensity: int):
    import albumentations as A
    from sklearn.cluster import KMeans

    def neglog(img, **kw):
        img = img.astype(np.float32)
        return -np.log(img + img.min(axis=(0, 1), keepdims=True) + 1e-3)

    def lerp_window(x, x_lo, x_hi):
        lo, hi = x.min(), x.max()
        return np.interp(x, [lo, x_lo, x_hi, hi], [0.0, 0.1, 0.9, 1.0]).astype(np.float32)

    def mixture(img, **kw):
        x = img[..., 0]
        out = np.empty(x.shape + (3,), np.float32)
        out[..., 0] = (x - x.min()) / (x.max() - x.min())
        pts = x.reshape(-1, 1)
        km = KMeans(n_clusters=2, max_iter=100).fit(pts[:: max(1, pts.shape[0] // 1000)])
        labels = km.predict(pts).reshape(x.shape)
        order = np.argsort(km.cluster_centers_.ravel())
        for i, lab in enumerate(order):
            member = x[labels == lab]
            c, s = km.cluster_centers_.ravel()[lab], member.std()
            out[..., i + 1] = lerp_window(x, max(c - 3 * s, member.min()), min(c + 3 * s, member.max()))
        return out

    def gaussian_contrast(img, **kw):
        h, w = img.shape[:2]
        a = rng.uniform(0.6, 1.4)
        s = rng.uniform(0.1, 0.5) * min(h, w)
        r0, c0 = rng.uniform(0, h), rng.uniform(0, w)
        yy, xx = np.mgrid[0:h, 0:w]
        g = np.exp(-((yy - r0) ** 2 + (xx - c0) ** 2) / (2 * s * s))
        gain = (1 + (a - 1) * g / g.max())[..., None]
        return np.clip(0.5 + (img - 0.5) * gain, 0, 1).astype(np.float32)

    ident = dict(mask=lambda m, **kw: m)
    clahe = A.Sequential(
        [
            A.FromFloat(max_value=255, dtype="uint8", p=1),
            A.CLAHE(clip_limit=(4, 6), tile_grid_size=(8, 12), p=1),
            A.ToFloat(max_value=255, p=1),
        ],
        p=1,
    )

    def some_of(n):
        return A.SomeOf(
            [
                A.OneOf([A.GaussianBlur((3, 5)), A.MotionBlur(blur_limit=(3, 5)), A.MedianBlur(blur_limit=5)]),
                A.OneOf([A.Sharpen(alpha=(0.2, 0.5)), A.Emboss(alpha=(0.2, 0.5))]),
                A.RandomBrightnessContrast(brightness_limit=(0, 0), contrast_limit=(-2, 2)),
                A.Lambda(image=gaussian_contrast, **ident, p=1.0),
                A.OneOf(
                    [
                        A.RandomFog(fog_coef_lower=0.1, fog_coef_upper=0.3, alpha_coef=0.08),
                        A.RandomRain(rain_type="drizzle", drop_width=1, blur_value=1),
                    ]
                ),
                A.OneOf(
                    [
                        A.PixelDropout(dropout_prob=0.05),
                        A.CoarseDropout(
                            max_holes=20, max_height=64, max_width=64, min_holes=8, min_height=8, min_width=8, p=0.8
                        ),
                    ],
                    p=3,
                ),
                A.ChannelShuffle(p=0.5),
            ],
            n=n,
            replace=False,
        )

    def build(n):
        return A.Compose(
            [
                A.Lambda(image=neglog, **ident, p=1),
                A.InvertImg(p=1),
                A.Lambda(image=mixture, **ident, p=1),
                A.InvertImg(p=0.5),
                A.OneOf([clahe, some_of(n)]),
                A.Resize(SIZE, SIZE, p=1),
            ]
        )

    compose = build(n_intensity)

    def run(images, masks):
        out = []
        for img, m in zip(images, masks):
            res = compose(
                image=np.repeat(img[..., None], 3, axis=-1), mask=np.moveaxis(m, 0, -1).astype(np.uint8)
            )
            out.append((res["image"], res["mask"]))
        return out

    return run, A.__version__


# ---------------------------------------------------------------- timing


def time_batches(fn, batches, warmup: bool):
    times = []
    first = None
    for i, (images, masks) in enumerate(batches):
        t0 = time.perf_counter()
        fn(i, images, masks)
        dt = time.perf_counter() - t0
        if i == 0 and warmup:
            first = dt
        else:
            times.append(dt)
    return first, statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=3, help="timed batches (plus one warm-up)")
    parser.add_argument("--machine", default=f"{platform.processor() or platform.machine()} CPU")
    parser.add_argument("--vmap", action="store_true", help="also time vmap batching (every branch runs: slow on CPU)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "augment.md"))
    args = parser.parse_args()

    batches = [synthetic_batch(s) for s in range(args.batches + 1)]
    jbatches = [(jnp.asarray(i), jnp.asarray(m)) for i, m in batches]
    n_intensity = int(np.random.default_rng(0).integers(2, 5))  # the loader's build-time draw
    pipe = fa.default_pipeline((SIZE, SIZE), intensity_count=n_intensity)
    rows = []
    for vectorize in (False, True) if args.vmap else (False,):
        fn = jax.jit(lambda k, i, m, v=vectorize: fa.apply_batch(pipe, k, i, m, vectorize=v))

        def call(b, images, masks, fn=fn):
            keys = jax.random.split(jax.random.key(b), BATCH)
            jax.block_until_ready(fn(keys, images, masks))

        first, med = time_batches(call, jbatches, warmup=True)
        mode = "vmap" if vectorize else "lax.map"
        rows.append((f"fluorojax.augment ({mode}, jit)", med, first))
        print(rows[-1], flush=True)

    run_alb, alb_version = albumentations_pipeline(np.random.default_rng(0), n_intensity)
    _, med = time_batches(lambda b, i, m: run_alb(i, m), batches, warmup=False)
    rows.append((f"albumentations {alb_version} (+ numpy/scikit-learn steps)", med, None))
    print(rows[-1], flush=True)

    alb = rows[-1][1]
    lines = [
        "# Augmentation: FluoroSeg training pipeline",
        "",
        f"Batches of {BATCH} raw images at {SIZE} x {SIZE} with {N_MASKS} bool masks each, "
        f"median seconds per batch over {args.batches} batches (same images for every row); "
        f"SomeOf count {n_intensity} on both sides (drawn once, as FluoroSeg's loader does).",
        f"Machine: {args.machine}; jax {jax.__version__} on {jax.devices()[0].platform}.",
        "",
        "| implementation | s / batch | images / s | vs albumentations | first batch (compile) s |",
        "|---|---|---|---|---|",
    ]
    for name, med, first in rows:
        lines.append(
            f"| {name} | {med:.2f} | {BATCH / med:.1f} | {alb / med:.2f}x | "
            f"{'' if first is None else f'{first:.1f}'} |"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
