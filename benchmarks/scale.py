"""Scaling out: search on a dask cluster, scoring a dask array, Incremental fits on a memmap, two-process training.

What it measures (each part in fresh child processes, one after the other, with ``--threads`` torch threads)
---------------------------------------------------------------------------------------------------------
(a) ``GridSearchCV`` over 8 candidates x 3 folds of ``ProbabilisticAutoencoder`` on the standardized digits:
    serial (``n_jobs=1``) against a two-worker ``dask.distributed.LocalCluster`` (one thread each) through
    ``joblib.parallel_config(backend="dask")``; both must choose the same parameters.
(b) ``score_samples`` over ``--score-rows`` (2,000,000) rows x 16 features held in a float32 memmap: in memory
    (the memmap passed as is) against a dask array of it (``skprobae.parallel.from_memmap``, 100,000-row
    chunks, scored by ``skprobae.parallel.map_blocks`` on the synchronous scheduler), rows/s and the process's
    peak resident memory (``VmHWM``).
(c) ``dask_ml.wrappers.Incremental(ProbabilisticAutoencoder)`` over a float32 memmap of ``--incremental-gb``
    (3.2) GB (rows x 256 features from a low-rank model; ``from_memmap``), one ``partial_fit`` per
    250,000-row block, against an in-memory ``fit`` on a 200,000-row subsample for as many epochs as there
    are blocks: peak resident memory of the Incremental process against the file size, and the mean
    held-out ``score`` of both.
(d) Training samples/s of a 2-process data-parallel fit (``accelerator={"cpu": True}`` under
    ``torch.distributed.run``, gloo, one thread per process) against one process with one thread and with two,
    same global batch, on 200,000 x 64 rows. Expect little or no gain on a 2-core machine.

How to run
----------
::

    python benchmarks/scale.py --threads 1            # all parts, about 10 minutes on 2 cores
    python benchmarks/scale.py --quick                # smoke run: small sizes, written to results/quick/

Writes ``benchmarks/results/scale.md`` (``--output``).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import PeakMemory, markdown_table, report_path, run_details, run_python, write_report  # noqa: E402

SMALL_AE = {"n_components": 4, "hidden_layer_sizes": (32,), "random_state": 0}


def low_rank_rows(rng: np.random.Generator, n: int, n_features: int, basis: np.ndarray) -> np.ndarray:
    latent = rng.standard_normal((n, basis.shape[0]), dtype=np.float32)
    return latent @ basis + 0.1 * rng.standard_normal((n, n_features), dtype=np.float32)


def write_memmap(path: Path, rows: int, n_features: int, seed: int = 0) -> np.ndarray:
    """Low-rank float32 rows written block by block (never held in memory); returns the basis used."""
    rng = np.random.default_rng(seed)
    basis = rng.standard_normal((4, n_features)).astype(np.float32) / 2
    if not (path.exists() and path.stat().st_size == rows * n_features * 4):
        with path.open("wb") as handle:
            for start in range(0, rows, 100_000):
                handle.write(low_rank_rows(rng, min(100_000, rows - start), n_features, basis).tobytes())
    return basis


# ----------------------------------------------------------------- children
def child_search(args: list[str]) -> dict:
    import joblib
    from distributed import Client, LocalCluster
    from sklearn.datasets import load_digits
    from sklearn.model_selection import GridSearchCV
    from sklearn.preprocessing import StandardScaler

    from skprobae import ProbabilisticAutoencoder

    epochs = int(args[0])
    X = StandardScaler().fit_transform(load_digits().data)
    grid = {"n_components": [2, 4, 8, 16], "distribution": ["normal_diag", "t_diag"]}
    model = ProbabilisticAutoencoder(**{**SMALL_AE, "max_epochs": epochs})
    start = time.perf_counter()
    serial = GridSearchCV(model, grid, cv=3).fit(X)
    serial_s = time.perf_counter() - start
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True) as cluster, Client(cluster):
        start = time.perf_counter()
        with joblib.parallel_config(backend="dask"):
            clustered = GridSearchCV(model, grid, cv=3).fit(X)
        cluster_s = time.perf_counter() - start
    same = serial.best_params_ == clustered.best_params_
    spread = float(np.abs(serial.cv_results_["mean_test_score"] - clustered.cv_results_["mean_test_score"]).max())
    return {
        "serial_s": serial_s,
        "cluster_s": cluster_s,
        "same_best": same,
        "best": str(serial.best_params_),
        "max_score_difference": spread,
    }


def child_score(args: list[str]) -> dict:
    path, rows, mode = args[0], int(args[1]), args[2]
    import dask

    from skprobae import ProbabilisticAutoencoder
    from skprobae.parallel import from_memmap, map_blocks

    X = np.memmap(path, dtype=np.float32, mode="r", shape=(rows, 16))
    model = ProbabilisticAutoencoder(**SMALL_AE, max_epochs=1).fit(X[:20_000])
    model.score_samples(X[:1000])  # warm-up: the row-cost probe runs once per model shape
    with PeakMemory() as memory:
        start = time.perf_counter()
        if mode == "memory":
            scores = model.score_samples(X)
        else:
            with dask.config.set(scheduler="synchronous"):
                scores = map_blocks(model, from_memmap(X, 100_000)).compute()
        seconds = time.perf_counter() - start
    return {
        "rows_per_s": rows / seconds,
        "hwm": memory.hwm,
        "seconds": seconds,
        "checksum": float(np.mean(scores[:: max(1, rows // 10_000)])),
    }


def child_incremental(args: list[str]) -> dict:
    path, rows, mode, block = args[0], int(args[1]), args[2], int(args[3])
    from skprobae import ProbabilisticAutoencoder

    X = np.memmap(path, dtype=np.float32, mode="r", shape=(rows, 256))
    held_out = np.asarray(X[-20_000:])
    n_blocks = -(-(rows - 20_000) // block)
    with PeakMemory() as memory:
        start = time.perf_counter()
        if mode == "incremental":
            import dask
            from dask_ml.wrappers import Incremental

            from skprobae.parallel import from_memmap

            with dask.config.set(scheduler="synchronous"):
                data = from_memmap(X[: rows - 20_000], block)
                model = Incremental(ProbabilisticAutoencoder(**SMALL_AE)).fit(data).estimator_
        else:
            subsample = np.asarray(X[:200_000])
            model = ProbabilisticAutoencoder(**SMALL_AE, max_epochs=n_blocks, n_iter_no_change=None).fit(subsample)
        seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "hwm": memory.hwm,
        "peak_anon": memory.peak["RssAnon"],
        "held_out_score": model.score(held_out),
        "epochs": len(model.history_),
        "blocks": n_blocks,
    }


RANK_SCRIPT = """
import json, sys, time
import numpy as np, torch
torch.set_num_threads(int(sys.argv[3]))
from skprobae import ProbabilisticAutoencoder
rows, accelerated = int(sys.argv[1]), sys.argv[2] == "1"
rng = np.random.default_rng(0)
basis = rng.standard_normal((4, 64)).astype(np.float32) / 2
X = (rng.standard_normal((rows, 4), dtype=np.float32) @ basis + 0.1 * rng.standard_normal((rows, 64), dtype=np.float32))
params = dict(n_components=4, hidden_layer_sizes=(256, 64), max_epochs=2, batch_size=256, n_iter_no_change=None,
              validation_fraction=0.0, random_state=0, n_threads=int(sys.argv[3]))
model = ProbabilisticAutoencoder(accelerator={"cpu": True} if accelerated else None, **params)
start = time.perf_counter()
model.fit(X)
seconds = time.perf_counter() - start
import torch.distributed as dist
if not dist.is_initialized() or dist.get_rank() == 0:
    print(json.dumps({"samples_per_s": rows * 2 / seconds, "seconds": seconds,
                      "final_loss": float(model.history_[-1, "train_loss"])}))
"""


def child_training(args: list[str]) -> dict:
    rows, processes, threads = int(args[0]), int(args[1]), int(args[2])
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "rank.py"
        script.write_text(RANK_SCRIPT)
        if processes == 1:
            command = [sys.executable, str(script), str(rows), "0", str(threads)]
        else:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            command = [
                sys.executable,
                "-m",
                "torch.distributed.run",
                "--nproc_per_node",
                str(processes),
                "--master_port",
                str(port),
                str(script),
                str(rows),
                "1",
                str(threads),
            ]
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        out = subprocess.run(command, capture_output=True, text=True, env=env, cwd=folder, check=False)
    if out.returncode:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1][:300]}
    return json.loads(out.stdout.strip().splitlines()[-1])


CHILDREN = {"search": child_search, "score": child_score, "incremental": child_incremental, "training": child_training}


def run_child(name: str, *args, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    return run_python(sys.executable, [str(Path(__file__).resolve()), "--child", name, *map(str, args)], env=env)


# ----------------------------------------------------------------- report
def gb(n_bytes: float) -> str:
    return f"{n_bytes / 1e9:.2f} GB"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process (default 1)")
    parser.add_argument("--score-rows", type=int, default=2_000_000)
    parser.add_argument("--incremental-gb", type=float, default=3.2, help="size of the Incremental memmap")
    parser.add_argument("--training-rows", type=int, default=200_000)
    parser.add_argument("--search-epochs", type=int, default=5)
    parser.add_argument("--path", type=Path, default=Path(tempfile.gettempdir()), help="folder for the memmaps")
    parser.add_argument("--quick", action="store_true", help="smoke run: small sizes")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(CHILDREN[args.child[0]](args.child[1:])))
        return
    if args.quick:
        args.score_rows, args.incremental_gb, args.training_rows, args.search_epochs = 200_000, 0.1, 20_000, 1
    started = time.perf_counter()
    threads = args.threads
    print("(a) search", flush=True)
    search = run_child("search", args.search_epochs, threads=threads)
    print(search, "\n(b) scoring", flush=True)
    score_path = args.path / f"skprobae_scale_score_{args.score_rows}.f32"
    write_memmap(score_path, args.score_rows, 16)
    scoring = {
        mode: run_child("score", score_path, args.score_rows, mode, threads=threads) for mode in ("memory", "dask")
    }
    print(scoring, "\n(c) incremental", flush=True)
    inc_rows = int(args.incremental_gb * 1e9 / (256 * 4))
    block = 250_000 if not args.quick else 20_000
    inc_path = args.path / f"skprobae_scale_incremental_{inc_rows}.f32"
    write_memmap(inc_path, inc_rows, 256, seed=1)
    incremental = {
        mode: run_child("incremental", inc_path, inc_rows, mode, block, threads=threads)
        for mode in ("incremental", "subsample")
    }
    print(incremental, "\n(d) training", flush=True)
    training = {
        "1 process, 1 thread": run_child("training", args.training_rows, 1, 1, threads=1),
        "1 process, 2 threads": run_child("training", args.training_rows, 1, 2, threads=2),
        "2 processes, 1 thread each": run_child("training", args.training_rows, 2, 1, threads=1),
    }
    print(training, flush=True)

    lines = [
        "# Scaling out: dask search and scoring, Incremental fits, two-process training",
        "",
        run_details(time.perf_counter() - started, extra_packages=("dask", "distributed", "dask_ml", "accelerate")),
        f"- Torch threads per process: {threads} (parts a-c); each part in fresh child processes, one at a time",
        "",
        "## (a) GridSearchCV, 8 candidates x 3 folds",
        "",
    ]
    if "error" in search:
        lines.append(f"Failed: {search['error']}")
    else:
        lines += [
            markdown_table(
                ["run", "wall s", "ratio to serial"],
                [
                    ["serial (n_jobs=1)", f"{search['serial_s']:.1f}", "1.00"],
                    [
                        "LocalCluster, 2 workers x 1 thread",
                        f"{search['cluster_s']:.1f}",
                        f"{search['cluster_s'] / search['serial_s']:.2f}",
                    ],
                ],
            ),
            "",
            f"Same best parameters: {search['same_best']} ({search['best']}); largest difference in "
            f"mean_test_score: {search['max_score_difference']:.2e}. Epochs per candidate: {args.search_epochs}.",
        ]
    lines += ["", f"## (b) score_samples over {args.score_rows:,} x 16 rows", ""]
    rows = []
    for mode, result in scoring.items():
        label = "in memory (memmap)" if mode == "memory" else "dask array, map_blocks, 100,000-row chunks"
        if "error" in result:
            rows.append([label, result["error"], "", ""])
        else:
            ratio = result["rows_per_s"] / scoring["memory"].get("rows_per_s", np.nan)
            rows.append([label, f"{result['rows_per_s']:,.0f}", f"{ratio:.2f}", gb(result["hwm"])])
    lines += [markdown_table(["run", "rows/s", "ratio to in-memory", "peak RSS (VmHWM)"], rows)]
    lines += ["", f"## (c) Incremental over a {gb(inc_rows * 256 * 4)} float32 memmap ({inc_rows:,} x 256)", ""]
    rows = []
    for mode, result in incremental.items():
        label = "Incremental, one partial_fit per block" if mode == "incremental" else "fit on a 200,000-row subsample"
        if "error" in result:
            rows.append([label, result["error"], "", "", ""])
        else:
            rows.append(
                [
                    label,
                    f"{result['seconds']:.1f}",
                    gb(result["hwm"]),
                    f"{result['epochs']}",
                    f"{result['held_out_score']:.3f}",
                ]
            )
    lines += [markdown_table(["run", "wall s", "peak RSS (VmHWM)", "epochs", "held-out score"], rows)]
    if "hwm" in incremental["incremental"]:
        lines += [
            "",
            f"File size / peak RSS of the Incremental fit: "
            f"{inc_rows * 256 * 4 / incremental['incremental']['hwm']:.1f}x.",
        ]
    lines += ["", f"## (d) Training samples/s, {args.training_rows:,} x 64 rows, 2 epochs, batch 256", ""]
    rows = []
    base = training["1 process, 1 thread"].get("samples_per_s", np.nan)
    for label, result in training.items():
        if "error" in result:
            rows.append([label, result["error"], ""])
        else:
            rows.append([label, f"{result['samples_per_s']:,.0f}", f"{result['samples_per_s'] / base:.2f}"])
    lines += [markdown_table(["run", "samples/s", "ratio to 1 process, 1 thread"], rows), ""]
    write_report(report_path(args.output, "scale", args.quick), "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
