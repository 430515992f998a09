"""The ``fluorojax`` command: ``render``, ``register``, ``generate``, ``preview`` (``--help`` on each)."""

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


def _register_parser(sub):
    p = sub.add_parser(
        "register",
        help="find the C-arm pose whose DRR of a CT matches an X-ray image",
        description=(
            "2D/3D registration: optimise the pose of a DRR of the CT (mu from HU) so that it matches the "
            "target image by normalised cross-correlation, starting from a C-arm pose, with a coarse-to-fine "
            "pyramid. The target is a (H, W) image in .png, .tif/.tiff or .npy whose pixels follow the "
            "camera given by --sdd and --pixel-size (the DRR convention: row 0 at the top as seen from the "
            "source); its intensity scale does not matter. Writes the pose as JSON and an overlay image."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("target", help="target X-ray image (.png, .tif/.tiff or .npy)")
    p.add_argument("ct", nargs="?", help="CT volume (.nii/.nii.gz) in HU; default: the bundled example chest CT")
    p.add_argument("--carm", nargs=2, type=float, metavar=("LAO", "CRA"), default=(0.0, 0.0), help="initial C-arm angles in degrees")
    p.add_argument("--isocenter", nargs=3, type=float, metavar=("X", "Y", "Z"), help="initial isocentre in world mm; default: the CT's centre")
    p.add_argument("--sid", type=_positive(float), default=DEFAULT_SOURCE_TO_ISOCENTER, help="initial source-to-isocentre distance, mm")
    p.add_argument("--sdd", type=_positive(float), default=DEFAULT_SDD, help="source-to-detector distance, mm")
    p.add_argument("--pixel-size", type=_positive(float), help=f"pixel size in mm; default: {DEFAULT_DETECTOR_MM:g} mm / W")
    p.add_argument("--method", choices=("siddon", "trilinear"), default="siddon", help="renderer")
    p.add_argument("--steps", type=_positive(int), default=100, help="optimiser steps per pyramid level")
    p.add_argument("--scales", nargs="+", type=_positive(int), default=(4, 2, 1), help="pyramid downsampling factors, coarsest first")
    p.add_argument("--out", default="pose.json", help="output JSON: the registered 4x4 world_from_camera pose and the loss history")
    p.add_argument("--overlay", default="overlay.png", help="output PNG: target in grey, DRR edges before (red) and after (green)")
    p.set_defaults(func=_register)


def _load_image(path):
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such image: {path}")
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        image = np.load(path)
    elif ext in (".tif", ".tiff"):
        import tifffile

        image = tifffile.imread(path)
    elif ext == ".png":
        from PIL import Image

        image = np.asarray(Image.open(path).convert("F"))
    else:
        raise ValueError(f"target image must be .png, .tif/.tiff or .npy, got {path!r}")
    image = np.asarray(image, np.float32)
    if image.ndim != 2 or not np.all(np.isfinite(image)):
        raise ValueError(f"target image {path} must be a finite 2-D (H, W) array, got shape {image.shape}")
    return image


def _register(args):
    import fluorojax as fj

    target = _load_image(args.target)
    height, width = target.shape
    for scale in args.scales:
        if height % scale or width % scale:
            raise ValueError(f"--scales {scale} must divide the target's size {height} x {width}")
    volume = fj.hu_to_mu(fj.load_volume(args.ct) if args.ct else fj.load_example())
    camera = fj.Camera(height, width, args.pixel_size or DEFAULT_DETECTOR_MM / width, args.sdd)
    isocenter = np.asarray(args.isocenter if args.isocenter else volume.center, np.float32)
    init = fj.carm_pose(args.carm[0], args.carm[1], args.sid, isocenter)
    result = fj.register(volume, camera, target, init, method=args.method, steps=args.steps, scales=tuple(args.scales))
    before = np.asarray(fj.render(volume, camera, init, args.method))
    after = np.asarray(fj.render(volume, camera, result.pose, args.method))
    record = {"pose": np.asarray(result.pose).tolist(), "initial_pose": np.asarray(init).tolist(),
              "loss": float(result.loss), "losses": np.asarray(result.losses).tolist(), "target": os.path.abspath(args.target)}
    _write_atomic(args.out, lambda tmp: open(tmp, "w").write(json.dumps(record, indent=1)))
    _write_atomic(args.overlay, lambda tmp: _overlay(target, before, after).save(tmp, format="PNG"))
    print(f"wrote {args.out} (final loss {float(result.loss):.4f}, from {float(result.losses[0]):.4f}) and {args.overlay}")


def _edges(image):
    gy, gx = np.gradient(image.astype(np.float64))
    magnitude = np.hypot(gx, gy)
    return magnitude > np.percentile(magnitude, 90)


def _overlay(target, before, after):
    from PIL import Image

    lo, hi = np.percentile(target, [0.5, 99.5])
    grey = np.clip((target - lo) / max(hi - lo, 1e-12), 0, 1)
    rgb = np.repeat(grey[..., None], 3, axis=-1) * 0.8
    rgb[_edges(before)] = (1.0, 0.2, 0.2)
    rgb[_edges(after)] = (0.2, 1.0, 0.2)
    return Image.fromarray(np.round(rgb * 255).astype(np.uint8))


def _write_atomic(path, write):
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"output folder does not exist: {folder}")
    tmp = path + ".partial" + os.path.splitext(path)[1]
    write(tmp)
    os.replace(tmp, path)


def _load_pose(path):
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such pose file: {path}")
    if path.endswith(".npy"):
        pose = np.load(path)
    else:
        with open(path) as f:
            pose = np.asarray(json.load(f), np.float64)
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
        image = fj.render_polychromatic(volume, camera, pose, spec, method=args.method)
        if args.photons is not None:
            image = physics.detector_noise(jax.random.key(args.seed), image, args.photons)
        image = physics.neglog(image)
    _save(np.asarray(image, np.float32), args.out)
    print(f"wrote {args.out}: {height} x {width} DRR, values {image.min():.3f} to {image.max():.3f}")


def _save(image, path):
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        _write_atomic(path, lambda tmp: np.save(open(tmp, "wb"), image))
    elif ext in (".tif", ".tiff"):
        import tifffile

        _write_atomic(path, lambda tmp: tifffile.imwrite(tmp, image))
    elif ext == ".png":
        from PIL import Image

        lo, hi = np.percentile(image, [0.5, 99.5])
        scaled = np.clip((image - lo) / max(hi - lo, 1e-12), 0, 1)
        _write_atomic(path, lambda tmp: Image.fromarray(np.round(scaled * 255).astype(np.uint8)).save(tmp, format="PNG"))
    else:
        raise ValueError(f"output must end in .png, .tif/.tiff or .npy, got {path!r}")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="fluorojax", description="Differentiable X-ray simulation in JAX.")
    sub = parser.add_subparsers(dest="command", required=True)
    _render_parser(sub)
    _register_parser(sub)
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
