"""Speed of the importance-sampled likelihoods (VAE IWAE, AEF ``linear``) against an older checkout, in one run.

What it measures
----------------
Rows per second of ``score_samples`` at the library's default sample counts
(``VAE``: S = 256 importance samples; ``AEF(partition="linear")``: S = 128)
for each model and data set below, in this environment and, with
``--baseline-python``, in a second virtual environment holding the commit
before the float32 engine. Each (version, model, data) runs in a fresh child
process with ``--threads`` torch threads: fit with ``random_state=0`` and
``max_epochs=3`` (timing does not depend on the fit), one warm-up call on 64
rows, then the median of ``--repeats`` timed calls on ``--rows`` rows.

Models and data: the library defaults of each estimator on two tabular sets
of the ODDS collection (``satellite``, 36 features; ``cardio``, 21) and on
scikit-learn's digits (64 pixels / 16); and the conv models of the OOD
benchmark (``architecture="conv"``, ``hidden_layer_sizes=(512,)``, one epoch)
on MNIST, scored on 64 rows per call.

Also reported: the FLOPs per row of the scored computation (matrix products
and convolutions, counted by torch's ``FlopCounterMode`` on the new engine)
and the float32 matrix-product rate of this machine measured in the same run,
which bound the rows per second from above.

How to run
----------
::

    python benchmarks/scoring_speed.py --threads 1 --baseline-python /work/basevenv/bin/python
    python benchmarks/scoring_speed.py --quick

Writes ``benchmarks/results/scoring_speed.md`` (``--output``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from _common import OUTPUT_HELP, markdown_table, matmul_rate, report_path, run_details, run_python, write_report

from skprobae.datasets import DATA_ENV

CHILD = r"""
import json, statistics, sys, time, warnings
import numpy as np, torch
model_name, data_name, rows, repeats, threads, data_dir = sys.argv[1:7]
rows, repeats, threads = int(rows), int(repeats), int(threads)
torch.set_num_threads(threads)
warnings.simplefilter("ignore")
from sklearn.datasets import load_digits
from sklearn.preprocessing import StandardScaler
import skprobae
conv = {}
if data_name == "digits":
    X = load_digits().data / 16
elif data_name == "mnist":
    from skprobae.datasets import load_images
    X = np.asarray(load_images("mnist", split="train", data_dir=data_dir)[0][:4000], dtype=np.float64)
    conv = {"architecture": "conv", "image_shape": (28, 28), "hidden_layer_sizes": (512,)}
else:
    from skprobae.datasets import load_odds
    X = StandardScaler().fit_transform(load_odds(data_name, data_dir)[0])
X = np.ascontiguousarray(np.resize(X, (max(rows, len(X)), X.shape[1])))
model = getattr(skprobae, model_name)(max_epochs=1 if conv else 3, random_state=0, **conv).fit(X[:2000])
model.score_samples(X[:8 if conv else 64])
times = []
for _ in range(repeats):
    start = time.perf_counter()
    scores = model.score_samples(X[:rows])
    times.append(time.perf_counter() - start)
flops = float("nan")
if hasattr(model, "_log_density"):
    from torch.utils.flop_counter import FlopCounterMode
    x = torch.as_tensor(X[:8])
    # with gradients enabled, so that every layer runs a kernel torch counts (without them a conv decoder's last
    # transposed convolution runs on torch's native kernel, which FlopCounterMode has no formula for)
    with torch.enable_grad(), FlopCounterMode(display=False) as counter:
        model._log_density(x)
    flops = counter.get_total_flops() / 8
print(json.dumps({"rate": rows / statistics.median(times), "times": times, "flops": flops,
                  "finite": bool(np.isfinite(scores).all())}))
"""

CASES = [
    ("VAE", "satellite"),
    ("VAE", "cardio"),
    ("VAE", "digits"),
    ("VAE", "mnist"),
    ("AEF", "satellite"),
    ("AEF", "cardio"),
    ("AEF", "digits"),
    ("AEF", "mnist"),
]
CONV_ROWS = 64  # rows per call for the conv models on MNIST (a float64 conv VAE scores about a row per second)


def run(python: str, model: str, data: str, args: argparse.Namespace) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    rows = str(min(args.rows, CONV_ROWS) if data == "mnist" else args.rows)
    data_dir = str(Path(args.data_dir).resolve()) if args.data_dir else ""
    return run_python(python, ["-c", CHILD, model, data, rows, str(args.repeats), str(args.threads), data_dir], env=env)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get(DATA_ENV, ""))
    parser.add_argument("--baseline-python", default=None)
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", type=Path, default=None, help=OUTPUT_HELP)
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.repeats = 256, 1
    args.output = report_path(args.output, "scoring_speed", args.quick)
    start = time.perf_counter()
    limit = matmul_rate(args.threads)
    versions = {"new": sys.executable, **({"baseline": args.baseline_python} if args.baseline_python else {})}
    rows = []
    for model, data in CASES:
        results = {name: run(python, model, data, args) for name, python in versions.items()}
        print(model, data, results, flush=True)
        new, old = results["new"], results.get("baseline", {})
        if "error" in new:
            rows.append([model, data, f"failed: {new['error']}", "", "", "", ""])
            continue
        ratio = f"{new['rate'] / old['rate']:.1f}x" if "rate" in old else old.get("error", "-")
        bound = limit / new["flops"]
        rows.append(
            [
                model,
                data,
                f"{old['rate']:,.0f}" if "rate" in old else "-",
                f"{new['rate']:,.0f}",
                ratio,
                f"{new['flops'] / 1e6:.2f}",
                f"{bound:,.0f} ({bound / new['rate']:.1f}x away)",
            ]
        )
    header = ["model", "data", "baseline rows/s", "new rows/s", "speed-up", "MFLOP per row", "FLOP-bound rows/s"]
    text = "\n".join(
        [
            "# Importance-sampled likelihoods: scoring speed",
            "",
            run_details(time.perf_counter() - start),
            f"- Baseline: {args.baseline_python or 'not run'}; threads per process: {args.threads}",
            f"- Rows per call: {args.rows}; median of {args.repeats} calls after a warm-up; default sample counts "
            "(VAE S = 256, AEF S = 128); models fitted for 3 epochs on up to 2,000 rows",
            f"- Float32 matrix-product rate measured in this run: {limit / 1e9:.1f} GFLOP/s; the FLOP-bound column "
            "divides it by the FLOPs per row (products and convolutions only)",
            "",
            markdown_table(header, rows),
            "",
        ]
    )
    write_report(args.output, text)


if __name__ == "__main__":
    main()
