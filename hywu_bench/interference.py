"""Interference probes on a trained strategy, run once after the final experience and stored with the run.

- gradient conflict: cos(g_i, g_j) between the loss gradients of experiences i and j on the strategy's
  trainable parameters (those its optimiser updates), each g on a fixed held-out sample of the test
  experience. Negative: a single shared update cannot serve both (the HY-WU paper reports about -0.3
  between conflicting editing tasks, e.g. blur/deblur, under one shared update).
- operator separation (strategies that generate updates): cos(m_i, m_j) between the mean generated
  update m of each experience; low or negative means the generator puts the experiences apart.
- gradient conflict on the generated updates (HY-WU): the same cosine, but of the loss gradient with
  respect to the generated updates themselves, summed over the sample's instances.
- update projection: the generated updates of the sample on their first two principal components.

Generated updates are found by duck typing, so no strategy is imported here:

    strategy.generated_updates(x, condition=None, task_labels=None) -> Tensor (B, P)
        the flat update each instance gets (e.g. every site's scaling * B A, concatenated);
        keyword arguments are passed only when the method declares them; a method whose first
        parameter is named `mbatch` gets Avalanche's minibatch list [x, y, (condition,) task] instead.
    strategy.logits_from_updates(x, updates, condition=None, task_labels=None) -> Tensor (B, n_classes)
        optional: the forward pass with the given flat updates, for the gradient on the updates.

A strategy without them gets only the gradient-conflict probe. torch is imported inside `probe`, so
`save` / `load` (and `hywu-bench report`, which reads the files) stay torch-free.
"""

from __future__ import annotations

import inspect
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from hywu_bench import results

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
FILE_NAME = "interference.json"
MATRIX_KINDS = ("gradient_conflict", "gradient_conflict_updates", "operator_separation")
N_SAMPLES = 128  # test instances per experience: enough for a stable direction, cheap on a CPU
N_PROJECTED = 64  # instances per experience in the 2-D projection


def probe(strategy: Any, scenario: Any, setup: Any, n_samples: int = N_SAMPLES, seed: int = 0) -> dict[str, Any]:
    """Run every probe the strategy allows on `scenario.test_stream`; plain lists, ready for `save`."""
    import torch

    from hywu_bench.data import dataset_tensors

    device = torch.device(getattr(setup, "device", "cpu"))
    info = getattr(scenario, "info", None)
    model = strategy.model
    was_training, saved_mbatch = model.training, getattr(strategy, "mbatch", None)
    generator = torch.Generator().manual_seed(seed)
    batches = []
    for exp in scenario.test_stream:
        tensors = dataset_tensors(exp.dataset)
        if tensors is None:
            raise ValueError("interference probes need a tensor-backed test stream (hywu_bench.data.make_scenario)")
        keep = torch.randperm(len(tensors[1]), generator=generator)[:n_samples]
        batches.append([t[keep].to(device) for t in tensors])
    out: dict[str, Any] = {"format_version": FORMAT_VERSION, "n_samples": n_samples, "experiences": len(batches),
                           "skipped": []}
    model.eval()
    try:
        params = _trainable(strategy)
        grads = [_flat_grad(_loss(strategy, b, info), params) for b in batches]
        out["parameters"] = int(sum(p.numel() for p in params))
        out["gradient_norms"] = [float(g.norm()) for g in grads]
        out["gradient_conflict"] = cosine_matrix(torch.stack(grads)).tolist()
        _generated(strategy, batches, info, out)
    finally:
        model.train(was_training)
        if hasattr(strategy, "mbatch"):
            strategy.mbatch = saved_mbatch
    return out


def _trainable(strategy: Any) -> list["torch.nn.Parameter"]:
    """The parameters the strategy's optimiser updates (its shared, trainable state), in a fixed order."""
    seen, params = set(), []
    groups = getattr(getattr(strategy, "optimizer", None), "param_groups", None)
    candidates = [p for g in groups for p in g["params"]] if groups else list(strategy.model.parameters())
    for p in candidates:
        if p.requires_grad and id(p) not in seen:
            seen.add(id(p))
            params.append(p)
    if not params:
        raise ValueError("the strategy has no trainable parameters to probe")
    return params


def _logits(strategy: Any, batch: list["torch.Tensor"], info: Any) -> "torch.Tensor":
    """The strategy's own forward (so HY-WU generates its updates), with the task mask where the setting has one."""
    strategy.mbatch = batch
    try:
        logits = strategy.forward()
    except Exception as err:  # a template that needs its training loop state: fall back to the bare model
        log.debug("strategy.forward() failed (%s); probing strategy.model(x)", err)
        logits = strategy.model(batch[0])
    if info is not None and getattr(info, "task_aware", False):
        import torch

        allowed = torch.zeros(info.n_experiences, info.n_classes, dtype=torch.bool, device=logits.device)
        for e in info.experiences:
            allowed[e.index, list(e.classes)] = True
        logits = logits.masked_fill(~allowed[batch[-1]], -1e4)
    return logits


def _loss(strategy: Any, batch: list["torch.Tensor"], info: Any) -> "torch.Tensor":
    from torch.nn import functional as F

    return F.cross_entropy(_logits(strategy, batch, info), batch[1])


def _flat_grad(loss: "torch.Tensor", params: list["torch.nn.Parameter"]) -> "torch.Tensor":
    import torch

    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).detach().float().cpu()
                      for g, p in zip(grads, params)])


def cosine_matrix(vectors: "torch.Tensor") -> "torch.Tensor":
    """(T, P) -> (T, T) cosine similarities; a zero vector has cosine 0 with everything (and 1 with itself)."""
    import torch

    norms = vectors.norm(dim=1, keepdim=True)  # (T, 1)
    unit = vectors / norms.clamp_min(1e-12)
    cos = (unit @ unit.T).clamp(-1, 1)  # (T, T)
    cos.fill_diagonal_(1.0)
    return torch.where((norms * norms.T) > 0, cos, torch.eye(len(vectors)))


def _call(method: Callable[..., Any], batch: list["torch.Tensor"], *args: Any) -> Any:
    """Call a duck-typed strategy method with the keyword arguments it declares."""
    declared = inspect.signature(method).parameters
    if next(iter(declared), None) == "mbatch":
        return method(batch, *args)
    kwargs: dict[str, Any] = {}
    if "condition" in declared:
        kwargs["condition"] = batch[2] if len(batch) == 4 else None
    for name in ("task_labels", "task"):
        if name in declared:
            kwargs[name] = batch[-1]
    return method(batch[0], *args, **kwargs)


def _generated(strategy: Any, batches: list[list["torch.Tensor"]], info: Any, out: dict[str, Any]) -> None:
    import torch
    from torch.nn import functional as F

    make = getattr(strategy, "generated_updates", None)
    if make is None:
        out["skipped"].append("operator separation: the strategy has no generated_updates()")
        return
    with torch.no_grad():
        updates = [_call(make, b).detach().float().reshape(len(b[0]), -1).cpu() for b in batches]  # T x (n, P)
    out["update_parameters"] = int(updates[0].shape[1])
    out["operator_separation"] = cosine_matrix(torch.stack([u.mean(0) for u in updates])).tolist()
    out["update_projection"] = _projection(updates)
    forward = getattr(strategy, "logits_from_updates", None)
    if forward is None:
        out["skipped"].append("gradient conflict on updates: the strategy has no logits_from_updates()")
        return
    grads = []
    for b in batches:
        with torch.no_grad():
            u = _call(make, b).detach().reshape(len(b[0]), -1)
        u.requires_grad_(True)
        loss = F.cross_entropy(_call(forward, b, u), b[1])
        (g,) = torch.autograd.grad(loss, u)  # (n, P)
        grads.append(g.sum(0).float().cpu())
    out["gradient_conflict_updates"] = cosine_matrix(torch.stack(grads)).tolist()


def _projection(updates: list["torch.Tensor"]) -> dict[str, Any]:
    """First two principal components of the pooled generated updates (N_PROJECTED per experience)."""
    import torch

    pooled = torch.cat([u[:N_PROJECTED] for u in updates])  # (N, P)
    labels = [k for k, u in enumerate(updates) for _ in range(min(len(u), N_PROJECTED))]
    centred = pooled - pooled.mean(0, keepdim=True)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)  # N is small: the thin SVD is cheap
    k = min(2, vh.shape[0])
    points = centred @ vh[:k].T  # (N, k)
    if k < 2:
        points = torch.cat([points, torch.zeros(len(points), 2 - k)], dim=1)
    variance = s**2
    ratio = (variance[:2] / variance.sum().clamp_min(1e-12)).tolist()
    return {"points": points.tolist(), "experience": labels, "explained_variance": ratio}


def save(path: str | Path, probe_result: dict[str, Any]) -> None:
    """Write a probe result as JSON, atomically (plain lists and numbers only)."""
    results.atomic_write_json(Path(path), probe_result)


def load(path: str | Path) -> dict[str, Any]:
    """Read a stored probe result; matrices come back as nested lists (None where a value was NaN)."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict) or data.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path} is not an interference file of format version {FORMAT_VERSION}")
    for kind in MATRIX_KINDS:
        matrix = data.get(kind)
        if matrix is not None and np.asarray(matrix, dtype=float).ndim != 2:
            raise ValueError(f"{path}: '{kind}' is not a matrix")
    return data
