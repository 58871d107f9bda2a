"""Training and inference throughput of the estimators against hand-written torch loops over the same modules.

What it measures
----------------
**Training.** Samples per second while training the same 784-256-64-32 MLP
autoencoder (mirrored decoder, ReLU, Adam lr 1e-3, MSE loss, batch 128) on
Fashion-MNIST training rows, in one process:

* ``hand loop``: a minimal torch loop (``torch.randperm`` shuffling, indexing
  one float32 tensor, ``torch.optim.Adam``) -- the reference;
* ``estimator``: ``ProbabilisticAutoencoder(distribution="mse", ...,
  validation_fraction=0.0)``, which leaves ``max_grad_norm`` at its default
  (100, gradient clipping on);
* ``estimator, no clipping``: the same with ``max_grad_norm=None``, the
  like-for-like comparison with the hand loop;
* ``estimator, defaults``: ``validation_fraction`` and ``max_grad_norm`` at the
  library defaults (0.1 and 100); only the training rows are counted.

Training time comes from the estimator's history (the sum of the per-epoch
``dur``, which for the ``defaults`` variant includes the validation pass);
the wall time of the whole ``fit`` (input checks, module construction and the
post-fit pass over the training set) is reported separately. Every variant is
warmed up with one short epoch; the timed runs are interleaved round-robin
and the median over ``--repeats`` is reported. Target: estimator >= 0.85 of
the hand-written loop.

**Inference.** Rows per second of ``score_samples`` (``score_method="combined"``,
Eq. 12: the reconstruction term plus the flow's log-density of the code) and
``transform`` of two fitted ``PAE(n_components=16)`` models, a conv one
(``architecture="conv"``, ``hidden_layer_sizes=(512,)``, the OOD benchmark's)
and an MLP one (library defaults), against:

* ``hand loop``: a minimal ``torch.no_grad()`` float32 loop over the very same
  encoder, decoder and flow modules, 1,024 rows per batch, everything in
  float32 -- the reference;
* ``estimator``: the public method with the defaults (float32 networks,
  float64 reductions and outputs, fixed-size blocks);
* ``estimator float64``: the same call with ``inference_dtype="float64"``,
  the path every estimator took before the float32 engine (networks cast to
  float64 after fit).

Targets: estimator >= 0.8 of the hand loop, and >= 1.6x the float64 path on
the conv model. The models train for one epoch on the first rows: timing
does not depend on how well they fit.

How to run
----------
::

    python benchmarks/throughput.py --data-dir /work/shared/data --threads 1
    python benchmarks/throughput.py --quick          # smoke run, uses $SKPROBAE_DATA
    python benchmarks/throughput.py --device cuda    # the same on a GPU

The tables are printed and written to ``benchmarks/results/throughput.md``
(``--output``; ``--quick`` runs write to ``benchmarks/results/quick/``).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from _common import OUTPUT_HELP, markdown_table, report_path, run_details
from torch import nn

import skprobae
from skprobae.datasets import DATA_ENV, load_images

TRAIN_TARGET, INFERENCE_TARGET, FLOAT64_TARGET = 0.85, 0.8, 1.6
HIDDEN = (256, 64)
N_COMPONENTS = 32
BATCH_SIZE = 128
LEARNING_RATE = 1e-3
WARMUP_ROWS = 2048
HAND_INFERENCE_BATCH = 1024
QUICK_ROWS, QUICK_EPOCHS, QUICK_REPEATS, QUICK_INFERENCE_ROWS = 2000, 1, 1, 1000
REFERENCE = "hand loop"
TARGET_VARIANT = "estimator (val=0, clip=100 default)"


def busy_cpu_seconds() -> float:
    """Seconds of non-idle CPU time of the whole machine since boot (Linux), else NaN."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()[1:]
    except OSError:
        return float("nan")
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def others_cpu(fn: Callable[[], object]) -> tuple[object, float, float]:
    """``fn()``, its wall seconds, and the CPU cores other processes used meanwhile."""
    busy, own, start = busy_cpu_seconds(), time.process_time(), time.perf_counter()
    result = fn()
    wall = time.perf_counter() - start
    others = (busy_cpu_seconds() - busy) - (time.process_time() - own)
    return result, wall, max(0.0, others) / wall


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# ---------------------------------------------------------------------- training
@dataclass
class Run:
    """One timed training run."""

    train_s: float  # seconds spent in the training epochs
    wall_s: float  # seconds of the whole call (fit, or the hand loop)
    final_loss: float  # mean training loss of the last epoch
    others_cpu: float = float("nan")  # CPU cores used by other processes during the run


@dataclass
class Variant:
    """A way of training the autoencoder; ``train(X, epochs)`` returns a :class:`Run`."""

    name: str
    train: Callable[[np.ndarray, int], Run]
    validation_fraction: float = 0.0  # share of the rows held out (not counted), as the estimator splits
    runs: list[Run] = field(default_factory=list)

    def rows_per_epoch(self, n_rows: int) -> int:
        return n_rows - math.ceil(self.validation_fraction * n_rows)


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


def hand_trainer(device: str) -> Callable[[np.ndarray, int], Run]:
    def train(X: np.ndarray, epochs: int) -> Run:
        """Minimal torch loop: randperm each epoch, index one float32 tensor, Adam, MSE."""
        start = time.perf_counter()
        torch.manual_seed(0)
        data = torch.from_numpy(X).to(device)
        model = hand_module().to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
        loss_fn = nn.MSELoss()
        n = len(data)
        train_s, last_loss = 0.0, float("nan")
        for _ in range(epochs):
            epoch_start = time.perf_counter()
            total = torch.zeros((), device=device)
            order = torch.randperm(n, device=device)
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

    return train


def estimator_trainer(device: str, **params: object) -> Callable[[np.ndarray, int], Run]:
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
            device=device,
            **params,
        )
        start = time.perf_counter()
        est.fit(X)
        wall_s = time.perf_counter() - start
        return Run(sum(est.history_[:, "dur"]), wall_s, float(est.history_[-1, "train_loss"]))

    return train


def training_variants(device: str) -> list[Variant]:
    return [
        Variant(REFERENCE, hand_trainer(device)),
        Variant(TARGET_VARIANT, estimator_trainer(device, validation_fraction=0.0)),
        Variant("estimator (val=0, clip=None)", estimator_trainer(device, validation_fraction=0.0, max_grad_norm=None)),
        Variant("estimator defaults (val=0.1, clip=100)", estimator_trainer(device), validation_fraction=0.1),
    ]


def measure_training(variants: list[Variant], X: np.ndarray, epochs: int, repeats: int) -> None:
    """Warm every variant up on a short epoch, then time ``repeats`` interleaved rounds."""
    for variant in variants:
        variant.train(X[: min(len(X), WARMUP_ROWS)], 1)
    for round_ in range(repeats):
        for variant in variants:
            run, _, run.others_cpu = others_cpu(lambda v=variant: v.train(X, epochs))
            variant.runs.append(run)
            print(
                f"  round {round_ + 1}/{repeats}  {variant.name:<40s} train {run.train_s:6.2f} s"
                f"  wall {run.wall_s:6.2f} s  loss {run.final_loss:.5f}",
                flush=True,
            )


def training_table(variants: list[Variant], n_rows: int, epochs: int) -> tuple[str, float]:
    rows, rates = [], {}
    for v in variants:
        samples = epochs * v.rows_per_epoch(n_rows)
        rates[v.name] = samples / statistics.median(r.train_s for r in v.runs)
    for v in variants:
        samples = epochs * v.rows_per_epoch(n_rows)
        wall = statistics.median(r.wall_s for r in v.runs)
        rows.append(
            [
                v.name,
                str(v.rows_per_epoch(n_rows)),
                f"{statistics.median(r.train_s for r in v.runs):.2f}",
                f"{rates[v.name]:,.0f}",
                f"{rates[v.name] / rates[REFERENCE]:.2f}",
                f"{wall:.2f}",
                f"{samples / wall / rates[REFERENCE]:.2f}",
                ", ".join(f"{r.train_s:.2f}" for r in v.runs),
                ", ".join(f"{r.others_cpu:.2f}" for r in v.runs),
            ]
        )
    header = ["variant", "rows/epoch", "train s", "samples/s", "ratio to hand loop", "fit wall s", "ratio (wall)"]
    header += ["train s per repeat", "CPU cores used by other processes"]
    return markdown_table(header, rows), rates[TARGET_VARIANT] / rates[REFERENCE]


# --------------------------------------------------------------------- inference
def fit_pae(kind: str, X: np.ndarray, device: str) -> skprobae.PAE:
    conv = {"architecture": "conv", "image_shape": (28, 28), "hidden_layer_sizes": (512,)} if kind == "conv" else {}
    model = skprobae.PAE(n_components=16, max_epochs=1, flow_max_epochs=1, random_state=0, device=device, **conv)
    return model.fit(X)


def hand_scores(model: skprobae.PAE, X: np.ndarray, device: str) -> np.ndarray:
    """``score_samples`` (combined) written by hand: float32, no_grad, the model's own modules."""
    module, prior = model.net_.module_, model.flow_net_.module_
    sigma = torch.as_tensor(model.sigma_, dtype=torch.float32, device=device)
    loc, scale = prior.loc.float(), prior.scale.float()
    constant = float(-np.log(model.sigma_).sum() - 0.5 * X.shape[1] * np.log(2 * np.pi))
    constant += float(-np.log(model.latent_scale_).sum() - 0.5 * 16 * np.log(2 * np.pi))
    out = []
    with torch.no_grad():
        for batch in torch.from_numpy(X).split(HAND_INFERENCE_BATCH):
            x = batch.to(device)
            z = module.encoder(module.inputs(x))  # inputs: standardization and the mask channel of tables
            residual = (x - module.head.point_estimate(module.decoder(z))) / sigma  # the head: back to x's units
            u, log_det = prior.flow.flow().transform.call_and_ladj((z - loc) / scale)
            out.append((-0.5 * (residual * residual).sum(-1) - 0.5 * (u * u).sum(-1) + log_det + constant).cpu())
    return torch.cat(out).numpy()


def hand_codes(model: skprobae.PAE, X: np.ndarray, device: str) -> np.ndarray:
    module = model.net_.module_
    with torch.no_grad():
        batches = torch.from_numpy(X).split(HAND_INFERENCE_BATCH)
        return torch.cat([module.encoder(module.inputs(b.to(device))).cpu() for b in batches]).numpy()


def measure_inference(models: dict, X: np.ndarray, device: str, repeats: int) -> list[dict]:
    """Median rows/s of every (model, method, variant), interleaved round-robin after one warm-up call each."""
    results = []
    for name, model in models.items():
        exact = copy.deepcopy(model).set_params(inference_dtype="float64")
        calls = {
            ("score_samples", "hand loop"): lambda m=model: hand_scores(m, X, device),
            ("score_samples", "estimator"): lambda m=model: m.score_samples(X),
            ("score_samples", "estimator float64"): lambda m=exact: m.score_samples(X),
            ("transform", "hand loop"): lambda m=model: hand_codes(m, X, device),
            ("transform", "estimator"): lambda m=model: m.transform(X),
            ("transform", "estimator float64"): lambda m=exact: m.transform(X),
        }
        reference = hand_scores(model, X[:50], device)
        agreement = float(np.abs(model.score_samples(X[:50]) - reference).max() / np.abs(reference).max())
        for call in calls.values():
            call()
            sync(device)
        times = {key: [] for key in calls}
        for _ in range(repeats):
            for key, call in calls.items():
                start = time.perf_counter()
                call()
                sync(device)
                times[key].append(time.perf_counter() - start)
        for (method, variant), seconds in times.items():
            results.append(
                {
                    "model": name,
                    "method": method,
                    "variant": variant,
                    "rate": len(X) / statistics.median(seconds),
                    "runs": seconds,
                    "agreement": agreement,
                }
            )
        print(f"  {name}: done", flush=True)
    return results


def inference_table(results: list[dict]) -> tuple[str, dict]:
    rate = {(r["model"], r["method"], r["variant"]): r["rate"] for r in results}
    rows, verdicts = [], {}
    for r in results:
        hand = rate[(r["model"], r["method"], "hand loop")]
        f64 = rate[(r["model"], r["method"], "estimator float64")]
        rows.append(
            [
                r["model"],
                r["method"],
                r["variant"],
                f"{r['rate']:,.0f}",
                f"{r['rate'] / hand:.2f}",
                f"{r['rate'] / f64:.2f}",
                ", ".join(f"{s:.3f}" for s in r["runs"]),
            ]
        )
        if r["variant"] == "estimator":
            verdicts[(r["model"], r["method"])] = (r["rate"] / hand, r["rate"] / f64)
    header = [
        "model",
        "method",
        "variant",
        "rows/s",
        "ratio to hand loop",
        "ratio to float64 path",
        "seconds per repeat",
    ]
    return markdown_table(header, rows), verdicts


# -------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get(DATA_ENV), help=f"data folder (default ${DATA_ENV})")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per timed training run (default 3)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per variant (default 5)")
    parser.add_argument("--n-rows", type=int, default=20_000, help="training rows (default 20000)")
    parser.add_argument("--inference-rows", type=int, default=10_000, help="rows scored per call (default 10000)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads before anything runs")
    parser.add_argument("--skip-training", action="store_true")
    parser.add_argument("--output", type=Path, default=None, help=OUTPUT_HELP)
    parser.add_argument("--quick", action="store_true", help="smoke run: few rows, one epoch, one repeat")
    args = parser.parse_args(argv)
    if args.quick:
        args.n_rows, args.epochs, args.repeats, args.inference_rows = (
            QUICK_ROWS,
            QUICK_EPOCHS,
            QUICK_REPEATS,
            QUICK_INFERENCE_ROWS,
        )
    args.output = report_path(args.output, "throughput" if args.device == "cpu" else "throughput_gpu", args.quick)
    return args


def load_rows(data_dir: str | None, n_rows: int) -> np.ndarray | None:
    """The first ``n_rows`` Fashion-MNIST training rows as float32 in [0, 1] (random pixels without the data)."""
    try:
        X, _ = load_images("fashion_mnist", split="train", data_dir=data_dir)
    except FileNotFoundError as exc:
        print(f"Fashion-MNIST not found ({exc}); timing on uniform random pixels instead.")
        return np.random.default_rng(0).random((n_rows, 784), dtype=np.float32)
    return np.ascontiguousarray(X[:n_rows], dtype=np.float32)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    X = load_rows(args.data_dir, max(args.n_rows, args.inference_rows))
    print(f"torch {torch.__version__}, get_num_threads()={torch.get_num_threads()}, device {args.device}")
    sections = []
    if not args.skip_training:
        variants = training_variants(args.device)
        measure_training(variants, X[: args.n_rows], args.epochs, args.repeats)
        table, ratio = training_table(variants, args.n_rows, args.epochs)
        verdict = "met" if ratio >= TRAIN_TARGET else "NOT met"
        sections.append(
            f"""## Training

- Data: Fashion-MNIST train, first {args.n_rows} rows, float32 pixels / 255, 784 features
- Model: 784-256-64-32 MLP autoencoder, mirrored decoder, ReLU, Adam lr 1e-3, MSE, batch 128
- Epochs per run: {args.epochs}; median of {args.repeats} interleaved repeats after a 1-epoch warm-up
- Target: estimator >= {TRAIN_TARGET} of the hand-written loop (samples/s from training time).
  Result for `{TARGET_VARIANT}`: {ratio:.2f} -> {verdict}.

"samples/s" = epochs x training rows / training seconds (estimator: sum of `history_[:, "dur"]`,
which for the `defaults` variant includes the validation pass). "fit wall s" is the whole `fit`
call, including input checks and the post-fit pass over the training set; its ratio is taken
against the hand loop's training-time rate.

{table}
"""
        )
    rows = X[: args.inference_rows]
    models = {kind: fit_pae(kind, X[: min(len(X), 5000)], args.device) for kind in ("conv", "mlp")}
    results = measure_inference(models, rows, args.device, args.repeats)
    table, verdicts = inference_table(results)
    lines = []
    for (model, method), (to_hand, to_f64) in verdicts.items():
        ok = to_hand >= INFERENCE_TARGET and (model != "conv" or to_f64 >= FLOAT64_TARGET)
        lines.append(
            f"  - {model} {method}: {to_hand:.2f} of the hand loop, {to_f64:.2f}x the float64 path -> "
            f"{'met' if ok else 'NOT met'}"
        )
    agreement = max(r["agreement"] for r in results)
    sections.append(
        f"""## Inference

- Models: `PAE(n_components=16)`, conv (`architecture="conv"`, `image_shape=(28, 28)`,
  `hidden_layer_sizes=(512,)`) and MLP (defaults), one epoch per stage on the first 5,000 rows
- Rows per call: {len(rows)}; median of {args.repeats} interleaved repeats after one warm-up call each
- The estimator's scores agree with the hand loop's to {agreement:.1e} (largest relative difference
  on 50 rows; float32 arithmetic in the hand loop, float64 reductions in the estimator).
- Targets: estimator >= {INFERENCE_TARGET} of the hand loop; >= {FLOAT64_TARGET}x the float64 path
  (conv model):
{chr(10).join(lines)}

{table}
"""
    )
    text = (
        "# Throughput: the estimators against hand-written torch loops\n\n"
        + run_details(time.perf_counter() - start, device=args.device)
        + "\n\n"
        + "\n".join(sections)
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print("\n" + text)


if __name__ == "__main__":
    main()
