"""The thread policy and the cold start, before and after: shared-machine fits, a small search, import costs.

What it measures
----------------
Each measurement runs in a fresh child process, once with this environment's
skprobae and once with ``--baseline-python`` (a second virtual environment
holding the commit before the thread policy), with torch's default thread
count (every core), as a user's script would:

* ``demo``: ``examples/demo_digits.py`` (two 200-epoch fits on digits),
  wall seconds, with one other busy process on the machine (a CPU-bound
  Python loop started before and stopped after);
* ``30-epoch fit``: ``ProbabilisticAutoencoder(max_epochs=30,
  n_iter_no_change=None)`` on digits, wall seconds of ``fit``, quiet machine
  and with one busy process;
* ``search``: ``GridSearchCV`` over 4 candidates x 3 folds of a small
  ``ProbabilisticAutoencoder`` (20 epochs, and 100) on digits with
  ``n_jobs=1`` and ``n_jobs=2`` (joblib's process pool, started inside the
  timing), quiet machine, two runs; and the same search once more in each of
  those processes (joblib reuses its workers: they are started and have
  imported torch). As a reference, the same search shape over
  scikit-learn's ``GaussianMixture`` (60 EM iterations, one BLAS thread per
  process), whose workers import scikit-learn only;
* ``cold start``: seconds to ``import torch``, then ``import sklearn``, then
  ``import skprobae``, then the first fit of a 1-epoch model (which includes
  torch's lazy imports on the first optimizer step), then a second one.

How to run
----------
::

    python benchmarks/threads.py --baseline-python /work/basevenv/bin/python

Writes ``benchmarks/results/threads.md`` (``--output``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import OUTPUT_HELP, markdown_table, report_path, run_details, run_python, write_report

ROOT = Path(__file__).resolve().parents[1]

FIT = r"""
import json, time
from sklearn.datasets import load_digits
from skprobae import ProbabilisticAutoencoder
X = load_digits().data / 16
start = time.perf_counter()
ProbabilisticAutoencoder(n_components=16, max_epochs=30, n_iter_no_change=None, random_state=0).fit(X)
print(json.dumps({"seconds": time.perf_counter() - start}))
"""

SEARCH = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
from sklearn.datasets import load_digits
from sklearn.model_selection import GridSearchCV
jobs, model, epochs = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
X = load_digits().data / 16
if model == "gmm":  # scikit-learn's own estimator, the reference: no torch in its workers
    from sklearn.mixture import GaussianMixture
    estimator = GaussianMixture(max_iter=epochs, tol=0, random_state=0)
    grid = {"n_components": [4, 8], "covariance_type": ["full", "diag"]}
else:
    from skprobae import ProbabilisticAutoencoder
    estimator = ProbabilisticAutoencoder(max_epochs=epochs, random_state=0)
    grid = {"n_components": [4, 8], "distribution": ["normal", "normal_diag"]}
seconds = []
for _ in range(2):  # the second search reuses joblib's worker processes, started (and imported) by the first
    start = time.perf_counter()
    GridSearchCV(estimator, grid, cv=3, n_jobs=jobs).fit(X)
    seconds.append(time.perf_counter() - start)
print(json.dumps({"seconds": seconds[0], "again": seconds[1]}))
"""

SEARCHES = {"": ("skprobae", "20"), ", 100 epochs": ("skprobae", "100")}
"""The searches timed in each version: label suffix -> (model, epochs)."""

REFERENCE_SEARCH = ("gmm", "60")
"""scikit-learn's GaussianMixture over the same grid shape, timed once (with this environment's Python)."""

ONE_BLAS_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
"""The reference search's environment: with numpy's default two BLAS threads its own small products oversubscribe
the two cores (n_jobs=1 took 10.3 s instead of 2.5 s), which would flatter n_jobs=2."""

COLD = r"""
import json, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
import sklearn.base, sklearn.utils.validation
t2 = time.perf_counter()
import skprobae
t3 = time.perf_counter()
import numpy as np
X = np.random.default_rng(0).normal(size=(200, 8))
skprobae.ProbabilisticAutoencoder(max_epochs=1, random_state=0).fit(X)
t4 = time.perf_counter()
skprobae.ProbabilisticAutoencoder(max_epochs=1, random_state=0).fit(X)
t5 = time.perf_counter()
times = {"torch": t1 - t0, "sklearn": t2 - t1, "skprobae": t3 - t2, "first fit": t4 - t3, "second fit": t5 - t4}
print(json.dumps(times))
"""


def child(python: str, code: str, *args: str, env: dict | None = None) -> dict:
    return run_python(python, ["-c", code, *args], env=env)


def demo(python: str) -> dict:
    start = time.perf_counter()
    out = run_python(
        python, [str(ROOT / "examples" / "demo_digits.py"), "--output", "/tmp/threads_demo.png"], json_output=False
    )
    return out if "error" in out else {"seconds": time.perf_counter() - start}


class BusyProcess:
    """A CPU-bound Python loop in another process while the block runs (one core taken)."""

    def __enter__(self):
        self.process = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
        return self

    def __exit__(self, *exc):
        self.process.kill()
        self.process.wait()


def median_seconds(runs: list[dict]) -> str:
    good = [r["seconds"] for r in runs if "seconds" in r]
    if not good:
        return runs[0].get("error", "failed")
    return f"{statistics.median(good):.1f}" + (f" ({', '.join(f'{s:.1f}' for s in good)})" if len(good) > 1 else "")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-python", default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", type=Path, default=None, help=OUTPUT_HELP)
    args = parser.parse_args(argv)
    args.output = report_path(args.output, "threads", False)
    start = time.perf_counter()
    versions = {"new": sys.executable, **({"baseline": args.baseline_python} if args.baseline_python else {})}
    table = {name: {} for name in versions}
    for name, python in versions.items():
        with BusyProcess():
            table[name]["demo, one busy process"] = median_seconds([demo(python)])
        table[name]["30-epoch fit, quiet"] = median_seconds([child(python, FIT) for _ in range(args.repeats)])
        with BusyProcess():
            table[name]["30-epoch fit, one busy process"] = median_seconds(
                [child(python, FIT) for _ in range(args.repeats)]
            )
        searches = {
            **SEARCHES,
            **({" (scikit-learn GaussianMixture, reference)": REFERENCE_SEARCH} if name == "new" else {}),
        }
        for label, (model, epochs) in searches.items():
            for jobs in ("1", "2"):
                env = ONE_BLAS_THREAD if model == "gmm" else None
                runs = [child(python, SEARCH, jobs, model, epochs, env=env) for _ in range(2)]
                table[name][f"GridSearchCV{label} n_jobs={jobs}, quiet"] = median_seconds(runs)
                again = [{"seconds": r["again"]} if "again" in r else r for r in runs]
                table[name][f"the same search{label} again in that process, n_jobs={jobs}"] = median_seconds(again)
        cold = [child(python, COLD) for _ in range(args.repeats)]
        for part in ("torch", "sklearn", "skprobae", "first fit", "second fit"):
            values = [c[part] for c in cold if part in c]
            table[name][f"cold start: {part}"] = f"{statistics.median(values):.2f}" if values else "failed"
        print(name, table[name], flush=True)
    keys = list(table["new"])
    rows = [[key, *(table[name].get(key, "-") for name in versions)] for key in keys]
    text = "\n".join(
        [
            "# Threads and cold start",
            "",
            run_details(time.perf_counter() - start),
            f"- Versions: {', '.join(f'{k}: {v}' for k, v in versions.items())}; torch's default thread count "
            f"(os.cpu_count()={os.cpu_count()}); seconds, median of the runs shown in brackets",
            "",
            markdown_table(["measurement (seconds)", *versions], rows),
            "",
        ]
    )
    write_report(args.output, text)


if __name__ == "__main__":
    main()
