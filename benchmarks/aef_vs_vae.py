"""AEF against the architecturally identical VAE on dequantized MNIST: the AEF paper's Table 1 (MNIST columns).

What it measures
----------------
MNIST from ``--data-dir`` (or ``$SKPROBAE_DATA``), dequantized as
``(x * 255 + U[0, 1)) / 256`` with a seeded generator. For each latent size K
in ``--latent-sizes`` (the paper: 2 and 32) it fits, on the same training
rows and with the same budget (``--epochs`` over ``--n-train`` rows, batch
128, Adam 1e-3, gradient-norm clipping 200, 10% validation split, the
weights of the best validation epoch kept):

* ``AEF(partition="linear" | "center" | "corner", logit_lambda=1e-6)``;
* ``VAE(posterior_flow="iaf", prior_flow="maf")``, the paper's baseline,
  fitted on the same logit transform of the data (a fixed bijection applied
  here, its log-det added to the scores, so both models are densities of the
  same dequantized pixels; the VAE's decoder absorbs the per-feature affine
  that the AEF's ActNorm learns);

all with the paper's small convolutional networks (Appendix D.1: 3x3
stride-2 convolutions with 64 and 128 channels, linear maps to and from the
latent space; ``architecture="conv", conv_channels=(64, 128),
hidden_layer_sizes=()``) and 4-layer MAF / IAF flows with 256 hidden units.
Reported: test bits per dimension on ``--n-test`` test rows
(``skprobae.metrics.bits_per_dim``: exact for the center / corner AEFs,
importance-sampled with ``--importance-samples`` draws for the linear AEF and
the VAE, default 32, where the paper averages 20 x 128), seconds per epoch, parameter
count, and a grid of samples at temperature 0.85 (``.png`` beside the report).

How to run
----------
::

    python benchmarks/aef_vs_vae.py --data-dir /work/shared/data     # full run (about 30 min on 2 idle cores)
    python benchmarks/aef_vs_vae.py --quick                          # smoke run, uses $SKPROBAE_DATA

The table is printed and written to ``benchmarks/results/aef_vs_vae.md``
(``--output``; ``--quick`` runs write to ``benchmarks/results/quick/``). ``--device cuda`` runs the models on a GPU.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from _common import OUTPUT_HELP, markdown_table, report_path, run_details

from skprobae import AEF, VAE
from skprobae.datasets import DATA_ENV, load_images
from skprobae.metrics import bits_per_dim

LOGIT_LAMBDA = 1e-6
IMAGE_SHAPE = (28, 28)
TEMPERATURE = 0.85
PAPER_ITERATIONS = 100_000
PAPER_BPD = {("AEF linear", 2): 2.37, ("AEF linear", 32): 1.82, ("VAE", 2): 2.40, ("VAE", 32): 1.80}
MODELS = ("AEF linear", "AEF center", "AEF corner", "VAE")


def dequantize(X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """uint8 pixels k to ``(k + U[0, 1)) / 256``."""
    return ((X + rng.random(X.shape)) / 256).astype(np.float32)


def logit(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The AEF's preprocessing logit (without ActNorm) and its log-det per row."""
    s = LOGIT_LAMBDA + (1 - 2 * LOGIT_LAMBDA) * X.astype(np.float64)
    log_det = (math.log(1 - 2 * LOGIT_LAMBDA) - np.log(s) - np.log1p(-s)).sum(axis=1)
    return np.log(s) - np.log1p(-s), log_det


def expit_back(Y: np.ndarray) -> np.ndarray:
    return (1 / (1 + np.exp(-Y)) - LOGIT_LAMBDA) / (1 - 2 * LOGIT_LAMBDA)


@dataclass
class Result:
    model: str
    K: int
    bpd: float
    bpd_sem: float
    seconds_per_epoch: float
    epochs: int
    best_epoch: int
    iterations: int
    n_params: int
    score_seconds: float
    note: str


def common_params(K: int, args: argparse.Namespace) -> dict:
    return {
        "n_components": K,
        "architecture": "conv",
        "image_shape": IMAGE_SHAPE,
        "hidden_layer_sizes": (),
        "conv_channels": (64, 128),
        "flow_transforms": 4,
        "flow_hidden_layer_sizes": (256, 256),
        "n_importance_samples": args.importance_samples,
        "max_epochs": args.epochs,
        "batch_size": 128,
        "learning_rate": 1e-3,
        "max_grad_norm": 200.0,
        "validation_fraction": 0.1,
        "n_iter_no_change": args.epochs,  # never stops early; restores the best validation epoch
        "device": args.device,
        "random_state": args.seed,
    }


def factories(K: int, args: argparse.Namespace) -> dict[str, Callable[[], object]]:
    params = common_params(K, args)
    aef = {
        f"AEF {p}": (lambda p=p: AEF(partition=p, logit_lambda=LOGIT_LAMBDA, **params))
        for p in ("linear", "center", "corner")
    }
    return {**aef, "VAE": lambda: VAE(posterior_flow="iaf", prior_flow="maf", **params)}


def run_model(
    name: str, K: int, factory: Callable[[], object], X_train: np.ndarray, X_test: np.ndarray
) -> tuple[Result, np.ndarray]:
    is_vae = name == "VAE"
    model = factory()
    train = logit(X_train)[0] if is_vae else X_train
    start = time.perf_counter()
    model.fit(train)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    if is_vae:
        Y_test, log_det = logit(X_test)
        log_p = model.score_samples(Y_test) + log_det
        samples = expit_back(model.sample(10, random_state=0, temperature=TEMPERATURE))
    else:
        log_p = model.score_samples(X_test)
        samples = model.sample(10, random_state=0, temperature=TEMPERATURE)
    score_s = time.perf_counter() - start
    bpd = bits_per_dim(log_p, X_test.shape[1])
    history = model.history_
    valid = [row["valid_loss"] for row in history]
    n_train_rows = math.floor(0.9 * len(X_train))
    exact = name in ("AEF center", "AEF corner")
    result = Result(
        model=name,
        K=K,
        bpd=float(np.mean(bpd)),
        bpd_sem=float(np.std(bpd) / math.sqrt(len(bpd))),
        seconds_per_epoch=float(np.mean([row["dur"] for row in history])),
        epochs=len(history),
        best_epoch=int(np.argmin(valid)) + 1,
        iterations=len(history) * math.ceil(n_train_rows / 128),
        n_params=sum(p.numel() for p in model.net_.module_.parameters()),
        score_seconds=score_s,
        note="exact" if exact else f"IS, {model.n_importance_samples} samples",
    )
    print(
        f"  {name:<11s} K={K:<3d} {result.bpd:.3f} bits/dim (+-{result.bpd_sem:.3f})  "
        f"fit {fit_s:.0f} s ({result.seconds_per_epoch:.1f} s/epoch, best epoch {result.best_epoch})  "
        f"score {score_s:.0f} s",
        flush=True,
    )
    return result, np.clip(samples, 0, 1)


def results_table(results: list[Result]) -> str:
    rows = []
    for r in sorted(results, key=lambda r: (r.K, MODELS.index(r.model))):
        paper = PAPER_BPD.get((r.model, r.K))
        rows.append(
            [
                r.model,
                str(r.K),
                f"{r.bpd:.3f} ± {r.bpd_sem:.3f}",
                f"{paper:.2f}" if paper else "-",
                r.note,
                f"{r.seconds_per_epoch:.1f}",
                f"{r.epochs} (best {r.best_epoch})",
                f"{r.iterations:,}",
                f"{r.n_params / 1e6:.2f}M",
            ]
        )
    header = ["model", "K", "test bits/dim", "paper", "log p(x)", "s/epoch", "epochs", "iterations", "params"]
    return markdown_table(header, rows)


def findings(results: list[Result]) -> str:
    sentences = []
    for K in sorted({r.K for r in results}):
        at_k = {r.model: r for r in results if r.K == K}
        if "VAE" in at_k and "AEF linear" in at_k:
            aef, vae = at_k["AEF linear"], at_k["VAE"]
            better = "AEF" if aef.bpd < vae.bpd else "VAE"
            paper = (
                f" (paper: {PAPER_BPD[('AEF linear', K)]:.2f} vs {PAPER_BPD[('VAE', K)]:.2f})"
                if ("VAE", K) in PAPER_BPD
                else ""
            )
            sentences.append(
                f"K={K}: AEF linear {aef.bpd:.3f} vs VAE {vae.bpd:.3f} bits/dim{paper}; {better} better by "
                f"{abs(aef.bpd - vae.bpd):.3f} (standard errors {aef.bpd_sem:.3f} / {vae.bpd_sem:.3f})."
            )
        best = min(at_k.values(), key=lambda r: r.bpd)
        sentences.append(f"K={K}: lowest bits/dim {best.bpd:.3f} ({best.model}).")
    return " ".join(sentences)


def write_report(path: Path, results: list[Result], args: argparse.Namespace, elapsed: float, png: str | None) -> None:
    iterations = max((r.iterations for r in results), default=0)
    text = f"""# AEF vs VAE on dequantized MNIST

Produced by `benchmarks/aef_vs_vae.py` (see its docstring for the protocol).

{run_details(elapsed, args.device)}
- Data: {args.n_train:,} MNIST training rows (seed {args.seed}; 10% of them for validation), {args.n_test:,} test rows,
  dequantized `(x * 255 + U[0, 1)) / 256`.
- Budget: {args.epochs} epochs, batch 128 (about {iterations:,} iterations per model); the paper trains
  {PAPER_ITERATIONS:,} iterations on all 54,000 training rows. Bits/dim on this budget are therefore higher than the
  paper's; the comparison is between models trained identically.

## Test bits per dimension (lower is better)

{results_table(results)}

± is the standard error over test rows. "IS" rows are importance-sampled lower bounds of log p(x) (so their bits/dim
are upper bounds); the paper averages 20 x 128 samples.

## Findings

{findings(results)}
"""
    if png:
        text += f"\n## Samples (temperature {TEMPERATURE})\n\n![samples]({png})\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get(DATA_ENV), help=f"data folder (default ${DATA_ENV})")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1000 rows, 1 epoch, K=2, 100 test rows")
    parser.add_argument("--latent-sizes", type=int, nargs="+", default=[2, 32])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--n-train", type=int, default=5_000, help="training rows, incl. validation (default 5000)")
    parser.add_argument("--n-test", type=int, default=1000, help="test rows scored (default 1000)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per model (default 3)")
    parser.add_argument("--importance-samples", type=int, default=32, help="IS draws per row (default 32)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--output", type=Path, default=None, help=OUTPUT_HELP)
    args = parser.parse_args(argv)
    if args.quick:
        args.n_train, args.n_test, args.epochs, args.latent_sizes, args.importance_samples = 1000, 100, 1, [2], 16
    args.output = report_path(args.output, "aef_vs_vae", args.quick)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        X_all, _ = load_images("mnist", "train", data_dir=args.data_dir, scale=False)
        X_test_all, _ = load_images("mnist", "test", data_dir=args.data_dir, scale=False)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"MNIST not found ({exc}); pass --data-dir or set ${DATA_ENV}.") from exc
    rng = np.random.default_rng(args.seed)
    X_train = dequantize(X_all[rng.permutation(len(X_all))[: args.n_train]], rng)
    X_test = dequantize(X_test_all[rng.permutation(len(X_test_all))[: args.n_test]], rng)
    print(f"{len(X_train)} training rows, {len(X_test)} test rows, {args.epochs} epochs", flush=True)
    start = time.perf_counter()
    results: list[Result] = []
    samples: dict[str, np.ndarray] = {}
    png = args.output.with_suffix(".png")
    for K in args.latent_sizes:
        for name, factory in factories(K, args).items():
            if name not in args.models:
                continue
            result, drawn = run_model(name, K, factory, X_train, X_test)
            results.append(result)
            samples[f"{name}, K={K}"] = drawn
            write_report(args.output, results, args, time.perf_counter() - start, None)  # partial results survive
    try:
        from skprobae.plotting import plot_image_rows

        plot_image_rows(
            {"test images": X_test[:10], **samples},
            IMAGE_SHAPE,
            scale=dict.fromkeys(["test images", *samples], (0.0, 1.0)),
            path=png,
            title=f"Samples at temperature {TEMPERATURE}",
        )
        png_name = png.name
    except ImportError:
        png_name = None
    write_report(args.output, results, args, time.perf_counter() - start, png_name)
    print(results_table(results))
    print(findings(results))


if __name__ == "__main__":
    main()
