"""The ``fluorojax`` command: ``render``, ``generate``, ``preview`` (``fluorojax <command> --help``)."""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

from fluorojax.cli_generate import add_generate_parser, add_preview_parser

DEFAULT_SDD = 1020.0
DEFAULT_SOURCE_TO_ISOCENTER = 510.0
DEFAULT_DETECTOR_MM = 400.0


def _positive(kind):
    def parse(text):
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value

    return parse


def _render_parser(sub):
    p = sub.add_parser(
        "render",
        help="render a DRR of a CT to an image file",
        description=(
            "Render a digitally reconstructed radiograph of a CT (NIfTI, Hounsfield units) seen by a "
            "C-arm. Without --kvp the image is the monochromatic line integral of mu (60 keV water); "
            "with --kvp it is the polychromatic -log image of a tube spectrum (air, soft tissue and "
            "bone by HU thresholds), optionally with Poisson noise for --photons per pixel."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("ct", nargs="?", help="CT volume (.nii/.nii.gz) in HU; default: the bundled example chest CT")
    p.add_argument("--labels", help="label map on the CT's grid (.nii/.nii.gz); checked against the CT's grid")
    view = p.add_mutually_exclusive_group()
    view.add_argument(
        "--carm",
        nargs=2,
        type=float,
        metavar=("LAO", "CRA"),
        default=(0.0, 0.0),
        help="C-arm angles in degrees: LAO (+) / RAO (-) about the patient's long axis, CRA (+) / CAU (-) tilt; 0 0 is AP",
    )
    view.add_argument("--pose", help="world_from_camera 4x4 pose (mm) as a .npy file or a JSON nested list")
    p.add_argument("--isocenter", nargs=3, type=float, metavar=("X", "Y", "Z"), help="isocentre in world mm; default: the CT's centre")
    p.add_argument("--sid", type=_positive(float), default=DEFAULT_SOURCE_TO_ISOCENTER, help="source-to-isocentre distance, mm (with --carm)")
    p.add_argument("--sdd", type=_positive(float), default=DEFAULT_SDD, help="source-to-detector distance, mm")
    p.add_argument("--size", nargs=2, type=_positive(int), metavar=("H", "W"), default=(256, 256), help="image size in pixels")
    p.add_argument("--pixel-size", type=_positive(float), help=f"pixel size in mm; default: {DEFAULT_DETECTOR_MM:g} mm / W")
    p.add_argument("--method", choices=("siddon", "trilinear"), default="siddon", help="exact voxel traversal or trilinear ray marching")
    p.add_argument("--kvp", type=int, help="tube voltage for a polychromatic image (one of the shipped spectra, e.g. 60, 80, 90, 100, 120)")
    p.add_argument("--photons", type=_positive(float), help="photons per pixel for Poisson noise (needs --kvp)")
    p.add_argument("--seed", type=int, default=0, help="random seed for the noise")
    p.add_argument("--out", default="drr.png", help="output file: .png (8-bit, windowed), .tiff (float32) or .npy (float32)")
    p.set_defaults(func=_render)


def _load_pose(path):
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such pose file: {path}")
    pose = np.load(path) if path.endswith(".npy") else np.asarray(json.load(open(path)), np.float64)
    if pose.shape != (4, 4) or not np.all(np.isfinite(pose)):
        raise ValueError(f"pose in {path} must be a finite 4x4 world_from_camera matrix, got shape {pose.shape}")
    return pose


def _render(args):
    import jax

    import fluorojax as fj
    from fluorojax import physics

    if args.photons is not None and args.kvp is None:
        raise ValueError("--photons needs --kvp: noise is simulated on the polychromatic intensity")
    volume = fj.load_volume(args.ct, labels=args.labels) if args.ct else fj.load_example()
    height, width = args.size
    camera = fj.Camera(height, width, args.pixel_size or DEFAULT_DETECTOR_MM / width, args.sdd)
    if args.pose:
        pose = _load_pose(args.pose)
    else:
        isocenter = np.asarray(args.isocenter if args.isocenter else volume.center, np.float32)
        pose = fj.carm_pose(args.carm[0], args.carm[1], args.sid, isocenter)
    if args.kvp is None:
        image = fj.render(fj.hu_to_mu(volume), camera, pose, args.method)
    else:
        spec = physics.spectrum(args.kvp)
        image = physics.render_polychromatic(volume, camera, pose, spec, method=args.method)
        if args.photons is not None:
            image = physics.detector_noise(jax.random.key(args.seed), image, args.photons)
        image = physics.neglog(image)
    _save(np.asarray(image, np.float32), args.out)
    print(f"wrote {args.out}: {height} x {width} DRR, values {image.min():.3f} to {image.max():.3f}")


def _save(image, path):
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"output folder does not exist: {folder}")
    ext = os.path.splitext(path)[1].lower()
    tmp = path + ".partial" + ext
    if ext == ".npy":
        np.save(tmp, image)
    elif ext in (".tif", ".tiff"):
        import tifffile

        tifffile.imwrite(tmp, image)
    elif ext == ".png":
        from PIL import Image

        lo, hi = np.percentile(image, [0.5, 99.5])
        scaled = np.clip((image - lo) / max(hi - lo, 1e-12), 0, 1)
        Image.fromarray(np.round(scaled * 255).astype(np.uint8)).save(tmp, format="PNG")
    else:
        raise ValueError(f"output must end in .png, .tif/.tiff or .npy, got {path!r}")
    os.replace(tmp, path)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fluorojax", description="Differentiable X-ray simulation in JAX.")
    sub = parser.add_subparsers(dest="command", required=True)
    _render_parser(sub)
    add_generate_parser(sub)
    add_preview_parser(sub)
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, TypeError) as err:
        print(f"fluorojax {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
