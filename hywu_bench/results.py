"""The on-disk results store: one folder per run, written atomically, loaded into pandas.

    <out>/<scenario>/<run name>/seed<k>/
        config.json          the resolved RunSpec, library versions, device
        accuracy_matrix.csv  rows before, after_exp0..; columns exp0..  (R with the "before" row b on top)
        metrics.json         ACC, BWT, forgetting, FWT, per-experience costs (min-ACC, WC-ACC with a curve)
        curve.csv            with eval_every > 0: accuracy on the experiences seen so far every N iterations
        events.jsonl         one line per finished experience
        COMPLETE             written last: a folder without it is an unfinished run

Every file is written to a temporary name in the same folder and renamed, so a killed run never leaves a
half-written file that looks complete. No pickles: JSON and CSV only. No torch import here.

`verdict` is the one rule for what may be done with a stored run (reuse it, resume it, start it over, or
refuse): the runner and every executor ask it.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd

from hywu_bench.errors import UserError

if TYPE_CHECKING:
    from hywu_bench.config import RunSpec

COMPLETE = "COMPLETE"
CHECKPOINT = "checkpoint.pt"
FORMAT_VERSION = 1


def run_dir(out: str | Path, scenario: str, run_name: str, seed: int) -> Path:
    return Path(out) / scenario / run_name / f"seed{seed}"


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(float(value)) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(_jsonable(data), indent=2, sort_keys=False) + "\n")


def append_event(path: Path, event: dict[str, Any]) -> None:
    """events.jsonl is append-only; a torn last line is ignored by `read_events`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps(_jsonable(event)) + "\n")
        fh.flush()


def read_events(path: Path) -> list[dict[str, Any]]:
    events = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return events


def matrix_to_csv(before: np.ndarray, R: np.ndarray) -> str:
    T = R.shape[0]
    frame = pd.DataFrame(
        np.vstack([before[None, :], R]),
        index=["before"] + [f"after_exp{i}" for i in range(T)],
        columns=[f"exp{j}" for j in range(T)],
    )
    return frame.to_csv(float_format="%.6f", index_label="row")


def matrix_from_csv(path: Path) -> tuple[np.ndarray, np.ndarray]:
    frame = pd.read_csv(path, index_col="row")
    values = frame.to_numpy(dtype=float)
    return values[0], values[1:]


CURVE = "curve.csv"  # the continual-evaluation curve of a run with eval_every > 0


def curve_to_csv(rows: list[tuple[int, int, list[float]]]) -> str:
    """iteration, experience (being trained), acc_exp0..acc_exp{T-1} (NaN where not evaluated); floats at
    full precision, so min-ACC and WC-ACC recomputed from the file equal those in metrics.json."""
    T = len(rows[0][2]) if rows else 0
    frame = pd.DataFrame([[i, k, *acc] for i, k, acc in rows],
                         columns=["iteration", "experience"] + [f"acc_exp{j}" for j in range(T)])
    return frame.to_csv(index=False)


def curve_from_csv(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(iterations (N,), experience being trained (N,), accuracies (N, T)) from a curve.csv."""
    frame = pd.read_csv(path)
    acc = frame[[c for c in frame.columns if c.startswith("acc_exp")]].to_numpy(dtype=float)
    return frame["iteration"].to_numpy(dtype=int), frame["experience"].to_numpy(dtype=int), acc


def is_complete(path: Path) -> bool:
    return (path / COMPLETE).exists()


def check_writable(out: str | Path) -> None:
    out = Path(out)
    probe_dir = out
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir() or not os.access(probe_dir, os.W_OK | os.X_OK):
        raise UserError(f"results folder '{out}' is not writable; choose another with --out DIR.")


@dataclass(frozen=True)
class Verdict:
    """What may be done with the run folder of a spec.

    new       no run there yet
    reuse     a complete run of exactly this request, made with the settings this version uses
    restart   an incomplete run to start over (or any run, with overwrite)
    resume    an incomplete run of this request with a checkpoint, asked to resume
    conflict  a run of another request (or an edited input file, or another format) is there
    stale     a complete run of this request, made with settings this version resolves differently
    """

    kind: Literal["new", "reuse", "restart", "resume", "conflict", "stale"]
    path: Path
    reason: str = ""  # one line saying why, for conflict and stale

    @property
    def refused(self) -> bool:
        return self.kind in ("conflict", "stale")


def verdict(spec: "RunSpec", out: str | Path, *, overwrite: bool = False, resume: bool = False,
            resolved: "RunSpec | None" = None) -> Verdict:
    """The one rule for a stored run. `resume`: continue an incomplete run from its checkpoint if it is
    this request's; `resolved`: the spec already resolved against its scenario (saves building it again)."""
    from hywu_bench.settings import stale_settings

    path = run_dir(out, spec.scenario_label, spec.run_name, spec.seed)
    complete = is_complete(path)
    if not path.is_dir() or not (path / "config.json").exists():
        return Verdict("new" if not complete else "restart", path)
    if overwrite:
        return Verdict("restart", path)
    if not complete and not (resume and (path / CHECKPOINT).exists()):
        return Verdict("restart", path)
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, ValueError):
        return Verdict("restart", path) if not complete else Verdict(
            "conflict", path, f"'{path}' has an unreadable config.json; pass --overwrite to replace the run.")
    doing = "resume" if not complete else "reuse"
    if config.get("format_version") != FORMAT_VERSION:
        return Verdict("conflict", path, f"'{path}' was written by an incompatible version of hywu-bench (format "
                                         f"{config.get('format_version')}, this is {FORMAT_VERSION}); "
                                         f"use another --out.")
    if (not spec.same_request(config.get("requested_spec"))
            or config.get("input_fingerprint") != spec.input_fingerprint()):
        if doing == "resume":
            return Verdict("conflict", path, f"cannot resume '{path}': it was started with a different "
                                             f"configuration; pass --overwrite to start it over.")
        return Verdict("conflict", path, f"a complete run with a different configuration exists at '{path}'; pass "
                                         f"--overwrite to replace it, or --name NAME to store this one beside it.")
    changed = stale_settings(spec, config, resolved)
    if changed and doing == "resume":
        return Verdict("stale", path, f"cannot resume '{path}': it was started with other settings than this "
                                      f"version of hywu-bench uses ({changed}); pass --overwrite to start it over.")
    if changed:
        return Verdict("stale", path, f"the complete run at '{path}' was made with other settings than this version "
                                      f"of hywu-bench uses for the same request ({changed}); pass --overwrite to run "
                                      f"it again, or use another --out to keep both.")
    return Verdict(doing, path)


@dataclass
class StoredRun:
    path: Path
    config: dict[str, Any]
    before: np.ndarray
    R: np.ndarray
    metrics: dict[str, Any]


def load_run(path: Path) -> StoredRun:
    config = json.loads((path / "config.json").read_text())
    before, R = matrix_from_csv(path / "accuracy_matrix.csv")
    metrics = json.loads((path / "metrics.json").read_text())
    return StoredRun(path, config, before, R, metrics)


def find_runs(out: str | Path) -> tuple[list[Path], list[Path]]:
    """(complete run folders, incomplete ones) below `out`."""
    complete, incomplete = [], []
    for config in sorted(Path(out).glob("*/*/seed*/config.json")):
        (complete if is_complete(config.parent) else incomplete).append(config.parent)
    return complete, incomplete


def load_results(out: str | Path) -> pd.DataFrame:
    """All complete runs as one long-format frame: one row per (run, after-row i, experience j)."""
    rows = []
    for path in find_runs(out)[0]:
        run = load_run(path)
        spec = run.config.get("spec", {})
        base = {
            "scenario": spec.get("scenario"),
            "strategy": run.config.get("run_name", spec.get("strategy")),
            "seed": spec.get("seed"),
        }
        for i in range(run.R.shape[0]):
            for j in range(run.R.shape[1]):
                rows.append({**base, "after": i, "exp": j, "acc": run.R[i, j], "before": run.before[j]})
    return pd.DataFrame(rows, columns=["scenario", "strategy", "seed", "after", "exp", "acc", "before"])
