"""Per-experience checkpoints as plain state (tensors, numbers, strings, lists, dicts): no pickled objects.

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
from torch import Tensor

from hywu_bench import results
from hywu_bench.data import dataset_tensors
from hywu_bench.errors import UserError

CHECKPOINT = results.CHECKPOINT


# ---------------------------------------------------------------------------------------------------
# Plain <-> objects for the values Avalanche's plugins hold.

def to_plain(value: Any) -> Any:
    from avalanche.training.utils import ParamData

    if isinstance(value, Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, ParamData):
        return {"__paramdata__": value.name, "data": value.data.detach().cpu().clone()}
    if hasattr(value, "_flat_data"):  # an Avalanche dataset (a buffer of stored inputs)
        tensors = dataset_tensors(value)
        if tensors is None:
            raise TypeError("cannot checkpoint a dataset that is not made of tensors")
        return {"__dataset__": [t.clone() for t in tensors]}
    if isinstance(value, set):
        return {"__set__": sorted(value)}
    if isinstance(value, dict):
        return {"__dict__": [[to_plain(k), to_plain(v)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return {"__list__" if isinstance(value, list) else "__tuple__": [to_plain(v) for v in value]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot checkpoint a value of type {type(value).__name__}")


def from_plain(value: Any, device: torch.device | str = "cpu") -> Any:
    from avalanche.training.utils import ParamData

    if isinstance(value, Tensor):
        return value.to(device)
    if isinstance(value, dict):
        if "__paramdata__" in value:
            return ParamData(value["__paramdata__"], init_tensor=value["data"].to(device), device=device)
        if "__dataset__" in value:
            return tensors_to_dataset(value["__dataset__"])
        if "__set__" in value:
            return set(value["__set__"])
        if "__dict__" in value:
            return {from_plain(k, device): from_plain(v, device) for k, v in value["__dict__"]}
        if "__list__" in value:
            return [from_plain(v, device) for v in value["__list__"]]
        if "__tuple__" in value:
            return tuple(from_plain(v, device) for v in value["__tuple__"])
    return value


def tensors_to_dataset(tensors: list[Tensor]) -> Any:
    from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset

    *data, tasks = tensors
    distinct = tasks.unique()
    # One task label is stored as Avalanche stores it for an experience, so the two concatenate.
    task_labels = int(distinct[0]) if len(distinct) == 1 else tasks.tolist()
    return _make_taskaware_tensor_classification_dataset(*data, task_labels=task_labels, targets=data[1])


def _defaultdict(factory: Any, plain: dict) -> defaultdict:
    out = defaultdict(factory)
    out.update(plain)
    return out


# ---------------------------------------------------------------------------------------------------
# Avalanche's plugins.

def plugin_state(plugin: Any, strategy: Any) -> dict[str, Any] | None:
    from avalanche.training.plugins import (AGEMPlugin, EWCPlugin, LwFPlugin, ReplayPlugin,
                                            SynapticIntelligencePlugin)

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
    return None


def load_plugin_state(plugin: Any, state: dict[str, Any] | None, strategy: Any) -> None:
    from avalanche.training.plugins import (AGEMPlugin, EWCPlugin, LwFPlugin, ReplayPlugin,
                                            SynapticIntelligencePlugin)
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


# ---------------------------------------------------------------------------------------------------
# Whole checkpoints.

def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {"python": to_plain(random.getstate()), "torch": torch.random.get_rng_state(),
            "numpy": {"key": np_state[0], "pos": int(np_state[2]), "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                      "has_gauss": int(np_state[3]), "gauss": float(np_state[4])}}


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(from_plain(state["python"]))
    torch.random.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["key"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))


def save(run_path: Path, strategy: Any, progress: dict[str, Any]) -> None:
    """Everything needed to continue after the last finished experience; written atomically."""
    state = {"progress": progress, "model": strategy.model.state_dict(), "optimizer": strategy.optimizer.state_dict(),
             "strategy": strategy.strategy_state(), "rng": rng_state()}
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


def restore(state: dict[str, Any], strategy: Any) -> dict[str, Any]:
    strategy.model.load_state_dict(state["model"])
    if getattr(strategy, "optimized_param_id", False) is None:
        # A fresh Avalanche template gathers the model's parameters into the optimizer, and wipes its
        # state, the first time it trains. The checkpointed run did that at experience 0: do it now, so
        # the saved optimizer state (Adam moments, momentum) fits and is not wiped at the next experience.
        strategy.make_optimizer(reset_optimizer_state=True)
    strategy.optimizer.load_state_dict(state["optimizer"])
    strategy.load_strategy_state(state["strategy"])
    set_rng_state(state["rng"])
    return state["progress"]
