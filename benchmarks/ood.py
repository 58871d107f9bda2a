"""Out-of-distribution detection on Fashion-MNIST: the PAE paper's Table 2, against a VAE and PyOD baselines.

What it measures
----------------
Every method is fitted on the same Fashion-MNIST training rows and scores the
Fashion-MNIST test split (in-distribution, the negative class) and three
out-of-distribution sets (the positive class):

* ``MNIST``: the MNIST test split;
* ``h-flip``: the Fashion-MNIST test images mirrored left-right;
* ``v-flip``: the Fashion-MNIST test images flipped upside down;

plus, as a sign check only, uniform-noise images, which every working
detector should separate almost perfectly. The number reported is the AUROC
of "OOD vs Fashion-MNIST test" with the anomaly score ``-score_samples`` for
skprobae (higher ``score_samples`` = more normal) and ``decision_function``
for PyOD (higher = more abnormal).

Methods, all in one process:

* ``skprobae.PAE(architecture="conv", image_shape=(28, 28),
  hidden_layer_sizes=(512,), n_components=K, random_state=0)`` for each K
  in ``--latent-sizes``, library defaults otherwise (``flow="auto"``: RealNVP
  up to K = 32, a neural spline flow above), fitted once per K and scored
  with every ``score_method`` through ``set_params`` (no refit): ``combined``
  (Eq. 12), ``latent``, ``reconstruction`` and ``laplace`` (Eq. 11; 100 MAP
  steps and K Jacobian columns per row, so it is scored on a seeded
  subsample of ``--laplace-rows`` rows of each set); plus, from the same
  fit, the unweighted reconstruction MSE of ``reconstruct`` (the paper's "AE
  reconstruction" score; the library's ``reconstruction`` weights each pixel
  by ``1 / sigma_**2``);
* ``skprobae.VAE(architecture="conv", image_shape=(28, 28),
  hidden_layer_sizes=(512,), n_components=K, n_importance_samples=S,
  random_state=0)`` for the same K values, library defaults otherwise
  (``distribution="normal_diag"``, ``N(0, I)`` prior, no flows), fitted on
  the same rows for ``--epochs`` epochs and scored with ``score_samples``
  (the IWAE estimate of ``log p(x)`` with S importance samples) and with
  the unweighted reconstruction MSE of ``reconstruct`` (like the PAE row).
  S is ``--importance-samples``, default 16, not the library's 256: every
  row costs S decoder passes, both in scoring and in ``fit`` (which scores
  at most 1,000 training rows for ``offset_``), about 0.2 ms per row and sample here,
  so S = 64 would take ~20 min per K for the ~88,000 rows; S = 16 takes ~5.
  On a 2,000-row check (K=16, 3 epochs) the MNIST AUROC moved by under
  0.01 between S = 1, 8, 16, 32 and 64. ``--skip-vae`` leaves the VAE out;
* PyOD ``AutoEncoder``, ``VAE`` and ``IForest`` at their defaults
  (``verbose=0``; ``IForest(random_state=0)`` for reproducibility).

It also times ``score_samples`` of the K = 16 PAE (``combined``) on
``--throughput-rows`` rows after a warm-up call, waiting first until other
processes leave the CPU idle (the target is 20,000 rows/s), and sets it
against the float32 matrix-product rate of ``--device``, measured at the
start of the same run.

Every skprobae estimator is built with ``device=--device`` (default ``cpu``;
``cuda`` or ``cuda:N`` runs the PAE and VAE fits and scoring on a GPU and
stops with an error when CUDA is not available). The PyOD baselines choose
their own device.

How to run
----------
::

    python benchmarks/ood.py --data-dir /work/shared/data            # full run (~1 h on 2 quiet cores)
    python benchmarks/ood.py --quick                                 # smoke run, uses $SKPROBAE_DATA
    python benchmarks/ood.py --data-dir /work/shared/data --device cuda  # PAE / VAE on a GPU

The tables are printed and written to ``benchmarks/results/ood.md``
(``--output``; ``--quick`` runs write to ``benchmarks/results/quick/``), with a
plot of AUROC against K beside it (``.png``). PyOD is the optional benchmark
dependency: ``pip install -c constraints.txt pyod``.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from _common import OUTPUT_HELP, check_device, git_revision, machine_description, matmul_rate, report_path, run_details
from sklearn.metrics import roc_auc_score

from skprobae import PAE, VAE
from skprobae.datasets import DATA_ENV, load_images

OOD_SETS = ("MNIST", "h-flip", "v-flip")
SANITY_SET = "noise"
FAST_METHODS = ("combined", "latent", "reconstruction")
LAPLACE = "laplace"
MSE = "plain MSE"  # not a score_method: mean squared error of model.reconstruct, the paper's "AE reconstruction"
VAE_IWAE = "VAE IWAE"  # VAE rows: score_samples (IWAE log-likelihood) ...
VAE_MSE = "VAE plain MSE"  # ... and the unweighted MSE of VAE.reconstruct
VAE_METHODS = (VAE_IWAE, VAE_MSE)
IMAGE_SHAPE = (28, 28)
HIDDEN = (512,)
THROUGHPUT_K = 16
THROUGHPUT_TARGET = 20_000
QUIET_CORES = 0.3  # other processes may use at most this many cores before timing throughput
QUIET_WAIT_S = 600.0
# Böhm & Seljak, Table 2 (F-MNIST train; AUROC vs MNIST, h-flip, v-flip).
PAPER = {
    ("latent", 64): ((0.997, 0.698, 0.891), "paper: PAE latent density, K=64"),
    ("reconstruction", 4): ((0.986, 0.689, 0.880), "paper: AE reconstruction, K=4"),
    (MSE, 4): ((0.986, 0.689, 0.880), "paper: AE reconstruction, K=4"),
}
AUROC_TARGET = 0.99


# ------------------------------------------------------------------------- data
@dataclass
class Splits:
    """Training rows, the in-distribution test rows, and each OOD set (float32 pixels / 255)."""

    train: np.ndarray
    inlier: np.ndarray
    ood: dict[str, np.ndarray]

    def evaluation_sets(self) -> dict[str, np.ndarray]:
        return {"F-MNIST test": self.inlier, **self.ood}


def flip(X: np.ndarray, axis: int) -> np.ndarray:
    """Flip flattened 28x28 images: ``axis=2`` mirrors left-right, ``axis=1`` upside down."""
    return np.ascontiguousarray(np.flip(X.reshape(-1, *IMAGE_SHAPE), axis=axis).reshape(len(X), -1))


def load_splits(data_dir: str | None, n_train: int | None, n_test: int | None, n_noise: int) -> Splits | None:
    """The benchmark's rows, or None (with a message) when the data folder is missing."""
    try:
        train, _ = load_images("fashion_mnist", "train", data_dir=data_dir)
        inlier, _ = load_images("fashion_mnist", "test", data_dir=data_dir)
        mnist, _ = load_images("mnist", "test", data_dir=data_dir)
    except FileNotFoundError as exc:
        print(f"MNIST / Fashion-MNIST not found ({exc}); pass --data-dir or set {DATA_ENV}. Skipping the benchmark.")
        return None
    rng = np.random.default_rng(0)
    if n_train is not None and n_train < len(train):
        train = train[np.sort(rng.choice(len(train), n_train, replace=False))]
    if n_test is not None:
        inlier = inlier[np.sort(rng.choice(len(inlier), min(n_test, len(inlier)), replace=False))]
        mnist = mnist[np.sort(rng.choice(len(mnist), min(n_test, len(mnist)), replace=False))]
    noise = rng.random((n_noise, inlier.shape[1]), dtype=np.float32)
    ood = {"MNIST": mnist, "h-flip": flip(inlier, 2), "v-flip": flip(inlier, 1), SANITY_SET: noise}
    return Splits(np.ascontiguousarray(train), inlier, ood)


def subsample(splits: Splits, n_rows: int) -> Splits:
    """A seeded subsample of ``n_rows`` rows of every evaluation set (for the slow Laplace score)."""
    rng = np.random.default_rng(1)

    def pick(X: np.ndarray) -> np.ndarray:
        return X[np.sort(rng.choice(len(X), min(n_rows, len(X)), replace=False))]

    return Splits(splits.train, pick(splits.inlier), {name: pick(X) for name, X in splits.ood.items()})


# ---------------------------------------------------------------------- timing
def busy_cpu_seconds() -> float:
    """Seconds of non-idle CPU time of the whole machine since boot (Linux), else NaN."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()[1:]
    except OSError:
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@dataclass
class Timed:
    """A call's return value, its wall seconds, and the CPU cores other processes used meanwhile."""

    value: object
    seconds: float
    others: float


def timed(fn: Callable[[], object]) -> Timed:
    busy, own, start = busy_cpu_seconds(), time.process_time(), time.perf_counter()
    value = fn()
    seconds = time.perf_counter() - start
    others = max(0.0, (busy_cpu_seconds() - busy) - (time.process_time() - own)) / max(seconds, 1e-9)
    return Timed(value, seconds, others)


# --------------------------------------------------------------------- scoring
@dataclass
class Evaluation:
    """AUROC per OOD set of one scoring call over all the evaluation rows."""

    auroc: dict[str, float]
    seconds: float
    others: float
    n_rows: int
    n_bad: int


@dataclass
class Result:
    """AUROC per OOD set and timings of one method."""

    method: str
    auroc: dict[str, float]
    fit_s: float
    score_s: float
    n_scored: int
    K: int | None = None
    score_method: str | None = None
    note: str = ""
    fit_others: float = 0.0
    score_others: float = 0.0


def finite(scores: np.ndarray) -> tuple[np.ndarray, int]:
    """Scores with non-finite values moved to the ends (NaN and +inf: most abnormal), and their count."""
    bad = ~np.isfinite(scores)
    if not bad.any():
        return scores, 0
    low, high = (scores[~bad].min(), scores[~bad].max()) if (~bad).any() else (0.0, 0.0)
    fixed = np.where(np.isneginf(scores), low - 1.0, scores)
    fixed = np.where(np.isnan(fixed) | np.isposinf(fixed), high + 1.0, fixed)
    return fixed, int(bad.sum())


def evaluate(anomaly_score: Callable[[np.ndarray], np.ndarray], splits: Splits) -> Evaluation:
    """AUROC of each OOD set against the inliers (OOD = positive class, score: higher = more abnormal).

    All sets are scored in one call (timed), then split.
    """
    sets = splits.evaluation_sets()
    X = np.concatenate(list(sets.values()))
    call = timed(lambda: np.asarray(anomaly_score(X), dtype=np.float64))
    scores, n_bad = finite(call.value)
    bounds = np.cumsum([0, *(len(v) for v in sets.values())])
    parts = {name: scores[a:b] for name, a, b in zip(sets, bounds[:-1], bounds[1:], strict=True)}
    inlier = parts.pop("F-MNIST test")
    auroc = {}
    for name, outlier in parts.items():
        labels = np.r_[np.zeros(len(inlier)), np.ones(len(outlier))]
        auroc[name] = float(roc_auc_score(labels, np.r_[inlier, outlier]))
    return Evaluation(auroc, call.seconds, call.others, len(X), n_bad)


def in_chunks(fn: Callable[[np.ndarray], np.ndarray], rows: int | None) -> Callable[[np.ndarray], np.ndarray]:
    """``fn`` applied to consecutive blocks of at most ``rows`` rows (all at once if None)."""
    if not rows:
        return fn
    return lambda X: np.concatenate([fn(X[i : i + rows]) for i in range(0, len(X), rows)])


def make_pae(K: int, args: argparse.Namespace) -> PAE:
    return PAE(
        architecture="conv",
        image_shape=IMAGE_SHAPE,
        hidden_layer_sizes=HIDDEN,
        n_components=K,
        max_epochs=args.epochs,
        flow_max_epochs=args.flow_epochs,
        random_state=0,
        device=args.device,
    )


@dataclass
class FitInfo:
    """What one PAE or VAE fit did (for the VAE: no flow; ``ae_*`` are its epochs and final valid -ELBO)."""

    model: str
    K: int
    fit_s: float
    epochs_s: float  # sum of the per-epoch durations in the histories (the rest of fit_s: setup, post-fit scoring)
    ae_epochs: int
    ae_valid_loss: float
    flow: str
    flow_epochs: int
    flow_valid_loss: float
    valid_kl: float = float("nan")
    others: float = 0.0


def epoch_seconds(*histories) -> float:
    return float(sum(sum(h[:, "dur"]) for h in histories if len(h)))


def last(history, key: str) -> float:
    try:
        return float(history[-1, key])
    except KeyError:
        return float("nan")


def model_result(name: str, K: int, method: str, fit: Timed, ev: Evaluation, note: str = "") -> Result:
    if ev.n_bad:
        note = (note + "; " if note else "") + f"{ev.n_bad} non-finite scores"
    return Result(name, ev.auroc, fit.seconds, ev.seconds, ev.n_rows, K, method, note, fit.others, ev.others)


def run_pae(
    K: int, args: argparse.Namespace, splits: Splits, laplace_splits: Splits
) -> tuple[PAE, FitInfo, list[Result]]:
    """Fit one PAE and score it with every score method (Laplace on the subsample, in chunks)."""
    model = make_pae(K, args)
    fit = timed(lambda: model.fit(splits.train))
    flow = model.flow_net_.module_.flow
    flow_name = type(getattr(flow, "flow", flow)).__name__
    info = FitInfo(
        "PAE",
        K,
        fit.seconds,
        epoch_seconds(model.history_, model.flow_history_),
        model.n_iter_,
        last(model.history_, "valid_loss"),
        flow_name,
        len(model.flow_history_),
        last(model.flow_history_, "valid_loss"),
        others=fit.others,
    )
    print(
        f"PAE K={K}: fit {fit.seconds:.1f} s ({info.ae_epochs} AE epochs, {flow_name} {info.flow_epochs} flow "
        f"epochs; other processes {fit.others:.2f} cores)",
        flush=True,
    )

    def anomaly_score(X: np.ndarray) -> np.ndarray:
        return -model.score_samples(X)

    results = []
    for method in (*FAST_METHODS, LAPLACE):
        model.set_params(score_method=method)
        if method == LAPLACE:
            ev = evaluate(in_chunks(anomaly_score, args.laplace_chunk), laplace_splits)
            note = f"subsample: {len(laplace_splits.inlier)} in-dist + {len(laplace_splits.ood['MNIST'])} per OOD set"
        else:
            ev, note = evaluate(anomaly_score, splits), ""
        results.append(model_result(f"PAE K={K} {method}", K, method, fit, ev, note))
        print(
            f"  {method:<15s} {format_auroc(ev.auroc)}  score {ev.seconds:.1f} s ({ev.n_rows} rows; "
            f"other processes {ev.others:.2f} cores)",
            flush=True,
        )
    ev = evaluate(lambda X: np.mean((X - model.reconstruct(X)) ** 2, axis=1), splits)  # higher = more abnormal
    results.append(model_result(f"PAE K={K} {MSE} (reconstruct)", K, MSE, fit, ev, "unweighted, not a score_method"))
    print(f"  {MSE:<15s} {format_auroc(ev.auroc)}  score {ev.seconds:.1f} s", flush=True)
    model.set_params(score_method="combined")  # on the Laplace subsample too, for a like-for-like comparison
    ev = evaluate(anomaly_score, laplace_splits)
    results.append(model_result(f"PAE K={K} combined (Laplace subsample)", K, "combined-sub", fit, ev))
    return model, info, results


def make_vae(K: int, args: argparse.Namespace) -> VAE:
    return VAE(
        architecture="conv",
        image_shape=IMAGE_SHAPE,
        hidden_layer_sizes=HIDDEN,
        n_components=K,
        max_epochs=args.epochs,
        n_importance_samples=args.importance_samples,
        random_state=0,
        device=args.device,
    )


def run_vae(K: int, args: argparse.Namespace, splits: Splits) -> tuple[FitInfo, list[Result]]:
    """Fit one VAE on the PAE's training rows; score with the IWAE log-likelihood and the plain MSE."""
    model = make_vae(K, args)
    fit = timed(lambda: model.fit(splits.train))
    info = FitInfo(
        "VAE",
        K,
        fit.seconds,
        epoch_seconds(model.history_),
        model.n_iter_,
        last(model.history_, "valid_loss"),
        "none (N(0, I) prior)",
        0,
        float("nan"),
        valid_kl=last(model.history_, "valid_kl"),
        others=fit.others,
    )
    print(
        f"VAE K={K}: fit {fit.seconds:.1f} s ({info.ae_epochs} epochs, {info.epochs_s:.1f} s of them; valid -ELBO "
        f"{info.ae_valid_loss:.1f}, KL {info.valid_kl:.1f}; other processes {fit.others:.2f} cores)",
        flush=True,
    )
    S = args.importance_samples
    ev = evaluate(lambda X: -model.score_samples(X), splits)
    results = [model_result(f"VAE K={K} IWAE log-likelihood (S={S})", K, VAE_IWAE, fit, ev, f"score_samples, S={S}")]
    print(
        f"  {'IWAE':<15s} {format_auroc(ev.auroc)}  score {ev.seconds:.1f} s ({ev.n_rows} rows, S={S}; "
        f"other processes {ev.others:.2f} cores)",
        flush=True,
    )
    ev = evaluate(lambda X: np.mean((X - model.reconstruct(X)) ** 2, axis=1), splits)  # higher = more abnormal
    results.append(model_result(f"VAE K={K} {MSE} (reconstruct)", K, VAE_MSE, fit, ev, "unweighted"))
    print(f"  {MSE:<15s} {format_auroc(ev.auroc)}  score {ev.seconds:.1f} s", flush=True)
    return info, results


def pyod_models() -> dict[str, Callable[[], object]]:
    """PyOD baselines at their defaults (progress output off, IForest seeded)."""
    from pyod.models.auto_encoder import AutoEncoder
    from pyod.models.iforest import IForest
    from pyod.models.vae import VAE

    return {
        "PyOD AutoEncoder": lambda: AutoEncoder(verbose=0),
        "PyOD VAE": lambda: VAE(verbose=0),
        "PyOD IForest": lambda: IForest(random_state=0),
    }


def run_pyod(name: str, factory: Callable[[], object], splits: Splits) -> Result:
    model = factory()
    fit = timed(lambda: model.fit(splits.train))
    ev = evaluate(model.decision_function, splits)  # PyOD: higher = more abnormal
    print(
        f"{name}: fit {fit.seconds:.1f} s  {format_auroc(ev.auroc)}  score {ev.seconds:.1f} s  "
        f"(other processes {fit.others:.2f} / {ev.others:.2f} cores)",
        flush=True,
    )
    note = f"{ev.n_bad} non-finite scores" if ev.n_bad else ""
    return Result(name, ev.auroc, fit.seconds, ev.seconds, ev.n_rows, None, None, note, fit.others, ev.others)


# ------------------------------------------------------------------ throughput
def wait_until_quiet(max_wait_s: float = QUIET_WAIT_S) -> tuple[float, float]:
    """Sleep until other processes use under ``QUIET_CORES`` cores; returns (seconds waited, last reading)."""
    start = time.perf_counter()
    while True:
        others = timed(lambda: time.sleep(2.0)).others
        waited = time.perf_counter() - start
        if others < QUIET_CORES or waited > max_wait_s:
            return waited, others
        print(f"  other processes use {others:.2f} cores; waiting", flush=True)
        time.sleep(10.0)


def flops_per_row(model: PAE) -> float:
    """Multiply-adds x 2 of the encoder and decoder for one row (linear and convolution layers; flow left out)."""
    total = 0

    def count(module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, torch.nn.Linear):
            total += module.in_features * module.out_features
        elif isinstance(module, torch.nn.Conv2d):
            total += output[0].numel() * module.in_channels // module.groups * math.prod(module.kernel_size)
        elif isinstance(module, torch.nn.ConvTranspose2d):
            total += inputs[0][0].numel() * module.out_channels // module.groups * math.prod(module.kernel_size)

    layers = (torch.nn.Linear, torch.nn.Conv2d, torch.nn.ConvTranspose2d)
    row = np.zeros((1, model.n_features_in_))
    model.reconstruct(row)  # unhooked: the library's first call per input shape probes the networks on a few rows
    hooks = [m.register_forward_hook(count) for m in model.net_.module_.modules() if isinstance(m, layers)]
    try:
        model.reconstruct(row)
    finally:
        for hook in hooks:
            hook.remove()
    return 2.0 * total


@dataclass
class Throughput:
    K: int
    n_rows: int
    flops: float = float("nan")
    inference_dtype: str = ""
    seconds: list[float] = field(default_factory=list)
    others: list[float] = field(default_factory=list)
    waited_s: float = 0.0
    load_before: str = ""
    top_before: str = ""

    @property
    def rate(self) -> float:
        return self.n_rows / statistics.median(self.seconds)

    @property
    def best_rate(self) -> float:
        return self.n_rows / min(self.seconds)


def measure_throughput(model: PAE, X: np.ndarray, repeats: int, max_wait_s: float = QUIET_WAIT_S) -> Throughput:
    """``score_samples`` rows/s of ``model`` (score_method="combined") on ``X``, after a warm-up call."""
    model.set_params(score_method="combined")
    result = Throughput(model.n_components_, len(X), flops_per_row(model), model.inference_dtype)
    result.waited_s, _ = wait_until_quiet(max_wait_s)
    result.load_before, result.top_before = load_average(), top_summary()
    model.score_samples(X[: min(len(X), 1000)])  # warm-up
    for _ in range(repeats):
        call = timed(lambda: model.score_samples(X))
        result.seconds.append(call.seconds)
        result.others.append(call.others)
    print(
        f"throughput K={result.K}: {result.rate:,.0f} rows/s (median of {repeats}; best {result.best_rate:,.0f}); "
        f"other processes {', '.join(f'{o:.2f}' for o in result.others)} cores",
        flush=True,
    )
    return result


# ------------------------------------------------------------------- reporting
def format_auroc(auroc: dict[str, float]) -> str:
    return "  ".join(f"{name} {value:.3f}" for name, value in auroc.items())


def reference_for(result: Result) -> str:
    if (result.score_method, result.K) in PAPER:
        values, label = PAPER[(result.score_method, result.K)]
        return f"{label}: " + " / ".join(f"{v:.3f}" for v in values)
    return ""


def results_table(results: list[Result]) -> str:
    header = (
        "| method | AUROC MNIST | AUROC h-flip | AUROC v-flip | noise (sign check) | fit s | score s | rows scored "
        "| other processes, cores (fit / score) | reference (MNIST / h-flip / v-flip) | note |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        cells = " | ".join(f"{r.auroc[name]:.3f}" for name in (*OOD_SETS, SANITY_SET))
        lines.append(
            f"| {r.method} | {cells} | {r.fit_s:.1f} | {r.score_s:.1f} | {r.n_scored:,} "
            f"| {r.fit_others:.2f} / {r.score_others:.2f} "
            f"| {reference_for(r)} | {r.note} |"
        )
    return "\n".join(lines)


def fits_table(infos: list[FitInfo]) -> str:
    lines = [
        "| model | K | fit s (all of `fit`) | of which training epochs, s | other processes, cores | epochs run "
        "| final valid loss (PAE AE: MSE; VAE: -ELBO, nats) | VAE final valid KL, nats | flow | flow epochs run "
        "| flow final valid NLL |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i in infos:
        loss = f"{i.ae_valid_loss:.5f}" if i.model == "PAE" else f"{i.ae_valid_loss:.1f}"
        kl = f"{i.valid_kl:.1f}" if math.isfinite(i.valid_kl) else ""
        flow_epochs, flow_loss = (str(i.flow_epochs), f"{i.flow_valid_loss:.3f}") if i.model == "PAE" else ("", "")
        lines.append(
            f"| {i.model} | {i.K} | {i.fit_s:.1f} | {i.epochs_s:.1f} | {i.others:.2f} | {i.ae_epochs} | {loss} | {kl} "
            f"| {i.flow} | {flow_epochs} | {flow_loss} |"
        )
    return "\n".join(lines)


def winners(results: list[Result]) -> dict[int, dict[str, str]]:
    """Best of the full-test-set score methods per K and OOD set."""
    best: dict[int, dict[str, str]] = {}
    for K in sorted({r.K for r in results if r.K is not None}):
        rows = [r for r in results if r.K == K and r.score_method in FAST_METHODS]
        best[K] = {name: max(rows, key=lambda r: r.auroc[name]).score_method for name in OOD_SETS}
    return best


def winners_table(results: list[Result]) -> str:
    lines = ["| K | " + " | ".join(f"best on {name}" for name in OOD_SETS) + " |", "|---|---|---|---|"]
    for K, best in winners(results).items():
        cells = []
        for name in OOD_SETS:
            row = next(r for r in results if r.K == K and r.score_method == best[name])
            cells.append(f"{best[name]} ({row.auroc[name]:.3f})")
        lines.append(f"| {K} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def laplace_table(results: list[Result]) -> str:
    lines = ["| K | score | " + " | ".join(f"AUROC {n}" for n in OOD_SETS) + " |", "|---|---|---|---|---|"]
    for r in sorted(results, key=lambda r: (r.K or 0, r.score_method != LAPLACE)):
        if r.score_method in (LAPLACE, "combined-sub"):
            label = "laplace" if r.score_method == LAPLACE else "combined"
            lines.append(f"| {r.K} | {label} | " + " | ".join(f"{r.auroc[n]:.3f}" for n in OOD_SETS) + " |")
    return "\n".join(lines)


def findings(results: list[Result], throughput: Throughput | None) -> str:
    """Sentences derived from the numbers: targets, the paper, PyOD, score-method winners."""
    full = [r for r in results if r.score_method in FAST_METHODS]
    sentences = []
    if full:
        best = max(full, key=lambda r: r.auroc["MNIST"])
        met = "meets" if best.auroc["MNIST"] >= AUROC_TARGET else "does NOT meet"
        sentences.append(
            f"The best PAE score against MNIST is {best.method} at {best.auroc['MNIST']:.3f}, which {met} the "
            f"{AUROC_TARGET} target (paper: 0.997 with the latent density at K=64)."
        )
        pyod_ae = next((r for r in results if r.method == "PyOD AutoEncoder"), None)
        if pyod_ae is not None:
            beaten = sum(r.auroc["MNIST"] > pyod_ae.auroc["MNIST"] for r in full)
            sentences.append(
                f"PyOD AutoEncoder reaches {pyod_ae.auroc['MNIST']:.3f} on MNIST; {beaten} of {len(full)} "
                f"full-test-set PAE rows beat it (best PAE h-flip {max(r.auroc['h-flip'] for r in full):.3f} vs "
                f"{pyod_ae.auroc['h-flip']:.3f}, v-flip {max(r.auroc['v-flip'] for r in full):.3f} vs "
                f"{pyod_ae.auroc['v-flip']:.3f})."
            )
        for (method, K), (values, label) in PAPER.items():
            row = next((r for r in results if r.score_method == method and r.K == K), None)
            if row is not None:
                diffs = ", ".join(
                    f"{name} {row.auroc[name]:.3f} vs {v:.3f} ({row.auroc[name] - v:+.3f})"
                    for name, v in zip(OOD_SETS, values, strict=True)
                )
                sentences.append(f"{row.method} against the {label}: {diffs}.")
        for K, best_by_set in winners(results).items():
            sentences.append(
                f"At K={K} the best score method is "
                + ", ".join(f"{m} on {name}" for name, m in best_by_set.items())
                + "."
            )
    mse = {r.K: r for r in results if r.score_method == MSE}
    recon = {r.K: r for r in results if r.score_method == "reconstruction"}
    if mse:
        sentences.append(
            "The unweighted reconstruction MSE vs the library's sigma-weighted reconstruction score, against MNIST: "
            + ", ".join(f"K={K} {r.auroc['MNIST']:.3f} vs {recon[K].auroc['MNIST']:.3f}" for K, r in mse.items())
            + "."
        )
    vae_rows = [r for r in results if r.score_method in VAE_METHODS]
    pae_rows = [r for r in results if r.score_method in (*FAST_METHODS, MSE)]
    if vae_rows and pae_rows:
        parts = []
        for name in OOD_SETS:
            vae = max(vae_rows, key=lambda r: r.auroc[name])
            pae = max(pae_rows, key=lambda r: r.auroc[name])
            parts.append(
                f"{name} {vae.auroc[name]:.3f} ({vae.method}) vs {pae.auroc[name]:.3f} ({pae.method}, "
                f"{vae.auroc[name] - pae.auroc[name]:+.3f})"
            )
        sentences.append("Best VAE row vs best full-test-set PAE row: " + "; ".join(parts) + ".")
    laplace = {r.K: r for r in results if r.score_method == LAPLACE}
    combined_sub = {r.K: r for r in results if r.score_method == "combined-sub"}
    if laplace:
        sentences.append(
            "On the Laplace subsample, laplace vs combined AUROC against MNIST: "
            + ", ".join(
                f"K={K} {r.auroc['MNIST']:.3f} vs {combined_sub[K].auroc['MNIST']:.3f}"
                for K, r in laplace.items()
                if K in combined_sub
            )
            + "."
        )
    if throughput is not None:
        verdict = "meets" if throughput.rate >= THROUGHPUT_TARGET else "does NOT meet"
        sentences.append(
            f"Scoring throughput (K={throughput.K}, combined) is {throughput.rate:,.0f} rows/s, which {verdict} "
            f"the {THROUGHPUT_TARGET:,} rows/s target."
        )
    return " ".join(sentences)


def load_average() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def top_summary() -> str:
    """The busiest processes according to ``top`` (empty if unavailable)."""
    try:
        out = subprocess.run(["top", "-bn1", "-w", "200"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""
    lines = out.splitlines()
    header = next((i for i, line in enumerate(lines) if line.lstrip().startswith("PID")), None)
    if header is None:
        return ""

    def cpu(line: str) -> float:
        try:
            return float(line.split()[8])
        except (IndexError, ValueError):
            return 0.0

    busy = [line for line in lines[header + 1 :] if cpu(line) >= 5.0]
    return "; ".join(" ".join(line.split()[i] for i in (0, 8, 11)) for line in busy[:5]) or "no process above 5% CPU"


def throughput_text(t: Throughput | None, matmul_flops: float, device: str) -> str:
    if t is None:
        return "Not measured (no PAE fitted)."
    verdict = "met" if t.rate >= THROUGHPUT_TARGET else "NOT met"
    return (
        f"`PAE(K={t.K}, score_method='combined').score_samples` on {t.n_rows:,} F-MNIST test rows, after a "
        f"warm-up call: **{t.rate:,.0f} rows/s** (median of {len(t.seconds)}: "
        f"{', '.join(f'{s:.2f}' for s in t.seconds)} s; best {t.best_rate:,.0f} rows/s). "
        f"Target {THROUGHPUT_TARGET:,} rows/s: {verdict}. Waited {t.waited_s:.0f} s for a quiet machine; "
        f"load average before: {t.load_before}; busiest processes before (pid %CPU command): {t.top_before}; "
        f"CPU cores used by other processes during each timed call: {', '.join(f'{o:.2f}' for o in t.others)}.\n\n"
        f"For scale: the encoder and decoder cost {t.flops / 1e6:.1f} MFLOP per row (linear and convolution layers, "
        f"counted), so at the float32 matrix-product rate measured at the start of this run on {device} "
        f"({matmul_flops / 1e9:.1f} GFLOP/s for a 2048 x 512 by 512 x 512 product) they alone would allow about "
        f"{matmul_flops / t.flops:,.0f} rows/s, against {t.rate:,.0f} rows/s measured "
        f"({t.rate / (matmul_flops / t.flops):.0%} of it); the model scores in {t.inference_dtype} "
        f"(`inference_dtype`, float32 by default)."
    )


def write_plot(path: Path, results: list[Result]) -> bool:
    """AUROC against K for each score method, with the PyOD baselines as horizontal lines."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    Ks = sorted({r.K for r in results if r.K is not None})
    if not Ks:
        return False
    fig, axes = plt.subplots(1, len(OOD_SETS), figsize=(4 * len(OOD_SETS), 3.5), sharey=True)
    styles = {method: ("o", "-") for method in FAST_METHODS}
    styles.update({MSE: ("o", ":"), VAE_IWAE: ("s", "-"), VAE_MSE: ("s", ":")})
    for ax, name in zip(axes, OOD_SETS, strict=True):
        for method, (marker, linestyle) in styles.items():
            points = [(r.K, r.auroc[name]) for r in results if r.K is not None and r.score_method == method]
            if not points:
                continue
            label = method if method in VAE_METHODS else f"PAE {method}"
            ax.plot(*zip(*sorted(points), strict=True), marker=marker, linestyle=linestyle, label=label)
        for r in results:
            if r.K is None:
                ax.axhline(r.auroc[name], linestyle="--", linewidth=1, color="grey")
                ax.annotate(r.method, (Ks[0], r.auroc[name]), fontsize=7, color="grey")  # "PyOD VAE" != skprobae VAE
        ax.set_xscale("log")
        ax.minorticks_off()
        ax.set(xticks=Ks, xticklabels=[str(K) for K in Ks], xlabel="K", title=f"F-MNIST vs {name}")
    axes[0].set_ylabel("AUROC")
    axes[0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_report(
    path: Path,
    args: argparse.Namespace,
    splits: Splits,
    laplace_splits: Splits,
    infos: list[FitInfo],
    results: list[Result],
    throughput: Throughput | None,
    total_s: float,
    plotted: bool,
) -> None:
    sizes = ", ".join(f"{name} {len(X):,}" for name, X in splits.evaluation_sets().items())
    plot_line = f"\n![AUROC against K]({path.with_suffix('.png').name})\n" if plotted else ""
    vae_line = (
        "- VAE: not run (`--skip-vae`)."
        if args.skip_vae
        else f"""- VAE: `VAE(architecture="conv", image_shape=(28, 28), hidden_layer_sizes=(512,), n_components=K,
  max_epochs={args.epochs}, n_importance_samples={args.importance_samples}, random_state=0,
  device="{args.device}")`, the same K values and
  training rows, everything else at the library defaults (distribution="normal_diag", N(0, I) prior, no flows,
  beta 1, batch 128, Adam 1e-3, validation_fraction 0.1, n_iter_no_change 10). Two rows per fit: "IWAE
  log-likelihood" is `-score_samples`, the importance-weighted estimate of log p(x) with S={args.importance_samples}
  samples (the library default is 256; each sample is one decoder pass per row, so S is lowered here to keep each K
  near 10 minutes on this machine), and "plain MSE (reconstruct)" is `mean((X - vae.reconstruct(X))**2, axis=1)`,
  unweighted, as for the PAE. The VAE's fit time includes the IWAE pass over (at most 1,000) training rows that sets
  `offset_`; the fits table gives the training epochs' share."""
    )
    text = f"""# Out-of-distribution detection: PAE (Böhm & Seljak, Table 2) vs VAE and PyOD

{run_details(total_s, args.device, ("pyod",))}
- Library: git {args.revision} (read at the start of the run); load average at the end: {load_average()}
- Float32 matrix-product rate on {args.device}, measured at the start of the run: {args.matmul_flops / 1e9:.1f} GFLOP/s
  (2048 x 512 by 512 x 512; torch CPU threads: {torch.get_num_threads()})
- Training rows: {len(splits.train):,} Fashion-MNIST training rows (float32 pixels / 255), the same for every method
- Evaluation rows: {sizes} (noise = uniform [0, 1) pixels, a sign check, not part of the benchmark)
- PAE: `PAE(architecture="conv", image_shape=(28, 28), hidden_layer_sizes=(512,), n_components=K,
  max_epochs={args.epochs}, flow_max_epochs={args.flow_epochs}, random_state=0, device="{args.device}")`,
  K in {tuple(args.latent_sizes)}, everything else at the library defaults (flow="auto" with (128, 128) hidden
  widths, batch 128, Adam 1e-3, flow Adam 3e-3, validation_fraction 0.1, n_iter_no_change 3). One fit per K; each
  score method via
  `set_params(score_method=...)` without refitting.
- Laplace (Eq. 11): 100 MAP steps and K Jacobian columns per row, too slow for the full sets on this machine, so it
  is scored on a seeded subsample: {len(laplace_splits.inlier):,} F-MNIST test rows and
  {len(laplace_splits.ood["MNIST"]):,} rows of each OOD set. With that few rows an AUROC has a standard error of
  roughly 0.005-0.015; compare it with "combined" on the same subsample (its own table), not with the full-set rows.
  It is scored {args.laplace_chunk} rows per `score_samples` call, which bounds memory and leaves the scores
  unchanged (before commit 286cc8e one call kept K autograd graphs: 17 GB for 250 rows at K=64).
- "plain MSE (reconstruct)": `mean((X - pae.reconstruct(X))**2, axis=1)` from the same fit, unweighted, as the
  paper's "AE reconstruction error"; the library's `score_method="reconstruction"` is the Gaussian log-likelihood
  with per-pixel `sigma_`, which weights each pixel by `1 / sigma_**2`.
{vae_line}
- PyOD baselines at their defaults (AutoEncoder: epoch_num=10, batch 32, hidden 64-32; VAE: epoch_num=30, batch 32,
  latent_dim=2; IForest: 100 trees), `verbose=0`, `IForest(random_state=0)`.
- AUROC: OOD rows are the positive class; anomaly score = `-score_samples` (skprobae) or `decision_function` (PyOD).
- Data caveat: this project's Fashion-MNIST file is not the original split (47,230 train / 10,000 test rows drawn
  from one pool, pullovers and shirts mostly missing), so the paper's numbers are a guide, not a like-for-like target.
- Fit seconds: one PAE fit per K (shared by its rows) includes the AE, the flow, and the post-fit pass that
  encodes and scores the training rows; one VAE fit per K (shared by its two rows) includes the training epochs and
  the IWAE pass over at most 1,000 training rows. Score seconds: one `score_samples` / `decision_function` call
  over all the
  rows scored (in-distribution + the three OOD sets + noise). "Other processes" is the CPU (in cores, of 2) that
  other programs used during that fit / scoring call: this machine is shared, and timings with other processes
  above ~0.2 cores are inflated (PyTorch's 2 threads then contend for the 2 cores).

## AUROC, F-MNIST test vs OOD

{results_table([r for r in results if r.score_method != "combined-sub"])}
{plot_line}
## Which score method wins, per K (full test sets)

{winners_table(results)}

## Laplace vs combined on the same subsample

{laplace_table(results)}

## Fits (PAE and VAE)

{fits_table(infos)}

## Scoring throughput

{throughput_text(throughput, args.matmul_flops, args.device)}

## Findings (generated from the numbers above)

{findings(results, throughput)}
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# ------------------------------------------------------------------------ main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get(DATA_ENV), help=f"data folder (default ${DATA_ENV})")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1000 rows, 1 epoch, K=4, 300 test rows")
    parser.add_argument("--n-train", type=int, default=None, help="training rows (default: all)")
    parser.add_argument("--n-test", type=int, default=None, help="rows of each test set (default: all)")
    parser.add_argument("--epochs", type=int, default=10, help="PAE autoencoder and VAE epochs (default 10)")
    parser.add_argument("--flow-epochs", type=int, default=20, help="PAE flow epochs (default 20)")
    parser.add_argument("--latent-sizes", type=int, nargs="+", default=[4, 16, 64], help="PAE and VAE K values")
    parser.add_argument("--laplace-rows", type=int, default=500, help="Laplace subsample rows per set (default 500)")
    parser.add_argument(
        "--laplace-chunk", type=int, default=100, help="rows per Laplace score_samples call (bounds memory)"
    )
    parser.add_argument("--noise-rows", type=int, default=1000, help="uniform-noise rows for the sign check")
    parser.add_argument("--throughput-rows", type=int, default=20_000, help="rows timed for scoring throughput")
    parser.add_argument("--throughput-repeats", type=int, default=3)
    parser.add_argument(
        "--quiet-wait", type=float, default=QUIET_WAIT_S, help="seconds to wait for an idle CPU before timing"
    )
    parser.add_argument(
        "--importance-samples",
        type=int,
        default=16,
        help="VAE n_importance_samples S for the IWAE score (default 16; cost grows linearly with S)",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--device",
        type=check_device,
        default="cpu",
        help="device of every skprobae estimator: cpu (default), cuda or cuda:N (fails if CUDA is unavailable)",
    )
    parser.add_argument("--skip-vae", action="store_true", help="leave out the VAE rows")
    parser.add_argument("--skip-pyod", action="store_true", help="leave out the PyOD rows")
    parser.add_argument("--output", type=Path, default=None, help=OUTPUT_HELP)
    parser.add_argument("--no-plot", action="store_true", help="do not write the .png beside --output")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_train, args.n_test, args.epochs, args.flow_epochs = 1000, 300, 1, 2
        args.latent_sizes, args.laplace_rows, args.noise_rows = [4], 100, 200
        args.throughput_rows, args.throughput_repeats, args.quiet_wait = 1000, 1, 0.0
    args.output = report_path(args.output, "ood", args.quick)
    return args


def throughput_rows(splits: Splits, n_rows: int) -> np.ndarray:
    """``n_rows`` rows: the F-MNIST test rows, then their flips (cycled if more are asked for)."""
    pool = np.concatenate([splits.inlier, splits.ood["h-flip"], splits.ood["v-flip"]])
    return np.resize(pool, (n_rows, pool.shape[1]))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.revision = git_revision()
    start = time.perf_counter()
    splits = load_splits(args.data_dir, args.n_train, args.n_test, args.noise_rows)
    if splits is None:
        return
    laplace_splits = subsample(splits, args.laplace_rows)
    args.matmul_flops = matmul_rate(torch.get_num_threads(), args.device)
    print(f"{machine_description(args.device)}; load average {load_average()}")
    print(f"float32 matrix-product rate on {args.device}: {args.matmul_flops / 1e9:.1f} GFLOP/s")
    print(f"train {splits.train.shape}; " + ", ".join(f"{k} {len(v)}" for k, v in splits.evaluation_sets().items()))
    infos: list[FitInfo] = []
    results: list[Result] = []
    throughput = None
    for K in args.latent_sizes:
        model, info, rows = run_pae(K, args, splits, laplace_splits)
        infos.append(info)
        results += rows
        if throughput is None and (K == THROUGHPUT_K or K == args.latent_sizes[-1]):
            throughput = measure_throughput(
                model, throughput_rows(splits, args.throughput_rows), args.throughput_repeats, args.quiet_wait
            )
        del model
    if not args.skip_vae:
        for K in args.latent_sizes:
            info, rows = run_vae(K, args, splits)
            infos.append(info)
            results += rows
    main_rows = [r for r in results if r.score_method != "combined-sub"]
    if not args.skip_pyod:
        main_rows += [run_pyod(name, factory, splits) for name, factory in pyod_models().items()]
    total_s = time.perf_counter() - start
    plot_path = args.output.with_suffix(".png")
    plotted = not args.no_plot and write_plot(plot_path, main_rows)
    all_rows = main_rows + [r for r in results if r.score_method == "combined-sub"]
    print()
    print(results_table(main_rows))
    print()
    print(winners_table(results))
    write_report(args.output, args, splits, laplace_splits, infos, all_rows, throughput, total_s, plotted)
    print(f"\nwritten to {args.output}" + (f" and {plot_path}" if plotted else "") + f" ({total_s / 60:.1f} min)")


if __name__ == "__main__":
    main()
