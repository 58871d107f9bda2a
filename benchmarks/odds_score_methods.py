"""Why the default PAE wins or loses against IsolationForest on each ODDS set: its score methods side by side.

What it measures
----------------
For each ODDS set and seed (``odds.py``'s stratified 70/30 split), one
default ``PAE()`` is fitted on the training part (no scaler: it standardizes
inside) and the test part is scored under each ``score_method`` (the
offsets of all three cheap methods come from one fit, so only the score
changes): ``combined`` (the default), ``latent`` (flow density of the code)
and ``reconstruction`` (sigma-weighted reconstruction likelihood), with
IsolationForest beside them. Also reported per set: rows, features, the
chosen ``n_components_`` and the share of anomalies.

This is a diagnosis, not a tuning run: the default is not chosen from it.

How to run
----------
::

    python benchmarks/odds_score_methods.py --data-dir ../shared/data --threads 1

Writes ``benchmarks/results/odds_score_methods.md`` (``--output``).
"""

from __future__ import annotations

import argparse
import copy
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _common import OUTPUT_HELP, markdown_table, report_path, run_details, write_report
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import train_test_split

from skprobae import PAE
from skprobae.datasets import DATA_ENV, load_odds

SETS = ["annthyroid", "breastw", "cardio", "letter", "musk", "pima", "satellite", "shuttle", "thyroid", "wbc"]
METHODS = ["combined", "latent", "reconstruction"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get(DATA_ENV))
    parser.add_argument("--sets", nargs="+", default=SETS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--output", type=Path, default=None, help=OUTPUT_HELP)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    rows = []
    for name in args.sets:
        X, y = load_odds(name, args.data_dir)
        auroc = {method: [] for method in [*METHODS, "IsolationForest"]}
        for seed in args.seeds:
            X_train, X_test, _, y_test = train_test_split(X, y, test_size=0.3, stratify=y, random_state=seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = PAE(random_state=0).fit(X_train)
            for method in METHODS:
                scored = copy.deepcopy(model).set_params(score_method=method)
                auroc[method].append(roc_auc_score(y_test, -scored.score_samples(X_test)))
            forest = IsolationForest(random_state=0).fit(X_train)
            auroc["IsolationForest"].append(roc_auc_score(y_test, -forest.score_samples(X_test)))
        means = {method: float(np.mean(values)) for method, values in auroc.items()}
        best = max(means, key=means.get)
        print(f"{name:11s} " + "  ".join(f"{m} {v:.3f}" for m, v in means.items()), flush=True)
        rows.append(
            [
                name,
                str(len(X)),
                str(X.shape[1]),
                str(model.n_components_),
                f"{y.mean():.1%}",
                *[f"**{means[m]:.3f}**" if m == best else f"{means[m]:.3f}" for m in auroc],
            ]
        )
    header = ["set", "rows", "features", "n_components_", "anomalies", *[f"PAE {m}" for m in METHODS], "IForest"]
    text = "\n".join(
        [
            "# The default PAE's score methods on the ODDS sets, beside IsolationForest",
            "",
            "Produced by `benchmarks/odds_score_methods.py` (see its docstring). AUROC on the test part, "
            f"mean over seeds {args.seeds}.",
            "",
            run_details(time.perf_counter() - start),
            "",
            markdown_table(header, rows),
            "",
        ]
    )
    write_report(report_path(args.output, "odds_score_methods", False), text)


if __name__ == "__main__":
    main()
