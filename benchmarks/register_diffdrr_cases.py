"""DiffDRR's side of the registration benchmark on a range of its cases, in chunks.

DiffDRR needs about a minute per registration at 128 x 128 and several at 256 x 256 on a CPU,
so the full case set does not fit one run of ``bench_register.py``; this runs DiffDRR alone on
cases [START, STOP) of the same case list (same seed, views, offsets, noise and options as
``bench_register.py``'s defaults), CHUNK cases per subprocess, and writes one JSON per chunk
(summary plus per-case mTRE and times) as it goes, so a stopped run keeps what it measured.

    python benchmarks/register_diffdrr_cases.py START STOP CHUNK SIZE [--out DIR] [--torch-threads N]
    python benchmarks/register_diffdrr_cases.py --merge [--out DIR]

``--merge`` combines DiffDRR's cases from ``bench_register.py``'s run (results/register.json) with
the chunks in DIR, case by case, and prints per size the success rate, median mTRE and times of
DiffDRR against fluorojax's on the same cases (the table in BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import bench_register as bench
import numpy as np

from fluorojax.camera import Camera
from fluorojax.volume import hu_to_mu, load_example

RESULTS = Path(__file__).resolve().parent / "results"


def merge(out_dir: Path, main_run: Path) -> str:
    """Markdown rows: DiffDRR's cases of the main run and of the chunks, in case order, against
    fluorojax's per-case mTRE on the same cases (from the main run's 50-case rows)."""
    rows = json.loads(main_run.read_text())["rows"]
    lines = [
        "| peer run | size | success (mTRE < 1 mm) | median mTRE mm | median time per registration | fluorojax on the same cases |",
        "|---|---|---|---|---|---|",
    ]
    for size in sorted({r["size"] for r in rows}):
        fluorojax = max(
            (r for r in rows if r["size"] == size and r["library"] == "fluorojax"), key=lambda r: r["cases"]
        )
        first = next(r for r in rows if r["size"] == size and r["library"].startswith("DiffDRR"))
        chunks = sorted(
            (json.loads(f.read_text()) for f in out_dir.glob(f"diffdrr_{size}_*.json")), key=lambda r: r["first_case"]
        )
        mtre, times = list(first["mtre_mm"]), []
        for chunk in chunks:
            if chunk["first_case"] != len(mtre):
                raise ValueError(
                    f"size {size}: chunk starting at case {chunk['first_case']} does not follow case {len(mtre)}"
                )
            mtre += chunk["mtre_mm"]
            times += chunk["times"]
        n = len(mtre)
        mtre, same = np.asarray(mtre), np.asarray(fluorojax["mtre_mm"][:n])
        time = f"first {first['cases']} (main run): {first['median_time_s']:.1f} s"
        if times:
            time += f"; cases {first['cases'] + 1}-{n}: {np.median(times):.1f} s"
        lines.append(
            f"| {first['library']}, cases 1-{n} | {size} | {100 * np.mean(mtre < 1):.0f} % ({n}) | {np.median(mtre):.3f} | {time} | "
            f"{100 * np.mean(same < 1):.0f} % ({n}), median mTRE {np.median(same):.3f} mm; all {fluorojax['cases']} cases: "
            f"median {fluorojax['median_time_s']:.1f} s |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("start", type=int, nargs="?")
    parser.add_argument("stop", type=int, nargs="?")
    parser.add_argument("chunk", type=int, nargs="?")
    parser.add_argument("size", type=int, nargs="?")
    parser.add_argument("--cases", type=int, default=50, help="size of the case list (bench_register.py --cases)")
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "register-diffdrr")
    parser.add_argument("--merge", action="store_true", help="print the combined table and exit")
    args = parser.parse_args()
    if args.merge:
        print(merge(args.out, RESULTS / "register.json"))
        return
    if None in (args.start, args.stop, args.chunk, args.size):
        parser.error("START STOP CHUNK SIZE are required unless --merge")
    if not 0 <= args.start < args.stop <= args.cases or args.chunk < 1:
        parser.error(f"need 0 <= start < stop <= {args.cases} and chunk >= 1")

    volume = hu_to_mu(load_example()).replace(labels=None)
    points = bench.target_points(volume)
    camera = Camera(args.size, args.size, bench.DETECTOR_MM / args.size, bench.SDD_MM)
    targets, truths, inits, _ = bench.make_cases(volume, camera, args.cases, 1e5, 0)
    options = {
        "steps": (60, 60, 60),
        "scales": (4, 2, 1),
        "lr_rotation": 1e-2,
        "lr_translation": 1.0,
        "lr_decay": 0.05,
        "patience": 20,
        "tol": 1e-6,
    }  # bench_register.py's defaults
    args.out.mkdir(parents=True, exist_ok=True)
    for a in range(args.start, args.stop, args.chunk):
        b = min(a + args.chunk, args.stop)
        out = bench.run_diffdrr(volume, camera, targets[a:b], inits[a:b], truths[0], options, args.torch_threads)
        row = bench.summarise(
            str(out["versions"]),
            args.size,
            out["poses"],
            truths[a:b],
            inits[a:b],
            out["times"],
            out["warmup"],
            out["steps"],
            points,
        )
        row.update(first_case=a, times=[float(t) for t in out["times"]])
        (args.out / f"diffdrr_{args.size}_{a}_{b}.json").write_text(json.dumps(row, indent=1))
        print(a, b, row["success_rate"], row["median_time_s"], flush=True)


if __name__ == "__main__":
    main()
