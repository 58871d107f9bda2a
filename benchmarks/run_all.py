"""Run every benchmark and list the reports they wrote.

How to run
----------
::

    python benchmarks/run_all.py --quick                               # smoke runs of every script, < 10 min on 2 cores
    python benchmarks/run_all.py --data-dir ../shared/data --threads 1  # full runs (many hours on 2 cores)
    python benchmarks/run_all.py --only odds one_class --quick         # a subset

Each script runs in its own process (so one failure does not stop the rest)
with the same ``--data-dir`` (default ``$SKPROBAE_DATA``) and ``--threads``;
``--jobs`` scripts run at once (default: 2 with ``--quick``, each with one
torch thread unless ``--threads`` says otherwise; 1 for full runs). A
script's output goes to ``<report folder>/<name>.log``. ``--quick`` passes
each script's own ``--quick``, whose reports go to
``benchmarks/results/quick/`` (gitignored), so the committed full-run
reports in ``benchmarks/results/`` are never overwritten. The summary gives
each script's exit status, wall time and report.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

from _common import RESULTS_DIR, report_path

HERE = Path(__file__).resolve().parent
SCRIPTS = [  # slowest first, so that parallel jobs finish together
    "odds",
    "one_class",
    "vanilla_table",
    "ood",
    "sample_quality",
    "aef_vs_vae",
    "imputation",
    "throughput",
]
THREADED = {"odds", "one_class", "sample_quality", "vanilla_table", "ood", "aef_vs_vae", "imputation"}


def command(name: str, args: argparse.Namespace) -> list[str]:
    cmd = [sys.executable, str(HERE / f"{name}.py")]
    if args.data_dir:
        cmd += ["--data-dir", str(args.data_dir)]
    if args.threads and name in THREADED:
        cmd += ["--threads", str(args.threads)]
    if args.quick:
        cmd += ["--quick"]
    return cmd


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("SKPROBAE_DATA"))
    parser.add_argument("--threads", type=int, default=None, help="torch threads per script")
    parser.add_argument("--jobs", type=int, default=None, help="scripts at once (default: 2 if --quick, else 1)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", nargs="+", choices=SCRIPTS, default=SCRIPTS)
    args = parser.parse_args(argv)
    args.jobs = args.jobs or (2 if args.quick else 1)
    if args.jobs > 1 and args.threads is None:
        args.threads = 1  # parallel scripts must not fight over the cores
    log_dir = RESULTS_DIR / "quick" if args.quick else RESULTS_DIR
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **({"OMP_NUM_THREADS": str(args.threads)} if args.threads else {})}
    start = time.perf_counter()
    pending, running, finished = list(args.only), {}, {}
    while pending or running:
        while pending and len(running) < args.jobs:
            name = pending.pop(0)
            cmd = command(name, args)
            log = log_dir / f"{name}.log"
            print(f"=== {name}: {' '.join(cmd)}  (output: {log})", flush=True)
            with log.open("w") as handle:
                process = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env)
            running[name] = (process, time.perf_counter())
        time.sleep(1)
        for name, (process, began) in list(running.items()):
            if process.poll() is not None:
                finished[name] = (process.returncode, time.perf_counter() - began)
                del running[name]
                print(f"--- {name} finished: exit {process.returncode}, {finished[name][1] / 60:.1f} min", flush=True)
    print(f"\n{'benchmark':16s} {'exit':>4s} {'minutes':>8s}  report")
    for name in args.only:
        code, seconds = finished[name]
        report = report_path(None, name, args.quick)
        print(f"{name:16s} {code:4d} {seconds / 60:8.1f}  {report if report.exists() else '-'}")
    print(f"total {(time.perf_counter() - start) / 60:.1f} min with {args.jobs} job(s)")
    sys.exit(max(code for code, _ in finished.values()))


if __name__ == "__main__":
    main()
