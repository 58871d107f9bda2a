"""Imputing mixed-type tables: categorical and continuous columns with missing entries, no preprocessing.

What it measures
----------------
Three tables that ship with installed packages (no download):

* ``penguins``: the Palmer penguins (``skprobae.datasets.load_penguins``), 344 rows; species,
  island and sex categorical, four measurements; rows with a value missing in the original
  are dropped so that every removed entry has a known truth.
* ``diabetes``: scikit-learn's diabetes table, 442 rows; ``sex`` (two values) categorical and
  ``bp`` cut at its terciles into a three-level category, the other eight columns continuous.
* ``breast_cancer``: scikit-learn's breast-cancer table, 569 rows; five columns (``mean
  radius``, ``mean texture``, ``mean smoothness``, ``worst concavity``, ``worst symmetry``)
  cut at their quartiles into four-level categories, the other 25 continuous.

For each seed, ``--missing`` (20%) of the entries of every column are removed completely at
random. Imputers:

* ``Simple``: ``SimpleImputer`` with the mean for continuous and the most frequent category
  for categorical columns.
* ``KNN``, ``Iterative`` (``IterativeImputer()``), ``MissForest``
  (``IterativeImputer(ExtraTreesRegressor(n_estimators=30, max_features="sqrt",
  min_samples_leaf=2), max_iter=5)``): scikit-learn's numeric imputers on the usual encoding,
  continuous columns standardized and each categorical column one-hot with NaN in every
  indicator of a missing entry; a filled category is the largest filled indicator.
* ``PAEImputer``: ``skprobae.impute.PAEImputer(random_state=seed)`` at its defaults on the
  DataFrame as it is (categorical columns from their dtype).

Reported, mean over the seeds: RMSE on the removed continuous entries (feature-std units),
accuracy on the removed categorical entries, PAEImputer's 90% interval coverage on the
continuous entries, PAEImputer's mean posterior probability of the category it filled
(its confidence, to compare with its accuracy), and its seconds for ``fit`` and ``transform``.

How to run
----------
::

    python benchmarks/imputation_mixed.py --threads 1

Writes ``benchmarks/results/imputation_mixed.md`` (``--output``; ``--quick``: one seed, to
``benchmarks/results/quick/``).
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _common import OUTPUT_HELP, markdown_table, report_path, run_details, write_report
from sklearn.datasets import load_breast_cancer, load_diabetes
from sklearn.ensemble import ExtraTreesRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.experimental import enable_iterative_imputer  # noqa: F401
from sklearn.impute import IterativeImputer, KNNImputer

from skprobae.datasets import load_penguins
from skprobae.impute import PAEImputer

IMPUTERS = ("Simple", "KNN", "Iterative", "MissForest", "PAEImputer")


def _quantile_category(column: pd.Series, n_levels: int) -> pd.Series:
    labels = [f"q{i + 1}" for i in range(n_levels)]
    return pd.qcut(column, n_levels, labels=labels)


def mixed_tables() -> dict[str, pd.DataFrame]:
    penguins = load_penguins().dropna().reset_index(drop=True)
    diabetes = load_diabetes(as_frame=True).data
    diabetes = diabetes.assign(
        sex=pd.Categorical(np.where(diabetes["sex"] > 0, "a", "b")), bp=_quantile_category(diabetes["bp"], 3)
    )
    cancer = load_breast_cancer(as_frame=True).data
    binned = ["mean radius", "mean texture", "mean smoothness", "worst concavity", "worst symmetry"]
    cancer = cancer.assign(**{name: _quantile_category(cancer[name], 4) for name in binned})
    return {"penguins": penguins, "diabetes": diabetes, "breast_cancer": cancer}


def remove_entries(table: pd.DataFrame, fraction: float, rng: np.random.Generator) -> tuple[pd.DataFrame, np.ndarray]:
    removed = rng.random(table.shape) < fraction
    return table.mask(removed), removed


def _encode(table: pd.DataFrame, categorical: list[str], loc: pd.Series, scale: pd.Series) -> np.ndarray:
    """Continuous columns standardized, categorical ones one-hot with NaN in every indicator of a missing entry."""
    parts = []
    for name in table.columns:
        column = table[name]
        if name in categorical:
            one_hot = pd.get_dummies(column, dtype=float).to_numpy(copy=True)  # the dtype's categories, in order
            one_hot[column.isna().to_numpy()] = np.nan
            parts.append(one_hot)
        else:
            parts.append(((column - loc[name]) / scale[name]).to_numpy(dtype=float)[:, None])
    return np.hstack(parts)


def _decode(encoded: np.ndarray, template: pd.DataFrame, categorical: list[str], loc, scale) -> pd.DataFrame:
    out, start = {}, 0
    for name in template.columns:
        if name in categorical:
            levels = template[name].cat.categories
            block = encoded[:, start : start + len(levels)]
            out[name] = pd.Categorical.from_codes(block.argmax(axis=1), categories=levels)
            start += len(levels)
        else:
            out[name] = encoded[:, start] * scale[name] + loc[name]
            start += 1
    return pd.DataFrame(out)


def _numeric_imputer(name: str, seed: int):
    if name == "KNN":
        return KNNImputer()
    if name == "Iterative":
        return IterativeImputer(random_state=seed)
    trees = ExtraTreesRegressor(n_estimators=30, max_features="sqrt", min_samples_leaf=2, random_state=seed)
    return IterativeImputer(estimator=trees, max_iter=5, random_state=seed)


def impute(name: str, holes: pd.DataFrame, categorical: list[str], seed: int):
    """The filled table (same columns and dtypes) and, for PAEImputer, its std and the fitted imputer."""
    continuous = [c for c in holes.columns if c not in categorical]
    if name == "PAEImputer":
        imputer = PAEImputer(random_state=seed).fit(holes)
        filled, std = imputer.transform(holes, return_std=True)
        return filled, std, imputer
    if name == "Simple":
        fill = {c: holes[c].mean() for c in continuous} | {c: holes[c].mode().iloc[0] for c in categorical}
        return holes.fillna(fill), None, None
    loc, scale = holes[continuous].mean(), holes[continuous].std(ddof=0)
    encoded = _encode(holes, categorical, loc, scale)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        filled = _numeric_imputer(name, seed).fit_transform(encoded)
    return _decode(filled, holes, categorical, loc, scale), None, None


def run(tables: dict[str, pd.DataFrame], args: argparse.Namespace) -> dict:
    results = {}
    for table_name, table in tables.items():
        categorical = [c for c in table.columns if isinstance(table[c].dtype, pd.CategoricalDtype)]
        continuous = [c for c in table.columns if c not in categorical]
        scale = table[continuous].std(ddof=0)
        per = results[table_name] = {
            "shape": table.shape,
            "categorical": categorical,
            **{imp: {"rmse": [], "accuracy": [], "seconds": 0.0} for imp in IMPUTERS},
            "coverage": [],
            "confidence": [],
        }
        for seed in args.seeds:
            holes, removed = remove_entries(table, args.missing, np.random.default_rng(seed))
            removed = pd.DataFrame(removed, columns=table.columns)
            for imp in IMPUTERS:
                start = time.perf_counter()
                filled, std, imputer = impute(imp, holes, categorical, seed)
                per[imp]["seconds"] += time.perf_counter() - start  # fit and transform
                errors = np.concatenate(
                    [((filled[c] - table[c]) / scale[c])[removed[c]].to_numpy(float) for c in continuous]
                )
                hits = np.concatenate(
                    [(filled[c].astype(object) == table[c].astype(object))[removed[c]].to_numpy() for c in categorical]
                )
                per[imp]["rmse"].append(float(np.sqrt(np.mean(errors**2))))
                per[imp]["accuracy"].append(float(np.mean(hits)))
                if imp == "PAEImputer":
                    index = [list(table.columns).index(c) for c in continuous]
                    inside = [
                        (np.abs(filled[c] - table[c]) <= 1.645 * std[:, j])[removed[c]].to_numpy()
                        for c, j in zip(continuous, index, strict=True)
                    ]
                    per["coverage"].append(float(np.mean(np.concatenate(inside))))
                    probabilities = imputer.impute_category_proba(holes)
                    chosen = [
                        p.max(axis=1)[removed[c].to_numpy()] for c, p in zip(categorical, probabilities, strict=True)
                    ]
                    per["confidence"].append(float(np.mean(np.concatenate(chosen))))
            print(
                f"{table_name:<13s} seed {seed}: "
                + "  ".join(f"{imp} {per[imp]['rmse'][-1]:.3f}/{per[imp]['accuracy'][-1]:.3f}" for imp in IMPUTERS)
                + f"  coverage {per['coverage'][-1]:.2f} confidence {per['confidence'][-1]:.2f}",
                flush=True,
            )
    return results


def report(results: dict, n_seeds: int) -> str:
    rows = []
    for name, per in results.items():
        rmse = {imp: np.mean(per[imp]["rmse"]) for imp in IMPUTERS}
        accuracy = {imp: np.mean(per[imp]["accuracy"]) for imp in IMPUTERS}
        best_rmse, best_accuracy = min(rmse, key=rmse.get), max(accuracy, key=accuracy.get)
        cells = [
            f"{'**' if imp == best_rmse else ''}{rmse[imp]:.3f}{'**' if imp == best_rmse else ''} / "
            f"{'**' if imp == best_accuracy else ''}{accuracy[imp]:.3f}{'**' if imp == best_accuracy else ''}"
            for imp in IMPUTERS
        ]
        rows.append(
            [
                f"{name} ({per['shape'][0]} x {per['shape'][1]}, {len(per['categorical'])} categorical)",
                *cells,
                f"{np.mean(per['coverage']):.2f}",
                f"{np.mean(per['confidence']):.2f}",
                f"{per['PAEImputer']['seconds'] / n_seeds:.0f}",
            ]
        )
    header = ["table", *[f"{imp} RMSE / acc." for imp in IMPUTERS], "PAE 90% cov.", "PAE conf.", "PAEImputer s"]
    return markdown_table(header, rows)


def findings(results: dict) -> str:
    lines = []
    for name, per in results.items():
        rmse = {imp: np.mean(per[imp]["rmse"]) for imp in IMPUTERS}
        accuracy = {imp: np.mean(per[imp]["accuracy"]) for imp in IMPUTERS}
        rank_rmse = sorted(IMPUTERS, key=rmse.get).index("PAEImputer") + 1
        rank_accuracy = sorted(IMPUTERS, key=accuracy.get, reverse=True).index("PAEImputer") + 1
        lines.append(
            f"- **{name}**: PAEImputer ranks {rank_rmse} of {len(IMPUTERS)} on continuous RMSE "
            f"({rmse['PAEImputer']:.3f}; best {min(rmse.values()):.3f}) and {rank_accuracy} of {len(IMPUTERS)} on "
            f"category accuracy ({accuracy['PAEImputer']:.3f}; best {max(accuracy.values()):.3f}, most frequent "
            f"category {accuracy['Simple']:.3f}); its mean confidence in the filled categories is "
            f"{np.mean(per['confidence']):.2f} against an accuracy of {accuracy['PAEImputer']:.2f}."
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: one seed")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--missing", type=float, default=0.2, help="fraction of entries removed (default 0.2)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--output", type=Path, default=None, help=OUTPUT_HELP)
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds = args.seeds[:1]
    args.output = report_path(args.output, "imputation_mixed", args.quick)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    results = run(mixed_tables(), args)
    text = f"""# Imputing mixed-type tables

Produced by `benchmarks/imputation_mixed.py` (see its docstring for the protocol).

{run_details(time.perf_counter() - start)}
- {args.missing:.0%} of the entries of every column removed completely at random, seeds
  {", ".join(map(str, args.seeds))}; every imputer at its defaults. Continuous RMSE in feature-std units (lower is
  better), accuracy on the removed categories (higher is better), mean over the seeds; best of each in bold.

## Removed entries: continuous RMSE / category accuracy

{report(results, len(args.seeds))}

"PAE 90% cov.": coverage of PAEImputer's 90% intervals on the removed continuous entries. "PAE conf.": its mean
posterior probability of the category it filled (calibrated: close to its accuracy).

{findings(results)}
"""
    write_report(args.output, text)


if __name__ == "__main__":
    main()
