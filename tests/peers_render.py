"""Render one view in DiffDRR 0.6.1 and nanodrr 0.1.7 from geometry converted by fluorojax.interop.

Run by tests/test_interop.py with the peers' own Python (torch lives only there):
    PEERS_PYTHON tests/peers_render.py IN.npz OUT.npz
IN holds the volume (data, affine), DiffDRR's DRR keyword arguments and pose (diffdrr_*), and
nanodrr's from_carm_intrinsics arguments and rt_inv (nanodrr_*); OUT gets one (H, W) image per
renderer: diffdrr_siddon, diffdrr_trilinear, nanodrr (raw volume values x mm, no HU conversion).
"""

import sys

import numpy as np
import torch
from torchio import ScalarImage


def main(source, target):
    given = np.load(source)
    data = np.asarray(given["data"], np.float32)
    affine = np.asarray(given["affine"], np.float64)
    images = {}

    from diffdrr.data import read
    from diffdrr.drr import DRR
    from diffdrr.pose import RigidTransform

    subject = read(ScalarImage(tensor=torch.from_numpy(data)[None], affine=affine), orientation="AP")
    kwargs = {k[len("diffdrr_kw_") :]: given[k].item() for k in given.files if k.startswith("diffdrr_kw_")}
    pose = RigidTransform(torch.tensor(given["diffdrr_pose"], dtype=torch.float32)[None])
    for renderer in ("siddon", "trilinear"):
        drr = DRR(
            subject, renderer=renderer, **{k: (int(v) if k in ("height", "width") else v) for k, v in kwargs.items()}
        )
        drr.density = torch.from_numpy(data)
        extra = {"n_points": 400} if renderer == "trilinear" else {}
        with torch.no_grad():
            images[f"diffdrr_{renderer}"] = drr(pose, **extra)[0, 0].numpy()

    from nanodrr.data import Subject
    from nanodrr.drr import DRR as NanoDRR

    nano_subject = Subject.from_images(
        ScalarImage(tensor=torch.from_numpy(data)[None], affine=affine), convert_to_mu=False
    )
    kwargs = {k[len("nanodrr_kw_") :]: given[k].item() for k in given.files if k.startswith("nanodrr_kw_")}
    kwargs["height"], kwargs["width"] = int(kwargs["height"]), int(kwargs["width"])
    drr = NanoDRR.from_carm_intrinsics(**kwargs, dtype=torch.float32)
    rt_inv = torch.tensor(given["nanodrr_rt_inv"], dtype=torch.float32)[None]
    with torch.no_grad():
        images["nanodrr"] = drr(nano_subject, rt_inv, n_samples=400, backend="torch")[0, 0].numpy()
    np.savez(target, **images)


if __name__ == "__main__":
    main(*sys.argv[1:3])
