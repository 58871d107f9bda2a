"""Fit cost of ``PAE()`` on the ten ODDS sets against an older checkout, with IsolationForest as the yardstick.

What it measures
----------------
``benchmarks/odds.py`` restricted to ``skprobae PAE`` and ``PyOD IForest``
(ADBench's protocol: stratified 70/30 split per seed, ``StandardScaler``
pipeline, library defaults; in this environment also
``PAE(refit_on_inliers=False)``), run once in this environment and, with
``--baseline-python``, once in a second virtual environment holding the
commit before the engine rework. The two runs go one after the other, never
side by side, each with ``--threads`` torch threads. Reported per set and in
total: the summed fit seconds over the seeds, the mean AUROC, the speed-up of
the new fit over the baseline's and the ratio of ``PAE``'s fit time to
IsolationForest's measured in the same run.

How to run
----------
::

    python benchmarks/fit_cost.py --data-dir /path/to/shared/data --threads 1 \\
        --baseline-python /path/to/basevenv/bin/python
    python benchmarks/fit_cost.py --quick

Writes ``benchmarks/results/fit_cost.md`` (``--output``); the runs' caches lie
beside it (``fit_cost_<version>.json``), so a stopped run resumes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from _common import OUTPUT_HELP, markdown_table, report_path, run_details, write_report
from odds import SETS

from skprobae.datasets import DATA_ENV

PAE_NAME, IFOREST_NAME, ONE_FIT_NAME = "skprobae PAE", "PyOD IForest", "skprobae PAE (one fit)"


def run_odds(python: str, args: argparse.Namespace, cache: Path, detectors: list[str]) -> dict:
    """The finished runs of ``odds.py`` in ``python``'s environment, keyed ``set/seed/detector``."""
    command = [python, str(Path(__file__).with_name("odds.py")), "--detectors", *detectors]
    command += ["--sets", *args.sets, "--seeds", *map(str, args.seeds), "--threads", str(args.threads)]
    command += ["--output", str(cache.with_suffix(".md")), "--cache", str(cache)]
    command += ["--data-dir", args.data_dir] if args.data_dir else []
    command += ["--max-epochs", str(args.max_epochs)] if args.max_epochs else []
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    subprocess.run(command, check=True, env=env)
    return json.loads(cache.read_text())["runs"]


def totals(runs: dict, detector: str, sets: list[str], seeds: list[int]) -> dict[str, dict[str, float]]:
    """Per set (and ``"all"``): summed fit seconds and mean AUROC of ``detector``."""
    out = {}
    for name in sets:
        found = [runs.get(f"{name}/{seed}/{detector}", {}) for seed in seeds]
        ok = [r for r in found if "auroc" in r]
        out[name] = {
            "fit_s": sum(r["fit_s"] for r in ok),
            "auroc": float(np.mean([r["auroc"] for r in ok])) if ok else float("nan"),
            "failed": len(found) - len(ok),
        }
    out["all"] = {
        "fit_s": sum(out[n]["fit_s"] for n in sets),
        "auroc": float(np.mean([out[n]["auroc"] for n in sets])),
        "failed": sum(out[n]["failed"] for n in sets),
    }
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get(DATA_ENV, ""))
    parser.add_argument("--baseline-python", default=None)
    parser.add_argument("--sets", nargs="+", default=SETS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="smoke run: two small sets, one seed, 10 epochs")
    parser.add_argument("--output", type=Path, default=None, help=OUTPUT_HELP)
    args = parser.parse_args(argv)
    if args.quick:
        args.sets, args.seeds, args.max_epochs = ["wbc", "pima"], [0], 10
    args.output = report_path(args.output, "fit_cost", args.quick)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    versions = {"new": sys.executable, **({"baseline": args.baseline_python} if args.baseline_python else {})}
    found = {}
    for version, python in versions.items():
        # the new version also fits PAE(refit_on_inliers=False), which the baseline does not have
        detectors = [PAE_NAME, IFOREST_NAME, *([ONE_FIT_NAME] if version == "new" else [])]
        runs = run_odds(python, args, args.output.with_name(f"{args.output.stem}_{version}.json"), detectors)
        found[version] = {d: totals(runs, d, args.sets, args.seeds) for d in detectors}
    new, old = found["new"], found.get("baseline")
    header = ["set", "baseline PAE fit s", "new PAE fit s", "speed-up", "new one-fit s", "speed-up"]
    header += ["IForest fit s", "PAE / IForest", "baseline AUROC", "new AUROC", "one-fit AUROC"]
    rows = []
    for name in [*args.sets, "all"]:
        pae, once, forest = new[PAE_NAME][name], new[ONE_FIT_NAME][name], new[IFOREST_NAME][name]
        before = old[PAE_NAME][name] if old else None
        rows.append(
            [
                f"**{name}**" if name == "all" else name,
                f"{before['fit_s']:.1f}" if before else "-",
                f"{pae['fit_s']:.1f}",
                f"{before['fit_s'] / pae['fit_s']:.1f}x" if before else "-",
                f"{once['fit_s']:.1f}",
                f"{before['fit_s'] / once['fit_s']:.1f}x" if before else "-",
                f"{forest['fit_s']:.2f}",
                f"{pae['fit_s'] / forest['fit_s']:.0f}x",
                f"{before['auroc']:.3f}" if before else "-",
                f"{pae['auroc']:.3f}",
                f"{once['auroc']:.3f}",
            ]
        )
    failed = {v: found[v][PAE_NAME]["all"]["failed"] for v in found}
    text = "\n\n".join(
        [
            "# PAE fit cost on the ten ODDS sets, before and after the engine rework",
            run_details(time.perf_counter() - start),
            f"- Baseline: {args.baseline_python or 'not run'}; seeds {args.seeds}; threads per process: "
            f"{args.threads}; runs one after the other. Fit seconds summed over seeds; AUROC is the mean over "
            f"seeds (the **all** row: over sets). Failed fits: {failed}. 'one-fit' is the new "
            "`PAE(refit_on_inliers=False)`; speed-ups are against the baseline's default PAE.",
            markdown_table(header, rows),
        ]
    )
    write_report(args.output, text + "\n")


if __name__ == "__main__":
    main()
