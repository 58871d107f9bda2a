"""Training throughput of ``ProbabilisticAutoencoder`` against a hand-written torch loop.

What it measures
----------------
Samples per second while training the same 784-256-64-32 MLP autoencoder
(mirrored decoder, ReLU, Adam lr 1e-3, MSE loss, batch 128) on Fashion-MNIST
training rows, in one process, on the CPU:

* ``hand loop``: a minimal torch loop (``torch.randperm`` shuffling, indexing
  one float32 tensor) -- the reference;
* ``estimator``: ``ProbabilisticAutoencoder(distribution="mse", ...,
  validation_fraction=0.0)`` exactly as the benchmark brief specifies it,
  which leaves ``max_grad_norm`` at its default (100, gradient clipping on);
* ``estimator, no clipping``: the same with ``max_grad_norm=None``, the
  like-for-like comparison with the hand loop;
* ``estimator, defaults``: ``validation_fraction`` and ``max_grad_norm`` at the
  library defaults (0.1 and 100); only the training rows are counted.

Training time comes from the estimator's history (the sum of the per-epoch
``dur``, which for the ``defaults`` variant includes the validation pass);
the wall time of the whole ``fit`` (input checks, module construction and the
post-fit encoding and scoring of the training set) is reported separately.
Every variant is warmed up with one short epoch; the timed runs are
interleaved round-robin and the median over ``--repeats`` is reported.
The target is: estimator >= 0.8 of the hand-written loop.

How to run
----------
::

    python benchmarks/throughput.py --data-dir /work/shared/data
    python benchmarks/throughput.py --quick          # smoke run, uses $SKPROBAE_DATA

The table is printed and written to ``benchmarks/results/throughput.md``
(``--output``; ``--quick`` runs write to ``benchmarks/results/quick/``).
"""

from __future__ import annotations

import argparse
import datetime
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import skorch
import torch
from _common import OUTPUT_HELP, report_path
from torch import nn

import skprobae
from skprobae.datasets import DATA_ENV, load_images

TARGET_RATIO = 0.8
HIDDEN = (256, 64)
N_COMPONENTS = 32
BATCH_SIZE = 128
LEARNING_RATE = 1e-3
WARMUP_ROWS = 2048
QUICK_ROWS, QUICK_EPOCHS, QUICK_REPEATS = 2000, 1, 1
REFERENCE = "hand loop"
TARGET_VARIANT = "estimator (val=0, clip=100 default)"


@dataclass
class Run:
    """One timed training run."""

    train_s: float  # seconds spent in the training epochs
    wall_s: float  # seconds of the whole call (fit, or the hand loop)
    final_loss: float  # mean training loss of the last epoch
    others_cpu: float = float("nan")  # CPU time used by other processes during the run, in cores


@dataclass
class Variant:
    """A way of training the autoencoder; ``train(X, epochs)`` returns a :class:`Run`."""

    name: str
    train: Callable[[np.ndarray, int], Run]
    validation_fraction: float = 0.0  # share of the rows held out (not counted), as the estimator splits
    runs: list[Run] = field(default_factory=list)

    def rows_per_epoch(self, n_rows: int) -> int:
        return n_rows - math.ceil(self.validation_fraction * n_rows)


# --------------------------------------------------------------------- variants
def hand_module() -> nn.Sequential:
    """The 784-256-64-32 | 32-64-256-784 autoencoder as one ``nn.Sequential``."""
    return nn.Sequential(
        nn.Linear(784, 256),
        nn.ReLU(),
        nn.Linear(256, 64),
        nn.ReLU(),
        nn.Linear(64, 32),
        nn.Linear(32, 64),
        nn.ReLU(),
        nn.Linear(64, 256),
        nn.ReLU(),
        nn.Linear(256, 784),
    )


def train_hand_loop(X: np.ndarray, epochs: int) -> Run:
    """Minimal torch loop: randperm each epoch, index one float32 tensor, Adam, MSE."""
    start = time.perf_counter()
    torch.manual_seed(0)
    data = torch.from_numpy(X)
    model = hand_module()
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    loss_fn = nn.MSELoss()
    n = len(data)
    train_s, last_loss = 0.0, float("nan")
    for _ in range(epochs):
        epoch_start = time.perf_counter()
        total = torch.zeros(())
        order = torch.randperm(n)
        for i in range(0, n, BATCH_SIZE):
            batch = data[order[i : i + BATCH_SIZE]]
            loss = loss_fn(model(batch), batch)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += loss.detach() * len(batch)
        last_loss = total.item() / n
        train_s += time.perf_counter() - epoch_start
    return Run(train_s=train_s, wall_s=time.perf_counter() - start, final_loss=last_loss)


def estimator_trainer(**params: object) -> Callable[[np.ndarray, int], Run]:
    """A trainer fitting ``ProbabilisticAutoencoder`` with the benchmark settings plus ``params``."""

    def train(X: np.ndarray, epochs: int) -> Run:
        est = skprobae.ProbabilisticAutoencoder(
            distribution="mse",
            n_components=N_COMPONENTS,
            hidden_layer_sizes=HIDDEN,
            batch_size=BATCH_SIZE,
            learning_rate=LEARNING_RATE,
            max_epochs=epochs,
            n_iter_no_change=None,
            random_state=0,
            device="cpu",
            **params,
        )
        start = time.perf_counter()
        est.fit(X)
        wall_s = time.perf_counter() - start
        train_s = float(sum(est.history_[:, "dur"]))
        return Run(train_s=train_s, wall_s=wall_s, final_loss=float(est.history_[-1, "train_loss"]))

    return train


def make_variants() -> list[Variant]:
    return [
        Variant(REFERENCE, train_hand_loop),
        Variant(TARGET_VARIANT, estimator_trainer(validation_fraction=0.0)),
        Variant("estimator (val=0, clip=None)", estimator_trainer(validation_fraction=0.0, max_grad_norm=None)),
        Variant("estimator defaults (val=0.1, clip=100)", estimator_trainer(), validation_fraction=0.1),
    ]


# -------------------------------------------------------------------- measuring
def busy_cpu_seconds() -> float:
    """Seconds of non-idle CPU time of the whole machine since boot (Linux), else NaN."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()[1:]
    except OSError:
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def timed(variant: Variant, X: np.ndarray, epochs: int) -> Run:
    """Run ``variant`` and record how busy the rest of the machine was meanwhile."""
    busy, own, start = busy_cpu_seconds(), time.process_time(), time.perf_counter()
    run = variant.train(X, epochs)
    others = (busy_cpu_seconds() - busy) - (time.process_time() - own)
    run.others_cpu = max(0.0, others) / (time.perf_counter() - start)
    return run


def measure(variants: list[Variant], X: np.ndarray, epochs: int, repeats: int) -> None:
    """Warm every variant up on a short epoch, then time ``repeats`` interleaved rounds."""
    for variant in variants:
        variant.train(X[: min(len(X), WARMUP_ROWS)], 1)
    for round_ in range(repeats):
        for variant in variants:
            run = timed(variant, X, epochs)
            variant.runs.append(run)
            print(
                f"  round {round_ + 1}/{repeats}  {variant.name:<40s} train {run.train_s:6.2f} s"
                f"  wall {run.wall_s:6.2f} s  loss {run.final_loss:.5f}  other processes {run.others_cpu:.2f} cores",
                flush=True,
            )


def summarize(variants: list[Variant], n_rows: int, epochs: int) -> list[dict[str, object]]:
    """Median times and samples/s per variant, with ratios to the hand loop."""
    rows = []
    for variant in variants:
        samples = epochs * variant.rows_per_epoch(n_rows)
        train_s = statistics.median(r.train_s for r in variant.runs)
        wall_s = statistics.median(r.wall_s for r in variant.runs)
        rows.append(
            {
                "variant": variant.name,
                "rows": variant.rows_per_epoch(n_rows),
                "train_s": train_s,
                "rate": samples / train_s,
                "best_rate": samples / min(r.train_s for r in variant.runs),
                "wall_s": wall_s,
                "wall_rate": samples / wall_s,
                "loss": statistics.median(r.final_loss for r in variant.runs),
            }
        )
    reference = next(row for row in rows if row["variant"] == REFERENCE)
    for row in rows:
        row["ratio"] = row["rate"] / reference["rate"]
        row["best_ratio"] = row["best_rate"] / reference["best_rate"]
        row["wall_ratio"] = row["wall_rate"] / reference["rate"]
    return rows


# --------------------------------------------------------------------- reporting
HEADER = (
    "| variant | train rows/epoch | train s | samples/s | ratio to hand loop "
    "| fit wall s | samples/s (wall) | ratio (wall) | best-run samples/s | best-run ratio | final train loss |"
)


def format_table(rows: list[dict[str, object]]) -> str:
    lines = [HEADER, "|" + "---|" * HEADER.count(" | ") + "---|"]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['rows']} | {r['train_s']:.2f} | {r['rate']:,.0f} | {r['ratio']:.2f} "
            f"| {r['wall_s']:.2f} | {r['wall_rate']:,.0f} | {r['wall_ratio']:.2f} "
            f"| {r['best_rate']:,.0f} | {r['best_ratio']:.2f} | {r['loss']:.5f} |"
        )
    return "\n".join(lines)


def format_runs(variants: list[Variant]) -> str:
    """Every timed run, so outliers (e.g. from other processes on the machine) stay visible."""
    lines = [
        "| variant | train s per repeat | fit wall s per repeat | CPU cores used by other processes |",
        "|---|---|---|---|",
    ]
    for v in variants:
        train = ", ".join(f"{r.train_s:.2f}" for r in v.runs)
        wall = ", ".join(f"{r.wall_s:.2f}" for r in v.runs)
        others = ", ".join(f"{r.others_cpu:.2f}" for r in v.runs)
        lines.append(f"| {v.name} | {train} | {wall} | {others} |")
    return "\n".join(lines)


def load_average() -> str:
    try:
        return ", ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "skprobae"], capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return rev.stdout.strip() + (" (skprobae/ has uncommitted changes)" if dirty.stdout.strip() else "")


def machine_description() -> str:
    return (
        f"{platform.platform()}, {platform.processor() or platform.machine()}, "
        f"os.cpu_count()={os.cpu_count()}, torch {torch.__version__} "
        f"(get_num_threads()={torch.get_num_threads()}), skorch {skorch.__version__}, "
        f"Python {platform.python_version()}, device cpu"
    )


def write_report(
    path: Path, rows: list[dict[str, object]], variants: list[Variant], args: argparse.Namespace, loads: list[str]
) -> None:
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    ratio = next(float(r["ratio"]) for r in rows if r["variant"] == TARGET_VARIANT)
    verdict = "met" if ratio >= TARGET_RATIO else "NOT met"
    text = f"""# Training throughput: ProbabilisticAutoencoder vs a hand-written torch loop

- Command: `{command}`
- Date: {datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
- Machine: {machine_description()}
- skprobae: {skprobae.__version__}, git {git_revision()}
- Load average (1, 5, 15 min) before / after the runs: {loads[0]} / {loads[1]}
- Data: Fashion-MNIST train, first {args.n_rows} rows, float32 pixels / 255, 784 features
- Model: 784-256-64-32 MLP autoencoder, mirrored decoder, ReLU, Adam lr 1e-3, MSE, batch 128
- Epochs per run: {args.epochs}; median of {args.repeats} interleaved repeats after a 1-epoch warm-up
- Target: estimator >= {TARGET_RATIO} of the hand-written loop (samples/s from training time).
  Result for `{TARGET_VARIANT}`: {ratio:.2f} -> {verdict}.

"samples/s" = epochs x training rows / training seconds (estimator: sum of `history_[:, "dur"]`,
which for the `defaults` variant includes the validation pass); "best-run" uses the fastest
repeat instead of the median. "fit wall s" is the whole `fit` call, including input checks and
the post-fit encoding and scoring of the training set; its ratio is taken against the hand
loop's training-time rate. The machine may be shared: see the load average and the runs below.

{format_table(rows)}

Individual timed runs (in the order run, round-robin):

{format_runs(variants)}
"""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


# -------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get(DATA_ENV), help=f"data folder (default ${DATA_ENV})")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per timed run (default 3)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per variant (default 5)")
    parser.add_argument("--n-rows", type=int, default=20_000, help="training rows (default 20000)")
    parser.add_argument("--output", type=Path, default=None, help=OUTPUT_HELP)
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK_ROWS} rows, {QUICK_EPOCHS} epoch, {QUICK_REPEATS} repeat",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.n_rows, args.epochs, args.repeats = QUICK_ROWS, QUICK_EPOCHS, QUICK_REPEATS
    args.output = report_path(args.output, "throughput", args.quick)
    return args


def load_rows(data_dir: str | None, n_rows: int) -> np.ndarray | None:
    """The first ``n_rows`` Fashion-MNIST training rows, or None when the data is missing."""
    try:
        X, _ = load_images("fashion_mnist", split="train", data_dir=data_dir)
    except FileNotFoundError as exc:
        print(f"Fashion-MNIST not found ({exc}); pass --data-dir or set {DATA_ENV}. Skipping the benchmark.")
        return None
    if n_rows > len(X):
        raise SystemExit(f"--n-rows={n_rows} exceeds the {len(X)} Fashion-MNIST training rows.")
    return np.ascontiguousarray(X[:n_rows], dtype=np.float32)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    X = load_rows(args.data_dir, args.n_rows)
    if X is None:
        return
    print(f"torch {torch.__version__}, get_num_threads()={torch.get_num_threads()}, os.cpu_count()={os.cpu_count()}")
    print(f"{len(X)} rows x {X.shape[1]} features, {args.epochs} epochs, {args.repeats} repeats")
    print(f"load average: {load_average()}")
    variants = make_variants()
    loads = [load_average()]
    measure(variants, X, args.epochs, args.repeats)
    loads.append(load_average())
    rows = summarize(variants, len(X), args.epochs)
    print()
    print(format_table(rows))
    write_report(args.output, rows, variants, args, loads)
    print(f"\nwritten to {args.output}")


if __name__ == "__main__":
    main()
