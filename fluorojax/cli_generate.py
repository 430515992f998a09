"""The ``fluorojax generate`` and ``fluorojax preview`` commands (registered by ``fluorojax.cli``).

``fluorojax generate OUT_DIR [--cts DIR | --ct CT --labels LABELS --structures CSV]
--images-per-ct N [--config spec.yaml] [--seed S] [--resume]`` writes a FluoroSeg dataset
(default: the bundled example CT); ``fluorojax preview [CT --labels L --structures CSV]
--out sweep.gif`` writes an animated C-arm sweep with coloured mask overlays and labels.
"""

from __future__ import annotations

import argparse
import colorsys
import zlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from fluorojax import _validate
from fluorojax._cli_args import finite_float, non_negative_int, positive_int
from fluorojax._display import to_uint8, window
from fluorojax._files import check_writable, write_atomic

if TYPE_CHECKING:  # Pillow is imported when a preview is drawn
    import PIL.Image


def _case_arguments(p, *, positional_ct: bool):
    if positional_ct:
        p.add_argument("ct", nargs="?", help="CT volume (.nii/.nii.gz) in HU; default: the bundled example chest CT")
    else:
        p.add_argument("--ct", help="one CT (.nii/.nii.gz, HU); needs --labels and --structures")
    p.add_argument("--labels", help="its label map on the CT's grid (.nii/.nii.gz)")
    p.add_argument("--structures", help="CSV id,structure naming every label id (TotalSegmentator names)")


def _single_case(args, name):
    from fluorojax.scene.generate import CaseSource, example_case

    given = [args.ct, args.labels, args.structures]
    if not any(given):
        return example_case()
    if not all(given):
        raise ValueError("a CT needs --labels and --structures as well (or give none of them for the bundled example)")
    return CaseSource(name, args.ct, args.labels, args.structures)


def add_generate_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Register ``generate`` on an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "generate",
        help="generate a FluoroSeg dataset (DRRs, masks, text) from CTs with label maps",
        description=(
            "Render DRRs of CTs with near-standard and random C-arm views, sampled devices and tools, and "
            "write them with every structure's and tool's mask and descriptions in the FluoroSeg layout. "
            "A --cts folder holds one sub-folder per case with ct.nii.gz, labels.nii.gz and structures.csv "
            "(id,structure). The same seed gives the same files; --resume continues a killed run."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("out_dir", help="dataset folder to write")
    p.add_argument("--cts", help="folder of case folders (ct.nii.gz, labels.nii.gz, structures.csv)")
    _case_arguments(p, positional_ct=False)
    p.add_argument("--case-name", default="case", help="case name for --ct")
    p.add_argument("--images-per-ct", type=positive_int, help="images per CT (default: the config's, 100)")
    p.add_argument("--config", help="scene spec (.yaml/.yml/.json, data only)")
    p.add_argument("--seed", type=non_negative_int, help="random seed (default: the config's, 0)")
    p.add_argument("--resume", action="store_true", help="continue a partial dataset, skipping complete images")
    p.add_argument("--backend", choices=("local", "ray"), default="local", help="render here or on a Ray cluster")
    p.add_argument("--ray-address", help="Ray cluster address (e.g. auto); default: start a local one")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_generate)
    return p


def _generate(args):
    from fluorojax.scene.generate import find_cases, generate
    from fluorojax.scene.spec import SceneSpec, load_spec

    if args.cts and (args.ct or args.labels or args.structures):
        raise ValueError("give either --cts or --ct/--labels/--structures, not both")
    cases = find_cases(args.cts) if args.cts else [_single_case(args, args.case_name)]
    spec = load_spec(args.config) if args.config else SceneSpec()
    if args.images_per_ct is not None:
        spec = spec.replace(images_per_ct=args.images_per_ct)
    summary = generate(
        args.out_dir,
        cases,
        spec,
        seed=args.seed,
        resume=args.resume,
        progress=not args.no_progress,
        backend=args.backend,
        ray_address=args.ray_address,
    )
    print(f"{args.out_dir}: {summary}")


def add_preview_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    """Register ``preview`` on an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "preview",
        help="write an animated C-arm sweep (GIF) with coloured mask overlays and labels",
        description="Sweep a C-arm around a CT (LAO/RAO) and write a GIF of its DRRs with every structure's mask in colour.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _case_arguments(p, positional_ct=True)
    p.add_argument("--out", default="sweep.gif", help="output GIF")
    p.add_argument("--frames", type=positive_int, default=24, help="frames of the sweep")
    p.add_argument(
        "--sweep", type=finite_float, nargs=2, default=(-90.0, 90.0), metavar=("FROM", "TO"), help="LAO range, degrees"
    )
    p.add_argument("--size", type=positive_int, default=192, help="image side, pixels")
    p.add_argument(
        "--labels-shown", type=non_negative_int, default=8, help="names written on each frame (largest masks)"
    )
    p.set_defaults(func=_preview)
    return p


def category_colour(category_id: int) -> tuple[int, int, int]:
    """A fixed, well-spread RGB colour for a category id."""
    hue = (zlib.crc32(str(category_id).encode()) % 1000) / 1000.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(255 * red), int(255 * green), int(255 * blue)


def overlay(
    image: npt.ArrayLike, travel: np.ndarray, category_ids: Sequence[int], names: Sequence[str], n_names: int
) -> PIL.Image.Image:
    """A PIL RGB image: ``image`` (H, W) windowed to grey, each mask of ``travel`` (L, H, W) tinted
    with its category's colour, the ``n_names`` largest masks named at their centroids."""
    from PIL import Image, ImageDraw

    rgb = np.repeat(window(image, (1, 99))[..., None], 3, -1) * 0.75
    masks = travel > 0
    for mask, cid in zip(masks, category_ids):
        rgb[mask] = 0.65 * rgb[mask] + 0.35 * np.asarray(category_colour(cid)) / 255.0
    picture = Image.fromarray(to_uint8(rgb))
    draw = ImageDraw.Draw(picture)
    for k in np.argsort([-m.sum() for m in masks])[:n_names]:
        if masks[k].any():
            rows, cols = np.nonzero(masks[k])
            draw.text(
                (float(cols.mean()), float(rows.mean())), names[k], fill=category_colour(category_ids[k]), anchor="mm"
            )
    return picture


def _preview(args):
    import jax.numpy as jnp

    import fluorojax as fj
    from fluorojax.fluoroseg import describe
    from fluorojax.scene.generate import prepare_case
    from fluorojax.scene.spec import SceneSpec

    if not args.out.lower().endswith(".gif"):
        raise ValueError(f"--out must be a .gif file, got {args.out!r}")
    out = check_writable(args.out, "--out")
    _validate.fits_memory(f"a preview of 4 frames of {args.size} x {args.size}", 4, args.size, args.size)
    source = _single_case(args, "preview")
    prepared = prepare_case(source, SceneSpec())
    volume, _ = source.load()
    mu = fj.hu_to_mu(volume)
    names = [describe(c)[0] for c in prepared.category_ids]
    camera = fj.Camera(args.size, args.size, 380.0 / args.size, 1020.0)
    iso = jnp.asarray(prepared.anatomy.origin, jnp.float32)
    angles = np.linspace(args.sweep[0], args.sweep[1], args.frames)
    frames = []
    for start in range(0, len(angles), 4):
        poses = fj.carm_pose(
            jnp.asarray(angles[start : start + 4]), jnp.zeros(len(angles[start : start + 4])), 700.0, iso
        )
        trace = fj.render_with_labels(mu, camera, poses, prepared.label_ids)
        for image, travel in zip(np.asarray(trace.image), np.asarray(trace.travel)):
            frames.append(overlay(image, travel, prepared.category_ids, names, args.labels_shown))
    write_atomic(
        out, lambda f: frames[0].save(f, format="GIF", save_all=True, append_images=frames[1:], duration=120, loop=0)
    )
    print(
        f"wrote {args.out}: {len(frames)} frames of {args.size} x {args.size}, LAO {args.sweep[0]:g} to {args.sweep[1]:g} degrees"
    )
