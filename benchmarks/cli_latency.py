"""How fast the front door answers: `hywu-bench list` (and a one-line error) against importing torch.

Each command runs as a whole process (interpreter start-up included), several times, interleaved so both
sides of the ratio see the same machine load; the median of each is compared. Targets: `list` and a typo's
error take at most 0.3 of `python -c "import torch"` (the cost every command paid when registering the
built-ins imported torch and Avalanche).

    python benchmarks/cli_latency.py [--repeats 7]

Prints one line per command, then `list_vs_torch_import X` last.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time


def timed(command: list[str]) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode not in (0, 2):
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    cli = shutil.which("hywu-bench")
    if cli is None:
        raise SystemExit("hywu-bench is not on PATH: run `pip install -e .` first.")
    commands = {
        "import torch": [sys.executable, "-c", "import torch"],
        "hywu-bench list": [cli, "list"],
        "hywu-bench run --scenario nope": [cli, "run", "--scenario", "nope"],
        "hywu-bench run --set beta=-1": [cli, "run", "--set", "beta=-1"],
        "hywu-bench --help": [cli, "--help"],
    }
    for command in commands.values():  # warm the file cache
        timed(command)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeats):
        for name, command in commands.items():
            times[name].append(timed(command))
    median = {name: statistics.median(values) for name, values in times.items()}
    for name, seconds in median.items():
        print(f"{name:<34} {seconds:6.3f} s  (median of {args.repeats})")
    print(f"typo_vs_torch_import {median['hywu-bench run --scenario nope'] / median['import torch']:.3f}")
    print(f"list_vs_torch_import {median['hywu-bench list'] / median['import torch']:.3f}")


if __name__ == "__main__":
    main()
