"""Plain values <-> the objects strategies keep: what makes a checkpoint loadable with `weights_only=True`.

`to_plain` turns tensors, numbers, strings, lists, dicts, sets, Avalanche's `ParamData`, datasets made of
tensors, modules (their state_dict), Avalanche's storage policies (their fields) and other objects (their
fields) into tensors, numbers, strings, lists and dicts; anything else raises `TypeError` naming it, and
the strategy then refuses to resume (`checkpoint.restore`) rather than resume wrongly.

`from_plain` rebuilds what it can by itself (containers, datasets, storage policies, by class name and
only from `avalanche.training`); a module or other object is restored *into* the one a freshly built
strategy holds under the same name (`restore_vars`), never constructed from checkpoint data.
"""

from __future__ import annotations

import copy
import inspect
import logging
from collections import defaultdict
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from hywu_bench.data import dataset_tensors

_FACTORIES = {"dict": dict, "list": list, "set": set, "int": int, "float": float}


def to_plain(value: Any) -> Any:
    from avalanche.training.storage_policy import ExemplarsBuffer
    from avalanche.training.utils import ParamData

    if isinstance(value, Tensor):
        return value.detach().cpu().clone()
    if isinstance(value, ParamData):
        return {"__paramdata__": value.name, "data": value.data.detach().cpu().clone()}
    if hasattr(value, "_flat_data"):  # an Avalanche dataset (a buffer of stored inputs)
        return {"__dataset__": _dataset_to_plain(value)}
    if isinstance(value, nn.Module):  # restored into the module the fresh strategy holds (`restore_vars`)
        subs = list(value.named_modules())
        return {"__module__": {k: v.detach().cpu().clone() for k, v in value.state_dict().items()},
                "__fields__": {path: capture(sub, _module_fields(sub)) for path, sub in subs},
                "__modes__": [sub.training for _, sub in subs],
                "__grad__": [p.requires_grad for p in value.parameters()]}
    if isinstance(value, torch.optim.Optimizer):
        raise TypeError("a second optimizer")
    if hasattr(value, "plugins") and hasattr(value, "train") and hasattr(value, "eval"):
        raise TypeError(f"a nested strategy ({type(value).__name__})")
    if isinstance(value, ExemplarsBuffer):  # a storage policy: its own fields, rebuilt by `from_plain`
        return {"__buffer__": type(value).__name__, "vars": capture(value, vars(value))}
    if isinstance(value, defaultdict):
        if value.default_factory not in _FACTORIES.values():
            raise TypeError(f"a defaultdict of {value.default_factory}")
        name = next(k for k, f in _FACTORIES.items() if f is value.default_factory)
        return {"__defaultdict__": name, "items": [[to_plain(k), to_plain(v)] for k, v in value.items()]}
    if isinstance(value, set):
        return {"__set__": sorted(value)}
    if isinstance(value, dict):
        return {"__dict__": [[to_plain(k), to_plain(v)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return {"__list__" if isinstance(value, list) else "__tuple__": [to_plain(v) for v in value]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, torch.device):
        return {"__device__": str(value)}
    if isinstance(value, torch.dtype):
        return {"__dtype__": str(value).removeprefix("torch.")}
    if isinstance(value, np.ndarray) and value.dtype != object:
        return {"__ndarray__": torch.from_numpy(value.copy())}
    if hasattr(value, "__dict__"):  # e.g. a criterion or a method's buffer object: restored in place
        return {"__object__": type(value).__qualname__, "vars": capture(value, vars(value))}
    raise TypeError(f"a value of type {type(value).__name__}")


def _dataset_to_plain(dataset: Any) -> list[Tensor]:
    extra = sorted(set(getattr(dataset, "_data_attributes", {})) - {"targets", "targets_task_labels"})
    if extra:
        raise TypeError(f"an Avalanche dataset with the data attribute {extra[0]!r}")
    if len(dataset) == 0:
        return []
    tensors = dataset_tensors(dataset)
    if tensors is None:
        raise TypeError("an Avalanche dataset that is not made of tensors (or has transforms)")
    return [t.clone() for t in tensors]


_TORCH_FIELDS = frozenset(vars(nn.Module()))  # _parameters, _buffers, _modules, hooks, training, ...


def _module_fields(module: nn.Module) -> list[str]:
    """A module's own Python fields (a nearest-mean classifier's class means, PackNet's state), beside
    its parameters, buffers and submodules (in the state_dict) and torch's own bookkeeping."""
    return [k for k in vars(module) if k not in _TORCH_FIELDS]


def capture(obj: Any, names: Any) -> dict[str, Any]:
    """Plain state of the attributes `names` of `obj`; a value that cannot be plain raises `TypeError`
    naming the attribute."""
    out = {}
    for name in names:
        if name == "strategy":  # a plugin's back-reference
            continue
        value = getattr(obj, name)
        if inspect.isroutine(value) or isinstance(value, (type, logging.Logger)):
            continue  # a bound method, class or logger stored as configuration: rebuilt with the object
        try:
            out[name] = to_plain(value)
        except TypeError as err:
            raise TypeError(f"{type(obj).__name__}.{name}: {err}") from None
    return out


def restore_vars(obj: Any, state: dict[str, Any], strategy: Any) -> None:
    """Set the attributes `capture` saved back on `obj` (a fresh strategy or plugin built the same way);
    a module or object is restored into the one `obj` holds under that name. `TypeError` where `obj`
    holds nothing of the kind."""
    for name, plain in state.items():
        current = getattr(obj, name, None)
        if isinstance(plain, dict) and "__module__" in plain:
            if not isinstance(current, nn.Module):  # e.g. a previous model, None until the first experience
                current = copy.deepcopy(strategy.model)
            load_module(current, plain, strategy)
            setattr(obj, name, current)
        elif isinstance(plain, dict) and "__object__" in plain:
            if type(current).__qualname__ != plain["__object__"]:
                raise TypeError(f"{type(obj).__name__}.{name} is not a {plain['__object__']} in a fresh strategy")
            restore_vars(current, plain["vars"], strategy)
        else:
            setattr(obj, name, from_plain(plain, strategy.device))


def load_module(module: nn.Module, plain: dict[str, Any], strategy: Any) -> None:
    """A module's state_dict and plain fields. Buffers a module registers only once it has seen data (a
    nearest-mean classifier's class means) are registered first; any other mismatch (a model that grew
    new columns or heads) raises `TypeError`."""
    state = plain["__module__"]
    owned = dict(module.named_modules())
    if sorted(owned) != sorted(plain["__fields__"]):
        raise TypeError("the model's structure changed during training (it grew new modules)")
    for key, value in state.items():
        owner, _, name = key.rpartition(".")
        sub = owned.get(owner)
        if sub is not None and name in sub._buffers and sub._buffers[name] is None:
            sub._buffers[name] = value.clone()
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        raise TypeError(f"the model's structure changed during training ({str(err).splitlines()[-1].strip()})") \
            from None
    for path, sub in owned.items():
        restore_vars(sub, plain["__fields__"][path], strategy)
    for sub, mode in zip(owned.values(), plain["__modes__"]):
        sub.training = mode
    for p, grad in zip(module.parameters(), plain["__grad__"]):
        p.requires_grad_(grad)


def from_plain(value: Any, device: torch.device | str = "cpu") -> Any:
    from avalanche.training import storage_policy
    from avalanche.training.supervised import der
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
        if "__device__" in value:
            return torch.device(value["__device__"])
        if "__dtype__" in value:
            dtype = getattr(torch, value["__dtype__"])
            if not isinstance(dtype, torch.dtype):
                raise TypeError(f"{value['__dtype__']} is not a torch dtype")
            return dtype
        if "__ndarray__" in value:
            return value["__ndarray__"].numpy().copy()
        if "__defaultdict__" in value:
            out = defaultdict(_FACTORIES[value["__defaultdict__"]])
            out.update({from_plain(k, device): from_plain(v, device) for k, v in value["items"]})
            return out
        if "__buffer__" in value:  # only Avalanche's storage policies, by class name
            cls = getattr(storage_policy, value["__buffer__"], None) or getattr(der, value["__buffer__"], None)
            if not (isinstance(cls, type) and issubclass(cls, storage_policy.ExemplarsBuffer)):
                raise TypeError(f"{value['__buffer__']} is not one of Avalanche's storage policies")
            buffer = cls.__new__(cls)
            for name, plain in value["vars"].items():
                setattr(buffer, name, from_plain(plain, device))
            return buffer
        if "__module__" in value or "__object__" in value:
            raise TypeError("a module or object inside a container cannot be restored in place")
        if "__dict__" in value:
            return {from_plain(k, device): from_plain(v, device) for k, v in value["__dict__"]}
        if "__list__" in value:
            return [from_plain(v, device) for v in value["__list__"]]
        if "__tuple__" in value:
            return tuple(from_plain(v, device) for v in value["__tuple__"])
    return value


def tensors_to_dataset(tensors: list[Tensor]) -> Any:
    from avalanche.benchmarks.utils import _make_taskaware_tensor_classification_dataset
    from avalanche.benchmarks.utils.utils import concat_datasets

    if not tensors:
        return concat_datasets([])
    *data, tasks = tensors
    distinct = tasks.unique()
    # One task label is stored as Avalanche stores it for an experience, so the two concatenate.
    task_labels = int(distinct[0]) if len(distinct) == 1 else tasks.tolist()
    return _make_taskaware_tensor_classification_dataset(*data, task_labels=task_labels, targets=data[1])
