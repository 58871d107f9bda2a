"""Every output distribution of the vanilla probabilistic autoencoder: the paper's Table 1 on MNIST and Fashion-MNIST.

What it measures
----------------
For each data set (``--datasets``), each of the 14 output families
(``--distributions``) and each mixture size K (``--mixtures``, the paper: 1
and 10), one ``skprobae.ProbabilisticAutoencoder`` with the paper's MLP: the
784 pixels / 255 go through one 32-unit ReLU layer (the latent code,
``n_components=32``, a custom ``encoder`` = Linear + ReLU) and a linear
decoder to the distribution's raw parameters, exactly the paper's parameter
counts (MSE: 50,992). Adam 1e-3, batch 128, ``--epochs`` epochs (the paper:
20) on ``--n-train`` training rows, no validation split or early stopping;
library defaults otherwise (gradient-norm clipping at 100, float32 training).
Reported per model, on ``--n-test`` test images (the paper: 1,000):

* **L2 %**: ``100 * mean((x - clip(x_hat, 0, 1))**2)`` over pixels and
  images, ``x_hat`` the point estimate (mean; mode for Student-t families;
  the mean of 50 draws for ``maf``), as the paper's "mean squared L2 error
  (in percentages)";
* **NLL**: the test negative log-likelihood ``-score_samples`` in nats per
  image (the paper does not report it);
* parameter count and seconds per epoch (on this machine's CPU; the paper's
  times are a GTX 1060);
* a PNG per data set like the paper's Figures 1-2: inputs, then each K=1
  family's reconstruction and per-pixel std (NaN, drawn blank, where the
  variance does not exist).

Models above ``--max-params`` parameters are skipped and listed (default 20
million: ``normal_full`` / ``t_full`` with K=10 would have ~100 million, a
784 x 784 Cholesky factor per component; the paper skipped them too). The
full-covariance families at K=1 train ``--full-epochs`` epochs (default: as
``--epochs``) because each epoch costs ~40x a diagonal family's on CPU.
``maf`` with K > 1 is skipped unless ``--maf-mixtures`` (its point
estimate inverts the flow 50 x K times per image, one pass per pixel; the
paper skipped it too). A fit that diverges is retried once with the next seed, as the paper reran
NaN runs; both attempts are reported.

``--conv-distributions`` are also fitted with ``architecture="conv"`` (the
library's 3x3 stride-2 convolutions with 32 and 64 channels, 32-dim code,
K=1) for the L2 comparison with the paper's CNN (Table 2).

Finished rows are cached in ``--cache`` (JSON), so an interrupted run
resumes where it stopped.

How to run
----------
::

    python benchmarks/vanilla_table.py --data-dir /work/shared/data --threads 1     # full table
    python benchmarks/vanilla_table.py --quick                                       # smoke run, uses $SKPROBAE_DATA

Writes ``benchmarks/results/vanilla_table.md`` (``--output``; ``--quick`` runs
write to ``benchmarks/results/quick/``) and one PNG per data set beside it.
"""

from __future__ import annotations

import argparse
import math
import os
import time
import traceback
from functools import partial
from pathlib import Path

import numpy as np
import torch
from _common import OUTPUT_HELP, RunCache, markdown_table, report_path, run_details

from skprobae import ProbabilisticAutoencoder
from skprobae.datasets import DATA_ENV, load_images
from skprobae.distributions import BUILTIN_DISTRIBUTIONS, make_distribution

FAMILIES = list(BUILTIN_DISTRIBUTIONS)
PAPER_LABEL = {
    "mse": "MSE",
    "normal": "N(mu)",
    "normal_diag": "N(mu, diag)",
    "normal_full": "N(mu, Sigma)",
    "t": "t(df, mu)",
    "t_diag": "t(df, mu, diag)",
    "t_full": "t(df, mu, Sigma)",
    "maf": "MAF",
    "matrix_normal": "MN(mu)",
    "matrix_normal_diag": "MN(mu, diag U, V)",
    "matrix_normal_full": "MN(mu, U, V)",
    "matrix_t": "T(df, mu)",
    "matrix_t_diag": "T(df, mu, diag U, V)",
    "matrix_t_full": "T(df, mu, U, V)",
}
# The paper's Table 1, L2 % (MNIST, F-MNIST); None where it reports "-".
PAPER_L2 = {
    ("mse", 1): (1.585, 1.451),
    ("normal", 1): (1.587, 1.525),
    ("normal_diag", 1): (5.299, 4.481),
    ("normal_full", 1): (9.808, 16.419),
    ("t", 1): (1.623, 1.61),
    ("t_diag", 1): (5.037, 3.26),
    ("t_full", 1): (4.303, 3.541),
    ("maf", 1): (1.869, 1.609),
    ("matrix_normal", 1): (1.668, 1.526),
    ("matrix_normal_diag", 1): (5.685, 4.169),
    ("matrix_normal_full", 1): (6.207, 14.303),
    ("matrix_t", 1): (1.706, 1.609),
    ("matrix_t_diag", 1): (4.571, 3.519),
    ("matrix_t_full", 1): (5.61, 6.307),
    ("normal", 10): (1.163, 1.046),
    ("normal_diag", 10): (4.575, 2.708),
    ("t", 10): (7.671, 15.082),
    ("t_diag", 10): (4.975, 16.377),
    ("matrix_normal", 10): (1.208, 1.043),
    ("matrix_normal_diag", 10): (4.795, 2.331),
    ("matrix_normal_full", 10): (5.98, 10.797),
    ("matrix_t", 10): (7.953, 16.101),
    ("matrix_t_diag", 10): (5.149, 14.122),
    ("matrix_t_full", 10): (5.677, 9.389),
}
PAPER_CONV_L2 = {"matrix_normal": (8.498, 10.983)}  # Table 2, MN(mu) with the paper's CNN, K=1
DATASET_COLUMN = {"mnist": 0, "fashion_mnist": 1}
N_SHOWN = 8


class ReluLinear(torch.nn.Sequential):
    """The paper's encoder: one dense layer with a ReLU (its hidden layer is the code)."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__(torch.nn.Linear(in_features, out_features), torch.nn.ReLU())


def make_model(name: str, K: int, args: argparse.Namespace, seed: int, architecture: str) -> ProbabilisticAutoencoder:
    epochs = args.full_epochs if name.endswith("_full") and not name.startswith("matrix") else args.epochs
    common = {
        "distribution": name,
        "n_mixtures": K,
        "n_components": 32,
        "image_shape": (28, 28),
        "max_epochs": epochs,
        "batch_size": 128,
        "learning_rate": 1e-3,
        "validation_fraction": 0.0,
        "n_iter_no_change": None,
        "device": args.device,
        "random_state": seed,
    }
    if architecture == "conv":
        return ProbabilisticAutoencoder(architecture="conv", hidden_layer_sizes=(), **common)
    return ProbabilisticAutoencoder(encoder=ReluLinear, hidden_layer_sizes=(), **common)


def count_parameters(name: str, K: int, architecture: str) -> int:
    """Parameters of the model, from its layer sizes (MLP) or by building it (conv), without training."""
    head = make_distribution(name, 784, K, image_shape=(28, 28))
    head_params = sum(p.numel() for p in head.parameters())
    if architecture == "mlp":
        return (784 + 1) * 32 + (32 + 1) * head.n_params + head_params
    model = ProbabilisticAutoencoder(
        distribution=name,
        n_mixtures=K,
        n_components=32,
        image_shape=(28, 28),
        architecture="conv",
        hidden_layer_sizes=(),
    )
    encoder, decoder = model._build_networks(784, head)
    return sum(p.numel() for m in (encoder, decoder) for p in m.parameters()) + head_params


def evaluate(
    name: str, K: int, architecture: str, data: dict, args: argparse.Namespace
) -> dict:  # one table row, JSON-serialisable
    row: dict = {"name": name, "K": K, "architecture": architecture, "attempts": []}
    for attempt in range(2):
        seed = args.seed + attempt
        model = make_model(name, K, args, seed, architecture)
        start = time.perf_counter()
        try:
            model.fit(data["train"])
        except Exception as exc:  # a diverged or failed fit is a result too
            row["attempts"].append(f"seed {seed}: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
            print(f"  {name} K={K} {architecture} seed {seed} failed: {exc}", flush=True)
            if args.verbose:
                traceback.print_exc()
            continue
        fit_s = time.perf_counter() - start
        X_test = data["test"]
        start = time.perf_counter()
        point, std = model.reconstruct(X_test, return_std=True)
        nll = -model.score_samples(X_test)
        eval_s = time.perf_counter() - start
        durations = model.history_[:, "dur"]
        row.update(
            seed=seed,
            l2=100 * float(np.mean((X_test - np.clip(point, 0, 1)) ** 2)),
            nll=float(np.mean(nll)),
            nll_finite=int(np.isfinite(nll).sum()),
            params=int(sum(p.numel() for p in model.net_.module_.parameters())),
            epochs=len(durations),
            s_per_epoch=float(np.mean(durations)),
            fit_s=fit_s,
            eval_s=eval_s,
            nan_std=float(np.mean(np.isnan(std))),
            shown_point=np.clip(point[:N_SHOWN], 0, 1).tolist(),
            shown_std=std[:N_SHOWN].tolist(),
        )
        row["attempts"].append(f"seed {seed}: ok")
        print(
            f"  {name:20s} K={K:<2d} {architecture}: L2 {row['l2']:.3f}%  NLL {row['nll']:.1f}  "
            f"{row['params']:,} params  {row['s_per_epoch']:.1f} s/epoch  (fit {fit_s:.0f} s, eval {eval_s:.0f} s)",
            flush=True,
        )
        return row
    return row


def fit_or_skip(name: str, K: int, architecture: str, data: dict, args: argparse.Namespace) -> dict:
    """One table row: the fitted model's figures, or why it was skipped."""
    n_params = count_parameters(name, K, architecture)
    reason = None
    if name == "maf" and K > 1 and not args.maf_mixtures:
        reason = "skipped: point estimate = 50 draws x K components x 784 sequential passes"
    elif n_params > args.max_params:
        reason = f"skipped: {n_params / 1e6:.0f}M parameters > --max-params"
    if reason is None:
        return evaluate(name, K, architecture, data, args)
    print(f"  {name} K={K}: {reason}", flush=True)
    return {"name": name, "K": K, "architecture": architecture, "attempts": [], "params": n_params, "skipped": reason}


def load_data(name: str, args: argparse.Namespace) -> dict:
    X, _ = load_images(name, "train", data_dir=args.data_dir)
    X_test, _ = load_images(name, "test", data_dir=args.data_dir)
    rng = np.random.default_rng(args.seed)
    train = X[rng.permutation(len(X))[: args.n_train]] if args.n_train else X
    test = X_test[rng.permutation(len(X_test))[: args.n_test]]
    return {"train": train.astype(np.float32), "test": test.astype(np.float64)}


def fmt(value, spec: str) -> str:
    return "-" if value is None or (isinstance(value, float) and not math.isfinite(value)) else format(value, spec)


def table(rows: list[dict], dataset: str, architecture: str) -> str:
    column = DATASET_COLUMN[dataset]
    header = ["distribution", "K", "L2 %", "paper L2 %", "test NLL (nats)", "params", "s/epoch", "epochs", "note"]
    lines = []
    paper = PAPER_L2 if architecture == "mlp" else PAPER_CONV_L2
    for r in rows:
        if r["architecture"] != architecture:
            continue
        reference = paper.get((r["name"], r["K"]) if architecture == "mlp" else r["name"])
        note = "; ".join(a for a in r["attempts"] if not a.endswith("ok")) or ""
        if r.get("skipped"):
            note = r["skipped"]
        if r.get("nan_std"):
            note = (note + "; " if note else "") + f"std NaN for {100 * r['nan_std']:.0f}% of pixels"
        lines.append(
            [
                r["name"],
                str(r["K"]),
                fmt(r.get("l2"), ".3f"),
                fmt(reference[column] if reference else None, ".3f"),
                fmt(r.get("nll"), ".1f"),
                fmt(r.get("params"), ","),
                fmt(r.get("s_per_epoch"), ".1f"),
                fmt(r.get("epochs"), "d"),
                note,
            ]
        )
    return markdown_table(header, lines)


def write_figure(path: Path, rows: list[dict], data: dict) -> bool:
    try:
        from skprobae.plotting import plot_image_rows
    except ImportError:
        return False
    shown = {"input": data["test"][:N_SHOWN]}
    scale = {"input": (0.0, 1.0)}
    cmaps = {}
    for r in rows:
        if r["architecture"] == "mlp" and r["K"] == 1 and "shown_point" in r:
            shown[f"{r['name']}"] = np.asarray(r["shown_point"])
            shown[f"{r['name']} std"] = np.asarray(r["shown_std"], dtype=float)
            scale[r["name"]] = (0.0, 1.0)
            cmaps[f"{r['name']} std"] = "magma"
    plot_image_rows(shown, (28, 28), scale=scale, cmaps=cmaps, path=path)
    return True


def write_report(args: argparse.Namespace, settings: str, sections: list[str], start: float) -> float:
    elapsed = time.perf_counter() - start
    text = (
        "# Vanilla probabilistic autoencoder: every output distribution\n\n"
        + run_details(elapsed, args.device)
        + f"\n- Settings: {settings}, seed {args.seed}, batch 128, Adam 1e-3, 784-32(ReLU)-decoder MLP\n"
        + "- L2 %: 100 x mean squared error of the clipped point estimate on the test images; NLL in nats/image; "
        "s/epoch on this CPU (the paper's on a GTX 1060).\n"
        + (
            f"- Written with --report-only from the rows cached in {args.cache} by earlier runs of this script "
            "with the same settings (e.g. one process per data set, run side by side).\n"
            if args.report_only
            else ""
        )
        + "\n"
        + "\n".join(sections)
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    return elapsed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get(DATA_ENV), help=f"data folder (default ${DATA_ENV})")
    parser.add_argument("--datasets", nargs="+", default=["fashion_mnist", "mnist"], choices=list(DATASET_COLUMN))
    parser.add_argument("--distributions", nargs="+", default=FAMILIES, choices=FAMILIES)
    parser.add_argument("--mixtures", type=int, nargs="+", default=[1, 10])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--full-epochs", type=int, default=None, help="epochs of normal_full / t_full")
    parser.add_argument("--n-train", type=int, default=None, help="training rows (default: all)")
    parser.add_argument("--n-test", type=int, default=1000)
    parser.add_argument("--max-params", type=float, default=20e6)
    parser.add_argument("--maf-mixtures", action="store_true", help="also fit maf with K > 1 (slow to evaluate)")
    parser.add_argument("--conv-distributions", nargs="*", default=["matrix_normal", "mse", "normal_diag", "t_diag"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="smoke run: 1000 rows, 1 epoch, four families, K=1, 2")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="write the report from --cache without fitting (missing rows: not run)",
    )
    parser.add_argument("--output", type=Path, default=None, help=OUTPUT_HELP)
    parser.add_argument("--cache", type=Path, default=None, help="JSON of finished rows (default: beside --output)")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_train, args.n_test, args.epochs, args.mixtures = 1000, 100, 1, [1, 2]
        args.distributions = ["mse", "normal_diag", "maf", "matrix_t_diag"]
        args.conv_distributions = ["matrix_normal"]
        args.datasets = args.datasets[:1]
    args.output = report_path(args.output, "vanilla_table", args.quick)
    args.full_epochs = args.full_epochs or args.epochs
    args.cache = args.cache or args.output.with_suffix(".json")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    settings = f"epochs={args.epochs} full_epochs={args.full_epochs} n_train={args.n_train} n_test={args.n_test}"
    cache = RunCache(args.cache, settings, enabled=not args.quick)
    sections = []
    for dataset in args.datasets:
        try:
            data = load_data(dataset, args)
        except (FileNotFoundError, ValueError) as exc:
            raise SystemExit(f"{dataset} not found ({exc}); pass --data-dir or set ${DATA_ENV}.") from exc
        print(f"{dataset}: train {data['train'].shape}, test {data['test'].shape}", flush=True)
        jobs = [(n, 1, "mlp") for n in args.distributions if 1 in args.mixtures]
        jobs += [(n, 1, "conv") for n in args.conv_distributions]
        jobs += [(n, K, "mlp") for K in args.mixtures if K != 1 for n in args.distributions]
        rows = []
        for name, K, architecture in jobs:
            key = f"{dataset}/{name}/{K}/{architecture}"
            if key not in cache and args.report_only:
                rows.append({"name": name, "K": K, "architecture": architecture, "attempts": [], "skipped": "not run"})
                continue
            rows.append(cache.get_or_run(key, partial(fit_or_skip, name, K, architecture, data, args)))
        figure = args.output.with_name(f"{args.output.stem}_{dataset}.png")
        drawn = write_figure(figure, rows, data)
        sections.append(
            f"## {dataset}\n\n### MLP (the paper's Table 1)\n\n{table(rows, dataset, 'mlp')}\n\n"
            f"### Convolutional networks, K=1 (paper: Table 2, its CNN)\n\n{table(rows, dataset, 'conv')}\n"
            + (f"\n![{dataset} reconstructions and std]({figure.name})\n" if drawn else "")
        )
        write_report(args, settings, sections, start)  # after each data set, so a long run reports early
    elapsed = write_report(args, settings, sections, start)
    print(f"\nwritten to {args.output} ({elapsed / 60:.1f} min)")


if __name__ == "__main__":
    main()
