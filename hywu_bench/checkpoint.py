"""Per-experience checkpoints as plain state (tensors, numbers, strings, lists, dicts): no pickled objects.

A strategy resumes bit-identically or not at all: one whose state cannot be made plain (a declared
`resume_refusal`, or a value `plain.to_plain` cannot convert, or a model whose structure grew) gets a
checkpoint with its progress and the reason only, and `restore` refuses `--resume` in one line.

`torch.save` writes them and `torch.load(..., weights_only=True)` reads them, so loading a checkpoint can
never run code. What a strategy keeps between experiences (replay buffers, EWC importances, LwF's old
model, SI's path integrals, A-GEM's episodic memory, HY-WU's anchors) is turned into plain state here for
Avalanche's plugins, and by `strategy_state()` / `load_strategy_state()` for the harness's own strategies.
"""

from __future__ import annotations

import copy
import os
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hywu_bench import results
from hywu_bench.errors import UserError
from hywu_bench.plain import capture, from_plain, load_module, restore_vars, tensors_to_dataset, to_plain  # noqa: F401

CHECKPOINT = results.CHECKPOINT


def _defaultdict(factory: Any, plain: dict) -> defaultdict:
    out = defaultdict(factory)
    out.update(plain)
    return out


# ---------------------------------------------------------------------------------------------------
# Avalanche's plugins.

def plugin_state(plugin: Any, strategy: Any) -> dict[str, Any] | None:
    from avalanche.training.plugins import AGEMPlugin, EWCPlugin, LwFPlugin, ReplayPlugin, SynapticIntelligencePlugin
    from avalanche.training.plugins.clock import Clock

    if isinstance(plugin, Clock):  # EWC and others key their state by the experience counter
        return {"counters": {k: v for k, v in vars(plugin).items() if type(v) is int}}
    if isinstance(plugin, ReplayPlugin):
        policy = plugin.storage_policy
        groups = {k: {"buffer": g.buffer if len(g.buffer) else None,
                      "weights": g._buffer_weights.clone(), "max_size": g.max_size}
                  for k, g in policy.buffer_groups.items()}
        return {"groups": to_plain(groups), "max_size": policy.max_size,
                "seen_classes": to_plain(getattr(policy, "seen_classes", set())),
                "num_exps": getattr(policy, "_num_exps", 0)}
    if isinstance(plugin, EWCPlugin):
        return {"saved_params": to_plain(dict(plugin.saved_params)), "importances": to_plain(dict(plugin.importances))}
    if isinstance(plugin, LwFPlugin):
        lwf = plugin.lwf
        prev = lwf.prev_model.state_dict() if lwf.prev_model is not None else None
        return {"prev_model": prev, "expcount": lwf.expcount,
                "prev_classes_by_task": to_plain(dict(lwf.prev_classes_by_task))}
    if isinstance(plugin, SynapticIntelligencePlugin):
        return {"ewc_data": to_plain(plugin.ewc_data), "syn_data": to_plain(plugin.syn_data)}
    if isinstance(plugin, AGEMPlugin):
        return {"buffers": to_plain(plugin.buffers)}
    if hasattr(plugin, "state_dict") and hasattr(plugin, "load_state_dict"):
        return {"state_dict": plugin.state_dict()}
    if _keeps_nothing(plugin):
        return None
    # Any other plugin: all its fields but those the strategy says it rebuilds itself, or TypeError.
    skip = set(getattr(strategy, "not_state", ()))
    return {"vars": capture(plugin, [k for k in vars(plugin) if k not in skip])}


def _keeps_nothing(plugin: Any) -> bool:
    """The harness's own plugins, Avalanche's evaluation and periodic-evaluation plugins: nothing a later
    experience depends on."""
    from avalanche.training.plugins import EvaluationPlugin
    from avalanche.training.templates.base_sgd import PeriodicEval

    return isinstance(plugin, (EvaluationPlugin, PeriodicEval)) or getattr(plugin, "keeps_nothing", False)


def load_plugin_state(plugin: Any, state: dict[str, Any] | None, strategy: Any) -> None:
    from avalanche.training.plugins import AGEMPlugin, EWCPlugin, LwFPlugin, ReplayPlugin, SynapticIntelligencePlugin
    from avalanche.training.storage_policy import ReservoirSamplingBuffer
    from avalanche.training.utils import ParamData  # noqa: F401

    if state is None:
        return
    from avalanche.training.plugins.clock import Clock

    device = strategy.device
    if isinstance(plugin, Clock):
        for key, value in state["counters"].items():
            setattr(plugin, key, value)
    elif isinstance(plugin, ReplayPlugin):
        policy = plugin.storage_policy
        policy.max_size = state["max_size"]
        policy.buffer_groups = {}
        for key, g in from_plain(state["groups"]).items():
            group = ReservoirSamplingBuffer(g["max_size"])
            if g["buffer"] is not None:
                group.buffer = g["buffer"]
            group._buffer_weights = g["weights"]
            policy.buffer_groups[key] = group
        if hasattr(policy, "seen_classes"):
            policy.seen_classes = from_plain(state["seen_classes"])
        if hasattr(policy, "_num_exps"):
            policy._num_exps = state["num_exps"]
    elif isinstance(plugin, EWCPlugin):
        plugin.saved_params = _defaultdict(dict, from_plain(state["saved_params"], device))
        plugin.importances = _defaultdict(dict, from_plain(state["importances"], device))
    elif isinstance(plugin, LwFPlugin):
        lwf = plugin.lwf
        if state["prev_model"] is not None:
            lwf.prev_model = copy.deepcopy(strategy.model)
            lwf.prev_model.load_state_dict(state["prev_model"])
        lwf.expcount = state["expcount"]
        lwf.prev_classes_by_task = _defaultdict(set, from_plain(state["prev_classes_by_task"]))
    elif isinstance(plugin, SynapticIntelligencePlugin):
        plugin.ewc_data = from_plain(state["ewc_data"], device)
        plugin.syn_data = from_plain(state["syn_data"], device)
    elif isinstance(plugin, AGEMPlugin):
        buffers = from_plain(state["buffers"])
        plugin.buffers = []
        if buffers:  # rebuild the episodic memory's loader as update_memory would
            last = buffers.pop()
            plugin.buffers = buffers
            saved = plugin.patterns_per_experience
            plugin.update_memory(last)  # appends `last` (already at most patterns_per_experience long)
            plugin.patterns_per_experience = saved
    elif "state_dict" in state:
        plugin.load_state_dict(state["state_dict"])
    elif "vars" in state:
        restore_vars(plugin, state["vars"], strategy)


# ---------------------------------------------------------------------------------------------------
# Whole checkpoints.

def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {"python": to_plain(random.getstate()), "torch": torch.random.get_rng_state(),
            "numpy": {"key": np_state[0], "pos": int(np_state[2]),
                      "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                      "has_gauss": int(np_state[3]), "gauss": float(np_state[4])}}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(from_plain(state["python"]))
    torch.random.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["key"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))


def save(run_path: Path, strategy: Any, progress: dict[str, Any]) -> None:
    """Everything needed to continue after the last finished experience; written atomically. A strategy
    whose state cannot be plain (`resume_refusal`, or a value `capture` cannot turn into tensors) writes
    its progress and the reason only, and `restore` refuses to resume it."""
    state = {"progress": progress, "rng": rng_state()}
    refusal = getattr(strategy, "resume_refusal", None)
    if refusal is None:
        try:
            # The model's state_dict; with its modules' Python fields, modes and requires_grad flags for a
            # strategy that asks (Avalanche's classes keep state there: class means, PackNet's masks' state).
            fields = getattr(strategy, "capture_model_fields", False)
            model = to_plain(strategy.model) if fields else strategy.model.state_dict()
            state.update(strategy=strategy.strategy_state(), model=model)
        except TypeError as err:
            refusal = f"the checkpoint cannot save {err}"
    if refusal is None:
        state["optimizer"] = strategy.optimizer.state_dict() if strategy.optimizer is not None else None
    else:
        state = {"progress": progress, "cannot_resume": refusal}
    path = run_path / CHECKPOINT
    tmp = path.with_name(f".{CHECKPOINT}.{os.getpid()}.tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    except BaseException:  # a requeue signal (SystemExit) or an error mid-write leaves no stray file behind
        tmp.unlink(missing_ok=True)
        raise


def remove(run_path: Path) -> None:
    """The checkpoint of a finished run, and any half-written one a killed attempt left."""
    (run_path / CHECKPOINT).unlink(missing_ok=True)
    for stray in run_path.glob(f".{CHECKPOINT}.*.tmp"):
        stray.unlink(missing_ok=True)


def load(run_path: Path) -> dict[str, Any]:
    path = run_path / CHECKPOINT
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(f"checkpoint '{path}' is corrupt or unreadable ({type(err).__name__}); delete it, or "
                        f"rerun without --resume (or with --overwrite) to start this run over.") from None


def restore(state: dict[str, Any], strategy: Any, name: str = "") -> dict[str, Any]:
    """Continue `strategy` from `state`; a strategy that cannot resume exactly is refused in one line."""
    refusal = state.get("cannot_resume") or getattr(strategy, "resume_refusal", None)
    try:
        if refusal:
            raise TypeError(refusal)
        if "__module__" in state["model"]:
            load_module(strategy.model, state["model"], strategy)
        else:
            strategy.model.load_state_dict(state["model"])
        if getattr(strategy, "optimized_param_id", False) is None:
            # A fresh Avalanche template gathers the model's parameters into the optimizer, and wipes its
            # state, the first time it trains. The checkpointed run did that at experience 0: do it now, so
            # the saved optimizer state (Adam moments, momentum) fits and is not wiped at the next experience.
            strategy.make_optimizer(reset_optimizer_state=True)
        if state["optimizer"] is not None:
            strategy.optimizer.load_state_dict(state["optimizer"])
        strategy.load_strategy_state(state["strategy"])
    except TypeError as err:  # nothing is written before the run continues: refusing here changes nothing
        raise UserError(f"strategy '{name or type(strategy).__name__}' cannot resume exactly: {err}; rerun "
                        f"without --resume (or with --overwrite) to start the run over.") from None
    set_rng_state(state["rng"])
    return state["progress"]
