"""One run: build the scenario, backbone and strategy, train experience by experience, fill R.

    R[i, j] = accuracy on test experience j after training experience i
    before[j] = accuracy on experience j of the initial (random) backbone, for forward transfer

The shared warm start: the backbone is trained on experience 0 once per (scenario, options, seed,
backbone, hyperparameters), cached under `<out>/_warmstart/`, and every strategy starts from it. Each
strategy still sees experience 0 (with zero epochs), so replay fills its buffer, EWC computes its
importances and HY-WU stores its anchors from it; row 0 of R is then the same for every strategy, and
methods that adapt a frozen base (HY-WU, LoRA) have a trained base to adapt. `--no-warm-start` trains
every strategy from the random initialisation instead.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import platform
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
import torch
from torch import nn

from hywu_bench import checkpoint, memory, metrics, results
from hywu_bench.config import RunSpec
from hywu_bench.data import Scenario, ScenarioInfo, dataset_tensors, holdout
from hywu_bench.errors import RunDiverged, UserError
from hywu_bench.locking import RunLock
from hywu_bench.loggers import attach as attach_loggers
from hywu_bench.loggers import check as check_loggers
from hywu_bench.models import build_backbone
from hywu_bench.registry import SCENARIOS, STRATEGIES, load_builtins
from hywu_bench.settings import resolve_hyperparameters, used_settings
from hywu_bench.training import (
    AccuracyCollector,
    ContinualEvaluation,
    DivergencePlugin,
    HarnessTemplate,
    ProgressPlugin,
    TaskMaskPlugin,
    TrainingSetup,
)

log = logging.getLogger(__name__)


class Reporter(Protocol):
    def start(self, spec: RunSpec, info: ScenarioInfo) -> None: ...
    def epoch(self, experience: int, epoch: int, n_epochs: int) -> None: ...
    def experience(self, experience: int, accuracies: list[float], seconds: float) -> None: ...
    def finish(self) -> None: ...


class LogReporter:
    """Plain log lines (the CLI uses a progress bar on a terminal instead)."""

    def start(self, spec: RunSpec, info: ScenarioInfo) -> None:
        log.info("run %s on %s, seed %d, %d experiences", spec.run_name, info.name, spec.seed, info.n_experiences)

    def epoch(self, experience: int, epoch: int, n_epochs: int) -> None:
        log.debug("experience %d epoch %d/%d", experience, epoch, n_epochs)

    def experience(self, experience: int, accuracies: list[float], seconds: float) -> None:
        log.info("experience %d done in %.1fs: %s", experience, seconds, " ".join(f"{a:.3f}" for a in accuracies))

    def finish(self) -> None:
        pass


@dataclass
class RunRecord:
    spec: RunSpec
    path: Path
    before: np.ndarray
    R: np.ndarray
    metrics: dict[str, Any]
    reused: bool = False  # True when a complete run already on disk was returned


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        from avalanche.training.determinism.rng_manager import RNGManager

        RNGManager.set_random_seeds(seed)
    except ImportError:  # pragma: no cover
        pass


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device '{name}' requested but CUDA is not available here; use --device cpu or auto.")
    return torch.device(name)


def library_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for pkg in ("hywu-bench", "torch", "avalanche-lib", "numpy", "pandas"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    return out


@torch.no_grad()
def evaluate_model(model: nn.Module, stream: Any, info: ScenarioInfo, device: torch.device,
                   batch_size: int) -> list[float]:
    """Plain accuracy per experience of a bare backbone (used for the 'before' row)."""
    was_training = model.training
    model.eval()
    mask = TaskMaskPlugin(info).allowed.to(device) if info.task_aware else None
    accs = []
    for exp in stream:
        tensors = dataset_tensors(exp.dataset)
        x, y, t = tensors[0], tensors[1], tensors[-1]
        correct = 0
        for s in range(0, len(y), batch_size):
            out = model(x[s:s + batch_size].to(device))
            if mask is not None:
                out = out.masked_fill(~mask[t[s:s + batch_size].to(device)], -1e4)
            correct += int((out.argmax(1).cpu() == y[s:s + batch_size]).sum())
        accs.append(correct / max(len(y), 1))
    model.train(was_training)
    return accs


def warm_start_key(spec: RunSpec) -> str:
    keys = ("scenario", "seed", "backbone", "epochs", "batch_size", "lr", "optimizer", "momentum", "scenario_options")
    key = {**{k: getattr(spec, k) for k in keys}, "input": spec.input_fingerprint()}
    if spec.validation:  # trained on the training part only (unset: the keys of caches made before the field)
        key["validation"] = spec.validation
    if spec.data_path != "tensor":  # a data-path check trains its own warm start through Avalanche's loaders
        key["data_path"] = spec.data_path
    blob = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def warm_start(model: nn.Module, scenario: Scenario, spec: RunSpec, device: torch.device, out: Path,
               reporter: Reporter) -> Path:
    """Train the backbone on experience 0 once and cache it; load the cache when it exists."""
    path = out / "_warmstart" / f"{spec.scenario_label}-{warm_start_key(spec)}.pt"
    if path.exists():
        try:
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            return path
        except Exception as err:  # a corrupt cache is retrained, never trusted
            log.warning("warm-start cache %s unreadable (%s); retraining it", path, err)
    plugins = [DivergencePlugin(), ProgressPlugin(reporter.epoch)]
    if scenario.info.task_aware:
        plugins.insert(0, TaskMaskPlugin(scenario.info))
    setup = TrainingSetup(spec, scenario.info, device, spec.epochs, spec.batch_size, spec.lr, plugins)
    trainer = HarnessTemplate(model=model, optimizer=setup.optimizer(model.parameters()), **setup.template_kwargs())
    trainer.data_path = spec.data_path
    seed_everything(spec.seed)
    trainer.train(scenario.train_stream[0])
    model.to("cpu")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    torch.save(model.state_dict(), tmp)
    os.replace(tmp, path)
    return path


def trainable_in_optimizer(strategy: Any) -> int:
    seen, total = set(), 0
    for group in strategy.optimizer.param_groups if strategy.optimizer is not None else ():  # SLDA has none
        for p in group["params"]:
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                total += p.numel()
    return total


FAILED = "FAILED"


def run(spec: RunSpec, out: str | Path = "results", *, overwrite: bool = False, resume: bool = False,
        reporter: Reporter | None = None, job_id: str | None = None, loggers: Sequence[str] = ()) -> RunRecord:
    """Run `spec`, or return the complete identical run already on disk.

    An incomplete run folder is continued from its last checkpoint with `resume=True` and started over
    otherwise. A diverging run raises `RunDiverged` after writing its partial matrix and a FAILED marker.
    `job_id`: a cluster engine's id for this job, kept across its requeues (see `locking.RunLock`).
    `loggers`: Avalanche loggers writing under the run folder (`hywu_bench.loggers`); not part of the run's
    identity, so a complete run is reused whatever loggers are asked for.
    """
    loggers = check_loggers(loggers)
    load_builtins()
    reporter = reporter or LogReporter()
    out = Path(out)
    results.check_writable(out)
    stored = results.verdict(spec, out, overwrite=overwrite)
    if stored.refused:
        raise UserError(stored.reason)
    if stored.kind == "reuse":
        run = results.load_run(stored.path)
        return RunRecord(spec, stored.path, run.before, run.R, run.metrics, reused=True)
    with RunLock(stored.path, job_id):
        return _run_locked(spec, out, stored.path, overwrite=overwrite, resume=resume, reporter=reporter,
                           loggers=loggers)


def _prepare(spec: RunSpec) -> tuple[Scenario, RunSpec, torch.device]:
    seed_everything(spec.seed)
    scenario: Scenario = SCENARIOS.build(spec.scenario, spec, **spec.scenario_options)
    if spec.validation:
        try:
            scenario = holdout(scenario, spec.validation, spec.seed)
        except ValueError as err:
            raise UserError(f"--set validation={spec.validation:g}: {err}") from None
    entry = STRATEGIES.get(spec.strategy)
    if scenario.info.setting not in entry.settings:
        raise UserError(f"strategy '{entry.name}' does not support the {scenario.info.setting}-incremental setting "
                        f"of '{spec.scenario}' (it supports: {', '.join(entry.settings)}).")
    return scenario, resolve_hyperparameters(spec, scenario.info), select_device(spec.device)


def _config(spec: RunSpec, resolved: RunSpec, info: ScenarioInfo, device: torch.device, warm: Path | None) -> dict:
    used = used_settings(resolved)
    return {"format_version": results.FORMAT_VERSION, "run_name": spec.run_name,
            "requested_spec": spec.to_dict(), "input_fingerprint": spec.input_fingerprint(),
            "spec": used["spec"], "scenario": info.to_dict(),
            "strategy": {"name": STRATEGIES.get(spec.strategy).name, "options": used["options"]},
            "memory_budget": _budget_config(resolved),
            "warm_start": str(warm) if warm else None, "device": str(device),
            "versions": library_versions(), "host": platform.node()}


def _budget_config(resolved: RunSpec) -> dict | None:
    """The budget and the option it sized (e.g. {"bytes": 1513984, "sized": {"mem_size": 480}})."""
    if resolved.memory_budget is None:
        return None
    budget = STRATEGIES.get(resolved.strategy).budget
    option = budget.option if budget is not None else None
    sized = {option: resolved.strategy_options[option]} if option in resolved.strategy_options else {}
    return {"bytes": resolved.memory_budget, "sized": sized}


def _run_locked(spec: RunSpec, out: Path, path: Path, *, overwrite: bool, resume: bool,
                reporter: Reporter, loggers: Sequence[str] = ()) -> RunRecord:
    scenario, resolved, device = _prepare(spec)
    info = scenario.info
    model = build_backbone(resolved.backbone, info.input_shape, info.n_classes, resolved.seed)
    before = np.array(evaluate_model(model, scenario.test_stream, info, torch.device("cpu"), resolved.eval_batch_size))
    collector = AccuracyCollector()
    plugins = [collector, DivergencePlugin(), ProgressPlugin(reporter.epoch)]
    if info.task_aware:
        plugins.insert(0, TaskMaskPlugin(info))
    evaluation = ContinualEvaluation(scenario.test_stream, resolved.eval_every) if resolved.eval_every else None
    if evaluation is not None:
        plugins.append(evaluation)
    setup = TrainingSetup(resolved, info, device, resolved.epochs, resolved.batch_size, resolved.lr, plugins)
    # A builder's own checks (e.g. a setting it cannot run) fail here, before the warm start trains.
    check = STRATEGIES.build(spec.strategy, copy.deepcopy(model), setup, **resolved.strategy_options)
    if evaluation is not None and getattr(check, "offline", False):
        log.warning("eval_every=%d ignored: '%s' trains offline, there is no stream to evaluate during",
                    resolved.eval_every, spec.strategy)
        evaluation.every = 0
        evaluation = None

    reporter.start(resolved, info)
    warm = warm_start(model, scenario, resolved, device, out, reporter) if resolved.warm_start else None
    seed_everything(resolved.seed)
    strategy = STRATEGIES.build(spec.strategy, model, setup, **resolved.strategy_options)
    strategy.precision = resolved.precision
    strategy.data_path = resolved.data_path

    T = info.n_experiences
    progress = {"done": 0, "R": np.full((T, T), np.nan).tolist(), "per_experience": []}
    config = _config(spec, resolved, info, device, warm)
    stored = results.verdict(spec, out, overwrite=overwrite, resume=resume, resolved=resolved)
    if stored.refused:
        raise UserError(stored.reason)
    if stored.kind == "resume":
        progress = checkpoint.restore(checkpoint.load(path), strategy, spec.strategy)
        if evaluation is not None:
            evaluation.load_state(progress.get("curve"))
        log.info("resuming %s after experience %d", path, progress["done"])
    else:
        _clear_run_folder(path)
        results.atomic_write_json(path / "config.json", config)

    attached = attach_loggers(strategy, loggers, path, resolved)
    try:
        _train_stream(strategy, scenario, resolved, collector, progress, path, reporter, evaluation)
    except RunDiverged:
        curve = evaluation.state() if evaluation is not None else None  # up to the diverging step
        if curve is not None and curve["rows"]:
            results.atomic_write_text(path / results.CURVE, results.curve_to_csv(evaluation.rows))
        _write_results(resolved, path, before, np.array(progress["R"], dtype=float), progress["per_experience"], FAILED,
                       curve)
        raise
    finally:
        attached.close()
    _probe_interference(strategy, scenario, setup, path)
    return _finish(resolved, path, before, progress, reporter)


def _probe_interference(strategy: Any, scenario: Scenario, setup: TrainingSetup, path: Path) -> None:
    """Gradient conflict and operator separation after the final experience, stored beside the run."""
    from hywu_bench import interference

    try:
        result = interference.probe(strategy, scenario, setup)
    except Exception as err:  # a probe must never cost a finished run its results
        log.warning("interference probes failed for %s: %s: %s", path, type(err).__name__, err)
        return
    interference.save(path / interference.FILE_NAME, result)


def _clear_run_folder(path: Path) -> None:
    """An incomplete (or overwritten) run is started over; the lock file stays."""
    if path.exists():
        import shutil

        for child in path.iterdir():
            if child.name != ".lock":
                shutil.rmtree(child) if child.is_dir() else child.unlink()


def _train_stream(strategy: Any, scenario: Scenario, spec: RunSpec, collector: AccuracyCollector,
                  progress: dict, path: Path, reporter: Reporter, evaluation: ContinualEvaluation | None) -> None:
    info, T = scenario.info, scenario.info.n_experiences
    offline = getattr(strategy, "offline", False)
    stream = [scenario.train_stream] if offline else list(scenario.train_stream)
    R = np.array(progress["R"], dtype=float)
    for i in range(progress["done"], len(stream)):
        row = T - 1 if offline else i
        epochs = strategy.train_epochs
        # the warm start already learnt experience 0 (unless the strategy must learn it itself)
        skip = spec.warm_start and row == 0 and not getattr(strategy, "relearn_first", False)
        strategy.train_epochs = 0 if skip else epochs
        t0 = time.perf_counter()
        try:
            strategy.train(stream[i])
        finally:
            strategy.train_epochs = epochs
        train_s = time.perf_counter() - t0
        collector.reset()
        t1 = time.perf_counter()
        strategy.eval(scenario.test_stream)
        eval_s = time.perf_counter() - t1
        R[row] = collector.accuracies(T)
        n_seen = sum(e.n_train for e in info.experiences) if offline else info.experiences[i].n_train
        trained = 0 if skip else epochs
        kept = strategy.memory_bytes()
        record = {"experience": row, "train_seconds": train_s, "eval_seconds": eval_s,
                  "samples_per_second": n_seen * trained / train_s if trained and train_s > 0 else None,
                  "trainable_parameters": trainable_in_optimizer(strategy),
                  "stored_memory_bytes": kept.stored, "memory": kept.to_dict(), "accuracies": R[row].tolist()}
        progress["per_experience"].append(record)
        progress["R"], progress["done"] = R.tolist(), i + 1
        if evaluation is not None:  # the boundary evaluation (row `row` of R) closes the experience's curve
            evaluation.add(evaluation.iteration, row, R[row].tolist())
            progress["curve"] = evaluation.state()
        checkpoint.save(path, strategy, progress)
        if evaluation is not None:
            results.atomic_write_text(path / results.CURVE, results.curve_to_csv(evaluation.rows))
        results.append_event(path / "events.jsonl", {"event": "experience_done", **record})
        reporter.experience(row, R[row].tolist(), train_s + eval_s)


def _write_results(spec: RunSpec, path: Path, before: np.ndarray, R: np.ndarray, per_exp: list[dict],
                   marker: str, curve: dict | None = None) -> dict:
    summary = metrics.summary(R, before)
    if curve and curve["rows"]:  # continual evaluation (eval_every > 0): the stability gap's two numbers
        rows = curve["rows"]
        summary.update(metrics.stability_summary(metrics.EvaluationCurve(
            np.array([r[0] for r in rows]), np.array([r[1] for r in rows]), np.array([r[2] for r in rows]))))
        summary.update({"curve_evaluations": len(rows), "curve_eval_seconds": curve["seconds"]})
    trained = [r["samples_per_second"] for r in per_exp if r["samples_per_second"]]
    summary.update({
        "train_seconds": sum(r["train_seconds"] for r in per_exp),
        "wall_seconds": sum(r["train_seconds"] + r["eval_seconds"] for r in per_exp),
        "samples_per_second": float(np.mean(trained)) if trained else None,
        "trainable_parameters": per_exp[-1]["trainable_parameters"] if per_exp else None,
        "stored_memory_bytes": per_exp[-1]["stored_memory_bytes"] if per_exp else None,
        **memory.memory_summary(spec, per_exp, sizable=STRATEGIES.get(spec.strategy).budget is not None),
        "forgetting_per_experience": metrics.forgetting_per_experience(R).tolist(),
        "step_interference": metrics.step_interference(R).tolist(),
        "per_experience": per_exp,
    })
    results.atomic_write_text(path / "accuracy_matrix.csv", results.matrix_to_csv(before, R))
    results.atomic_write_json(path / "metrics.json", summary)
    results.atomic_write_text(path / marker, time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")
    return summary


def _finish(spec: RunSpec, path: Path, before: np.ndarray, progress: dict, reporter: Reporter) -> RunRecord:
    R = np.array(progress["R"], dtype=float)
    summary = _write_results(spec, path, before, R, progress["per_experience"], results.COMPLETE, progress.get("curve"))
    checkpoint.remove(path)  # the finished run no longer needs it
    reporter.finish()
    return RunRecord(spec, path, before, R, summary)
