"""Run every benchmark, one after another, and list the reports they wrote.

How to run
----------
::

    python benchmarks/run_all.py --quick                               # smoke runs of every script
    python benchmarks/run_all.py --data-dir ../shared/data --threads 1  # full runs (several hours on 2 cores)
    python benchmarks/run_all.py --only odds one_class --quick         # a subset

Each script runs in its own process (so one failure does not stop the rest)
with the same ``--data-dir`` (default ``$SKPROBAE_DATA``) and ``--threads``;
``--quick`` passes each script's own ``--quick`` and writes the reports to
``--quick-dir`` (default ``/tmp/skprobae_quick``) so the committed full-run
reports in ``benchmarks/results/`` are not overwritten. The summary gives
each script's exit status, wall time and report.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    "odds",
    "one_class",
    "sample_quality",
    "vanilla_table",
    "ood",
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
        cmd += ["--quick"] if name != "throughput" else ["--n-rows", "2000", "--repeats", "1"]
        cmd += ["--output", str(Path(args.quick_dir) / f"{name}.md")]
    return cmd


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=os.environ.get("SKPROBAE_DATA"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--quick-dir", default="/tmp/skprobae_quick")
    parser.add_argument("--only", nargs="+", choices=SCRIPTS, default=SCRIPTS)
    args = parser.parse_args(argv)
    if args.quick:
        Path(args.quick_dir).mkdir(parents=True, exist_ok=True)
    summary = []
    start = time.perf_counter()
    for name in args.only:
        cmd = command(name, args)
        print(f"\n=== {name}: {' '.join(cmd)}", flush=True)
        began = time.perf_counter()
        code = subprocess.call(cmd)
        report = Path(args.quick_dir) / f"{name}.md" if args.quick else HERE / "results" / f"{name}.md"
        summary.append((name, code, time.perf_counter() - began, report if report.exists() else "-"))
    print(f"\n{'benchmark':16s} {'exit':>4s} {'minutes':>8s}  report")
    for name, code, seconds, report in summary:
        print(f"{name:16s} {code:4d} {seconds / 60:8.1f}  {report}")
    print(f"total {(time.perf_counter() - start) / 60:.1f} min")
    sys.exit(max(code for _, code, _, _ in summary))


if __name__ == "__main__":
    main()
