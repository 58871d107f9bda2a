"""Outlier detection on real tables: missing entries on the ODDS sets, and mixed-type anomalies on the penguins.

What it measures
----------------
(a) **Missing entries.** For each ODDS set in ``--data-dir``/odds and each
seed: a stratified 70/30 split (ADBench's protocol, as ``odds.py``), then
``--rates`` (default 10% and 30%) of the entries removed completely at random
in both parts. skprobae's default ``PAE()`` fits and scores the rows with
NaN natively (masked likelihood; no scaler, no imputer: it standardizes
inside); the pipelines are ``SimpleImputer`` / ``IterativeImputer`` then
``StandardScaler`` then PyOD's ``IForest`` / ``ECOD``. ``PAE(mask_fraction=0)``
(no observed entries hidden from its encoder in training, the default before
``mask_fraction="auto"``) is reported beside the default. Reported: the AUROC at
each rate (mean over sets and seeds) and each detector's *loss from
missingness* (its complete-data AUROC minus its AUROC at the rate). Target:
skprobae's loss smaller than every pipeline's.

(b) **Mixed-type anomalies.** The Palmer penguins table (``palmerpenguins``:
species, island and sex categorical, four measurements, real missing
entries) as the normal rows; ADBench's four synthetic anomaly types (Han et
al. 2022, section 3.2) injected as 10% of the rows: *local* (measurements
from a Gaussian mixture fitted to the normal rows with covariances scaled by
5, categories of a random normal row), *global* (measurements uniform on
each column's range widened by 10%, categories uniform), *dependency* (every
column drawn independently from its own marginal: each value is typical, the
combination is not) and *clustered* (a Gaussian mixture with its means
scaled by 5 around the data mean). skprobae ``PAE()`` and
``ProbabilisticAutoencoder()`` read the DataFrame as it is (and
``PAE(mask_fraction=0)``); the baselines are
one-hot + ``SimpleImputer`` + ``StandardScaler`` + ``IForest`` / ``ECOD``.
AUROC per type, fit on the contaminated table, mean over seeds.

How to run
----------
::

    python benchmarks/tables.py --data-dir ../shared/data --threads 1
    python benchmarks/tables.py --quick            # smoke run: one seed, three sets, 1,000 rows

Writes ``benchmarks/results/tables.md`` (``--output``).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _common import OUTPUT_HELP, markdown_table, report_path, run_details, write_report
from sklearn.compose import make_column_transformer
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, SimpleImputer
from sklearn.metrics import roc_auc_score
from sklearn.mixture import GaussianMixture
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from skprobae import PAE, ProbabilisticAutoencoder
from skprobae.datasets import load_penguins

DATA_ENV = "SKPROBAE_DATA"
SETS = ["annthyroid", "breastw", "cardio", "letter", "musk", "pima", "satellite", "shuttle", "thyroid", "wbc"]
TYPES = ["local", "global", "dependency", "clustered"]


def _pyod(name: str):
    from pyod.models.ecod import ECOD
    from pyod.models.iforest import IForest

    return {"IForest": lambda seed: IForest(random_state=seed), "ECOD": lambda seed: ECOD()}[name]


def _anomaly_score(model, X) -> np.ndarray:
    return model.decision_function(X) if hasattr(model[-1], "decision_scores_") else -model.score_samples(X)


def _missing_detectors(seed: int, max_epochs: int | None) -> dict:
    epochs = {} if max_epochs is None else {"max_epochs": max_epochs, "flow_max_epochs": max_epochs}
    detectors = {
        "skprobae PAE (native NaN)": lambda: make_pipeline(PAE(random_state=seed, **epochs)),
        "skprobae PAE (native NaN, mask_fraction=0)": lambda: make_pipeline(
            PAE(mask_fraction=0.0, random_state=seed, **epochs)
        ),
    }
    for imputer_name, imputer in (("Simple", SimpleImputer), ("Iterative", IterativeImputer)):
        for name in ("IForest", "ECOD"):
            make = _pyod(name)
            options = {"random_state": seed} if imputer is IterativeImputer else {}
            detectors[f"{imputer_name}Imputer + {name}"] = lambda imputer=imputer, make=make, options=options: (
                make_pipeline(imputer(**options), StandardScaler(), make(seed))
            )
    return detectors


def _remove(X: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    removed = rng.random(X.shape) < rate
    keep = rng.integers(X.shape[1], size=len(X))  # one entry per row stays: no row is empty
    removed[np.arange(len(X)), keep] = False
    return np.where(removed, np.nan, X)


def run_missing(data_dir: Path, sets: list[str], seeds: list[int], rates: list[float], max_rows, max_epochs):
    results: dict[tuple[str, float], list[float]] = {}
    for name in sets:
        data = np.load(data_dir / "odds" / f"{name}.npz")
        X, y = data["X"].astype(np.float64), data["y"].astype(int)
        for seed in seeds:
            X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)
            if max_rows and len(X_train) > max_rows:
                X_train, _, y_train, _ = train_test_split(
                    X_train, y_train, train_size=max_rows, stratify=y_train, random_state=seed
                )
            for rate in [0.0, *rates]:
                rng = np.random.default_rng(seed)
                train = _remove(X_train, rate, rng) if rate else X_train
                test = _remove(X_test, rate, rng) if rate else X_test
                for detector, make in _missing_detectors(seed, max_epochs).items():
                    start = time.perf_counter()
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        model = make().fit(train)
                        auroc = roc_auc_score(y_test, _anomaly_score(model, test))
                    results.setdefault((detector, rate), []).append(auroc)
                    print(
                        f"{name:11s} seed {seed} rate {rate:.0%} {detector:28s} AUROC {auroc:.3f} "
                        f"({time.perf_counter() - start:.1f} s)",
                        flush=True,
                    )
    return results


def _penguins():
    return load_penguins()


def _inject(table, kind: str, n: int, rng: np.random.Generator):
    """``n`` anomalies of ADBench's type ``kind`` built from the normal ``table``."""
    numeric = table.select_dtypes("number").columns
    categorical = table.columns.difference(numeric, sort=False)
    complete = table[numeric].dropna().to_numpy()
    out = table.sample(n, replace=True, random_state=int(rng.integers(2**31))).reset_index(drop=True)
    if kind in ("local", "clustered"):
        mixture = GaussianMixture(3, random_state=int(rng.integers(2**31))).fit(complete)
        if kind == "local":
            mixture.covariances_ = mixture.covariances_ * 5.0
        else:
            mixture.means_ = complete.mean(0) + 5.0 * (mixture.means_ - complete.mean(0))
        mixture.precisions_cholesky_ = np.linalg.cholesky(np.linalg.inv(mixture.covariances_))
        out[numeric] = mixture.sample(n)[0][rng.permutation(n)]
    elif kind == "global":
        low, high = complete.min(0), complete.max(0)
        width = high - low
        out[numeric] = rng.uniform(low - 0.1 * width, high + 0.1 * width, size=(n, len(numeric)))
        for column in categorical:
            out[column] = rng.choice(table[column].cat.categories, n)
    else:  # dependency: every column from its own marginal, independently
        for column in table.columns:
            out[column] = table[column].sample(n, replace=True, random_state=int(rng.integers(2**31))).to_numpy()
    for column in categorical:
        out[column] = out[column].astype(table[column].dtype)
    return out


def _mixed_detectors(table, seed: int, max_epochs: int | None) -> dict:
    numeric = list(table.select_dtypes("number").columns)
    categorical = [c for c in table.columns if c not in numeric]
    epochs = {} if max_epochs is None else {"max_epochs": max_epochs}
    pae_epochs = {} if max_epochs is None else {"max_epochs": max_epochs, "flow_max_epochs": max_epochs}

    def encoded(make):
        encode = make_column_transformer(
            (make_pipeline(SimpleImputer(), StandardScaler()), numeric),
            (
                make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")),
                categorical,
            ),
            sparse_threshold=0,
        )
        return make_pipeline(encode, make(seed))

    return {
        "skprobae PAE": lambda: make_pipeline(PAE(random_state=seed, **pae_epochs)),
        "skprobae PAE (mask_fraction=0)": lambda: make_pipeline(
            PAE(mask_fraction=0.0, random_state=seed, **pae_epochs)
        ),
        "skprobae ProbabilisticAutoencoder": lambda: make_pipeline(
            ProbabilisticAutoencoder(random_state=seed, **epochs)
        ),
        "one-hot + IForest": lambda: encoded(_pyod("IForest")),
        "one-hot + ECOD": lambda: encoded(_pyod("ECOD")),
    }


def run_mixed(seeds: list[int], max_epochs):
    import pandas as pd

    table = _penguins()
    results: dict[tuple[str, str], list[float]] = {}
    for seed in seeds:
        for kind in TYPES:
            rng = np.random.default_rng(seed)
            anomalies = _inject(table, kind, len(table) // 9, rng)  # 10% of the rows
            data = pd.concat([table, anomalies], ignore_index=True)
            y = np.r_[np.zeros(len(table)), np.ones(len(anomalies))]
            for detector, make in _mixed_detectors(table, seed, max_epochs).items():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model = make().fit(data)
                    auroc = roc_auc_score(y, _anomaly_score(model, data))
                results.setdefault((detector, kind), []).append(auroc)
                print(f"penguins seed {seed} {kind:10s} {detector:34s} AUROC {auroc:.3f}", flush=True)
    return results


def report(missing, mixed, rates, args, elapsed) -> str:
    lines = ["# Outlier detection on real tables: missing entries and mixed column types", ""]
    lines.append("Produced by `benchmarks/tables.py` (see its docstring for the protocol).")
    lines += ["", run_details(elapsed, extra_packages=("pyod", "palmerpenguins")), ""]
    lines.append(
        f"- Seeds {args.seeds}; sets {', '.join(args.sets)}; training rows capped at "
        f"{args.max_train_rows or 'no cap'}; epochs {args.max_epochs or 'library defaults'}"
    )
    if missing:
        detectors = sorted({d for d, _ in missing}, key=lambda d: (not d.startswith("skprobae"), d))
        header = ["detector", "complete", *[f"{r:.0%} missing" for r in rates], *[f"loss at {r:.0%}" for r in rates]]
        rows = []
        for detector in detectors:
            base = np.mean(missing[(detector, 0.0)])
            at = [np.mean(missing[(detector, r)]) for r in rates]
            rows.append([detector, f"{base:.3f}", *[f"{a:.3f}" for a in at], *[f"{base - a:+.3f}" for a in at]])
        lines += [
            "",
            "## (a) ODDS sets with entries missing completely at random (mean AUROC over sets and seeds)",
            "",
            markdown_table(header, rows),
        ]
        ours = [np.mean(missing[(detectors[0], 0.0)]) - np.mean(missing[(detectors[0], r)]) for r in rates]
        pipelines = [d for d in detectors if not d.startswith("skprobae")]
        best_other = [min(np.mean(missing[(d, 0.0)]) - np.mean(missing[(d, r)]) for d in pipelines) for r in rates]
        met = all(o < b for o, b in zip(ours, best_other, strict=True))
        figures = ", ".join(
            f"{r:.0%}: {o:+.3f} vs best pipeline {b:+.3f}" for r, o, b in zip(rates, ours, best_other, strict=True)
        )
        verdict = "met" if met else "not met"
        lines += ["", f"Target (skprobae's loss smaller than every pipeline's): **{verdict}** ({figures})."]
    if mixed:
        detectors = sorted({d for d, _ in mixed}, key=lambda d: (not d.startswith("skprobae"), d))
        rows = [
            [
                d,
                *[f"{np.mean(mixed[(d, t)]):.3f}" for t in TYPES],
                f"{np.mean([np.mean(mixed[(d, t)]) for t in TYPES]):.3f}",
            ]
            for d in detectors
        ]
        lines += [
            "",
            "## (b) Mixed-type anomalies injected into the penguins (AUROC, mean over seeds)",
            "",
            markdown_table(["detector", *TYPES, "mean"], rows),
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get(DATA_ENV))
    parser.add_argument("--sets", nargs="+", default=SETS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rates", type=float, nargs="+", default=[0.1, 0.3])
    parser.add_argument("--max-train-rows", type=int, default=None)
    parser.add_argument("--max-epochs", type=int, default=None)
    parser.add_argument("--skip-missing", action="store_true")
    parser.add_argument("--skip-mixed", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", type=Path, default=None, help=OUTPUT_HELP)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.seeds, args.sets, args.max_train_rows, args.max_epochs = [0], ["breastw", "pima", "wbc"], 1000, 10
    start = time.perf_counter()
    missing = {}
    if not args.skip_missing:
        if args.data_dir is None:
            print(f"no --data-dir and no ${DATA_ENV}: skipping part (a)")
        else:
            missing = run_missing(
                Path(args.data_dir), args.sets, args.seeds, args.rates, args.max_train_rows, args.max_epochs
            )
    mixed = {} if args.skip_mixed else run_mixed(args.seeds, args.max_epochs)
    text = report(missing, mixed, args.rates, args, time.perf_counter() - start)
    write_report(report_path(args.output, "tables", args.quick), text)


if __name__ == "__main__":
    main()
