"""What every benchmark report states: the command, the machine, the versions, the date."""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

import skprobae

BASE_PACKAGES = ("scikit-learn", "skorch", "zuko")
RESULTS_DIR = Path(__file__).resolve().parent / "results"
OUTPUT_HELP = "report path (default: benchmarks/results/<name>.md; with --quick: benchmarks/results/quick/<name>.md)"


def report_path(output: Path | None, name: str, quick: bool) -> Path:
    """``--output`` if given, else the committed report's path; quick runs go to ``results/quick/`` (gitignored).

    A smoke run must never overwrite a full run's report or its cache beside it.
    """
    if output is not None:
        return output
    return (RESULTS_DIR / "quick" if quick else RESULTS_DIR) / f"{name}.md"


def git_revision() -> str:
    """Short commit hash, noting uncommitted changes to the library."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "skprobae"], capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    changed = dirty.stdout.strip().splitlines()
    return rev.stdout.strip() + (f" (skprobae/ has {len(changed)} uncommitted changes)" if changed else "")


def check_device(device: str) -> str:
    """``device`` if it is ``"cpu"`` or a usable ``"cuda"`` / ``"cuda:N"``; an ``argparse`` type for ``--device``."""
    try:
        parsed = torch.device(device)
    except RuntimeError:
        parsed = None
    if parsed is None or parsed.type not in ("cpu", "cuda"):
        raise argparse.ArgumentTypeError(f"expected 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(
                f"{device!r} requested but CUDA is not available here (torch {torch.__version__}, "
                "torch.cuda.is_available() is False); use --device cpu"
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(
                f"{device!r} requested but only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
    return device


def machine_description(device: str = "cpu") -> str:
    gpu = (
        f" ({torch.cuda.get_device_name(torch.device(device))})"
        if device.startswith("cuda") and torch.cuda.is_available()
        else ""
    )
    return (
        f"{platform.platform()}, os.cpu_count()={os.cpu_count()}, torch {torch.__version__} "
        f"(get_num_threads()={torch.get_num_threads()}), device {device}{gpu}, Python {platform.python_version()}"
    )


def package_versions(extra: tuple[str, ...] = ()) -> str:
    versions = [f"skprobae {skprobae.__version__}"]
    for name in (*BASE_PACKAGES, *extra):
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    return ", ".join([*versions, f"numpy {np.__version__}"])


def run_details(elapsed_s: float, device: str = "cpu", extra_packages: tuple[str, ...] = ()) -> str:
    """Markdown bullet list: command, date, wall time, machine, packages, commit."""
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    return "\n".join(
        [
            f"- Command: `{command}`",
            f"- Date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}; "
            f"wall time {elapsed_s / 60:.1f} min",
            f"- Machine: {machine_description(device)}",
            f"- Packages: {package_versions(extra_packages)}",
            f"- Commit: {git_revision()}",
        ]
    )


def matmul_rate(threads: int, device: str = "cpu") -> float:
    """Float32 FLOP/s of a 2048 x 512 by 512 x 512 product on ``device`` (the shape of a batched MLP layer).

    Sets torch's CPU threads to ``threads``. On a GPU it waits for the products to finish before reading the clock.
    The operands come from a private generator: torch's global random stream is left as it was.
    """
    torch.set_num_threads(threads)
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(2048, 512, device=device, generator=generator)
    b = torch.randn(512, 512, device=device, generator=generator)

    def sync() -> None:
        if a.is_cuda:
            torch.cuda.synchronize(a.device)

    for _ in range(5):
        a @ b
    sync()
    start, n = time.perf_counter(), 50
    for _ in range(n):
        a @ b
    sync()
    return 2 * 2048 * 512 * 512 * n / (time.perf_counter() - start)


def run_python(python: str, args: list[str], env: dict | None = None, json_output: bool = True) -> dict:
    """Run ``python args...`` and return the JSON object its last stdout line holds (or ``{"error": ...}``).

    With ``json_output=False`` the child's output is ignored and success returns ``{}``.

    The child starts in a neutral folder: ``python -c`` puts the working
    directory first on ``sys.path``, so started from this checkout a baseline
    environment's Python would import this checkout's skprobae instead of its
    own. Paths in ``args`` must therefore be absolute.
    """
    out = subprocess.run(
        [python, *args], capture_output=True, text=True, env=env, check=False, cwd=tempfile.gettempdir()
    )
    if out.returncode:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1][:200]}
    return json.loads(out.stdout.strip().splitlines()[-1]) if json_output else {}


def write_report(path: Path, text: str) -> None:
    """Write a report to ``path`` (creating its folder) and print it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print("\n" + text)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


class PeakMemory:
    """The process's peak resident memory while the ``with`` body runs.

    ``hwm``: the kernel's ``VmHWM`` (peak resident set) at the end; ``peak``:
    the sampled peaks (every ``interval_s``) of ``VmRSS`` and of its
    anonymous (``RssAnon``) and file-backed (``RssFile``) parts.
    """

    FIELDS = ("VmRSS", "RssAnon", "RssFile")

    def __init__(self, interval_s: float = 0.02):
        self.interval_s, self._done = interval_s, False
        self.peak = dict.fromkeys(self.FIELDS, 0)
        self._thread = threading.Thread(target=self._sample, daemon=True)

    @staticmethod
    def status() -> dict:
        fields = {}
        with open("/proc/self/status") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                    fields[key] = int(value.split()[0]) * 1024
        return fields

    def _sample(self) -> None:
        while not self._done:
            now = self.status()
            for key in self.FIELDS:
                self.peak[key] = max(self.peak[key], now.get(key, 0))
            time.sleep(self.interval_s)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done = True
        self._thread.join()
        self.hwm = self.status()["VmHWM"]


class RunCache:
    """Finished runs in a JSON file, keyed by name, kept only while ``settings`` match; lets a stopped run resume.

    ``enabled=False`` keeps everything in memory (quick runs must not overwrite a full run's cache).
    """

    def __init__(self, path: Path, settings: str, enabled: bool = True):
        self.path, self.enabled = path, enabled
        stored = json.loads(path.read_text()) if enabled and path.exists() else {}
        self.runs: dict = stored.get("runs", {}) if stored.get("settings") == settings else {}
        self.settings = settings

    def __contains__(self, key: str) -> bool:
        return key in self.runs

    def __getitem__(self, key: str) -> dict:
        return self.runs[key]

    def get_or_run(self, key: str, compute: Callable[[], dict]) -> dict:
        """The cached result of ``key``, or ``compute()``'s, saved at once."""
        if key not in self.runs:
            self.runs[key] = compute()
            if self.enabled:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self.path.write_text(json.dumps({"settings": self.settings, "runs": self.runs}))
        return self.runs[key]
