"""Per-run overhead of each executor against local: the same tiny grid through every executor.

    python benchmarks/executor_overhead.py [--epochs 1] [--repeats 1]

Runs `hywu-bench compare --scenario split-digits --strategies naive,lwf --seeds 0,1 --set epochs=E` (4 runs
of about a second each, so the overhead dominates) once per executor, each into a fresh results folder,
as a separate command, the way a user runs it: local (one process), local --workers 2, submitit-local
(one process per run), and ray on a loopback head started here first (its start-up is reported apart, a
cluster is started once for many sweeps). For each it prints the command's wall time, the sweep's own
wall time (from the summary line: the runs and the report, without the command's start-up), seconds per
run, and the overhead per run against local. The numbers swing with other load: run it alone.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RUNS = 4
EXECUTORS = {"local": [], "local --workers 2": ["--workers", "2"], "submitit-local": ["--executor", "submitit-local"],
             "ray (loopback head)": ["--executor", "ray"]}


def compare(out: Path, epochs: int, extra: list[str]) -> tuple[float, float]:
    command = [sys.executable, "-c", "from hywu_bench.cli import main; main()", "compare",
               "--scenario", "split-digits", "--strategies", "naive,lwf", "--seeds", "0,1",
               "--set", f"epochs={epochs}", "--set", "device=cpu", "--out", str(out), "-q", *extra]
    t0 = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(extra) or 'local'} failed:\n{done.stdout}\n{done.stderr[-3000:]}")
    match = re.search(r"4 runs: 4 done.*wall time ([\d.]+) s", done.stdout)
    if not match:
        raise SystemExit(f"unexpected summary:\n{done.stdout}")
    return wall, float(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1, help="best of N per executor")
    args = parser.parse_args()
    from hywu_bench.executors.ray_loopback import loopback_head

    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
    rows = []
    with tempfile.TemporaryDirectory(prefix="hywu-overhead-") as tmp:
        root = Path(tmp)
        t0 = time.perf_counter()
        with loopback_head(num_cpus=os.cpu_count() or 2, scratch=root, log=root / "head.log") as address:
            head_s = time.perf_counter() - t0
            for name, extra in EXECUTORS.items():
                extra = extra + (["--executor-opt", f"address={address}"] if "ray" in name else [])
                best = min((compare(root / f"{name.split()[0]}-{k}-{time.time_ns()}", args.epochs, extra)
                            for k in range(args.repeats)), key=lambda t: t[1])
                rows.append((name, *best))
                print(f"  {name}: command {best[0]:.1f} s, sweep {best[1]:.1f} s", flush=True)
    local = rows[0][2]
    print(f"\nray head start-up (once per cluster): {head_s:.1f} s")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n")
    print("| executor | command s | sweep s | s per run | overhead per run vs local | ratio |")
    print("|---|---|---|---|---|---|")
    for name, wall, sweep in rows:
        print(f"| {name} | {wall:.1f} | {sweep:.1f} | {sweep / RUNS:.2f} | {(sweep - local) / RUNS:+.2f} s | "
              f"{sweep / local:.2f} |")


if __name__ == "__main__":
    main()
