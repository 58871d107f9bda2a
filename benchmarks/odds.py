"""Tabular outlier detection on the ten ODDS sets: skprobae against PyOD, ADBench's protocol.

What it measures
----------------
For each set in ``--data-dir``/odds (annthyroid, breastw, cardio, letter, musk,
pima, satellite, shuttle, thyroid, wbc) and each seed in ``--seeds``:
a stratified 70/30 split (``train_test_split(stratify=y, test_size=0.3,
random_state=seed)``), every detector fitted on the unlabelled training part
(anomalies included, labels unused) inside ``make_pipeline(StandardScaler(),
detector)``, and the AUROC of the anomaly score on the test part: ADBench's
unsupervised protocol (Han et al. 2022). Detectors, all with library
defaults and no per-set tuning (``random_state`` is fixed for reproducibility):

* skprobae ``ProbabilisticAutoencoder(distribution="t_diag")`` (the
  heavy-tailed output the README recommends for standardized data; the
  library default ``normal_diag`` learns over-confident variances on
  near-constant columns), ``PAE()``, ``AEF()``, ``VAE()``; anomaly score
  ``-score_samples``;
* PyOD ``IForest``, ``ECOD``, ``KNN``, ``AutoEncoder`` and ``VAE``
  (``verbose=0``); anomaly score ``decision_function``.

Reported: AUROC per set (mean over seeds), the mean over sets, the mean rank
(1 = best on a set; ties share the mean rank), fit and score seconds summed
over the sets, and ADBench's published IForest / ECOD AUROC (Table D4,
``../shared/reference/adbench_table_d4.csv``) beside ours for the sets it has
(not wbc: ADBench's WBC is a different table).

``--max-train-rows`` subsamples every training part to at most that many rows
(stratified, seeded; the same rows for every detector) and
``--max-test-rows`` does the same to the test part; ``--quick`` is a smoke run
(about 2 minutes on one core): one seed, 500 training and 500 test rows per
set and ``max_epochs=10`` for the skprobae models (their default is 100 with
early stopping). A detector that fails on a set is
reported as failed, not dropped silently.

How to run
----------
::

    python benchmarks/odds.py --data-dir ../shared/data             # full run
    python benchmarks/odds.py --quick                               # smoke run, uses $SKPROBAE_DATA

Writes ``benchmarks/results/odds.md`` (``--output``; ``--quick`` runs write to
``benchmarks/results/quick/``). PyOD is the optional benchmark dependency
(``pip install -c constraints.txt -e ".[bench]"``); without it only the
skprobae rows run.
"""

from __future__ import annotations

import argparse
import csv
import os
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from _common import OUTPUT_HELP, RunCache, markdown_table, report_path, run_details
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skprobae import AEF, PAE, VAE, ProbabilisticAutoencoder
from skprobae.datasets import DATA_ENV, load_odds

SETS = ["annthyroid", "breastw", "cardio", "letter", "musk", "pima", "satellite", "shuttle", "thyroid", "wbc"]
REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "adbench_table_d4.csv"


def skprobae_detectors(max_epochs: int | None) -> dict[str, Callable[[], object]]:
    budget = {} if max_epochs is None else {"max_epochs": max_epochs}
    common = {"random_state": 0, **budget}
    flow_budget = {"flow_max_epochs": max_epochs} if max_epochs else {}
    return {
        "skprobae ProbabilisticAutoencoder (t_diag)": lambda: ProbabilisticAutoencoder(distribution="t_diag", **common),
        "skprobae PAE": lambda: PAE(**common, **flow_budget),
        "skprobae PAE (one fit)": lambda: PAE(refit_on_inliers=False, **common, **flow_budget),
        "skprobae PAE (mask_fraction=0)": lambda: PAE(mask_fraction=0.0, **common, **flow_budget),
        "skprobae AEF": lambda: AEF(**common),
        "skprobae VAE": lambda: VAE(**common),
    }


def pyod_detectors() -> dict[str, Callable[[], object]]:
    try:
        from pyod.models.auto_encoder import AutoEncoder
        from pyod.models.ecod import ECOD
        from pyod.models.iforest import IForest
        from pyod.models.knn import KNN
        from pyod.models.vae import VAE as PyodVAE
    except ImportError:
        print("PyOD is not installed: only the skprobae rows run (pip install -c constraints.txt pyod).")
        return {}
    return {
        "PyOD IForest": lambda: IForest(random_state=0),
        "PyOD ECOD": lambda: ECOD(),
        "PyOD KNN": lambda: KNN(),
        "PyOD AutoEncoder": lambda: AutoEncoder(verbose=0),
        "PyOD VAE": lambda: PyodVAE(verbose=0),
    }


def anomaly_score(pipeline, X: np.ndarray) -> np.ndarray:
    """Higher = more anomalous: PyOD's decision_function, or -score_samples for skprobae."""
    detector = pipeline[-1]
    if type(detector).__module__.startswith("skprobae"):
        return -pipeline.score_samples(X)
    return pipeline.decision_function(X)


def run_one(factory: Callable[[], object], X_train, X_test, y_test) -> dict:
    pipeline = make_pipeline(StandardScaler(), factory())
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pipeline.fit(X_train)
            fit_s = time.perf_counter() - start
            start = time.perf_counter()
            scores = anomaly_score(pipeline, X_test)
    except Exception as exc:  # a failure is a result, reported in the table
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"}
    score_s = time.perf_counter() - start
    if not np.isfinite(scores).all():
        return {"error": f"{int((~np.isfinite(scores)).sum())} non-finite scores"}
    return {"auroc": float(roc_auc_score(y_test, scores)), "fit_s": fit_s, "score_s": score_s}


def split(X: np.ndarray, y: np.ndarray, seed: int, max_train_rows: int | None, max_test_rows: int | None = None):
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)
    if max_train_rows and len(X_train) > max_train_rows:
        X_train, _, y_train, _ = train_test_split(
            X_train, y_train, train_size=max_train_rows, stratify=y_train, random_state=seed
        )
    if max_test_rows and len(X_test) > max_test_rows:
        X_test, _, y_test, _ = train_test_split(
            X_test, y_test, train_size=max_test_rows, stratify=y_test, random_state=seed
        )
    return X_train, X_test, y_test


def read_reference(path: Path) -> dict[str, dict[str, float]]:
    if not path.exists():
        return {}
    with path.open() as handle:
        return {
            row["dataset"]: {k: float(v) / 100 for k, v in row.items() if k in ("IForest", "ECOD")}
            for row in csv.DictReader(handle)
        }


def summarise(results: dict, methods: list[str], sets: list[str]) -> tuple[dict, dict, dict]:
    """Mean AUROC per (method, set), mean over sets and mean rank per method (NaN where a run failed)."""
    mean = {
        (m, s): float(np.mean([r["auroc"] for r in results[m][s]]))
        if all("auroc" in r for r in results[m][s])
        else np.nan
        for m in methods
        for s in sets
    }
    complete = [s for s in sets if all(np.isfinite(mean[(m, s)]) for m in methods)]
    ranks = {m: [] for m in methods}
    for s in complete:
        for m, rank in zip(methods, rankdata([-mean[(m, s)] for m in methods]), strict=True):
            ranks[m].append(rank)
    overall = {m: float(np.mean([mean[(m, s)] for s in sets])) for m in methods}
    mean_rank = {m: float(np.mean(ranks[m])) if ranks[m] else np.nan for m in methods}
    return mean, overall, mean_rank


def report(args, results: dict, methods: list[str], sets: list[str], elapsed: float) -> str:
    mean, overall, mean_rank = summarise(results, methods, sets)
    reference = read_reference(args.reference)
    header = ["detector", *sets, "mean AUROC", "mean rank", "fit s", "score s"]
    rows = []
    for m in methods:
        cells = []
        for s in sets:
            errors = [r["error"] for r in results[m][s] if "error" in r]
            cells.append(f"failed: {errors[0]}" if errors else f"{mean[(m, s)]:.3f}")
        fit_s = sum(r.get("fit_s", 0.0) for s in sets for r in results[m][s])
        score_s = sum(r.get("score_s", 0.0) for s in sets for r in results[m][s])
        rows.append([m, *cells, f"{overall[m]:.3f}", f"{mean_rank[m]:.2f}", f"{fit_s:.1f}", f"{score_s:.1f}"])
    for name in ("IForest", "ECOD"):
        cells = [f"{reference[s][name]:.3f}" if s in reference else "-" for s in sets]
        rows.append([f"ADBench {name} (published)", *cells, "", "", "", ""])
    best_sk = max((m for m in methods if m.startswith("skprobae")), key=lambda m: overall[m], default=None)
    best_py = max((m for m in methods if m.startswith("PyOD")), key=lambda m: overall[m], default=None)
    lines = [
        "# Tabular outlier detection: ten ODDS sets, ADBench's protocol",
        "",
        run_details(elapsed, extra_packages=("pyod",)),
        f"- Seeds {args.seeds}; training rows capped at {args.max_train_rows or 'no cap'}; "
        f"skprobae max_epochs {args.max_epochs or 'library default (100, early stopping)'}",
        "- Protocol: stratified 70/30 split per seed, fit on the unlabelled train part inside "
        "make_pipeline(StandardScaler(), detector), AUROC on the test part; mean over seeds. "
        "Library defaults everywhere, no per-set tuning. Fit / score seconds are summed over sets and seeds.",
        "",
        markdown_table(header, rows),
        "",
    ]
    if best_sk and best_py:
        lines += [
            f"Best skprobae detector by mean AUROC: **{best_sk}**, {overall[best_sk]:.3f} "
            f"(mean rank {mean_rank[best_sk]:.2f}); best PyOD detector: **{best_py}**, {overall[best_py]:.3f} "
            f"(mean rank {mean_rank[best_py]:.2f}).",
            "",
        ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get(DATA_ENV), help=f"data folder (default ${DATA_ENV})")
    parser.add_argument("--sets", nargs="+", default=SETS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-train-rows", type=int, default=None)
    parser.add_argument("--max-test-rows", type=int, default=None, help="stratified cap on the scored rows")
    parser.add_argument("--max-epochs", type=int, default=None, help="cap skprobae epochs (default: library's)")
    parser.add_argument("--skip-pyod", action="store_true")
    parser.add_argument(
        "--detectors",
        nargs="+",
        default=None,
        help="run only these detectors: an exact name selects that one, other text every name containing it",
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="smoke run: one seed, 500 train/test rows, 10 epochs")
    parser.add_argument("--reference", type=Path, default=REFERENCE)
    parser.add_argument("--output", type=Path, default=None, help=OUTPUT_HELP)
    parser.add_argument("--cache", type=Path, default=None, help="JSON of finished runs (default: beside --output)")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.max_train_rows, args.max_test_rows, args.max_epochs = [0], 500, 500, 10
    args.output = report_path(args.output, "odds", args.quick)
    args.cache = args.cache or args.output.with_suffix(".json")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    detectors = {**skprobae_detectors(args.max_epochs), **({} if args.skip_pyod else pyod_detectors())}
    if args.detectors:
        exact = [name for name in args.detectors if name in detectors]  # an exact name selects that one only
        parts = [part for part in args.detectors if part not in detectors]
        detectors = {name: f for name, f in detectors.items() if name in exact or any(part in name for part in parts)}
    methods = list(detectors)
    settings = f"seeds={args.seeds} max_train_rows={args.max_train_rows} max_epochs={args.max_epochs}"
    settings += f" max_test_rows={args.max_test_rows}" if args.max_test_rows else ""
    cache = RunCache(args.cache, settings, enabled=not args.quick)
    results: dict = {m: {s: [] for s in args.sets} for m in methods}
    for name in args.sets:
        try:
            X, y = load_odds(name, args.data_dir)
        except FileNotFoundError as exc:
            raise SystemExit(f"{exc} Pass --data-dir or set ${DATA_ENV}.") from exc
        for seed in args.seeds:
            X_train, X_test, y_test = split(X, y, seed, args.max_train_rows, args.max_test_rows)
            for method, factory in detectors.items():
                run = cache.get_or_run(f"{name}/{seed}/{method}", partial(run_one, factory, X_train, X_test, y_test))
                results[method][name].append(run)
                shown = f"{run['auroc']:.3f} ({run['fit_s']:.1f} s)" if "auroc" in run else run["error"]
                print(f"{name:10s} seed {seed} {method:45s} {shown}", flush=True)
    text = report(args, results, methods, args.sets, time.perf_counter() - start)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print("\n" + text)


if __name__ == "__main__":
    main()
