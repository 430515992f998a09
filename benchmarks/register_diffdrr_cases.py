"""DiffDRR's side of the registration benchmark on a range of its cases, in chunks.

DiffDRR needs about a minute per registration at 128 x 128 and several at 256 x 256 on a CPU,
so the full case set does not fit one run of ``bench_register.py``; this runs DiffDRR alone on
cases [START, STOP) of the same case list (same seed, views, offsets, noise and options as
``bench_register.py``'s defaults), CHUNK cases per subprocess, and writes one JSON per chunk
(summary plus per-case mTRE and times) as it goes, so a stopped run keeps what it measured.

    python benchmarks/register_diffdrr_cases.py START STOP CHUNK SIZE [--out DIR] [--torch-threads N]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import bench_register as bench
from fluorojax.camera import Camera
from fluorojax.volume import hu_to_mu, load_example


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("start", type=int)
    parser.add_argument("stop", type=int)
    parser.add_argument("chunk", type=int)
    parser.add_argument("size", type=int)
    parser.add_argument("--cases", type=int, default=50, help="size of the case list (bench_register.py --cases)")
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "register-diffdrr")
    args = parser.parse_args()
    if not 0 <= args.start < args.stop <= args.cases or args.chunk < 1:
        parser.error(f"need 0 <= start < stop <= {args.cases} and chunk >= 1")

    volume = hu_to_mu(load_example()).replace(labels=None)
    points = bench.target_points(volume)
    camera = Camera(args.size, args.size, bench.DETECTOR_MM / args.size, bench.SDD_MM)
    targets, truths, inits, _ = bench.make_cases(volume, camera, args.cases, 1e5, 0)
    options = {"steps": (60, 60, 60), "scales": (4, 2, 1), "lr_rotation": 1e-2, "lr_translation": 1.0, "lr_decay": 0.05,
               "patience": 20, "tol": 1e-6}  # bench_register.py's defaults
    args.out.mkdir(parents=True, exist_ok=True)
    for a in range(args.start, args.stop, args.chunk):
        b = min(a + args.chunk, args.stop)
        out = bench.run_diffdrr(volume, camera, targets[a:b], inits[a:b], truths[0], options, args.torch_threads)
        row = bench.summarise(str(out["versions"]), args.size, out["poses"], truths[a:b], inits[a:b], out["times"],
                              out["warmup"], out["steps"], points)
        row.update(first_case=a, times=[float(t) for t in out["times"]])
        (args.out / f"diffdrr_{args.size}_{a}_{b}.json").write_text(json.dumps(row, indent=1))
        print(a, b, row["success_rate"], row["median_time_s"], flush=True)


if __name__ == "__main__":
    main()
