"""Generator throughput: images/s at 256 x 256 and 448 x 448 with every mask, per stage.

Runs the generator's own stages on the bundled example CT (89 labelled structures), after a
warm-up scene that compiles everything:

  render   : the DRR pass alone (per-material line integrals, no labels), for comparison;
  volume   : the DRR and every label's travel / entry / exit in one traversal (so masks cost
             volume - render);
  tools    : mesh rendering of the scene's tools (hits, travel); tissue: the CT under them;
  physics  : polychromatic Beer-Lambert + Poisson noise;
  annotate : device -> host copies and Annotation objects;
  encoding : COCO RLE + float16 base64 of every annotation (``encode_annotation``);
  writing  : ``FluoroSegWriter.write_image`` (TIFF + JSON, atomic), minus the encoding.

Usage: python benchmarks/bench_generate.py [--scenes N] [--views V] [--sizes 256 448]
Writes benchmarks/results/generate.md.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from fluorojax.fluoroseg import FluoroSegWriter, encode_annotation
from fluorojax.raycast import render
from fluorojax.scene.generate import example_case, prepare_case, render_scene_images
from fluorojax.scene.spec import SceneSpec

STAGES = ("render", "volume", "masks", "tools", "tissue", "physics", "annotate", "encoding", "writing")


def bench(size: int, scenes: int, views: int) -> dict:
    spec = SceneSpec(images_per_ct=(scenes + 1) * views).replace(
        device={"image_sizes": [[size, size]]},
        tools={"probability": 1.0, "max_count": 2, "kinds": ["k_wire"], "kwire_lengths_mm": [150.0]},
        render={"views_per_scene": views},
    )
    prepared = prepare_case(example_case(), spec)
    render_scene_images(prepared, spec, 0, range(0, views))  # compile
    stages: dict = {}
    records = []
    start = time.perf_counter()
    for s in range(1, scenes + 1):
        records += render_scene_images(prepared, spec, 0, range(s * views, (s + 1) * views), stages)
    total_render = time.perf_counter() - start
    # the DRR alone, for the same number of views (one traversal without labels)
    from fluorojax.camera import Camera

    camera = Camera(size, size, 350.0 / size, 1000.0)
    poses = jnp.stack([jnp.asarray(r.camera["pose"], jnp.float32) for r in records[:views]])
    plain = jax.jit(lambda p: render(prepared.densities, camera, p))
    jax.block_until_ready(plain(poses))
    t = time.perf_counter()
    for _ in range(scenes):
        jax.block_until_ready(plain(poses + 0.0))
    stages["render"] = time.perf_counter() - t
    stages["masks"] = max(stages["volume"] - stages["render"], 0.0)
    t = time.perf_counter()
    for r in records:
        for a in r.annotations:
            encode_annotation(a, size, size)
    stages["encoding"] = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as root:
        writer = FluoroSegWriter(root)
        t = time.perf_counter()
        for r in records:
            r.write(writer, "bench", seed=0)
        stages["writing"] = max(time.perf_counter() - t - stages["encoding"], 0.0)
    n = len(records)
    pipeline = total_render + stages["encoding"] + stages["writing"]
    return {
        "size": size,
        "images": n,
        "images_per_s": n / pipeline,
        "per_image": {k: stages.get(k, 0.0) / n for k in STAGES},
        "annotations": float(np.mean([len(r.annotations) for r in records])),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=2, help="timed scenes per size")
    parser.add_argument("--views", type=int, default=4, help="views per scene (batch)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 448])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "generate.md"))
    args = parser.parse_args(argv)
    rows = [bench(s, args.scenes, args.views) for s in args.sizes]
    device = jax.devices()[0]
    lines = [
        "# Generator throughput (example CT, 89 structures, K-wires, 16-bin polychromatic spectra, Poisson noise)",
        "",
        f"Device: {device.platform} ({device.device_kind}), {platform.processor() or platform.machine()}; "
        f"{args.scenes} timed scenes of {args.views} views per size after a compiling warm-up; seconds per image.",
        "`volume` is the DRR and all label travel/entry/exit in one traversal; `render` the DRR alone; `masks` = volume - render.",
        "",
        "| image | images/s | " + " | ".join(STAGES) + " | annotations/image |",
        "|---|---|" + "---|" * len(STAGES) + "---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']} x {r['size']} | {r['images_per_s']:.3f} | "
            + " | ".join(f"{r['per_image'][k]:.3f}" for k in STAGES)
            + f" | {r['annotations']:.0f} |"
        )
    for r in rows:
        timed = {k: v for k, v in r["per_image"].items() if k not in ("render", "masks")}
        lines.append("")
        lines.append(f"At {r['size']} x {r['size']} the dominant stage is **{max(timed, key=timed.get)}**.")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
