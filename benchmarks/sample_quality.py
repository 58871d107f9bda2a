"""Sample quality at latent size 32: a Fréchet distance in a small CNN's feature space (the PAE paper's Table 1).

What it measures
----------------
For each data set in ``--datasets`` (MNIST, Fashion-MNIST from ``--data-dir``
or ``$SKPROBAE_DATA``):

* a small CNN classifier (3x3 convolutions with 32 and 64 channels, each
  followed by 2x2 max-pooling, a 128-unit ReLU layer, a 10-way linear layer)
  is trained with Adam 1e-3, batch 128, for ``--cnn-epochs`` epochs on the
  whole train split (seeded; Fashion-MNIST rows labelled -1 are left out) and
  its test accuracy reported. Its 128 penultimate activations are the feature
  space. The weights are cached in ``--cache-dir`` as
  ``feature_cnn_<dataset>.pt`` and reused by later runs (a cached network
  trained for at least as many epochs, same seed); nothing is downloaded;
* every generative model is fitted with ``n_components=32``,
  ``max_epochs=--epochs`` and ``random_state=0``, library defaults otherwise,
  on the same ``--n-train`` seeded rows of the train split, dequantized as
  ``(x * 255 + U[0, 1)) / 256`` (so the likelihood-trained AEF and VAE see a
  continuous density; invisible at this scale for the others);
* ``--n-samples`` draws from each model, clipped to [0, 1], go through the CNN
  and the Fréchet distance ``||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))``
  to the features of ``--n-samples`` test images is reported (lower is
  better), with the fit seconds. Rows:

  - **AE, decoding N(0, I)**: ``ProbabilisticAutoencoder(distribution="mse")``,
    codes drawn from a standard normal and decoded with ``inverse_transform``
    (the PAE paper's AE baseline);
  - **AE, Gaussian fit to codes**: the same model's ``sample``, which draws
    codes from a Gaussian fitted to the training codes;
  - **VAE**: ``VAE()`` (Gaussian prior and posterior, the library's default
    ``normal_diag`` likelihood);
  - **beta-VAE (beta=100, C=15)**: ``VAE(beta=100, capacity=15)``, the tuned
    values of the PAE paper's Fig. 2 / Table 1 (objective Eq. 15);
  - **beta-VAE (beta=4)**: ``VAE(beta=4)``, the usual Higgins et al. setting;
  - **PAE**: ``PAE().sample`` at temperature 1 and 0.85;
  - **AEF**: ``AEF(logit_lambda=1e-6).sample`` at temperature 1 and 0.85;

  plus the floor: the distance between the features of ``--n-samples`` train
  images and the test images. A model whose fit or sampling fails is
  reported as failed.

The distance uses a small CNN's features, not Inception's: its values are not
comparable in absolute terms with the papers' FIDs (the PAE paper, Table 1,
Fashion-MNIST at K=32: AE 102.9, VAE 102.4, beta-VAE 56.3, PAE 35.4);
compare the ordering. A PNG per data set beside the report shows 10 test
images and 10 samples of every row.

How to run
----------
::

    python benchmarks/sample_quality.py --data-dir /work/shared/data --threads 1   # full run
    python benchmarks/sample_quality.py --quick                                    # smoke run, uses $SKPROBAE_DATA

``--quick``: MNIST only, 1,000 training rows, 2 epochs (flow 20), 500
samples, the classifier 1 epoch (or the cached one). Writes
``benchmarks/results/sample_quality.md`` (``--output``; ``--quick`` runs write to ``benchmarks/results/quick/``) and
``sample_quality_<dataset>.png`` beside it.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.linalg
import torch
from _common import OUTPUT_HELP, markdown_table, report_path, run_details
from torch import nn

from skprobae import AEF, PAE, VAE, ProbabilisticAutoencoder
from skprobae.datasets import DATA_ENV, load_images

K = 32
IMAGE_SHAPE = (28, 28)
LOGIT_LAMBDA = 1e-6
LOW_TEMPERATURE = 0.85
CNN_VERSION = 1  # bump when FeatureCNN changes, so cached weights are not reused
DATASETS = ("mnist", "fashion_mnist")
MODELS = ("AE", "VAE", "beta-VAE", "beta4-VAE", "PAE", "AEF")  # --models names
PAPER_FID = {"AE": 102.9, "VAE": 102.4, "beta-VAE": 56.3, "PAE": 35.4}


# ----------------------------------------------------------------- feature CNN
class FeatureCNN(nn.Module):
    """Two 3x3 conv + max-pool blocks (32, 64 channels), a 128-unit feature layer, a 10-way head."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * 7 * 7, 128),
            nn.ReLU(),
        )
        self.head = nn.Linear(128, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def load(dataset: str, split: str, args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    try:
        return load_images(dataset, split, data_dir=args.data_dir)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"{dataset} not found ({exc}); pass --data-dir or set ${DATA_ENV}.") from exc


def _images(X: np.ndarray) -> torch.Tensor:
    return torch.as_tensor(np.asarray(X, dtype=np.float32)).reshape(-1, 1, *IMAGE_SHAPE)


def train_cnn(X: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> FeatureCNN:
    torch.manual_seed(seed)
    model = FeatureCNN()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images, labels = _images(X), torch.as_tensor(y, dtype=torch.long)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    for epoch in range(epochs):
        start, total = time.perf_counter(), 0.0
        for batch in torch.randperm(len(images), generator=generator).split(128):
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(images[batch]), labels[batch])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        print(
            f"  CNN epoch {epoch + 1}: loss {total / len(images):.4f} ({time.perf_counter() - start:.0f} s)", flush=True
        )
    return model.eval()


@torch.no_grad()
def cnn_outputs(model: FeatureCNN, X: np.ndarray, batch: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Penultimate features (float64) and predicted labels."""
    features, predicted = [], []
    for chunk in _images(X).split(batch):
        h = model.body(chunk)
        features.append(h.double().numpy())
        predicted.append(model.head(h).argmax(1).numpy())
    return np.concatenate(features), np.concatenate(predicted)


def feature_cnn(dataset: str, args: argparse.Namespace) -> tuple[FeatureCNN, dict]:
    """The cached classifier when it fits the request, else a freshly trained (and cached) one."""
    path = args.cache_dir / f"feature_cnn_{dataset}.pt"
    if path.exists():
        saved = torch.load(path, weights_only=True)
        info = saved["info"]
        if info["version"] == CNN_VERSION and info["seed"] == args.seed and info["epochs"] >= args.cnn_epochs:
            model = FeatureCNN()
            model.load_state_dict(saved["state_dict"])
            print(f"  feature CNN from {path} ({info['epochs']} epochs, test accuracy {info['accuracy']:.4f})")
            return model.eval(), {**info, "cached": True}
    X, y = load(dataset, "train", args)
    X_test, y_test = load(dataset, "test", args)
    keep, keep_test = y >= 0, y_test >= 0  # Fashion-MNIST: rows of the removed classes are labelled -1
    start = time.perf_counter()
    model = train_cnn(X[keep], y[keep], args.cnn_epochs, args.seed)
    accuracy = float(np.mean(cnn_outputs(model, X_test[keep_test])[1] == y_test[keep_test]))
    info = {
        "version": CNN_VERSION,
        "seed": args.seed,
        "epochs": args.cnn_epochs,
        "accuracy": accuracy,
        "train_rows": int(keep.sum()),
        "test_rows": int(keep_test.sum()),
        "train_seconds": time.perf_counter() - start,
    }
    print(f"  feature CNN trained: test accuracy {accuracy:.4f} ({info['train_seconds']:.0f} s), saved to {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": model.state_dict(), "info": info}, path)
    return model, {**info, "cached": False}


# ------------------------------------------------------------------ distance
def frechet_distance(features_a: np.ndarray, features_b: np.ndarray, eps: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets, in float64.

    ``||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))``; the matrix square
    root is ``scipy.linalg.sqrtm``'s, real part. When the product is singular
    (dead ReLU features) and the root is not finite, ``eps * I`` is added to
    both covariances, as in pytorch-fid.
    """
    a, b = np.asarray(features_a, dtype=np.float64), np.asarray(features_b, dtype=np.float64)
    mu_a, mu_b = a.mean(axis=0), b.mean(axis=0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sqrtm warns about (near-)singular products
        root = scipy.linalg.sqrtm(cov_a @ cov_b)
        if not np.isfinite(root).all():
            offset = eps * np.eye(len(cov_a))
            root = scipy.linalg.sqrtm((cov_a + offset) @ (cov_b + offset))
    diff = mu_a - mu_b
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(np.real(root)))


# -------------------------------------------------------------------- models
Sampler = Callable[[object, int], np.ndarray]


@dataclass
class Spec:
    factory: Callable[[], object]
    rows: dict[str, Sampler]  # row label -> sampler(model, n)


def model_specs(args: argparse.Namespace) -> dict[str, Spec]:
    common = {"n_components": K, "max_epochs": args.epochs, "random_state": 0}
    flow = {} if args.flow_epochs is None else {"flow_max_epochs": args.flow_epochs}

    def standard_normal(model, n):
        return model.inverse_transform(np.random.default_rng(args.seed).standard_normal((n, K)))

    def draw(temperature: float | None = None) -> Sampler:
        extra = {} if temperature is None else {"temperature": temperature}
        return lambda model, n: model.sample(n, random_state=args.seed, **extra)

    low = f"T={LOW_TEMPERATURE}"
    return {
        "AE": Spec(
            lambda: ProbabilisticAutoencoder(distribution="mse", **common),
            {"AE, decoding N(0, I)": standard_normal, "AE, Gaussian fit to codes": draw()},
        ),
        "VAE": Spec(lambda: VAE(**common), {"VAE": draw()}),
        "beta-VAE": Spec(lambda: VAE(beta=100.0, capacity=15.0, **common), {"beta-VAE (beta=100, C=15)": draw()}),
        "beta4-VAE": Spec(lambda: VAE(beta=4.0, **common), {"beta-VAE (beta=4)": draw()}),
        # n_iter_no_change=10, flow_learning_rate=1e-3 as in the published results (PAE's defaults are 3 and 3e-3
        # since 0.2)
        "PAE": Spec(
            lambda: PAE(n_iter_no_change=10, flow_learning_rate=1e-3, **common, **flow),
            {"PAE, T=1": draw(1.0), f"PAE, {low}": draw(LOW_TEMPERATURE)},
        ),
        "AEF": Spec(
            lambda: AEF(logit_lambda=LOGIT_LAMBDA, **common),
            {"AEF, T=1": draw(1.0), f"AEF, {low}": draw(LOW_TEMPERATURE)},
        ),
    }


@dataclass
class Row:
    label: str
    distance: float | None = None
    fit_s: float | None = None
    epochs: str = ""
    error: str | None = None
    images: np.ndarray = field(default_factory=lambda: np.zeros((0, 784)))


def short_error(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0][:160] if lines else ''}"


def run_spec(spec: Spec, X_train: np.ndarray, n: int, cnn: FeatureCNN, test_features: np.ndarray) -> list[Row]:
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = spec.factory().fit(X_train)
    except Exception as exc:  # a failure is a result, reported in the table
        return [Row(label, error=f"fit failed: {short_error(exc)}") for label in spec.rows]
    fit_s = time.perf_counter() - start
    epochs = str(model.n_iter_)
    if hasattr(model, "flow_history_"):
        epochs += f" + flow {len(model.flow_history_)}"
    rows = []
    for label, sampler in spec.rows.items():
        try:
            samples = np.asarray(sampler(model, n), dtype=np.float64)
            bad = int((~np.isfinite(samples)).any(axis=1).sum())
            if bad:
                raise ValueError(f"{bad} of {n} samples not finite")
            samples = np.clip(samples, 0.0, 1.0)
            distance = frechet_distance(cnn_outputs(cnn, samples)[0], test_features)
        except Exception as exc:
            rows.append(Row(label, fit_s=fit_s, epochs=epochs, error=f"sampling failed: {short_error(exc)}"))
            continue
        rows.append(Row(label, distance, fit_s, epochs, images=samples[:10]))
    return rows


# -------------------------------------------------------------------- report
def dequantize(X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pixels k / 255 to ``(k + U[0, 1)) / 256``."""
    return ((np.rint(X * 255) + rng.random(X.shape)) / 256).astype(np.float32)


def results_table(rows: list[Row]) -> str:
    body = []
    for r in rows:
        distance = f"failed: {r.error}" if r.error else f"{r.distance:.2f}"
        body.append([r.label, distance, "" if r.fit_s is None else f"{r.fit_s:.0f}", r.epochs])
    return markdown_table(["model", "Fréchet distance", "fit s", "epochs"], body)


def findings(rows: list[Row]) -> str:
    scored = sorted(
        (r for r in rows if r.distance is not None and not r.label.startswith("floor")), key=lambda r: r.distance
    )
    floor = next((r.distance for r in rows if r.label.startswith("floor")), None)
    if not scored:
        return "No model produced samples."
    order = " < ".join(f"{r.label} ({r.distance:.2f})" for r in scored)
    return f"Ordering, best first: {order}; floor {floor:.2f}."


def write_report(path: Path, sections: dict, args: argparse.Namespace, elapsed: float) -> None:
    flow = "library default (200, early stopping)" if args.flow_epochs is None else str(args.flow_epochs)
    parts = [
        "# Sample quality at latent size 32: Fréchet distance in a small CNN's feature space",
        "",
        "Produced by `benchmarks/sample_quality.py` (see its docstring for the protocol).",
        "",
        run_details(elapsed, extra_packages=("scipy",)),
        f"- Models: n_components={K}, {args.n_train:,} dequantized training rows (seed {args.seed}), "
        f"max_epochs={args.epochs} (PAE flow epochs: {flow}), random_state=0, library defaults otherwise "
        "(10% validation split, early stopping after 10 epochs without improvement).",
        f"- Distance: {args.n_samples:,} samples per row, clipped to [0, 1], against {args.n_samples:,} test "
        "images, in the 128-dim penultimate layer of a small CNN classifier trained on the train split. "
        "Floor: the same distance between train and test images.",
        "- This distance uses a small CNN's features, not Inception's: not comparable in absolute value with the "
        "papers' FIDs (PAE paper, Table 1, Fashion-MNIST, K=32, FID to test data: "
        + ", ".join(f"{k} {v}" for k, v in PAPER_FID.items())
        + "); compare the ordering.",
        "",
    ]
    for dataset, section in sections.items():
        cnn = section["cnn"]
        parts += [
            f"## {dataset}",
            "",
            f"Feature CNN: {cnn['epochs']} epoch(s) on {cnn['train_rows']:,} labelled train rows, test accuracy "
            f"{cnn['accuracy']:.4f} on {cnn['test_rows']:,} labelled test rows"
            + (" (cached weights)." if cnn["cached"] else f" (trained in {cnn['train_seconds']:.0f} s)."),
            "",
            results_table(section["rows"]),
            "",
            findings(section["rows"]),
            "",
        ]
        if section.get("png"):
            parts += [f"![samples, {dataset}]({section['png']})", ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts))


def plot(rows: list[Row], X_test: np.ndarray, path: Path, dataset: str) -> str | None:
    try:
        from skprobae.plotting import plot_image_rows
    except ImportError:
        return None
    images = {"test images": X_test[:10], **{r.label: r.images for r in rows if len(r.images)}}
    figure = plot_image_rows(
        images,
        IMAGE_SHAPE,
        scale=dict.fromkeys(images, (0.0, 1.0)),
        path=path,
        title=f"{dataset}: samples at K={K}",
    )
    import matplotlib.pyplot as plt

    plt.close(figure)
    return path.name


# ---------------------------------------------------------------------- main
def run_dataset(dataset: str, args: argparse.Namespace, sections: dict, start: float) -> None:
    print(f"{dataset}:", flush=True)
    cnn, cnn_info = feature_cnn(dataset, args)
    X, _ = load(dataset, "train", args)
    X_test, _ = load(dataset, "test", args)
    rng = np.random.default_rng(args.seed)
    train_idx = rng.permutation(len(X))
    X_train = dequantize(X[train_idx[: args.n_train]], rng)
    X_reference = X_test[rng.permutation(len(X_test))[: args.n_samples]]
    test_features = cnn_outputs(cnn, X_reference)[0]
    floor = frechet_distance(cnn_outputs(cnn, X[train_idx[-args.n_samples :]])[0], test_features)
    rows = [Row(f"floor: {args.n_samples:,} train vs test images", floor)]
    print(f"  {rows[0].label:<34s} {floor:8.2f}", flush=True)
    section = sections[dataset] = {"cnn": cnn_info, "rows": rows}
    for name, spec in model_specs(args).items():
        if name not in args.models:
            continue
        for row in run_spec(spec, X_train, args.n_samples, cnn, test_features):
            rows.insert(len(rows) - 1, row)  # the floor stays last
            shown = row.error or f"{row.distance:8.2f}  (fit {row.fit_s:.0f} s, epochs {row.epochs})"
            print(f"  {row.label:<34s} {shown}", flush=True)
        write_report(args.output, sections, args, time.perf_counter() - start)  # partial results survive
    png = args.output.with_name(f"{args.output.stem}_{dataset}.png")
    section["png"] = plot(rows, X_reference, png, dataset)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get(DATA_ENV), help=f"data folder (default ${DATA_ENV})")
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS, help="beta4-VAE: VAE(beta=4)")
    parser.add_argument("--n-train", type=int, default=10_000, help="training rows per model (default 10000)")
    parser.add_argument("--epochs", type=int, default=20, help="max_epochs of every model (default 20)")
    parser.add_argument("--flow-epochs", type=int, default=None, help="PAE flow_max_epochs (default: library's)")
    parser.add_argument("--n-samples", type=int, default=5_000, help="samples per row and test images (default 5000)")
    parser.add_argument("--cnn-epochs", type=int, default=3, help="feature CNN training epochs (default 3)")
    parser.add_argument("--cache-dir", type=Path, default=Path("benchmarks/.cache"), help="feature CNN weights")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--quick", action="store_true", help="smoke run: MNIST, 1000 rows, 2 epochs, 500 samples")
    parser.add_argument("--output", type=Path, default=None, help=OUTPUT_HELP)
    args = parser.parse_args(argv)
    if args.quick:
        args.datasets, args.n_train, args.epochs, args.flow_epochs = ["mnist"], 1000, 2, 20
        args.n_samples, args.cnn_epochs = 500, 1
    args.output = report_path(args.output, "sample_quality", args.quick)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    sections: dict = {}
    for dataset in args.datasets:
        run_dataset(dataset, args, sections, start)
    write_report(args.output, sections, args, time.perf_counter() - start)
    for dataset, section in sections.items():
        print(f"\n{dataset}\n{results_table(section['rows'])}\n{findings(section['rows'])}")
    print(f"\nReport: {args.output}")


if __name__ == "__main__":
    main()
