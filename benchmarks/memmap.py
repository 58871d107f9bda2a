"""Peak memory of a fit on a float32 memory-mapped file larger than a few GB.

What it measures
----------------
A float32 ``np.memmap`` of ``--rows`` x 784 (3.1 GB at the default 1,000,000
rows; pixel-like values in [0, 1]) is written once to ``--path``. Each
variant then fits, in a fresh child process, ``ProbabilisticAutoencoder(
distribution="mse", n_components=32, hidden_layer_sizes=(256, 64),
max_epochs=1, random_state=0)`` on the file opened with ``mode="r"``, and
scores 100,000 of its rows; a sampler thread records the process's resident
memory every 20 ms (``/proc/self/status``: ``VmRSS`` and its anonymous and
file-backed parts), and the kernel's ``VmHWM`` (peak resident set) is read at
the end. Variants:

* ``skprobae (this checkout)``: the library as installed in this environment;
* ``baseline``: another checkout given with ``--baseline-python`` (a Python of
  a second virtual environment with the older skprobae installed), to show
  the change in the same run.

Reported: the file size, peak resident memory (``VmHWM``), peak anonymous
and file-backed memory (sampled), fit and score seconds.

How to run
----------
::

    python benchmarks/memmap.py --threads 1
    python benchmarks/memmap.py --threads 1 --baseline-python /work/basevenv/bin/python

Writes ``benchmarks/results/memmap.md`` (``--output``; ``--quick``: 100,000
rows, written to ``benchmarks/results/quick/``).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import OUTPUT_HELP, markdown_table, report_path, run_details, run_python, write_report

N_FEATURES = 784

CHILD = r"""
import json, sys, time
import numpy as np, torch
path, rows, threads, benchmarks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.set_num_threads(threads)
sys.path.insert(0, benchmarks)
from _common import PeakMemory
from skprobae import ProbabilisticAutoencoder

X = np.memmap(path, dtype=np.float32, mode="r", shape=(rows, 784))
model = ProbabilisticAutoencoder(distribution="mse", n_components=32, hidden_layer_sizes=(256, 64),
                                 max_epochs=1, random_state=0)
with PeakMemory() as memory:
    start = time.perf_counter()
    model.fit(X)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    scores = model.score_samples(X[: min(rows, 100_000)])
    score_s = time.perf_counter() - start
result = {"fit_s": fit_s, "score_s": score_s, "hwm": memory.hwm, "finite": bool(np.isfinite(scores).all())}
print(json.dumps({**result, **{"peak_" + k: v for k, v in memory.peak.items()}}))
"""


def write_file(path: Path, rows: int) -> None:
    """Pixel-like float32 rows in [0, 1], written block by block (never held in memory)."""
    if path.exists() and path.stat().st_size == rows * N_FEATURES * 4:
        return
    rng = np.random.default_rng(0)
    prototypes = rng.random((64, N_FEATURES), dtype=np.float32)
    with path.open("wb") as handle:
        for start in range(0, rows, 50_000):
            n = min(50_000, rows - start)
            block = prototypes[rng.integers(0, 64, n)] + 0.1 * rng.standard_normal((n, N_FEATURES), dtype=np.float32)
            handle.write(np.clip(block, 0, 1).astype(np.float32).tobytes())


def run_variant(python: str, path: Path, rows: int, threads: int, env: dict) -> dict:
    here = str(Path(__file__).resolve().parent)
    return run_python(python, ["-c", CHILD, str(Path(path).resolve()), str(rows), str(threads), here], env=env)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--path", type=Path, default=Path(tempfile.gettempdir()) / "skprobae_memmap.f32")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--baseline-python", default=None, help="python of an environment with an older skprobae")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", type=Path, default=None, help=OUTPUT_HELP)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows = 100_000
    args.output = report_path(args.output, "memmap", args.quick)
    start = time.perf_counter()
    write_file(args.path, args.rows)
    size = args.path.stat().st_size
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    variants = {"skprobae (this checkout)": sys.executable}
    if args.baseline_python:
        variants["baseline (--baseline-python)"] = args.baseline_python
    rows = []
    for name, python in variants.items():
        result = run_variant(python, args.path, args.rows, args.threads, env)
        print(name, result, flush=True)
        if "error" in result:
            rows.append([name, f"failed: {result['error']}", "", "", "", ""])
            continue
        gb = 1e9
        rows.append(
            [
                name,
                f"{result['hwm'] / gb:.2f} ({result['hwm'] / size:.2f}x the file)",
                f"{result['peak_RssAnon'] / gb:.2f}",
                f"{result['peak_RssFile'] / gb:.2f}",
                f"{result['fit_s']:.1f}",
                f"{result['score_s']:.1f}",
            ]
        )
    header = ["variant", "peak resident GB (VmHWM)", "peak anonymous GB", "peak file-backed GB", "fit s", "score s"]
    text = "\n".join(
        [
            "# Fitting on a memory-mapped file",
            "",
            run_details(time.perf_counter() - start),
            f"- File: float32 np.memmap, {args.rows:,} x {N_FEATURES} = {size / 1e9:.2f} GB, opened with mode='r'",
            "- Model: ProbabilisticAutoencoder(distribution='mse', n_components=32, hidden_layer_sizes=(256, 64), "
            "max_epochs=1, random_state=0); then score_samples on 100,000 rows; each variant in a fresh process",
            "",
            markdown_table(header, rows),
            "",
        ]
    )
    write_report(args.output, text)


if __name__ == "__main__":
    main()
