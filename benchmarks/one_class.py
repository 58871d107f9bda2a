"""One-class novelty detection on MNIST and Fashion-MNIST: skprobae against PyOD and Deep SVDD.

What it measures
----------------
For each data set in ``--datasets`` and each class c: every detector is
fitted on the training images of class c only (pixels / 255, at most
``--n-train`` rows, seeded), scores ``--n-test`` test images of all classes
(the same seeded rows for every class and detector), and the AUROC of
"not class c" (positive) against class c uses the anomaly score
(``-score_samples`` for skprobae, ``decision_function`` for PyOD). Detectors,
all with library defaults and no per-class tuning:

* skprobae ``ProbabilisticAutoencoder()``, ``PAE()``, ``AEF()``, ``VAE()``
  (MLP networks; ``random_state=0``), and ``PAE(refit_on_inliers=False)``
  ("PAE (one fit)": the training images of one class hold no outliers to
  leave out);
* PyOD ``AutoEncoder`` and ``IForest`` (``verbose=0``, ``IForest(random_state=0)``).

Reported: AUROC per class and the mean, per detector, with Deep SVDD's
published MNIST per-class AUROC (Ruff et al. 2018, mean 0.948; values in
``../shared/reference/README.md``) as the reference row. Fashion-MNIST
classes 2 (pullover) and 6 (shirt) are left out: this project's copy holds
only 1,230 unlabelled images of the two (``../shared/data/README.md``); the
test rows labelled -1 are dropped too.

``--quick`` is a smoke run (about 2 minutes on one core): MNIST only with 200
training rows per class, 300 test rows and ``max_epochs=5`` for the skprobae
models.

How to run
----------
::

    python benchmarks/one_class.py --data-dir ../shared/data --threads 1
    python benchmarks/one_class.py --quick

Writes ``benchmarks/results/one_class.md`` (``--output``; ``--quick`` runs
write to ``benchmarks/results/quick/``); finished runs are cached beside it
(``.json``) so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
from _common import OUTPUT_HELP, RunCache, markdown_table, report_path, run_details
from sklearn.metrics import roc_auc_score

from skprobae import AEF, PAE, VAE, ProbabilisticAutoencoder
from skprobae.datasets import DATA_ENV, load_images

DEEP_SVDD_MNIST = [0.980, 0.997, 0.917, 0.919, 0.949, 0.885, 0.983, 0.946, 0.939, 0.965]
MISSING_CLASSES = {"fashion_mnist": (2, 6)}


def detectors(max_epochs: int | None, skip_pyod: bool) -> dict[str, Callable[[], object]]:
    common = {"random_state": 0, **({"max_epochs": max_epochs} if max_epochs else {})}
    flow = {"flow_max_epochs": max_epochs} if max_epochs else {}
    found: dict[str, Callable[[], object]] = {
        "skprobae ProbabilisticAutoencoder": lambda: ProbabilisticAutoencoder(**common),
        "skprobae PAE": lambda: PAE(**common, **flow),
        "skprobae PAE (one fit)": lambda: PAE(refit_on_inliers=False, **common, **flow),
        "skprobae AEF": lambda: AEF(**common),
        "skprobae VAE": lambda: VAE(**common),
    }
    if skip_pyod:
        return found
    try:
        from pyod.models.auto_encoder import AutoEncoder
        from pyod.models.iforest import IForest
    except ImportError:
        print("PyOD is not installed: only the skprobae rows run.")
        return found
    found["PyOD AutoEncoder"] = lambda: AutoEncoder(verbose=0)
    found["PyOD IForest"] = lambda: IForest(random_state=0)
    return found


def run_one(factory: Callable[[], object], X_train: np.ndarray, X_test: np.ndarray, is_novel: np.ndarray) -> dict:
    model = factory()
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(X_train)
            fit_s = time.perf_counter() - start
            start = time.perf_counter()
            is_skprobae = type(model).__module__.startswith("skprobae")
            scores = -model.score_samples(X_test) if is_skprobae else model.decision_function(X_test)
    except Exception as exc:  # a failure is a result
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"}
    if not np.isfinite(scores).all():
        return {"error": f"{int((~np.isfinite(scores)).sum())} non-finite scores"}
    return {"auroc": float(roc_auc_score(is_novel, scores)), "fit_s": fit_s, "score_s": time.perf_counter() - start}


def section(dataset: str, classes: list[int], methods: list[str], runs: dict) -> str:
    header = ["detector", *[str(c) for c in classes], "mean", "fit s", "score s"]
    rows = []
    for m in methods:
        cells, values = [], []
        for c in classes:
            run = runs[f"{dataset}/{c}/{m}"]
            cells.append(f"{run['auroc']:.3f}" if "auroc" in run else f"failed: {run['error']}")
            values.append(run.get("auroc", np.nan))
        fit_s = sum(runs[f"{dataset}/{c}/{m}"].get("fit_s", 0.0) for c in classes)
        score_s = sum(runs[f"{dataset}/{c}/{m}"].get("score_s", 0.0) for c in classes)
        rows.append([m, *cells, f"{np.mean(values):.3f}", f"{fit_s:.0f}", f"{score_s:.0f}"])
    if dataset == "mnist":
        shown = [DEEP_SVDD_MNIST[c] for c in classes]
        rows.append(["Deep SVDD (Ruff et al. 2018, published)", *[f"{v:.3f}" for v in shown], f"{np.mean(shown):.3f}"])
        rows[-1] += ["", ""]
    return markdown_table(header, rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get(DATA_ENV), help=f"data folder (default ${DATA_ENV})")
    parser.add_argument("--datasets", nargs="+", default=["mnist", "fashion_mnist"])
    parser.add_argument("--n-train", type=int, default=None, help="training rows per class (default: all)")
    parser.add_argument("--n-test", type=int, default=None, help="test rows scored (default: all)")
    parser.add_argument("--max-epochs", type=int, default=None, help="cap skprobae epochs (default: library's)")
    parser.add_argument("--skip-pyod", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="smoke run: MNIST, 200 rows/class, 300 test rows")
    parser.add_argument("--output", type=Path, default=None, help=OUTPUT_HELP)
    args = parser.parse_args(argv)
    if args.quick:
        args.datasets, args.n_train, args.n_test, args.max_epochs = ["mnist"], 200, 300, 5
    args.output = report_path(args.output, "one_class", args.quick)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    found = detectors(args.max_epochs, args.skip_pyod)
    methods = list(found)
    cache_path = args.output.with_suffix(".json")
    settings = f"n_train={args.n_train} n_test={args.n_test} max_epochs={args.max_epochs} seed={args.seed}"
    cache = RunCache(cache_path, settings, enabled=not args.quick)
    sections = []
    for dataset in args.datasets:
        try:
            X, y = load_images(dataset, "train", data_dir=args.data_dir)
            X_test, y_test = load_images(dataset, "test", data_dir=args.data_dir)
        except (FileNotFoundError, ValueError) as exc:
            raise SystemExit(f"{dataset} not found ({exc}); pass --data-dir or set ${DATA_ENV}.") from exc
        rng = np.random.default_rng(args.seed)
        keep = np.flatnonzero(y_test >= 0)
        keep = np.sort(rng.permutation(keep)[: args.n_test]) if args.n_test else keep
        X_test, y_test = X_test[keep].astype(np.float64), y_test[keep]
        classes = [c for c in range(10) if c not in MISSING_CLASSES.get(dataset, ())]
        for c in classes:
            rows = np.flatnonzero(y == c)
            rows = np.sort(rng.permutation(rows)[: args.n_train]) if args.n_train else rows
            for method, factory in found.items():
                run = cache.get_or_run(
                    f"{dataset}/{c}/{method}",
                    partial(run_one, factory, X[rows].astype(np.float64), X_test, y_test != c),
                )
                shown = f"{run['auroc']:.3f} (fit {run['fit_s']:.0f} s)" if "auroc" in run else run["error"]
                print(f"{dataset} class {c} ({len(rows)} rows) {method:35s} {shown}", flush=True)
        sections.append(f"## {dataset}\n\nAUROC of class c (normal) against the other classes.\n\n")
        sections[-1] += section(dataset, classes, methods, cache.runs) + "\n"
        if dataset == "fashion_mnist":
            sections[-1] += "\nClasses 2 and 6 are missing from this project's Fashion-MNIST copy (see above).\n"
    text = "\n".join(
        [
            "# One-class novelty detection: MNIST and Fashion-MNIST",
            "",
            run_details(time.perf_counter() - start, extra_packages=("pyod",)),
            f"- Settings: {settings}; library defaults for every detector, no per-class tuning.",
            "",
            *sections,
        ]
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print("\n" + text)


if __name__ == "__main__":
    main()
